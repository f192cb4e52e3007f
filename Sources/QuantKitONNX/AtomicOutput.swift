#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import QuantKit

/// When an output is forced to disk (fsync of the file, then of its folder) before and after it
/// takes its final name. Either way a partial output never becomes visible, and the input is
/// never touched; the choice is only about a power cut or a kernel crash soon after.
public enum OutputSync: Sendable {
    /// Always: once the write returns, the file survives a power cut.
    case always
    /// Only when the output replaces an existing file, so that a power cut leaves the old file or
    /// the new one, never neither. A new file is left to the kernel's writeback, as `cp`, ONNX
    /// Runtime and llama.cpp leave theirs (a power cut right after may leave it empty or short,
    /// which loading reports as truncated); that saves waiting for the disk (on SmolLM2, 131 MB
    /// of output: about 0.05 s of a 0.45 s conversion).
    case whenReplacing
}

/// A file written under a temporary name next to its final path and renamed there only when
/// complete, so a partial output is never visible. Writes are buffered and streamed to the file
/// descriptor (no copy of the whole output in memory).
final class AtomicOutput {
    let path: String
    let folder: String
    private(set) var temp = ""
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 20
    /// Bytes written so far (the offset of the next write).
    private(set) var size = 0
    /// Bytes handed to the kernel (written to the descriptor), and how far writeback was started.
    private var written = 0, flushStarted = 0
    /// Writeback starts every this many bytes, so the disk works while later bytes are copied
    /// and the final fsync waits for the tail only (it was ~80 ms after 131 MB otherwise).
    private static let writebackStep = 8 << 20
    private var committed = false
    /// fsync before the rename (and of the folder after it): see `OutputSync`.
    let durable: Bool

    /// Checks `path` (not a directory; absent unless `overwrite`) and creates the temporary file.
    init(path: String, overwrite: Bool, sync: OutputSync = .always) throws {
        self.path = path
        let (folder, name) = FileIO.split(path)
        self.folder = folder
        guard !name.isEmpty, name != ".", name != ".." else {
            throw QuantError(.io, "cannot write model '\(path)': not a file name")
        }
        let replacing = try Self.checkTarget(path, overwrite: overwrite)
        durable = sync == .always || replacing
        // Same folder (so the rename stays on one file system), hidden, created exclusively with
        // mode 0666 less the umask, like any new file.
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
            throw QuantError(.io, "cannot write model '\(path)': cannot create a file in '\(folder)': \(FileIO.errorText(code))")
        }
        var existing = stat()
        if overwrite && lstat(path, &existing) == 0 && FileIO.isRegular(existing.st_mode) {
            _ = fchmod(fd, existing.st_mode & 0o7777)  // best effort: keep the replaced file's permissions
        }
        buffer.reserveCapacity(Self.bufferSize)
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed && !temp.isEmpty { unlink(temp) }
    }

    /// Throws when `path` is a directory, or exists and may not be replaced; returns whether it exists.
    @discardableResult
    static func checkTarget(_ path: String, overwrite: Bool) throws -> Bool {
        var existing = stat()
        let exists = lstat(path, &existing) == 0
        if exists && FileIO.isDirectory(existing.st_mode) {
            throw QuantError(.io, "cannot write model '\(path)': it is a directory")
        }
        if exists && !overwrite {
            throw ModelFileError(.outputExists, "cannot write '\(path)': the file already exists (allow overwriting to replace it)")
        }
        return exists
    }

    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws {
        if buffer.count + bytes.count <= Self.bufferSize {
            buffer.append(contentsOf: bytes)
        } else {
            try flush()
            if bytes.count < Self.bufferSize {
                buffer.append(contentsOf: bytes)
            } else {
                try writeDirect(bytes)
            }
        }
        size += bytes.count
    }

    func writeZeros(_ count: Int) throws {
        try write([UInt8](repeating: 0, count: count))
    }

    private func flush() throws {
        try buffer.withUnsafeBytes { try writeDirect($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeDirect(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = systemWrite(fd, base + offset, min(bytes.count - offset, 1 << 30))
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                throw FileIO.writeError(path, code)
            }
            offset += n
        }
        written += bytes.count
        if durable && written - flushStarted >= Self.writebackStep {
            startWriteback(fd, flushStarted, written - flushStarted)
            flushStarted = written
        }
    }

    /// Flushes and closes the temporary file (still under its temporary name).
    func finish() throws {
        try flush()
        if durable { guard fsync(fd) == 0 else { throw FileIO.writeError(path, errno) } }
        let result = close(fd)
        fd = -1
        guard result == 0 else { throw FileIO.writeError(path, errno) }
    }

    /// Moves the finished file to its path. Without `overwrite`, a hard link is used, which fails
    /// if the path appeared meanwhile, so an existing file is never replaced.
    func commit(overwrite: Bool) throws {
        if overwrite {
            guard rename(temp, path) == 0 else {
                throw QuantError(.io, "cannot write model '\(path)': \(FileIO.errorText(errno))")
            }
        } else {
            guard link(temp, path) == 0 else {
                let code = errno
                if code == EEXIST {
                    throw ModelFileError(.outputExists, "cannot write '\(path)': the file already exists (allow overwriting to replace it)")
                }
                throw QuantError(
                    .io, "cannot write model '\(path)': \(FileIO.errorText(code)) (a file system without hard links? allow overwriting)")
            }
            unlink(temp)
        }
        committed = true
        guard durable else { return }
        // Make the rename itself durable (best effort: some file systems refuse fsync on folders).
        let dirfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }
}

/// Starts writing a range of the file to disk without waiting (Linux sync_file_range; no
/// durability promise: `finish` still calls fsync). Failures are ignored: fsync reports them.
private func startWriteback(_ fd: Int32, _ offset: Int, _ count: Int) {
    #if os(Linux)
    _ = linuxSyncFileRange(fd, Int64(offset), Int64(count), 2)  // SYNC_FILE_RANGE_WRITE
    #endif
}

#if os(Linux)
/// glibc's sync_file_range(int, off64_t, off64_t, unsigned): declared by fcntl.h only under
/// _GNU_SOURCE, which the Glibc module does not set, so it is named here.
@_silgen_name("sync_file_range")
private func linuxSyncFileRange(_ fd: Int32, _ offset: Int64, _ count: Int64, _ flags: UInt32) -> Int32
#endif

/// The C library's write(2), named apart from `AtomicOutput.write`.
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
