#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import QuantKit

/// Reads tensors stored as ONNX external data (`data_location: EXTERNAL`): their bytes live in side
/// files next to the model, named by the `location`, `offset` and `length` entries.
///
/// Side files are memory-mapped read-only, not copied: a tensor's bytes are a view into the
/// mapping, valid while this reader lives. `release(_:)` drops a tensor's pages from memory once a
/// pass is done with it, so converting a model larger than RAM touches each weight once and keeps
/// resident memory bounded.
///
/// A location must name a regular file inside the model's folder: absolute paths, `..` components
/// and symbolic links that leave the folder are rejected (a model file is untrusted input).
public final class ExternalDataReader: @unchecked Sendable {
    /// The folder that holds the model file; every location is relative to it.
    public let folder: String
    /// The model file itself: large tensors of an inline model stay there after loading (see
    /// `WireScan`), referenced with the location `modelFileLocation`.
    public let modelPath: String
    private var mappings: [String: Mapping] = [:]
    private let lock = PthreadMutex()

    struct Mapping {
        let base: UnsafeMutableRawPointer?
        let size: Int

        /// The whole file, read-only (an empty file maps to nothing); `message` words the error
        /// from the system's reason.
        init(_ fd: Int32, size: Int, message: (String) -> String) throws {
            self.size = size
            guard size > 0 else { base = nil; return }
            guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
                throw QuantError(.io, message(FileIO.errorText(errno)))
            }
            self.base = base
        }
    }

    /// A location no file can have (it holds a NUL): "the model file itself". A model that
    /// names it in its own external data can only read its own file, which is harmless.
    public static let modelFileLocation = "\u{0}model-file"

    public init(modelPath: String) {
        self.modelPath = modelPath
        folder = FileIO.split(modelPath).folder
    }

    deinit {
        for mapping in mappings.values where mapping.size > 0 {
            munmap(mapping.base, mapping.size)
        }
    }

    /// The entries of a tensor's `external_data` list, checked.
    public struct Reference: Sendable, Equatable {
        public var location: String
        public var offset: Int
        /// nil: to the end of the file.
        public var length: Int?
    }

    public static func reference(of tensor: Onnx_TensorProto) throws -> Reference {
        var location: String?
        var offset = 0
        var length: Int?
        for entry in tensor.externalData {
            switch entry.key {
            case "location": location = entry.value
            case "offset":
                guard let v = Int(entry.value), v >= 0 else {
                    throw QuantError(.invalidModel, "tensor '\(tensor.name)': external data offset '\(entry.value)' is not a non-negative integer")
                }
                offset = v
            case "length":
                guard let v = Int(entry.value), v >= 0 else {
                    throw QuantError(.invalidModel, "tensor '\(tensor.name)': external data length '\(entry.value)' is not a non-negative integer")
                }
                length = v
            default: break  // "checksum" and future keys do not change where the bytes are
            }
        }
        guard let location, !location.isEmpty else {
            throw QuantError(.invalidModel, "tensor '\(tensor.name)' is stored externally but names no location")
        }
        return Reference(location: location, offset: offset, length: length)
    }

    /// Rejects locations that could reach outside the model's folder.
    static func checkLocation(_ location: String, tensor: String) throws {
        if location.hasPrefix("/") || location.contains("\0") || location.contains("\\") {
            throw ModelFileError(.externalDataOutsideFolder, "tensor '\(tensor)': external data location '\(location)' is not a relative path inside the model's folder")
        }
        if location.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0 == ".." }) {
            throw ModelFileError(.externalDataOutsideFolder, "tensor '\(tensor)': external data location '\(location)' leaves the model's folder (rejected)")
        }
    }

    /// The bytes of an externally stored tensor, as a view into the mapped side file.
    public func bytes(of tensor: Onnx_TensorProto) throws -> UnsafeRawBufferPointer {
        let ref = try Self.reference(of: tensor)
        let mapping: Mapping
        if ref.location == Self.modelFileLocation {
            mapping = try mapModelFile()
        } else {
            try Self.checkLocation(ref.location, tensor: tensor.name)
            mapping = try map(ref.location, tensor: tensor.name)
        }
        let (end, overflow) = ref.length.map { ref.offset.addingReportingOverflow($0) } ?? (mapping.size, false)
        guard !overflow, ref.offset <= mapping.size, end <= mapping.size else {
            throw QuantError(
                .invalidModel,
                "tensor '\(tensor.name)': external data [\(ref.offset), +\(ref.length ?? 0)) runs past the end of '\(ref.location)' (\(mapping.size) bytes): a truncated file?")
        }
        guard let base = mapping.base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + ref.offset, count: end - ref.offset)
    }

    /// Maps all of a tensor's pages now, in one call, before it is read: cheaper than a page fault
    /// per 64 KiB, and a mapped page can be prefetched (a software prefetch of a page not yet
    /// mapped is dropped), which the strided transposed read relies on. Best effort: kernels
    /// before Linux 5.14 refuse the advice, and the pages then fault in as they are read.
    public func populate(_ bytes: UnsafeRawBufferPointer) {
        let populateRead: Int32 = 22  // MADV_POPULATE_READ, not in every libc's headers
        Self.advise(bytes, populateRead)
    }

    /// Tells the kernel that a tensor's pages are no longer needed (they are re-read from the file if used again).
    public func release(_ bytes: UnsafeRawBufferPointer) {
        Self.advise(bytes, Int32(MADV_DONTNEED))
    }

    /// madvise over the pages that hold `bytes` (from the page its first byte is in).
    private static func advise(_ bytes: UnsafeRawBufferPointer, _ advice: Int32) {
        guard let start = bytes.baseAddress, bytes.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = Int(bitPattern: start) / page * page
        let last = Int(bitPattern: start + bytes.count)
        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), last - first, advice)
    }

    /// True when the tensor's bytes are in a side file (not in the model file itself).
    public static func isInSideFile(_ tensor: Onnx_TensorProto) -> Bool {
        tensor.dataLocation == .external && (try? reference(of: tensor))?.location != modelFileLocation
    }

    /// The model file, mapped (nil for a file that cannot be mapped: a pipe, a character device).
    /// Errors name the path, like reading it would.
    func mapModelFile() throws -> Mapping {
        lock.lock()
        defer { lock.unlock() }
        if let mapping = mappings[Self.modelFileLocation] { return mapping }
        let fd = open(modelPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw QuantError(.io, "cannot read model '\(modelPath)': no such file")
            }
            throw QuantError(.io, "cannot open model '\(modelPath)': \(FileIO.errorText(code))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuantError(.io, "cannot read model '\(modelPath)': \(FileIO.errorText(errno))")
        }
        if FileIO.isDirectory(st.st_mode) {
            throw QuantError(.io, "cannot read model '\(modelPath)': it is a directory")
        }
        guard FileIO.isRegular(st.st_mode) else {
            throw QuantError(.io, "cannot map model '\(modelPath)': not a regular file")
        }
        let mapping = try Mapping(fd, size: Int(st.st_size)) { "cannot map model '\(modelPath)': \($0)" }
        mappings[Self.modelFileLocation] = mapping
        return mapping
    }

    private func map(_ location: String, tensor: String) throws -> Mapping {
        lock.lock()
        defer { lock.unlock() }
        if let mapping = mappings[location] { return mapping }
        let path = "\(folder)/\(location)"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                throw ModelFileError(.externalDataMissing, "tensor '\(tensor)': external data file '\(path)' does not exist")
            }
            throw QuantError(.io, "tensor '\(tensor)': cannot open external data file '\(path)': \(FileIO.errorText(code))")
        }
        defer { close(fd) }
        try checkInsideFolder(fd: fd, path: path, tensor: tensor)
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw QuantError(.io, "cannot read external data file '\(path)': \(FileIO.errorText(errno))")
        }
        guard FileIO.isRegular(st.st_mode) else {
            throw QuantError(.invalidModel, "tensor '\(tensor)': external data '\(path)' is not a regular file")
        }
        let mapping = try Mapping(fd, size: Int(st.st_size)) { "cannot map external data file '\(path)': \($0)" }
        mappings[location] = mapping
        return mapping
    }

    /// A symbolic link inside the folder may still point outside it: compare real paths.
    private func checkInsideFolder(fd: Int32, path: String, tensor: String) throws {
        guard let realFolder = realpath(folder, nil) else {
            throw QuantError(.io, "cannot resolve the model folder '\(folder)': \(FileIO.errorText(errno))")
        }
        defer { free(realFolder) }
        guard let realFile = realpath(path, nil) else {
            throw QuantError(.io, "cannot resolve external data file '\(path)': \(FileIO.errorText(errno))")
        }
        defer { free(realFile) }
        var prefix = String(cString: realFolder)
        if !prefix.hasSuffix("/") { prefix += "/" }
        guard String(cString: realFile).hasPrefix(prefix) else {
            throw ModelFileError(.externalDataOutsideFolder, "tensor '\(tensor)': external data '\(path)' resolves outside the model's folder (rejected)")
        }
    }
}

/// A pthread mutex, so this module needs no Foundation for locking.
final class PthreadMutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func lock() { pthread_mutex_lock(&mutex) }
    func unlock() { pthread_mutex_unlock(&mutex) }
}
