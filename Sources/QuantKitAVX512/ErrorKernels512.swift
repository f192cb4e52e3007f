import _Builtin_intrinsics.intel

// Error sums for quantization reports (see ErrorSums in QuantKit for the contract and the scalar
// twin). Intrinsics and plain scalar code only, as in QuantizeKernels512.swift.

/// Adds the error of `actual` against `reference` (n floats) into `sums`, 4 rows of 16 lanes:
/// max |a - r|, sum |a - r|, sum (a - r)², sum r². Element i goes to lane i % 16; lanes past n add 0.
/// Multiplies and adds stay separate (no FMA), so every variant gives the same bits.
public func avx512ErrorSums(_ reference: UnsafePointer<Float>, _ actual: UnsafePointer<Float>, _ n: Int, _ sums: UnsafeMutablePointer<Float>) {
    var lanes = ErrorLanes512(sums)
    var i = 0
    while i < n {
        let mask = __mmask16(truncatingIfNeeded: n - i < 16 ? (1 << (n - i)) - 1 : 0xFFFF)
        let r = _mm512_maskz_loadu_ps(mask, reference + i)
        lanes.add(error: _mm512_sub_ps(_mm512_maskz_loadu_ps(mask, actual + i), r), reference: r)
        i += 16
    }
    lanes.store(sums)
}

/// The four rows of error sums in registers, updated as avx512ErrorSums updates them (every
/// kernel that sums errors goes through `add`, so they all give the same bits).
struct ErrorLanes512 {
    var maxAbs: __m512, sumAbs: __m512, sumSq: __m512, signal: __m512

    @inline(__always) init(_ sums: UnsafePointer<Float>) {
        (maxAbs, sumAbs, sumSq, signal) = (_mm512_loadu_ps(sums), _mm512_loadu_ps(sums + 16), _mm512_loadu_ps(sums + 32), _mm512_loadu_ps(sums + 48))
    }

    /// `error` = actual - reference, per lane.
    @inline(__always) mutating func add(error: __m512, reference: __m512) {
        let magnitude = _mm512_abs_ps(error)
        maxAbs = _mm512_max_ps(maxAbs, magnitude)
        sumAbs = _mm512_add_ps(sumAbs, magnitude)
        sumSq = _mm512_add_ps(sumSq, _mm512_mul_ps(error, error))
        signal = _mm512_add_ps(signal, _mm512_mul_ps(reference, reference))
    }

    @inline(__always) func store(_ sums: UnsafeMutablePointer<Float>) {
        _mm512_storeu_ps(sums, maxAbs)
        _mm512_storeu_ps(sums + 16, sumAbs)
        _mm512_storeu_ps(sums + 32, sumSq)
        _mm512_storeu_ps(sums + 48, signal)
    }
}
