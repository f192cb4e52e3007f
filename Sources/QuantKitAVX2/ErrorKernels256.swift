import _Builtin_intrinsics.intel

// See ErrorKernels512.swift: the same 16 lanes, kept as two 8-lane halves.

/// See avx512ErrorSums.
public func avx2ErrorSums(_ reference: UnsafePointer<Float>, _ actual: UnsafePointer<Float>, _ n: Int, _ sums: UnsafeMutablePointer<Float>) {
    let magnitudeBits = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF))
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    for half in 0..<2 {
        var maxAbs = _mm256_loadu_ps(sums + 8 * half), sumAbs = _mm256_loadu_ps(sums + 16 + 8 * half)
        var sumSq = _mm256_loadu_ps(sums + 32 + 8 * half), signal = _mm256_loadu_ps(sums + 48 + 8 * half)
        var i = 8 * half
        while i < n {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: n - i < 8 ? n - i : 8)), lane)
            let r = _mm256_maskload_ps(reference + i, mask)
            let e = _mm256_sub_ps(_mm256_maskload_ps(actual + i, mask), r)
            let magnitude = _mm256_and_ps(e, magnitudeBits)
            maxAbs = _mm256_max_ps(maxAbs, magnitude)
            sumAbs = _mm256_add_ps(sumAbs, magnitude)
            sumSq = _mm256_add_ps(sumSq, _mm256_mul_ps(e, e))
            signal = _mm256_add_ps(signal, _mm256_mul_ps(r, r))
            i += 16
        }
        _mm256_storeu_ps(sums + 8 * half, maxAbs)
        _mm256_storeu_ps(sums + 16 + 8 * half, sumAbs)
        _mm256_storeu_ps(sums + 32 + 8 * half, sumSq)
        _mm256_storeu_ps(sums + 48 + 8 * half, signal)
    }
}
