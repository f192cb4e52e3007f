import Synchronization

/// Band buffers that outlive one `TiledQuantizer` call: a converter quantizing layer after layer
/// reuses them instead of mapping fresh pages (and taking their page faults) for every layer.
/// Thread-safe; buffers are freed with the workspace.
public final class BandWorkspace: Sendable {
    private struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutablePointer<Float>
        let capacity: Int
    }
    private let free = Mutex<[Buffer]>([])

    public init() {}

    deinit {
        free.withLock { buffers in
            for buffer in buffers { buffer.pointer.deallocate() }
        }
    }

    /// A buffer of at least `count` floats (contents undefined), until `give` returns it.
    func take(_ count: Int) -> (pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        let reused = free.withLock { buffers -> Buffer? in
            guard let i = buffers.firstIndex(where: { $0.capacity >= count }) else { return nil }
            return buffers.remove(at: i)
        }
        if let reused { return (reused.pointer, reused.capacity) }
        return (.allocate(capacity: max(count, 1)), max(count, 1))
    }

    func give(_ buffer: (pointer: UnsafeMutablePointer<Float>, capacity: Int)) {
        free.withLock { $0.append(Buffer(pointer: buffer.pointer, capacity: buffer.capacity)) }
    }
}
