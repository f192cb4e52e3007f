import _Builtin_intrinsics.intel

// See TransposeKernels512.swift: the same contract, as 8 × 8 sub-blocks. Halves of 256-bit
// vectors move with permutevar8x32 and blendv (permute2f128 takes an immediate).

/// See avx512TransposeBlock.
public func avx2TransposeBlock(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                               _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
    var r0 = 0
    while r0 < rows {
        var c0 = 0
        while c0 < columns {
            avx2Transpose8(source + r0 * sourceStride + c0 * 4, sourceStride, rows - r0 < 8 ? rows - r0 : 8,
                           columns - c0 < 8 ? columns - c0 : 8, target + c0 * targetStride + r0, targetStride)
            c0 += 8
        }
        r0 += 8
    }
}

@inline(__always) private func avx2Transpose8(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                              _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    let loadMask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: columns)), lane)
    let storeMask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: rows)), lane)
    @inline(__always) func row(_ i: Int) -> __m256 {
        i < rows ? _mm256_maskload_ps((source + i * sourceStride).assumingMemoryBound(to: Float.self), loadMask) : _mm256_setzero_ps()
    }
    // Quad q gives, for k = 0..<4, columns k and k + 4 of rows 4q..<4q+4, one per 128-bit half.
    @inline(__always) func quad(_ q: Int) -> (__m256, __m256, __m256, __m256) {
        let a = row(4 * q), b = row(4 * q + 1), c = row(4 * q + 2), d = row(4 * q + 3)
        let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(a, b)), t1 = _mm256_castps_pd(_mm256_unpackhi_ps(a, b))
        let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(c, d)), t3 = _mm256_castps_pd(_mm256_unpackhi_ps(c, d))
        return (_mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)), _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
                _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)), _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)))
    }
    let swapHalves = _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3)
    let upper = _mm256_castsi256_ps(_mm256_setr_epi32(0, 0, 0, 0, -1, -1, -1, -1))
    @inline(__always) func store(_ column: Int, _ v: __m256) {
        if column < columns { _mm256_maskstore_ps(target + column * targetStride, storeMask, v) }
    }
    /// Column k: (a.low, b.low); column k + 4: (a.high, b.high).
    @inline(__always) func emit(_ k: Int, _ a: __m256, _ b: __m256) {
        store(k, _mm256_blendv_ps(a, _mm256_permutevar8x32_ps(b, swapHalves), upper))
        store(k + 4, _mm256_blendv_ps(_mm256_permutevar8x32_ps(a, swapHalves), b, upper))
    }
    let (a0, a1, a2, a3) = quad(0), (b0, b1, b2, b3) = quad(1)
    emit(0, a0, b0)
    emit(1, a1, b1)
    emit(2, a2, b2)
    emit(3, a3, b3)
}
