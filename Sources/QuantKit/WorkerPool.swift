import Glibc
import Synchronization

/// Fork-join over persistent worker threads that spin for a short while after each job before
/// they sleep. A decode step calls a matmul every fraction of a millisecond; waking a sleeping
/// thread (Dispatch's workers, a futex) took long enough on this kind of machine that two threads
/// were slower than one (measured: median 0.30 ms against a best case of 0.16 ms for a 4096 x 4096
/// INT4 GEMV). ONNX Runtime's pool spins the same way.
///
/// A job names how many workers may help (`threads - 1`): worker i takes part only when i is
/// below that, so a call asking for 4 threads keeps to 4 cores even after an earlier call started
/// 15 workers; the others keep sleeping (each worker sleeps on its own condition, and a job wakes
/// only the sleepers it needs).
///
/// One job at a time: a caller that finds the pool busy (another thread's job, or a nested call
/// from inside a job) returns false and the caller runs the job some other way.
final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool(maxWorkers: Runtime.cpuCount - 1)

    /// How long an idle worker keeps spinning before it sleeps.
    private static let spinNanoseconds: UInt64 = 300_000

    /// Where worker i sleeps.
    private final class Parking: @unchecked Sendable {
        let asleep = Atomic<Bool>(false)
        let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        let wakeUp = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

        init() {
            pthread_mutex_init(mutex, nil)
            pthread_cond_init(wakeUp, nil)
        }
    }

    private let busy = Atomic<Bool>(false)
    /// Bumped once per job; workers watch it.
    private let generation = Atomic<Int>(0)
    /// Workers that may take chunks of the current job (those with a lower index).
    private let helpers = Atomic<Int>(0)
    /// The job's tag (its generation, low 31 bits) in the high half and the next chunk to hand out
    /// in the low half; the job's chunk count; chunks not yet finished. A worker takes a chunk only
    /// of the job it was admitted to (same tag) and only below the count, so one that arrives late
    /// never runs a later job's chunks. That take acquires the caller's release of `nextChunk`, so
    /// the worker sees this job's count and body.
    private let nextChunk = Atomic<Int>(0)
    private let chunkCount = Atomic<Int>(0)
    private let unfinished = Atomic<Int>(0)
    /// One per possible worker.
    private let parking: [Parking]
    /// Workers started so far; also the index the next one gets. Touched only while `busy` is held.
    nonisolated(unsafe) private var workers = 0
    /// The current job; written only while `busy` is held and no chunk can be taken.
    nonisolated(unsafe) private var body: ((Int) -> Void)?
    private let owner = getpid()

    /// `maxWorkers`: one per core besides the caller for the shared pool (tests make others).
    init(maxWorkers: Int) {
        parking = (0..<max(maxWorkers, 0)).map { _ in Parking() }
    }

    /// Runs body(0..<chunks) on the calling thread and up to `threads - 1` workers (at most
    /// `maxWorkers`). Returns false, having run nothing, when the pool is busy or
    /// cannot be used (for example after fork).
    func run(chunks: Int, threads: Int, _ body: (Int) -> Void) -> Bool {
        guard getpid() == owner, chunks < Self.noChunk, busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else {
            return false
        }
        defer { busy.store(false, ordering: .releasing) }
        // Spinning workers beyond the cores would take turns with the ones working: chunks past
        // the worker count are simply taken by whoever finishes first.
        let wanted = max(0, min(threads - 1, chunks - 1, parking.count))
        guard startWorkers(upTo: wanted) else { return false }
        let helping = min(wanted, workers)
        withoutActuallyEscaping(body) { body in
            self.body = body
            // Releasing: a worker that reads this count also sees the end of the last job below.
            chunkCount.store(chunks, ordering: .releasing)
            unfinished.store(chunks, ordering: .relaxed)
            helpers.store(helping, ordering: .relaxed)
            let job = generation.load(ordering: .relaxed) &+ 1
            nextChunk.store(Self.tag(job), ordering: .releasing)
            // Sequentially consistent with the sleeper's side: either this load of `asleep` sees
            // the sleeper, or the sleeper's load sees the new generation (no lost wake-up).
            generation.store(job, ordering: .sequentiallyConsistent)
            for i in 0..<helping where parking[i].asleep.load(ordering: .sequentiallyConsistent) {
                pthread_mutex_lock(parking[i].mutex)
                pthread_cond_signal(parking[i].wakeUp)
                pthread_mutex_unlock(parking[i].mutex)
            }
            work(job: job)
            while unfinished.load(ordering: .acquiring) > 0 {}
            // Closes the job: late workers now find no chunk, so they never touch the body again.
            nextChunk.store(Self.tag(job) | Self.noChunk, ordering: .releasing)
            self.body = nil
        }
        return true
    }

    private static func tag(_ job: Int) -> Int { (job & 0x7FFF_FFFF) << 32 }
    private static let noChunk = 0xFFFF_FFFF

    /// Takes chunks of `job` until none are left (at once when another job runs now).
    private func work(job: Int) {
        let tag = Self.tag(job)
        var next = nextChunk.load(ordering: .acquiring)
        while next & ~Self.noChunk == tag && next & Self.noChunk < chunkCount.load(ordering: .acquiring) {
            let (taken, found) = nextChunk.compareExchange(expected: next, desired: next + 1, ordering: .acquiringAndReleasing)
            if taken {
                runChunk(next & Self.noChunk)
                unfinished.subtract(1, ordering: .releasing)
                next = nextChunk.load(ordering: .acquiring)
            } else {
                next = found
            }
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
            // The worker starts from the generation before the job that starts it, so it takes part.
            let context = UnsafeMutablePointer<(WorkerPool, Int, Int)>.allocate(capacity: 1)
            context.initialize(to: (self, workers, generation.load(ordering: .relaxed)))
            guard pthread_create(&thread, nil, { context in
                let typed = context!.assumingMemoryBound(to: (WorkerPool, Int, Int).self)
                let (pool, index, seen) = typed.move()
                typed.deallocate()
                pool.workerLoop(index: index, after: seen)
            }, context) == 0 else {
                context.deinitialize(count: 1)
                context.deallocate()
                return workers > 0
            }
            pthread_detach(thread)
            workers += 1
        }
        return true
    }

    private func workerLoop(index: Int, after generation: Int) -> Never {
        var seen = generation
        while true {
            seen = waitForJob(index: index, after: seen)
            // A worker that arrives after the chunks ran out finds none; the caller waits only for
            // chunks that were taken.
            work(job: seen)
        }
    }

    /// A job past `seen` that worker `index` may help with.
    private func isJob(for index: Int, after seen: Int) -> Int? {
        let current = generation.load(ordering: .sequentiallyConsistent)
        return current != seen && index < helpers.load(ordering: .relaxed) ? current : nil
    }

    /// Spins, then sleeps, until there is a job for this worker; returns its generation. Jobs for
    /// fewer workers pass by without restarting the spin.
    private func waitForJob(index: Int, after seen: Int) -> Int {
        let start = Self.now()
        var spins = 0
        while true {
            if let job = isJob(for: index, after: seen) { return job }
            spins += 1
            if spins & 255 == 0 && Self.now() &- start > Self.spinNanoseconds { break }
        }
        let place = parking[index]
        pthread_mutex_lock(place.mutex)
        place.asleep.store(true, ordering: .sequentiallyConsistent)
        var job = isJob(for: index, after: seen)
        while job == nil {
            pthread_cond_wait(place.wakeUp, place.mutex)
            job = isJob(for: index, after: seen)
        }
        place.asleep.store(false, ordering: .relaxed)
        pthread_mutex_unlock(place.mutex)
        return job!
    }

    private static func now() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }
}
