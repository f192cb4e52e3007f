import _Builtin_intrinsics.intel

// Error sums for quantization reports (see ErrorSums in QuantKit for the contract and the scalar
// twin). Intrinsics and plain scalar code only, as in QuantizeKernels512.swift.

/// Adds the error of `actual` against `reference` (n floats) into `sums`, 4 rows of 16 lanes:
/// max |a - r|, sum |a - r|, sum (a - r)², sum r². Element i goes to lane i % 16; lanes past n add 0.
/// Multiplies and adds stay separate (no FMA), so every variant gives the same bits.
public func avx512ErrorSums(_ reference: UnsafePointer<Float>, _ actual: UnsafePointer<Float>, _ n: Int, _ sums: UnsafeMutablePointer<Float>) {
    var maxAbs = _mm512_loadu_ps(sums), sumAbs = _mm512_loadu_ps(sums + 16)
    var sumSq = _mm512_loadu_ps(sums + 32), signal = _mm512_loadu_ps(sums + 48)
    var i = 0
    while i < n {
        let lanes = __mmask16(truncatingIfNeeded: n - i < 16 ? (1 << (n - i)) - 1 : 0xFFFF)
        let r = _mm512_maskz_loadu_ps(lanes, reference + i)
        let e = _mm512_sub_ps(_mm512_maskz_loadu_ps(lanes, actual + i), r)
        let magnitude = _mm512_abs_ps(e)
        maxAbs = _mm512_max_ps(maxAbs, magnitude)
        sumAbs = _mm512_add_ps(sumAbs, magnitude)
        sumSq = _mm512_add_ps(sumSq, _mm512_mul_ps(e, e))
        signal = _mm512_add_ps(signal, _mm512_mul_ps(r, r))
        i += 16
    }
    _mm512_storeu_ps(sums, maxAbs)
    _mm512_storeu_ps(sums + 16, sumAbs)
    _mm512_storeu_ps(sums + 32, sumSq)
    _mm512_storeu_ps(sums + 48, signal)
}
