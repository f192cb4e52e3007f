import _Builtin_intrinsics.intel

// One row of contiguous groups per call (group g is x[g * block ..< min(n, (g + 1) * block)]):
// loops over the per-group kernels of this module, which inline here, so a row costs one call
// from QuantKit instead of several calls per group. Each group's arithmetic is exactly that of
// avx512MinMax, avx512EncodeNibbles/Bytes, avx512DecodeBlock and avx512ErrorSums.

/// lo[g], hi[g] of every group; finiteness goes into `poison` as in avx512MinMax.
public func avx512RowMinMax(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ lo: UnsafeMutablePointer<Float>,
                            _ hi: UnsafeMutablePointer<Float>, _ poison: UnsafeMutablePointer<Float>) {
    var g = 0, start = 0
    while start < n {
        let range = avx512MinMax(x + start, n - start < block ? n - start : block, poison)
        lo[g] = range.min
        hi[g] = range.max
        g += 1
        start += block
    }
}

/// Codes of every group whose scale is finite and non-zero, at `out + g * groupStride`; the
/// caller fills groups with a zero scale (and rejects non-finite ones).
public func avx512RowEncode(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>,
                            _ zeroPoints: UnsafePointer<Int32>, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool,
                            nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int) {
    var g = 0, start = 0
    while start < n {
        let scale = scales[g]
        if scale != 0 && scale.isFinite {
            let e = Encoding512(scale: scale, zeroPoint: zeroPoints[g], codeMin: codeMin, codeMax: codeMax, codeMask: codeMask, tiesAway: tiesAway)
            let length = n - start < block ? n - start : block
            if nibbles { avx512EncodeNibbles(x + start, length, e, out + g * groupStride) } else { avx512EncodeBytes(x + start, length, e, out + g * groupStride) }
        }
        g += 1
        start += block
    }
}

/// Adds the error of the decoded codes against x into `sums` (4 × 16 lanes, element j of a
/// group in lane j % 16): avx512DecodeBlock then avx512ErrorSums on each group, fused so that the
/// decoded values and the sums stay in registers (same operations, same bits). `scratch` is unused
/// here (the AVX2 version decodes into it).
public func avx512RowErrorSums(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ codes: UnsafePointer<UInt8>, _ groupStride: Int,
                               nibbles: Bool, signed: Bool, _ scales: UnsafePointer<Float>, _ zeroPoints: UnsafePointer<Int32>,
                               _ scratch: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Float>) {
    var maxAbs = _mm512_loadu_ps(sums), sumAbs = _mm512_loadu_ps(sums + 16)
    var sumSq = _mm512_loadu_ps(sums + 32), signal = _mm512_loadu_ps(sums + 48)
    let signBit = _mm512_set1_epi32(nibbles ? 8 : 128)
    var g = 0, start = 0
    while start < n {
        let length = n - start < block ? n - start : block
        let vscale = _mm512_set1_ps(scales[g]), vzp = _mm512_set1_ps(Float(zeroPoints[g]))
        let data = codes + g * groupStride
        var i = 0
        while i < length {
            let count = length - i < 16 ? length - i : 16
            let lanes = __mmask16(truncatingIfNeeded: count < 16 ? (1 << count) - 1 : 0xFFFF)
            var bytes: __m128i
            if nibbles {
                let raw = UInt64(bitPattern: _mm_cvtsi128_si64(_mm_maskz_loadu_epi8(__mmask16(truncatingIfNeeded: (1 << ((count + 1) / 2)) - 1), data + i / 2)))
                let lo = _pdep_u64(raw & 0xFFFF_FFFF, 0x0F0F_0F0F_0F0F_0F0F)
                let hi = _pdep_u64(raw >> 32, 0x0F0F_0F0F_0F0F_0F0F)
                bytes = _mm_set_epi64x(Int64(bitPattern: hi), Int64(bitPattern: lo))
            } else {
                bytes = _mm_maskz_loadu_epi8(lanes, data + i)
            }
            var q = _mm512_cvtepu8_epi32(bytes)
            if signed { q = _mm512_sub_epi32(_mm512_xor_si512(q, signBit), signBit) }
            let decoded = _mm512_maskz_mov_ps(lanes, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), vzp), vscale))
            let r = _mm512_maskz_loadu_ps(lanes, x + start + i)
            let e = _mm512_sub_ps(decoded, r)
            let magnitude = _mm512_abs_ps(e)
            maxAbs = _mm512_max_ps(maxAbs, magnitude)
            sumAbs = _mm512_add_ps(sumAbs, magnitude)
            sumSq = _mm512_add_ps(sumSq, _mm512_mul_ps(e, e))
            signal = _mm512_add_ps(signal, _mm512_mul_ps(r, r))
            i += 16
        }
        g += 1
        start += block
    }
    _mm512_storeu_ps(sums, maxAbs)
    _mm512_storeu_ps(sums + 16, sumAbs)
    _mm512_storeu_ps(sums + 32, sumSq)
    _mm512_storeu_ps(sums + 48, signal)
}
