/// Failure kinds, numbered exactly as `qk_status` in Include/quantkit.h (values never change).
public enum QuantStatus: Int32, Sendable {
    case ok = 0
    case invalidArgument = 1
    case nullPointer = 2
    case unsupported = 3
    case bufferTooSmall = 4
    case shapeMismatch = 5
    case nonFinite = 6
    case outOfMemory = 7
    case overflow = 8
    case io = 9
    case invalidModel = 10
    case internalError = 11
    case version = 12
}

/// An error with the status the C ABI reports and a message a person can act on.
public struct QuantError: Error, CustomStringConvertible, Sendable {
    public let status: QuantStatus
    public let message: String

    public init(_ status: QuantStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    public var description: String { message }

    static func invalid(_ message: String) -> QuantError { QuantError(.invalidArgument, message) }
    static func unsupported(_ message: String) -> QuantError { QuantError(.unsupported, message) }
}
