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
/// Not yet handled (see issue 4): external data (tensors in side files) is not read or written;
/// its references (`data_location`, `external_data`) load and save like any other field. A model
/// file is read whole into memory, so files of 2 GiB or more are refused.
public struct ONNXModel: Sendable {
    /// The model, as the generated ONNX schema type (see Generated/README.md).
    public var proto: Onnx_ModelProto

    public init(_ proto: Onnx_ModelProto) {
        self.proto = proto
    }

    /// The largest message protobuf allows (2 GiB - 1); bigger models need external data.
    static let protobufLimit = Int(Int32.max)

    /// Reads and parses the ONNX model at `path`.
    ///
    /// Throws `QuantError` with status `.io` when the file cannot be read (missing, a directory,
    /// no permission) and `.invalidModel` when its bytes are not an ONNX model (empty, truncated,
    /// malformed protobuf, no `ir_version`). Every message names the path.
    public static func load(path: String) throws -> ONNXModel {
        let bytes = try FileIO.readAll(path: path, limit: protobufLimit)
        return try ONNXModel(serializedBytes: bytes, source: path)
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

    /// The model serialized as protobuf bytes (what `save(to:)` writes).
    public func serializedBytes() throws -> [UInt8] {
        do {
            return try proto.serializedBytes()
        } catch BinaryEncodingError.missingRequiredFields {
            // The ONNX schema has no required fields: swift-protobuf reports a message over the
            // 2 GiB protobuf limit this way (checked before it allocates anything).
            throw QuantError(
                .invalidModel,
                "the model serializes to 2 GiB or more, over the protobuf limit: its tensors need external data")
        } catch {
            throw QuantError(.invalidModel, "the model cannot be serialized: \(error)")
        }
    }

    /// Writes the model to `path` atomically: the bytes go to a temporary file in the same folder,
    /// which is flushed to disk and then renamed over `path`. On any failure the temporary file
    /// is removed and `path` is left as it was; a partial model is never visible at `path`.
    ///
    /// An existing file at `path` is replaced only when `overwrite` is true (keeping its
    /// permission bits); otherwise this throws `.io` and leaves it untouched, also when the
    /// file appears while the model is being written.
    public func save(to path: String, overwrite: Bool = false) throws {
        let bytes = try serializedBytes()
        try FileIO.writeAtomically(bytes, to: path, overwrite: overwrite)
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
                "'\(path)' is \(st.st_size) bytes, over the 2 GiB protobuf limit (external data is not supported yet)")
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

    static func writeAtomically(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
        let (folder, name) = split(path)
        guard !name.isEmpty, name != ".", name != ".." else {
            throw QuantError(.io, "cannot write model '\(path)': not a file name")
        }
        var existing = stat()
        let exists = lstat(path, &existing) == 0
        if exists && isDirectory(existing.st_mode) {
            throw QuantError(.io, "cannot write model '\(path)': it is a directory")
        }
        if exists && !overwrite {
            throw ModelFileError(.outputExists, "cannot write model '\(path)': the file already exists (allow overwriting to replace it)")
        }

        // The temporary file: same folder (so the rename stays on one file system), hidden,
        // created exclusively with mode 0666 less the umask, like any new file.
        var temp = ""
        var fd: Int32 = -1
        for _ in 0..<100 {
            temp = "\(folder)/.\(name).tmp-\(getpid())-\(String(UInt32.random(in: .min ... .max), radix: 16))"
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
            if fd >= 0 || errno != EEXIST { break }
        }
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw QuantError(.io, "cannot write model '\(path)': folder '\(folder)' does not exist")
            }
            throw QuantError(.io, "cannot write model '\(path)': cannot create a file in '\(folder)': \(errorText(code))")
        }
        var committed = false
        defer {
            if !committed { unlink(temp) }
        }
        do {
            defer { if fd >= 0 { close(fd) } }
            if exists && isRegular(existing.st_mode) {
                _ = fchmod(fd, existing.st_mode & 0o7777)  // best effort: keep the replaced file's permissions
            }
            try writeAll(fd, bytes, path: path)
            guard fsync(fd) == 0 else { throw writeError(path, errno) }
            let result = close(fd)
            fd = -1
            guard result == 0 else { throw writeError(path, errno) }
        }

        if overwrite {
            guard rename(temp, path) == 0 else {
                throw QuantError(.io, "cannot write model '\(path)': \(errorText(errno))")
            }
        } else {
            // A hard link fails if `path` appeared meanwhile, so an existing file is never replaced.
            guard link(temp, path) == 0 else {
                let code = errno
                if code == EEXIST {
                    throw ModelFileError(.outputExists, "cannot write model '\(path)': the file already exists (allow overwriting to replace it)")
                }
                throw QuantError(
                    .io, "cannot write model '\(path)': \(errorText(code)) (a file system without hard links? allow overwriting)")
            }
            unlink(temp)
        }
        committed = true
        // Make the rename itself durable (best effort: some file systems refuse fsync on folders).
        let dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    static func writeError(_ path: String, _ code: Int32) -> any Error {
        if code == ENOSPC {
            return ModelFileError(.diskFull, "cannot write model '\(path)': the disk is full (nothing was written)")
        }
        return QuantError(.io, "cannot write model '\(path)': \(errorText(code)) (nothing was written)")
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        try bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let n = write(fd, buffer.baseAddress! + offset, min(buffer.count - offset, 1 << 30))
                if n < 0 {
                    let code = errno
                    if code == EINTR { continue }
                    throw writeError(path, code)
                }
                offset += n
            }
        }
    }
}
