import _Builtin_intrinsics.intel

// See RowKernels512.swift: the same loops over this module's per-group kernels (avx2MinMax,
// avx2EncodeNibbles/Bytes, avx2DecodeBlock, avx2ErrorSums).

/// lo[g], hi[g] of every group; finiteness goes into `poison` as in avx2MinMax.
public func avx2RowMinMax(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ lo: UnsafeMutablePointer<Float>,
                            _ hi: UnsafeMutablePointer<Float>, _ poison: UnsafeMutablePointer<Float>) {
    var g = 0, start = 0
    while start < n {
        let range = avx2MinMax(x + start, n - start < block ? n - start : block, poison)
        lo[g] = range.min
        hi[g] = range.max
        g += 1
        start += block
    }
}

/// Codes of every group whose scale is finite and non-zero, at `out + g * groupStride`; the
/// caller fills groups with a zero scale (and rejects non-finite ones).
public func avx2RowEncode(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>,
                            _ zeroPoints: UnsafePointer<Int32>, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool,
                            nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int) {
    var g = 0, start = 0
    while start < n {
        let scale = scales[g]
        if scale != 0 && scale.isFinite {
            let e = Encoding256(scale: scale, zeroPoint: zeroPoints[g], codeMin: codeMin, codeMax: codeMax, codeMask: codeMask, tiesAway: tiesAway)
            let length = n - start < block ? n - start : block
            if nibbles { avx2EncodeNibbles(x + start, length, e, out + g * groupStride) } else { avx2EncodeBytes(x + start, length, e, out + g * groupStride) }
        }
        g += 1
        start += block
    }
}

/// See avx512RowEncodeMeasuring: the same sums, 16 lanes kept as two 8-lane halves (as
/// avx2ErrorSums keeps them), the codes stored as avx2EncodeNibbles/Bytes store them.
public func avx2RowEncodeMeasuring(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>,
                                   _ zeroPoints: UnsafePointer<Int32>, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool,
                                   nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int, _ sums: UnsafeMutablePointer<Float>) {
    let magnitudeBits = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF))
    var maxAbs = (_mm256_loadu_ps(sums), _mm256_loadu_ps(sums + 8)), sumAbs = (_mm256_loadu_ps(sums + 16), _mm256_loadu_ps(sums + 24))
    var sumSq = (_mm256_loadu_ps(sums + 32), _mm256_loadu_ps(sums + 40)), signal = (_mm256_loadu_ps(sums + 48), _mm256_loadu_ps(sums + 56))
    @inline(__always) func add(_ sum: inout (__m256, __m256), _ high: Bool, _ v: __m256) {
        if high { sum.1 = _mm256_add_ps(sum.1, v) } else { sum.0 = _mm256_add_ps(sum.0, v) }
    }
    var g = 0, start = 0
    while start < n {
        let length = n - start < block ? n - start : block
        let scale = scales[g]
        let encodes = scale != 0 && scale.isFinite
        let e = Encoding256(scale: encodes ? scale : 1, zeroPoint: zeroPoints[g], codeMin: codeMin, codeMax: codeMax, codeMask: codeMask,
                            tiesAway: tiesAway)
        let (group, target) = (x + start, out + g * groupStride)
        var i = 0
        while i < length {
            let count = length - i < 8 ? length - i : 8
            let mask = laneMask(count)
            let r = _mm256_maskload_ps(group + i, mask)
            var decoded = _mm256_setzero_ps()
            if encodes {
                let q = e.clamped(r)
                var eight = e.bytes(of: q)
                if nibbles {
                    if count < 8 { eight &= (UInt64(1) << UInt64(8 * count)) &- 1 }  // padding nibbles are 0
                    let packed = _pext_u64(eight, 0x0F0F_0F0F_0F0F_0F0F)
                    for k in 0..<((count + 1) / 2) { target[i / 2 + k] = UInt8(truncatingIfNeeded: packed >> UInt64(8 * k)) }
                } else {
                    for k in 0..<count { target[i + k] = UInt8(truncatingIfNeeded: eight >> UInt64(8 * k)) }
                }
                let value = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), e.zeroPointFloat), e.scale)
                decoded = _mm256_and_ps(value, _mm256_castsi256_ps(mask))
            }
            let error = _mm256_sub_ps(decoded, r)
            let magnitude = _mm256_and_ps(error, magnitudeBits)
            let high = i % 16 >= 8
            if high { maxAbs.1 = _mm256_max_ps(maxAbs.1, magnitude) } else { maxAbs.0 = _mm256_max_ps(maxAbs.0, magnitude) }
            add(&sumAbs, high, magnitude)
            add(&sumSq, high, _mm256_mul_ps(error, error))
            add(&signal, high, _mm256_mul_ps(r, r))
            i += 8
        }
        g += 1
        start += block
    }
    _mm256_storeu_ps(sums, maxAbs.0)
    _mm256_storeu_ps(sums + 8, maxAbs.1)
    _mm256_storeu_ps(sums + 16, sumAbs.0)
    _mm256_storeu_ps(sums + 24, sumAbs.1)
    _mm256_storeu_ps(sums + 32, sumSq.0)
    _mm256_storeu_ps(sums + 40, sumSq.1)
    _mm256_storeu_ps(sums + 48, signal.0)
    _mm256_storeu_ps(sums + 56, signal.1)
}
