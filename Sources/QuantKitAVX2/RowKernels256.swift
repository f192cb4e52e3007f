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
    var low = ErrorLanes256(sums, half: 0), high = ErrorLanes256(sums, half: 1)
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
            // Element i of the group is in lane i % 16: the low half, then the high one.
            if i % 16 < 8 { low.add(error: _mm256_sub_ps(decoded, r), reference: r) } else { high.add(error: _mm256_sub_ps(decoded, r), reference: r) }
            i += 8
        }
        g += 1
        start += block
    }
    low.store(sums, half: 0)
    high.store(sums, half: 1)
}
