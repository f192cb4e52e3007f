#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import Synchronization

/// Buffers for new initializers' raw data that come back when their `Data` is released (for
/// example once an `ExternalDataSpool` has written them), so that the next layer writes into pages
/// already mapped. malloc hands large blocks back to the kernel on free, and a converter then
/// took a page fault for every 4 KB of output (on SmolLM2 the pool removes 6,500 of 30,300 page
/// faults; most of the rest map the input).
/// Thread-safe. At most `idleLimit` bytes wait unused; the rest is freed.
public final class TensorBufferPool: Sendable {
    private struct Buffer: @unchecked Sendable {
        let pointer: UnsafeMutableRawPointer
        let capacity: Int
    }
    private let idle = Mutex<(buffers: [Buffer], bytes: Int)>(([], 0))
    let idleLimit: Int

    public init(idleLimit: Int = 96 << 20) {
        self.idleLimit = idleLimit
    }

    deinit {
        idle.withLock { state in
            for buffer in state.buffers { free(buffer.pointer) }
        }
    }

    /// `count` bytes, contents undefined, returned to the pool when the last copy of the `Data`
    /// is released. Reuses the smallest idle buffer that holds `count` bytes and is at most twice
    /// as large (a small tensor does not pin a large buffer).
    public func data(count: Int) -> Data {
        guard count > 0 else { return Data() }
        let reused = idle.withLock { state -> Buffer? in
            var best: Int?
            for (i, buffer) in state.buffers.enumerated() where buffer.capacity >= count && buffer.capacity / 2 <= count {
                if best.map({ buffer.capacity < state.buffers[$0].capacity }) ?? true { best = i }
            }
            guard let best else { return nil }
            state.bytes -= state.buffers[best].capacity
            return state.buffers.remove(at: best)
        }
        guard let buffer = reused ?? malloc(count).map({ Buffer(pointer: $0, capacity: count) }) else { return Data(count: count) }
        return Data(bytesNoCopy: buffer.pointer, count: count, deallocator: .custom { [self] _, _ in give(buffer) })
    }

    /// Bytes of the buffers waiting to be reused.
    var idleBytes: Int { idle.withLock { $0.bytes } }

    private func give(_ buffer: Buffer) {
        let kept = idle.withLock { state -> Bool in
            guard state.bytes + buffer.capacity <= idleLimit else { return false }
            state.buffers.append(buffer)
            state.bytes += buffer.capacity
            return true
        }
        if !kept { free(buffer.pointer) }
    }
}
