#if canImport(Glibc)
import Glibc
#endif

/// Large read-mostly buffers (packed weights) that the kernels stream once per call: aligned to
/// 2 MiB and marked MADV_HUGEPAGE before their first write, so that where transparent huge pages
/// are enabled "madvise" (Debian's default) they are backed by 2 MiB pages, and a stream of
/// weights takes one TLB entry per 2 MiB instead of one per 4 KiB. Only whole 2 MiB ranges are
/// marked, so the hint never reaches memory the allocator handed to someone else. Elsewhere (THP
/// "never", other systems) the hint does nothing and the buffer is an ordinary aligned allocation.
enum HugePageBuffer {
    static let pageBytes = 2 << 20

    /// `byteCount` bytes (at least 1), 64-byte aligned; free with `deallocate()`.
    static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        guard byteCount >= pageBytes else { return .allocate(byteCount: max(byteCount, 1), alignment: 64) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: byteCount, alignment: pageBytes)
        #if canImport(Glibc)
        _ = madvise(buffer, byteCount / pageBytes * pageBytes, MADV_HUGEPAGE)
        #endif
        return buffer
    }
}
