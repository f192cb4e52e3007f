import _Builtin_intrinsics.intel

// See TransposeKernels512.swift: the same contract, as 8 × 8 sub-blocks. Halves of 256-bit
// vectors move with permutevar8x32 and blendv (permute2f128 takes an immediate).

/// See avx512TransposeBlock.
public func avx2TransposeBlock(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                               _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
    transposeBlock256(source, sourceStride, rows, columns, target, targetStride, nil)
}

/// See avx512TransposeBlockRanges (finiteness goes into the first 8 floats at `poison`).
public func avx2TransposeBlockRanges(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                     _ target: UnsafeMutablePointer<Float>, _ targetStride: Int, _ lo: UnsafeMutablePointer<Float>,
                                     _ hi: UnsafeMutablePointer<Float>, _ poison: UnsafeMutablePointer<Float>) {
    transposeBlock256(source, sourceStride, rows, columns, target, targetStride, (lo, hi, poison))
}

@inline(__always) private func transposeBlock256(
    _ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int, _ target: UnsafeMutablePointer<Float>, _ targetStride: Int,
    _ ranges: (lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>, poison: UnsafeMutablePointer<Float>)?
) {
    var r0 = 0
    while r0 < rows {
        var c0 = 0
        while c0 < columns {
            // Optional.map is generic: not in an ISA module (see QuantizeKernels256.swift).
            var sub: (lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>, poison: UnsafeMutablePointer<Float>)?
            if let ranges { sub = (ranges.lo + c0, ranges.hi + c0, ranges.poison) }
            avx2Transpose8(source + r0 * sourceStride + c0 * 4, sourceStride, rows - r0 < 8 ? rows - r0 : 8,
                           columns - c0 < 8 ? columns - c0 : 8, target + c0 * targetStride + r0, targetStride, sub)
            c0 += 8
        }
        r0 += 8
    }
}

@inline(__always) private func avx2Transpose8(
    _ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int, _ target: UnsafeMutablePointer<Float>, _ targetStride: Int,
    _ ranges: (lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>, poison: UnsafeMutablePointer<Float>)?
) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)
    let loadMask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: columns)), lane)
    let storeMask = _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: rows)), lane)
    @inline(__always) func row(_ i: Int) -> __m256 {
        i < rows ? _mm256_maskload_ps((source + i * sourceStride).assumingMemoryBound(to: Float.self), loadMask) : _mm256_setzero_ps()
    }
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    if let ranges {
        // Lanes are target rows; source rows past `rows` are not values (row 0 always is).
        let zero = _mm256_setzero_ps()
        var (low, high) = (r0, r0)
        var poison = _mm256_add_ps(_mm256_loadu_ps(ranges.poison), _mm256_mul_ps(r0, zero))
        @inline(__always) func fold(_ i: Int, _ v: __m256) {
            guard i < rows else { return }
            low = _mm256_min_ps(low, v)
            high = _mm256_max_ps(high, v)
            poison = _mm256_add_ps(poison, _mm256_mul_ps(v, zero))
        }
        fold(1, r1); fold(2, r2); fold(3, r3); fold(4, r4); fold(5, r5); fold(6, r6); fold(7, r7)
        let (lo, hi) = (_mm256_maskload_ps(ranges.lo, loadMask), _mm256_maskload_ps(ranges.hi, loadMask))
        _mm256_maskstore_ps(ranges.lo, loadMask, _mm256_min_ps(lo, low))
        _mm256_maskstore_ps(ranges.hi, loadMask, _mm256_max_ps(hi, high))
        _mm256_storeu_ps(ranges.poison, poison)
    }
    // Quad q gives, for k = 0..<4, columns k and k + 4 of rows 4q..<4q+4, one per 128-bit half.
    @inline(__always) func quad(_ a: __m256, _ b: __m256, _ c: __m256, _ d: __m256) -> (__m256, __m256, __m256, __m256) {
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
    let (a0, a1, a2, a3) = quad(r0, r1, r2, r3), (b0, b1, b2, b3) = quad(r4, r5, r6, r7)
    emit(0, a0, b0)
    emit(1, a1, b1)
    emit(2, a2, b2)
    emit(3, a3, b3)
}
