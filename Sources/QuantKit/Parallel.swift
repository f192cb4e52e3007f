import Dispatch
import Synchronization

/// Splits index ranges over threads. Results never depend on the thread count: every element is
/// computed by exactly one chunk, with the same arithmetic.
enum Parallel {
    /// Calls body on disjoint ranges covering 0..<count. Small work stays on the calling thread.
    /// `chunksPerThread` > 1 cuts the work finer than the thread count, and threads take chunks as
    /// they finish: a core that is slow for a moment holds up less of the call. Only for bodies
    /// whose results do not depend on where ranges start.
    static func forEachChunk(count: Int, threads: Int, minChunk: Int = 1, chunksPerThread: Int = 1,
                             _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let wanted = threads > 0 ? threads : Runtime.defaultThreadCount
        let chunks = max(1, min(wanted == 1 ? 1 : wanted * max(chunksPerThread, 1), count / max(minChunk, 1)))
        if chunks == 1 {
            body(0..<count)
            return
        }
        let per = (count + chunks - 1) / chunks
        let chunk = { (c: Int) in
            let start = c * per
            if start < count { body(start..<min(count, start + per)) }
        }
        // The spinning pool first; Dispatch when it is busy (nested or concurrent calls).
        if !WorkerPool.shared.run(chunks: chunks, threads: min(wanted, chunks), chunk) {
            DispatchQueue.concurrentPerform(iterations: chunks, execute: chunk)
        }
    }

    /// Runs `worker` on up to `threads` threads; each takes indices of 0..<count one at a time
    /// from `next` (nil when none is left), so a core busy with something else takes fewer.
    /// Each index is handed out exactly once; which thread gets it varies from run to run.
    static func forEachDynamic(count: Int, threads: Int, _ worker: (_ next: () -> Int?) -> Void) {
        guard count > 0 else { return }
        let workers = min(count, threads > 0 ? threads : Runtime.defaultThreadCount)
        let counter = Atomic<Int>(0)
        let next = { () -> Int? in
            let i = counter.wrappingAdd(1, ordering: .relaxed).oldValue
            return i < count ? i : nil
        }
        if workers == 1 {
            worker(next)
            return
        }
        DispatchQueue.concurrentPerform(iterations: workers) { _ in worker(next) }
    }
}
