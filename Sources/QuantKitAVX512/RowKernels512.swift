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

/// avx512RowEncode that also adds the error of what the codes decode to against x into `sums`
/// (4 × 16 lanes, element j of a group in lane j % 16, as avx512ErrorSums): (code - zp) * scale
/// from the clamped codes still in registers, the value avx512DecodeBlock gives for the stored
/// code, so the sums have the bits of decoding the row and calling avx512ErrorSums per group.
/// Groups with a zero scale decode to 0 (their codes are the caller's, as in avx512RowEncode).
public func avx512RowEncodeMeasuring(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>,
                                     _ zeroPoints: UnsafePointer<Int32>, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool,
                                     nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int, _ sums: UnsafeMutablePointer<Float>) {
    var errors = ErrorLanes512(sums)
    var g = 0, start = 0
    while start < n {
        let length = n - start < block ? n - start : block
        let scale = scales[g]
        let encodes = scale != 0 && scale.isFinite
        let e = Encoding512(scale: encodes ? scale : 1, zeroPoint: zeroPoints[g], codeMin: codeMin, codeMax: codeMax, codeMask: codeMask,
                            tiesAway: tiesAway)
        let (group, target) = (x + start, out + g * groupStride)
        var i = 0
        while i < length {
            let count = length - i < 16 ? length - i : 16
            let lanes = tailMask16(count)
            let r = _mm512_maskz_loadu_ps(lanes, group + i)
            var decoded = _mm512_setzero_ps()
            if encodes {
                let q = _mm512_maskz_mov_epi32(lanes, e.clamped(r))  // lanes past the group: code 0, the padding nibble
                let codes = _mm512_and_si512(q, e.codeMask)
                if nibbles {
                    let pairs = _mm512_or_si512(codes, _mm512_srli_epi64(codes, 28))  // as avx512EncodeNibbles
                    _mm512_mask_cvtepi64_storeu_epi8(target + i / 2, __mmask8(truncatingIfNeeded: (1 << ((count + 1) / 2)) - 1), pairs)
                } else {
                    _mm512_mask_cvtepi32_storeu_epi8(target + i, lanes, codes)
                }
                decoded = _mm512_maskz_mov_ps(lanes, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), e.zeroPointFloat), e.scale))
            }
            errors.add(error: _mm512_sub_ps(decoded, r), reference: r)
            i += 16
        }
        g += 1
        start += block
    }
    errors.store(sums)
}
