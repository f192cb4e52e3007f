#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import QuantKit

/// A weight quantization a pass asks for (`LinearRewritePass.weightRequest`), answered by
/// `RewriteContext.quantizedWeight`: `LinearLayer.quantizeWeight` with these arguments.
public struct WeightRequest: Equatable, Sendable {
    /// The thread count in it is ignored: the converter chooses it.
    public var params: QuantParams
    /// W [K, N], or Wᵀ [N, K] when `transposed`; rows padded with zeros to `shape[1]`.
    public var shape: [Int]
    public var transposed: Bool

    public init(params: QuantParams, shape: [Int], transposed: Bool) {
        (self.params, self.shape, self.transposed) = (params, shape, transposed)
    }

    /// Whether the two ask for the same bytes (whatever threads they name).
    func sameResult(as other: WeightRequest) -> Bool {
        var mine = params
        mine.threads = other.params.threads
        return mine == other.params && shape == other.shape && transposed == other.transposed
    }
}

/// Quantizes the weights of the layers after the one being rewritten, on worker threads, in
/// model order. A model's layers are mostly small (SmolLM2: 576 × 192 to 576 × 1536), and
/// splitting each one over all cores left a core idle a quarter of the time between layers
/// (waking helpers, the rewrite's own work, the side file's writes); whole layers side by side keep
/// every core busy. Layers with at least `splitElements` weights are still split over all threads,
/// so that a large last layer (an lm_head) does not finish on one core.
///
/// The bytes do not change: each layer's result does not depend on its thread count, and the
/// converter takes the results in order. Memory stays bounded: the jobs started and not yet taken
/// are at most `window` and hold at most `inFlightBudget` weights together (a larger job starts
/// only when no other is in flight), and each job releases its input's pages when it is done.
final class WeightPrefetcher: @unchecked Sendable {
    struct Job {
        let layer: LinearLayer
        let request: WeightRequest
    }

    static let splitElements = 1 << 22
    static let inFlightBudget = 4 * splitElements

    private let jobs: [Job]
    private let threads: Int
    private let window: Int
    private let external: ExternalDataReader?
    private let measureError: Bool
    private let workspace: BandWorkspace
    private let pool: TensorBufferPool

    /// Guarded by `mutex`; `changed` is broadcast after every change.
    private var results: [Result<QuantizedWeight, any Error>?]
    private var next = 0
    private var taken = 0
    private var inFlight = 0
    private var stopped = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let changed = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var workers: [pthread_t] = []

    /// Starts `workers` threads on `jobs`. `threads`: the conversion's thread count, used for large
    /// layers. Call `stop` when done (the workers hold the prefetcher until then).
    init(jobs: [Job], workers workerCount: Int, threads: Int, external: ExternalDataReader?, measureError: Bool,
         workspace: BandWorkspace, pool: TensorBufferPool) {
        self.jobs = jobs
        self.threads = threads
        self.window = 2 * max(workerCount, 1)
        self.external = external
        self.measureError = measureError
        self.workspace = workspace
        self.pool = pool
        results = Array(repeating: nil, count: jobs.count)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(changed, nil)
        for _ in 0..<workerCount {
            guard let thread = Self.startThread({ [self] in work() }) else { break }
            workers.append(thread)
        }
    }

    deinit {
        stop()
        pthread_cond_destroy(changed)
        pthread_mutex_destroy(mutex)
        changed.deallocate()
        mutex.deallocate()
    }

    /// Job `index`'s result, once it is done. Call for 0, 1, 2, ... in order. With no worker
    /// thread (none could be started), the job runs here.
    func take(_ index: Int) -> Result<QuantizedWeight, any Error> {
        if workers.isEmpty { return Result { try quantize(jobs[index]) } }
        return locked {
            while results[index] == nil { pthread_cond_wait(changed, mutex) }
            defer { results[index] = nil }
            taken = index + 1
            inFlight -= jobs[index].layer.parameterCount
            return results[index]!
        }
    }

    /// Lets the running jobs finish, starts no more, and waits for the workers.
    func stop() {
        guard !workers.isEmpty else { return }
        locked { stopped = true }
        for thread in workers { pthread_join(thread, nil) }
        workers = []
    }

    private func work() {
        while let index = nextJob() {
            let result = Result { try quantize(jobs[index]) }
            locked { results[index] = result }
        }
    }

    /// Waits until the next job may start (nil: stopped, or no job left) and claims it.
    private func nextJob() -> Int? {
        locked {
            while !stopped && next < jobs.count {
                let weights = jobs[next].layer.parameterCount
                if next - taken < window && (inFlight == 0 || inFlight + weights <= Self.inFlightBudget) {
                    defer { next += 1 }
                    inFlight += weights
                    return next
                }
                pthread_cond_wait(changed, mutex)
            }
            return nil
        }
    }

    /// Runs `body` holding the mutex, and wakes every waiter afterwards.
    private func locked<R>(_ body: () -> R) -> R {
        pthread_mutex_lock(mutex)
        defer {
            pthread_cond_broadcast(changed)
            pthread_mutex_unlock(mutex)
        }
        return body()
    }

    private func quantize(_ job: Job) throws -> QuantizedWeight {
        var params = job.request.params
        params.threads = job.layer.parameterCount >= Self.splitElements ? threads : 1
        return try job.layer.quantizeWeight(params, shape: job.request.shape, transposed: job.request.transposed,
                                            external: external, measureError: measureError, workspace: workspace, pool: pool)
    }

    /// A joinable thread of its own: Dispatch's pool also runs the bands of the large layers, and
    /// workers waiting in it could hold up that work.
    private static func startThread(_ body: @escaping () -> Void) -> pthread_t? {
        let box = Unmanaged.passRetained(ThreadBody(body))
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { raw in
            let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            body.run()
            return nil
        }, box.toOpaque())
        guard started == 0 else {
            box.release()
            return nil
        }
        return thread
    }

    private final class ThreadBody {
        let run: () -> Void
        init(_ run: @escaping () -> Void) { self.run = run }
    }
}
