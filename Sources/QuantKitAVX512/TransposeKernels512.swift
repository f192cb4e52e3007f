import _Builtin_intrinsics.intel

// Float transposes for reading a weight as Wᵀ (see MatrixSource in QuantKit for the contract
// and the scalar twin). Intrinsics and plain scalar code only; shuffles that take immediates are
// unavailable from Swift, so lanes move with unpack and permutex2var.

/// Writes the transpose of a rows × columns block (both at most 16) of floats: source row i
/// starts at `source + i * sourceStride` bytes (any alignment), target row j at
/// `target + j * targetStride` floats; `columns` target rows of `rows` floats are written.
public func avx512TransposeBlock(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                 _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
    let loadMask = __mmask16(truncatingIfNeeded: columns < 16 ? (1 << columns) - 1 : 0xFFFF)
    let storeMask = __mmask16(truncatingIfNeeded: rows < 16 ? (1 << rows) - 1 : 0xFFFF)
    @inline(__always) func row(_ i: Int) -> __m512 {
        i < rows ? _mm512_maskz_loadu_ps(loadMask, source + i * sourceStride) : _mm512_setzero_ps()
    }
    // Rows in pairs, then quads: quad q gives, for k = 0..<4, columns k, k + 4, k + 8, k + 12 of
    // rows 4q..<4q+4, one column per 128-bit lane.
    @inline(__always) func quad(_ q: Int) -> (__m512, __m512, __m512, __m512) {
        let r0 = row(4 * q), r1 = row(4 * q + 1), r2 = row(4 * q + 2), r3 = row(4 * q + 3)
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
    let (a0, a1, a2, a3) = quad(0), (b0, b1, b2, b3) = quad(1), (c0, c1, c2, c3) = quad(2), (d0, d1, d2, d3) = quad(3)
    emit(0, a0, b0, c0, d0)
    emit(1, a1, b1, c1, d1)
    emit(2, a2, b2, c2, d2)
    emit(3, a3, b3, c3, d3)
}
