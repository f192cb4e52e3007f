import _Builtin_intrinsics.intel

// AVX2 (+FMA, F16C, BMI2) kernels: the same contracts as the AVX-512 ones in QuantKitAVX512,
// eight lanes at a time. Intrinsics and plain scalar code only (no generic stdlib calls).

/// Lanes 0..<count set (all ones), for maskload/maskstore.
@inline(__always) private func laneMask(_ count: Int) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Folds 8 lanes into lane 0 with `combine`, using lane permutes (no immediates needed).
@inline(__always) private func fold(_ v: __m256, _ combine: (__m256, __m256) -> __m256) -> Float {
    var r = combine(v, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3)))
    r = combine(r, _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(2, 3, 0, 1, 2, 3, 0, 1)))
    r = combine(r, _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(1, 0, 1, 0, 1, 0, 1, 0)))
    return _mm256_cvtss_f32(r)
}

public func avx2MinMax(_ p: UnsafePointer<Float>, _ n: Int) -> (min: Float, max: Float) {
    var lo = _mm256_set1_ps(Float.greatestFiniteMagnitude)
    var hi = _mm256_set1_ps(-Float.greatestFiniteMagnitude)
    var i = 0
    while i + 8 <= n {
        let v = _mm256_loadu_ps(p + i)
        lo = _mm256_min_ps(lo, v)
        hi = _mm256_max_ps(hi, v)
        i += 8
    }
    var low = fold(lo) { _mm256_min_ps($0, $1) }, high = fold(hi) { _mm256_max_ps($0, $1) }
    while i < n {
        let v = p[i]
        if v < low { low = v }
        if v > high { high = v }
        i += 1
    }
    return (low, high)
}

/// See avx512EncodeBlock: identical results, eight lanes at a time.
public func avx2EncodeBlock(
    _ p: UnsafePointer<Float>, _ n: Int, scale: Float, zeroPoint: Int32, codeMin: Int32, codeMax: Int32,
    codeMask: Int32, tiesAway: Bool, codes: UnsafeMutablePointer<UInt8>
) {
    let vscale = _mm256_set1_ps(scale)
    let vreciprocal = _mm256_set1_ps(1 / scale)
    let vzpFloat = _mm256_set1_ps(Float(zeroPoint))
    let vzp = _mm256_set1_epi32(zeroPoint)
    let vmin = _mm256_set1_epi32(codeMin), vmax = _mm256_set1_epi32(codeMax), vmask = _mm256_set1_epi32(codeMask)
    let gather = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let x = _mm256_maskload_ps(p + i, laneMask(count))
        var q: __m256i
        if tiesAway {
            let t = _mm256_add_ps(_mm256_mul_ps(x, vreciprocal), vzpFloat)
            let whole = _mm256_cvttps_epi32(t)
            let fraction = _mm256_sub_ps(t, _mm256_cvtepi32_ps(whole))
            q = _mm256_add_epi32(whole, _mm256_cvttps_epi32(_mm256_add_ps(fraction, fraction)))
        } else {
            q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_div_ps(x, vscale)), vzp)
        }
        q = _mm256_and_si256(_mm256_min_epi32(_mm256_max_epi32(q, vmin), vmax), vmask)
        // 8 x i32 (0...255) -> 8 bytes: pack to u16, to u8, then gather dword 0 of each lane.
        let words = _mm256_packus_epi32(q, q)
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), gather)
        let eight = UInt64(bitPattern: _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)))
        for k in 0..<count { codes[i + k] = UInt8(truncatingIfNeeded: eight >> UInt64(8 * k)) }
        i += 8
    }
}

public func avx2PackNibbles(_ codes: UnsafePointer<UInt8>, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
    var i = 0
    while i + 1 < n {
        out[i / 2] = codes[i] | (codes[i + 1] << 4)
        i += 2
    }
}

/// See avx512DecodeBlock.
public func avx2DecodeBlock(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scale: Float, zeroPoint: Int32,
    out: UnsafeMutablePointer<Float>
) {
    let vscale = _mm256_set1_ps(scale), vzp = _mm256_set1_ps(Float(zeroPoint))
    let signBit = _mm256_set1_epi32(nibbles ? 8 : 128)
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        var raw: UInt64 = 0
        if nibbles {
            for b in 0..<((count + 1) / 2) { raw |= UInt64(data[i / 2 + b]) << UInt64(8 * b) }
            raw = _pdep_u64(raw, 0x0F0F_0F0F_0F0F_0F0F)
        } else {
            for b in 0..<count { raw |= UInt64(data[i + b]) << UInt64(8 * b) }
        }
        var q = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(Int64(bitPattern: raw)))
        if signed { q = _mm256_sub_epi32(_mm256_xor_si256(q, signBit), signBit) }
        let v = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), vzp), vscale)
        _mm256_maskstore_ps(out + i, laneMask(count), v)
        i += 8
    }
}

public func avx2AllFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Bool {
    let exponent = _mm256_set1_epi32(0x7F80_0000)
    var worst = _mm256_setzero_si256()
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let bits = _mm256_castps_si256(_mm256_maskload_ps(p + i, laneMask(count)))
        worst = _mm256_max_epu32(worst, _mm256_and_si256(bits, exponent))
        i += 8
    }
    let folded = fold(_mm256_castsi256_ps(worst)) { _mm256_castsi256_ps(_mm256_max_epu32(_mm256_castps_si256($0), _mm256_castps_si256($1))) }
    return folded.bitPattern != 0x7F80_0000
}
