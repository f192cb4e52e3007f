import Glibc
import Synchronization

/// Fork-join over persistent worker threads that spin for a short while after each job before
/// they sleep. A decode step calls a matmul every fraction of a millisecond; waking a sleeping
/// thread (Dispatch's workers, a futex) took long enough on this kind of machine that two threads
/// were slower than one (measured: median 0.30 ms against a best case of 0.16 ms for a 4096 x 4096
/// INT4 GEMV). ONNX Runtime's pool spins the same way.
///
/// One job at a time: a caller that finds the pool busy (another thread's job, or a nested call
/// from inside a job) returns false and the caller runs the job some other way.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    /// How long an idle worker keeps spinning before it sleeps.
    private static let spinNanoseconds: UInt64 = 300_000

    private let busy = Atomic<Bool>(false)
    /// Bumped once per job; workers watch it.
    private let generation = Atomic<Int>(0)
    /// Next chunk to hand out (far past the end between jobs), the job's chunk count, and chunks
    /// not yet finished. A worker reads the count and the body only after taking a chunk below
    /// the count: that take acquires the caller's release of `nextChunk`, so it sees this job's.
    private let nextChunk = Atomic<Int>(Int.max / 2)
    private let chunkCount = Atomic<Int>(0)
    private let unfinished = Atomic<Int>(0)
    private let sleepers = Atomic<Int>(0)
    private var mutex = pthread_mutex_t()
    private var wakeUp = pthread_cond_t()
    /// The current job; written only while `busy` is held and no chunk can be taken.
    nonisolated(unsafe) private var body: ((Int) -> Void)?
    nonisolated(unsafe) private var workers = 0
    private let owner = getpid()

    private init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&wakeUp, nil)
    }

    /// Runs body(0..<chunks) on the calling thread and up to `threads - 1` workers (at most one
    /// per core besides the caller). Returns false, having run nothing, when the pool is busy or
    /// cannot be used (for example after fork).
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) -> Bool {
        guard getpid() == owner, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { busy.store(false, ordering: .releasing) }
        // Spinning workers beyond the cores would take turns with the ones working: chunks past
        // the worker count are simply taken by whoever finishes first.
        guard startWorkers(upTo: min(threads, chunks, Runtime.cpuCount) - 1) else { return false }
        withoutActuallyEscaping(body) { body in
            self.body = body
            chunkCount.store(chunks, ordering: .relaxed)
            unfinished.store(chunks, ordering: .relaxed)
            nextChunk.store(0, ordering: .releasing)
            // Sequentially consistent with the sleeper's side: either this load sees the sleeper,
            // or the sleeper's load sees the new generation (no lost wake-up).
            generation.add(1, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 {
                pthread_mutex_lock(&mutex)
                pthread_cond_broadcast(&wakeUp)
                pthread_mutex_unlock(&mutex)
            }
            work()
            while unfinished.load(ordering: .acquiring) > 0 {}
            // Late workers now find no chunk, so they never touch the body again.
            nextChunk.store(Int.max / 2, ordering: .relaxed)
            self.body = nil
        }
        return true
    }

    /// Takes chunks of the current job until none are left.
    private func work() {
        while true {
            let chunk = nextChunk.add(1, ordering: .acquiringAndReleasing).oldValue
            guard chunk < chunkCount.load(ordering: .relaxed) else { return }
            runChunk(chunk)
            unfinished.subtract(1, ordering: .releasing)
        }
    }

    /// Not inlined, so this thread's reference to the body is gone before the chunk counts as
    /// finished: the caller's withoutActuallyEscaping checks that nothing kept it.
    @inline(never) private func runChunk(_ chunk: Int) {
        body?(chunk)
    }

    /// Starts workers until there are `count`; false when a thread cannot be created.
    private func startWorkers(upTo count: Int) -> Bool {
        while workers < count {
            var thread = pthread_t()
            let context = Unmanaged.passUnretained(self).toOpaque()
            guard pthread_create(&thread, nil, { context in
                Unmanaged<WorkerPool>.fromOpaque(context!).takeUnretainedValue().workerLoop()
            }, context) == 0 else { return workers > 0 }
            pthread_detach(thread)
            workers += 1
        }
        return true
    }

    private func workerLoop() -> Never {
        var seen = generation.load(ordering: .acquiring)
        while true {
            seen = waitForJob(after: seen)
            // A worker that arrives after the chunks ran out finds none; the caller waits only for
            // chunks that were taken.
            work()
        }
    }

    /// Spins, then sleeps, until the generation moves past `seen`; returns the new generation.
    private func waitForJob(after seen: Int) -> Int {
        let start = Self.now()
        var spins = 0
        while true {
            let current = generation.load(ordering: .acquiring)
            if current != seen { return current }
            spins += 1
            if spins & 255 == 0 && Self.now() &- start > Self.spinNanoseconds { break }
        }
        pthread_mutex_lock(&mutex)
        sleepers.add(1, ordering: .sequentiallyConsistent)
        var current = generation.load(ordering: .sequentiallyConsistent)
        while current == seen {
            pthread_cond_wait(&wakeUp, &mutex)
            current = generation.load(ordering: .acquiring)
        }
        sleepers.subtract(1, ordering: .acquiringAndReleasing)
        pthread_mutex_unlock(&mutex)
        return current
    }

    private static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }
}
