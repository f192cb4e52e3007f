/// How far one float tensor is from another (the C `qk_error_stats`).
public struct ErrorStats: Sendable, Equatable {
    public var count: Int
    public var maxAbsError: Double
    public var meanAbsError: Double
    public var rmse: Double
    /// 10*log10(signal energy / error energy); +infinity when the error is zero.
    public var sqnrDB: Double
    public var signalRMS: Double

    /// Sums run over fixed chunks in a fixed order, so the result never depends on thread count.
    public static func compare(reference: UnsafeBufferPointer<Float>, actual: UnsafeBufferPointer<Float>, threads: Int = 0) -> ErrorStats {
        let n = min(reference.count, actual.count)
        let chunk = 65536
        let chunks = (n + chunk - 1) / chunk
        struct Partial { var maxAbs = 0.0, sumAbs = 0.0, sumSq = 0.0, signal = 0.0 }
        let partials = UnsafeMutableBufferPointer<Partial>.allocate(capacity: max(chunks, 1))
        partials.initialize(repeating: Partial())
        defer { partials.deallocate() }
        Parallel.forEachChunk(count: chunks, threads: threads) { range in
            for c in range {
                var p = Partial()
                for i in (c * chunk)..<min(n, (c + 1) * chunk) {
                    let r = Double(reference[i]), e = Double(actual[i]) - r
                    // NaN must not vanish in max (Swift.max drops it): make it sticky.
                    p.maxAbs = e.isNaN || p.maxAbs.isNaN ? .nan : max(p.maxAbs, e.magnitude)
                    p.sumAbs += e.magnitude
                    p.sumSq += e * e
                    p.signal += r * r
                }
                partials[c] = p
            }
        }
        var total = Partial()
        for p in partials {
            total.maxAbs = p.maxAbs.isNaN || total.maxAbs.isNaN ? .nan : max(total.maxAbs, p.maxAbs)
            total.sumAbs += p.sumAbs
            total.sumSq += p.sumSq
            total.signal += p.signal
        }
        return ErrorStats(count: n, maxAbsError: total.maxAbs, sumAbs: total.sumAbs, sumSq: total.sumSq, signal: total.signal)
    }
}

extension ErrorStats {
    /// The statistics of `n` errors from their sums.
    init(count n: Int, maxAbsError: Double, sumAbs: Double, sumSq: Double, signal: Double) {
        let count = Double(max(n, 1))
        let sqnr: Double
        if sumSq == 0 { sqnr = .infinity } else if signal == 0 { sqnr = -.infinity } else {
            sqnr = 10 * log10(signal / sumSq)
        }
        self.init(count: n, maxAbsError: maxAbsError, meanAbsError: sumAbs / count,
                  rmse: (sumSq / count).squareRoot(), sqnrDB: sqnr, signalRMS: (signal / count).squareRoot())
    }
}

#if canImport(Glibc)
import Glibc
#endif
