import _Builtin_intrinsics.intel

// Float transposes for reading a weight as Wᵀ (see MatrixSource in QuantKit for the contract
// and the scalar twin). Intrinsics and plain scalar code only; shuffles that take immediates are
// unavailable from Swift, so lanes move with unpack and permutex2var.

/// Writes the transpose of a rows × columns block (both at most 16) of floats: source row i
/// starts at `source + i * sourceStride` bytes (any alignment), target row j at
/// `target + j * targetStride` floats; `columns` target rows of `rows` floats are written.
public func avx512TransposeBlock(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                 _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
    transposeBlock512(source, sourceStride, rows, columns, target, targetStride, nil)
}

/// avx512TransposeBlock that also lowers lo[j] and raises hi[j] (j < columns, one per target
/// row) to the smallest and largest value the block puts in target row j, and adds x * 0 of every
/// value into the 16 floats at `poison` (0 for finite x, NaN for NaN or Inf; see avx512MinMax).
/// Gathers a transposed read's group ranges while the values are in registers: vertical
/// min/max across source rows, no horizontal reduction.
public func avx512TransposeBlockRanges(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                       _ target: UnsafeMutablePointer<Float>, _ targetStride: Int, _ lo: UnsafeMutablePointer<Float>,
                                       _ hi: UnsafeMutablePointer<Float>, _ poison: UnsafeMutablePointer<Float>) {
    transposeBlock512(source, sourceStride, rows, columns, target, targetStride, (lo, hi, poison))
}

@inline(__always) private func transposeBlock512(
    _ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int, _ target: UnsafeMutablePointer<Float>, _ targetStride: Int,
    _ ranges: (lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>, poison: UnsafeMutablePointer<Float>)?
) {
    let loadMask = __mmask16(truncatingIfNeeded: columns < 16 ? (1 << columns) - 1 : 0xFFFF)
    let storeMask = __mmask16(truncatingIfNeeded: rows < 16 ? (1 << rows) - 1 : 0xFFFF)
    @inline(__always) func row(_ i: Int) -> __m512 {
        i < rows ? _mm512_maskz_loadu_ps(loadMask, source + i * sourceStride) : _mm512_setzero_ps()
    }
    let (r0, r1, r2, r3, r4, r5, r6, r7) = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7))
    let (r8, r9, r10, r11, r12, r13, r14, r15) = (row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15))
    if let ranges {
        // Lanes are target rows; source rows past `rows` are not values (row 0 always is).
        var (low, high) = (r0, r0)
        var poison = _mm512_fmadd_ps(r0, _mm512_setzero_ps(), _mm512_loadu_ps(ranges.poison))
        @inline(__always) func fold(_ i: Int, _ v: __m512) {
            guard i < rows else { return }
            low = _mm512_min_ps(low, v)
            high = _mm512_max_ps(high, v)
            poison = _mm512_fmadd_ps(v, _mm512_setzero_ps(), poison)
        }
        fold(1, r1); fold(2, r2); fold(3, r3); fold(4, r4); fold(5, r5); fold(6, r6); fold(7, r7); fold(8, r8)
        fold(9, r9); fold(10, r10); fold(11, r11); fold(12, r12); fold(13, r13); fold(14, r14); fold(15, r15)
        _mm512_mask_storeu_ps(ranges.lo, loadMask, _mm512_min_ps(_mm512_maskz_loadu_ps(loadMask, ranges.lo), low))
        _mm512_mask_storeu_ps(ranges.hi, loadMask, _mm512_max_ps(_mm512_maskz_loadu_ps(loadMask, ranges.hi), high))
        _mm512_storeu_ps(ranges.poison, poison)
    }
    // Rows in pairs, then quads: quad q gives, for k = 0..<4, columns k, k + 4, k + 8, k + 12 of
    // rows 4q..<4q+4, one column per 128-bit lane.
    @inline(__always) func quad(_ r0: __m512, _ r1: __m512, _ r2: __m512, _ r3: __m512) -> (__m512, __m512, __m512, __m512) {
        let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(r0, r1)), t1 = _mm512_castps_pd(_mm512_unpackhi_ps(r0, r1))
        let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(r2, r3)), t3 = _mm512_castps_pd(_mm512_unpackhi_ps(r2, r3))
        return (_mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)), _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)),
                _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)), _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)))
    }
    // 128-bit lanes (a0 b0 a1 b1), (a2 b2 a3 b3), then (a0 a1 b0 b1), (a2 a3 b2 b3); set_epi32
    // lists lanes from 15 down to 0 (setr is a macro).
    let interleaveLow = _mm512_set_epi32(23, 22, 21, 20, 7, 6, 5, 4, 19, 18, 17, 16, 3, 2, 1, 0)
    let interleaveHigh = _mm512_set_epi32(31, 30, 29, 28, 15, 14, 13, 12, 27, 26, 25, 24, 11, 10, 9, 8)
    let halvesLow = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0)
    let halvesHigh = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8)
    @inline(__always) func store(_ column: Int, _ v: __m512) {
        if column < columns { _mm512_mask_storeu_ps(target + column * targetStride, storeMask, v) }
    }
    /// Columns k, k + 4, k + 8, k + 12 from the k-th vector of each quad.
    @inline(__always) func emit(_ k: Int, _ a: __m512, _ b: __m512, _ c: __m512, _ d: __m512) {
        let x0 = _mm512_permutex2var_ps(a, interleaveLow, b), x1 = _mm512_permutex2var_ps(a, interleaveHigh, b)
        let y0 = _mm512_permutex2var_ps(c, interleaveLow, d), y1 = _mm512_permutex2var_ps(c, interleaveHigh, d)
        store(k, _mm512_permutex2var_ps(x0, halvesLow, y0))
        store(k + 4, _mm512_permutex2var_ps(x0, halvesHigh, y0))
        store(k + 8, _mm512_permutex2var_ps(x1, halvesLow, y1))
        store(k + 12, _mm512_permutex2var_ps(x1, halvesHigh, y1))
    }
    let (a0, a1, a2, a3) = quad(r0, r1, r2, r3), (b0, b1, b2, b3) = quad(r4, r5, r6, r7)
    let (c0, c1, c2, c3) = quad(r8, r9, r10, r11), (d0, d1, d2, d3) = quad(r12, r13, r14, r15)
    emit(0, a0, b0, c0, d0)
    emit(1, a1, b1, c1, d1)
    emit(2, a2, b2, c2, d2)
    emit(3, a3, b3, c3, d3)
}
