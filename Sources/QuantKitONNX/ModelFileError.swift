import QuantKit

/// File-level failures a caller must tell apart (the `quantkit` tool gives each its own exit
/// code). Other failures are `QuantError`s with a status.
public struct ModelFileError: Error, CustomStringConvertible, Sendable {
    public enum Kind: String, Sendable {
        /// The output file exists and overwriting was not allowed.
        case outputExists
        /// The disk (or quota) is full; nothing was written.
        case diskFull
        /// An external-data location points outside the model's folder.
        case externalDataOutsideFolder
        /// An external-data file named by the model does not exist.
        case externalDataMissing
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// The C ABI status for this failure.
    public var status: QuantStatus {
        switch kind {
        case .outputExists, .diskFull, .externalDataMissing: return .io
        case .externalDataOutsideFolder: return .invalidModel
        }
    }
}
