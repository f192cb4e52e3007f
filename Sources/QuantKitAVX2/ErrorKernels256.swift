import _Builtin_intrinsics.intel

// See ErrorKernels512.swift: the same 16 lanes, kept as two 8-lane halves.

/// See avx512ErrorSums.
public func avx2ErrorSums(_ reference: UnsafePointer<Float>, _ actual: UnsafePointer<Float>, _ n: Int, _ sums: UnsafeMutablePointer<Float>) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    for half in 0..<2 {
        var lanes = ErrorLanes256(sums, half: half)
        var i = 8 * half
        while i < n {
            let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: n - i < 8 ? n - i : 8)), lane)
            let r = _mm256_maskload_ps(reference + i, mask)
            lanes.add(error: _mm256_sub_ps(_mm256_maskload_ps(actual + i, mask), r), reference: r)
            i += 16
        }
        lanes.store(sums, half: half)
    }
}

/// One 8-lane half (lanes 0-7 or 8-15) of the four rows of error sums, updated as
/// avx2ErrorSums updates them (every kernel that sums errors goes through `add`).
struct ErrorLanes256 {
    var maxAbs: __m256, sumAbs: __m256, sumSq: __m256, signal: __m256

    @inline(__always) init(_ sums: UnsafePointer<Float>, half: Int) {
        let p = sums + 8 * half
        (maxAbs, sumAbs, sumSq, signal) = (_mm256_loadu_ps(p), _mm256_loadu_ps(p + 16), _mm256_loadu_ps(p + 32), _mm256_loadu_ps(p + 48))
    }

    /// `error` = actual - reference, per lane.
    @inline(__always) mutating func add(error: __m256, reference: __m256) {
        let magnitude = _mm256_and_ps(error, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF)))
        maxAbs = _mm256_max_ps(maxAbs, magnitude)
        sumAbs = _mm256_add_ps(sumAbs, magnitude)
        sumSq = _mm256_add_ps(sumSq, _mm256_mul_ps(error, error))
        signal = _mm256_add_ps(signal, _mm256_mul_ps(reference, reference))
    }

    @inline(__always) func store(_ sums: UnsafeMutablePointer<Float>, half: Int) {
        let p = sums + 8 * half
        _mm256_storeu_ps(p, maxAbs)
        _mm256_storeu_ps(p + 16, sumAbs)
        _mm256_storeu_ps(p + 32, sumSq)
        _mm256_storeu_ps(p + 48, signal)
    }
}
