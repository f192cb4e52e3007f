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

/// See avx512RowErrorSums; here each group is decoded into `scratch` (block floats), then summed.
public func avx2RowErrorSums(_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ codes: UnsafePointer<UInt8>, _ groupStride: Int,
                               nibbles: Bool, signed: Bool, _ scales: UnsafePointer<Float>, _ zeroPoints: UnsafePointer<Int32>,
                               _ scratch: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Float>) {
    var g = 0, start = 0
    while start < n {
        let length = n - start < block ? n - start : block
        avx2DecodeBlock(codes + g * groupStride, length, nibbles: nibbles, signed: signed, scale: scales[g], zeroPoint: zeroPoints[g], out: scratch)
        avx2ErrorSums(x + start, scratch, length, sums)
        g += 1
        start += block
    }
}
