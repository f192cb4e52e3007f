#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import QuantKit
import SwiftProtobuf

/// An ONNX model held in memory as its parsed `ModelProto`.
///
/// Loading and saving without changes reproduces the input bytes for models written by Python's
/// `onnx` package: fields are written in field-number order, as protobuf's C++ and upb writers
/// do, and fields this schema does not know are kept and written back.
///
/// Large tensors are not copied at load: an inline model file is memory-mapped and the raw data
/// of its big initializers stays in the mapping (see `WireScan`); tensors in side files (external
/// data) are mapped by `dataReader` when read. Saving streams both to the output (see
/// `ExternalDataWriter.swift`), so memory stays bounded by the small fields plus what passes make.
public struct ONNXModel: Sendable {
    /// The model, as the generated ONNX schema type (see Generated/README.md).
    public var proto: Onnx_ModelProto

    /// Reads external tensors and the large tensors left in the loaded file; nil for a model
    /// built in memory. Lives as long as any copy of the model.
    public var dataReader: ExternalDataReader?

    /// True when the loaded file kept tensors in side files: `.automatic` saving then writes a
    /// side file too, even after a conversion replaced every external tensor.
    public var loadedWithExternalData = false

    public init(_ proto: Onnx_ModelProto, dataReader: ExternalDataReader? = nil) {
        self.proto = proto
        self.dataReader = dataReader
    }

    /// The largest message protobuf allows (2 GiB - 1); bigger models need external data.
    static let protobufLimit = Int(Int32.max)

    /// Reads and parses the ONNX model at `path`.
    ///
    /// Throws `QuantError` with status `.io` when the file cannot be read (missing, a directory,
    /// no permission) and `.invalidModel` when its bytes are not an ONNX model (empty, truncated,
    /// malformed protobuf, no `ir_version`). Every message names the path.
    ///
    /// A regular file is memory-mapped and only its small fields are parsed; large initializer
    /// data stays in the mapping, read through `dataReader` (also for external data).
    public static func load(path: String) throws -> ONNXModel {
        try load(path: path, mappingTensorsFrom: WireScan.minimumBytes)
    }

    /// `load`, leaving raw data of `minimum` bytes or more in the mapping (tests use small sizes).
    static func load(path: String, mappingTensorsFrom minimum: Int) throws -> ONNXModel {
        var st = stat()
        guard stat(path, &st) == 0, FileIO.isRegular(st.st_mode) else {
            // Missing files, folders, pipes: read them the plain way, which reports each case.
            let bytes = try FileIO.readAll(path: path, limit: protobufLimit)
            var model = try ONNXModel(serializedBytes: bytes, source: path)
            model.dataReader = ExternalDataReader(modelPath: path)
            model.loadedWithExternalData = usesSideFiles(model.proto)
            return model
        }
        let reader = ExternalDataReader(modelPath: path)
        let mapping = try reader.mapModelFile()
        guard mapping.size <= protobufLimit else {
            throw QuantError(
                .invalidModel,
                "'\(path)' is \(mapping.size) bytes, over the 2 GiB protobuf limit (a model this big keeps its tensors in external data files)")
        }
        let file = UnsafeRawBufferPointer(start: mapping.base, count: mapping.size)
        let bytes = WireScan.skeleton(of: file, minimum: minimum) ?? [UInt8](file)
        var model = try ONNXModel(serializedBytes: bytes, source: path)
        model.dataReader = reader
        model.loadedWithExternalData = usesSideFiles(model.proto)
        return model
    }

    /// Parses a serialized `ModelProto`. `source` names the bytes in error messages.
    public init(serializedBytes bytes: [UInt8], source: String = "<bytes>") throws {
        guard !bytes.isEmpty else {
            throw QuantError(.invalidModel, "'\(source)' is empty: not an ONNX model")
        }
        guard bytes.count <= Self.protobufLimit else {
            throw QuantError(.invalidModel, "'\(source)' is \(bytes.count) bytes, over the 2 GiB protobuf limit")
        }
        let proto: Onnx_ModelProto
        do {
            proto = try Onnx_ModelProto(serializedBytes: bytes)
        } catch let error as BinaryDecodingError {
            throw QuantError(.invalidModel, "'\(source)' is not a valid ONNX model: \(Self.explain(error))")
        } catch {
            throw QuantError(.invalidModel, "'\(source)' is not a valid ONNX model: \(error)")
        }
        // Every ONNX model states its IR version (onnx.checker insists); a file that parses as
        // protobuf but has none is some other protobuf, or not protobuf at all.
        guard proto.hasIrVersion else {
            throw QuantError(.invalidModel, "'\(source)' is not an ONNX model: it has no ir_version")
        }
        self.proto = proto
    }

    /// The model serialized inline as protobuf bytes, tensors kept in files included (for small
    /// models: this is one array of the whole model; `save` streams instead).
    public func serializedBytes() throws -> [UInt8] {
        let plan = try InlinePlan(proto, reader: dataReader)
        try plan.checkSize()
        return plan.joined()
    }

    /// Writes the model to `path` atomically: the bytes go to a temporary file in the same folder,
    /// which is flushed to disk and then renamed over `path`. On any failure the temporary file
    /// is removed and `path` is left as it was; a partial model is never visible at `path`.
    ///
    /// An existing file at `path` is replaced only when `overwrite` is true (keeping its
    /// permission bits); otherwise this throws `ModelFileError.outputExists` and leaves it
    /// untouched, also when the file appears while the model is being written. Tensor data goes
    /// where `ExternalDataPolicy.automatic` says.
    @discardableResult
    public func save(to path: String, overwrite: Bool = false) throws -> [String] {
        try save(to: path, overwrite: overwrite, externalData: .automatic, reader: nil)
    }

    static func explain(_ error: BinaryDecodingError) -> String {
        switch error {
        case .truncated: return "the protobuf data is truncated (an incomplete file?)"
        case .malformedProtobuf: return "the protobuf data is malformed"
        case .invalidUTF8: return "a string field is not valid UTF-8"
        case .messageDepthLimit: return "messages are nested too deeply (over 100 levels)"
        case .trailingGarbage: return "there are bytes after the end of the message"
        case .missingRequiredFields: return "required fields are missing"
        default: return "\(error)"
        }
    }
}

/// File reading and atomic writing with the C library (no Foundation).
enum FileIO {
    static func errorText(_ code: Int32) -> String {
        String(cString: strerror(code))
    }

    static func isDirectory(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFDIR }
    static func isRegular(_ mode: mode_t) -> Bool { mode & S_IFMT == S_IFREG }

    /// The whole content of `path`; `.io` errors name the path and the reason.
    static func readAll(path: String, limit: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw QuantError(.io, "cannot read model '\(path)': no such file")
            }
            throw QuantError(.io, "cannot open model '\(path)': \(errorText(code))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuantError(.io, "cannot read model '\(path)': \(errorText(errno))")
        }
        if isDirectory(st.st_mode) {
            throw QuantError(.io, "cannot read model '\(path)': it is a directory")
        }
        if isRegular(st.st_mode) && Int(st.st_size) > limit {
            throw QuantError(
                .invalidModel,
                "'\(path)' is \(st.st_size) bytes, over the 2 GiB protobuf limit (a model this big keeps its tensors in external data files)")
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(isRegular(st.st_mode) ? Int(st.st_size) : 1 << 16)
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw QuantError(.io, "cannot read model '\(path)': \(errorText(code))")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
            if bytes.count > limit {
                throw QuantError(.invalidModel, "'\(path)' is over the 2 GiB protobuf limit")
            }
        }
        return bytes
    }

    /// The folder part of `path` ("." for a bare name) and the file name.
    static func split(_ path: String) -> (folder: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let folder = String(path[..<slash])
        return (folder.isEmpty ? "/" : folder, String(path[path.index(after: slash)...]))
    }

    static func writeError(_ path: String, _ code: Int32) -> any Error {
        if code == ENOSPC {
            return ModelFileError(.diskFull, "cannot write model '\(path)': the disk is full (nothing was written)")
        }
        return QuantError(.io, "cannot write model '\(path)': \(errorText(code)) (nothing was written)")
    }
}
