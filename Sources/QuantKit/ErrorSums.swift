/// Error statistics accumulated piece by piece (the converter measures each tile of a weight while
/// it is in cache, instead of dequantizing the whole tensor and comparing it afterwards).
///
/// Each piece of at most `pieceLength` floats is summed by the ISA kernels in 16 float lanes
/// (element i in lane i % 16; the scalar twin below keeps the same lanes), and its lane totals
/// are added in a fixed order into Doubles: the result does not depend on the kernel variant,
/// and, as long as pieces are added in the same order, not on the thread count.
public struct ErrorAccumulator: Sendable {
    public private(set) var count = 0
    var maxAbs = 0.0, sumAbs = 0.0, sumSq = 0.0, signal = 0.0

    /// Floats per kernel call: short enough that float lane sums stay accurate.
    static let pieceLength = 4096

    public init() {}

    /// Adds the error of `actual` against `reference` (n floats each).
    public mutating func add(reference: UnsafePointer<Float>, actual: UnsafePointer<Float>, count n: Int,
                             variant: KernelVariant = Runtime.kernelVariant) {
        let kernel = BlockKernels.of(variant)?.errorSums ?? ErrorSums.scalar
        let sums = UnsafeMutablePointer<Float>.allocate(capacity: 64)
        defer { sums.deallocate() }
        var start = 0
        while start < n {
            let length = min(Self.pieceLength, n - start)
            sums.initialize(repeating: 0, count: 64)
            kernel(reference + start, actual + start, length, sums)
            add(lanes: sums, count: length)
            start += length
        }
    }

    /// Adds the 4 × 16 lane sums an error-sum kernel accumulated over `n` elements.
    mutating func add(lanes sums: UnsafePointer<Float>, count n: Int) {
        for lane in 0..<16 {
            maxAbs = maxAbs.isNaN ? maxAbs : max(maxAbs, Double(sums[lane]))
            sumAbs += Double(sums[16 + lane])
            sumSq += Double(sums[32 + lane])
            signal += Double(sums[48 + lane])
        }
        // A NaN error can slip past max (the kernels' max keeps the other operand): keep it visible.
        if sumAbs.isNaN { maxAbs = .nan }
        count += n
    }

    /// Adds another accumulator's pieces after this one's.
    public mutating func merge(_ other: ErrorAccumulator) {
        maxAbs = maxAbs.isNaN || other.maxAbs.isNaN ? .nan : max(maxAbs, other.maxAbs)
        sumAbs += other.sumAbs
        sumSq += other.sumSq
        signal += other.signal
        count += other.count
    }

    public var stats: ErrorStats {
        ErrorStats(count: count, maxAbsError: maxAbs, sumAbs: sumAbs, sumSq: sumSq, signal: signal)
    }
}

/// The scalar reference of the error-sum kernels (avx512ErrorSums, avx2ErrorSums): same lanes,
/// same operations, same order.
enum ErrorSums {
    static func scalar(_ reference: UnsafePointer<Float>, _ actual: UnsafePointer<Float>, _ n: Int, _ sums: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            let lane = i % 16
            let r = reference[i], e = actual[i] - r
            let magnitude = e.magnitude
            sums[lane] = sums[lane] > magnitude ? sums[lane] : magnitude  // as maxps: NaN gives the second operand
            sums[16 + lane] += magnitude
            sums[32 + lane] += e * e
            sums[48 + lane] += r * r
        }
    }
}
