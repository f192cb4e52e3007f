import _Builtin_intrinsics.intel

// AVX2 (+FMA, F16C, BMI2) kernels: the same contracts as the AVX-512 ones in QuantKitAVX512,
// eight lanes at a time. Intrinsics and plain scalar code only (no generic stdlib calls).

/// Lanes 0..<count set (all ones), for maskload/maskstore.
@inline(__always) func laneMask(_ count: Int) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(Int32(truncatingIfNeeded: count)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Folds 8 lanes into lane 0 with `combine`, using lane permutes (no immediates needed).
@inline(__always) private func fold(_ v: __m256, _ combine: (__m256, __m256) -> __m256) -> Float {
    var r = combine(v, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3)))
    r = combine(r, _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(2, 3, 0, 1, 2, 3, 0, 1)))
    r = combine(r, _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(1, 0, 1, 0, 1, 0, 1, 0)))
    return _mm256_cvtss_f32(r)
}

/// See avx512MinMax; the accumulator here is 8 floats.
public func avx2MinMax(_ p: UnsafePointer<Float>, _ n: Int, _ poisonAccumulator: UnsafeMutablePointer<Float>) -> (min: Float, max: Float) {
    var lo = _mm256_set1_ps(Float.greatestFiniteMagnitude)
    var hi = _mm256_set1_ps(-Float.greatestFiniteMagnitude)
    var poison = _mm256_loadu_ps(poisonAccumulator)
    var i = 0
    while i + 8 <= n {
        let v = _mm256_loadu_ps(p + i)
        lo = _mm256_min_ps(lo, v)
        hi = _mm256_max_ps(hi, v)
        poison = _mm256_add_ps(poison, _mm256_sub_ps(v, v))
        i += 8
    }
    _mm256_storeu_ps(poisonAccumulator, poison)
    var low = fold(lo) { _mm256_min_ps($0, $1) }, high = fold(hi) { _mm256_max_ps($0, $1) }
    while i < n {
        let v = p[i]
        if v < low { low = v }
        if v > high { high = v }
        poisonAccumulator[0] += v - v
        i += 1
    }
    return (low, high)
}

/// true when all 8 floats at p are exactly zero.
public func avx2AllZero(_ p: UnsafePointer<Float>) -> Bool {
    var sum: Float = 0
    for k in 0..<8 { sum += p[k] < 0 ? -p[k] : p[k] }
    return sum == 0
}

/// See Encoding512: the same arithmetic on eight lanes.
public struct Encoding256 {
    let scale: __m256, reciprocal: __m256, zeroPointFloat: __m256, zeroPoint: __m256i
    let codeMin: __m256i, codeMax: __m256i, codeMask: __m256i
    let tiesAway: Bool

    public init(scale: Float, zeroPoint: Int32, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool) {
        self.scale = _mm256_set1_ps(scale)
        reciprocal = _mm256_set1_ps(1 / scale)
        zeroPointFloat = _mm256_set1_ps(Float(zeroPoint))
        self.zeroPoint = _mm256_set1_epi32(zeroPoint)
        self.codeMin = _mm256_set1_epi32(codeMin)
        self.codeMax = _mm256_set1_epi32(codeMax)
        self.codeMask = _mm256_set1_epi32(codeMask)
        self.tiesAway = tiesAway
    }

    /// Eight codes (0...255) as the bytes of a UInt64, element 0 in the low byte.
    @inline(__always) func codes(_ x: __m256) -> UInt64 {
        bytes(of: clamped(x))
    }

    /// The codes before masking: the integer each stored code decodes back to.
    @inline(__always) func clamped(_ x: __m256) -> __m256i {
        var q: __m256i
        if tiesAway {
            let t = _mm256_add_ps(_mm256_mul_ps(x, reciprocal), zeroPointFloat)
            let whole = _mm256_cvttps_epi32(t)
            let fraction = _mm256_sub_ps(t, _mm256_cvtepi32_ps(whole))
            q = _mm256_add_epi32(whole, _mm256_cvttps_epi32(_mm256_add_ps(fraction, fraction)))
        } else {
            q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_div_ps(x, scale)), zeroPoint)
        }
        return _mm256_min_epi32(_mm256_max_epi32(q, codeMin), codeMax)
    }

    /// The stored codes of clamped codes, as the bytes of a UInt64.
    @inline(__always) func bytes(of clamped: __m256i) -> UInt64 {
        let q = _mm256_and_si256(clamped, codeMask)
        // Pack to u16, to u8, then gather dword 0 of each 128-bit lane.
        let words = _mm256_packus_epi32(q, q)
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4))
        return UInt64(bitPattern: _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)))
    }
}

public func avx2EncodeBytes(_ p: UnsafePointer<Float>, _ n: Int, _ e: Encoding256, _ out: UnsafeMutablePointer<UInt8>) {
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let eight = e.codes(_mm256_maskload_ps(p + i, laneMask(count)))
        for k in 0..<count { out[i + k] = UInt8(truncatingIfNeeded: eight >> UInt64(8 * k)) }
        i += 8
    }
}

/// See avx512EncodeNibbles.
public func avx2EncodeNibbles(_ p: UnsafePointer<Float>, _ n: Int, _ e: Encoding256, _ out: UnsafeMutablePointer<UInt8>) {
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        var eight = e.codes(_mm256_maskload_ps(p + i, laneMask(count)))
        if count < 8 { eight &= (UInt64(1) << UInt64(8 * count)) &- 1 }  // padding nibbles are 0
        // Bytes (c0, c1, ..., c7) -> nibbles: keep the low 4 bits of each byte, compacted.
        let packed = _pext_u64(eight, 0x0F0F_0F0F_0F0F_0F0F)
        for k in 0..<((count + 1) / 2) { out[i / 2 + k] = UInt8(truncatingIfNeeded: packed >> UInt64(8 * k)) }
        i += 8
    }
}

/// Codes i..<i+count (count <= 8) as 8 int32 lanes: see the AVX-512 twin.
@inline(__always) private func codeLanes(_ data: UnsafePointer<UInt8>, _ i: Int, _ count: Int, nibbles: Bool, signed: Bool,
                                         highNibbleFirst: Bool = false) -> __m256i {
    var raw: UInt64 = 0
    if nibbles {
        for b in 0..<((count + 1) / 2) { raw |= UInt64(data[i / 2 + b]) << UInt64(8 * b) }
        if highNibbleFirst { raw = (raw >> 4) & 0x0F0F_0F0F | (raw & 0x0F0F_0F0F) << 4 }
        raw = _pdep_u64(raw, 0x0F0F_0F0F_0F0F_0F0F)
    } else {
        for b in 0..<count { raw |= UInt64(data[i + b]) << UInt64(8 * b) }
    }
    let q = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(Int64(bitPattern: raw)))
    guard signed else { return q }
    let signBit = _mm256_set1_epi32(nibbles ? 8 : 128)
    return _mm256_sub_epi32(_mm256_xor_si256(q, signBit), signBit)
}

/// See avx512DecodeBlock.
public func avx2DecodeBlock(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scale: Float, zeroPoint: Int32,
    table: UnsafePointer<Float>? = nil, highNibbleFirst: Bool = false, out: UnsafeMutablePointer<Float>
) {
    let vscale = _mm256_set1_ps(scale), vzp = _mm256_set1_ps(Float(zeroPoint))
    let low = table.map { _mm256_loadu_ps($0) } ?? _mm256_setzero_ps(), high = table.map { _mm256_loadu_ps($0 + 8) } ?? _mm256_setzero_ps()
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let q = codeLanes(data, i, count, nibbles: nibbles, signed: signed && table == nil, highNibbleFirst: highNibbleFirst)
        let value = table != nil ? lookup(q, low, high) : _mm256_cvtepi32_ps(q)
        _mm256_maskstore_ps(out + i, laneMask(count), _mm256_mul_ps(_mm256_sub_ps(value, vzp), vscale))
        i += 8
    }
}

/// See avx512DecodePerLane.
public func avx2DecodePerLane(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
    out: UnsafeMutablePointer<Float>
) {
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let lanes = laneMask(count)
        let q = codeLanes(data, i, count, nibbles: nibbles, signed: signed)
        let zp = _mm256_cvtepi32_ps(_mm256_maskload_epi32(zeroPoints + i, lanes))
        _mm256_maskstore_ps(out + i, lanes, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), zp), _mm256_maskload_ps(scales + i, lanes)))
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

// MARK: - Per-lane groups (see the AVX-512 twins)

public func avx2MinMaxPerLane(_ x: UnsafePointer<Float>, _ n: Int, _ lo: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Float>) {
    var k = 0
    while k < n {
        let mask = laneMask(n - k < 8 ? n - k : 8)
        let v = _mm256_maskload_ps(x + k, mask)
        _mm256_maskstore_ps(lo + k, mask, _mm256_min_ps(_mm256_maskload_ps(lo + k, mask), v))
        _mm256_maskstore_ps(hi + k, mask, _mm256_max_ps(_mm256_maskload_ps(hi + k, mask), v))
        k += 8
    }
}

public func avx2EncodePerLane(
    _ x: UnsafePointer<Float>, _ n: Int, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
    codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool, codes: UnsafeMutablePointer<UInt8>
) {
    let one = _mm256_set1_ps(1), magnitude = _mm256_set1_epi32(0x7FFF_FFFF), zero = _mm256_setzero_si256()
    let vmin = _mm256_set1_epi32(codeMin), vmax = _mm256_set1_epi32(codeMax), vmask = _mm256_set1_epi32(codeMask)
    let gather = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)
    var k = 0
    while k < n {
        let count = n - k < 8 ? n - k : 8
        let mask = laneMask(count)
        let v = _mm256_maskload_ps(x + k, mask)
        let s = _mm256_maskload_ps(scales + k, mask)
        let zp = _mm256_maskload_epi32(UnsafeRawPointer(zeroPoints + k).assumingMemoryBound(to: Int32.self), mask)
        var q: __m256i
        if tiesAway {
            let t = _mm256_add_ps(_mm256_mul_ps(v, _mm256_div_ps(one, s)), _mm256_cvtepi32_ps(zp))
            let whole = _mm256_cvttps_epi32(t)
            let fraction = _mm256_sub_ps(t, _mm256_cvtepi32_ps(whole))
            q = _mm256_add_epi32(whole, _mm256_cvttps_epi32(_mm256_add_ps(fraction, fraction)))
        } else {
            q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_div_ps(v, s)), zp)
        }
        // Lanes whose scale is +-0 take the zero point (all-ones where |s| bits are zero).
        let zeroScale = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(s), magnitude), zero)
        q = _mm256_blendv_epi8(q, zp, zeroScale)
        q = _mm256_and_si256(_mm256_min_epi32(_mm256_max_epi32(q, vmin), vmax), vmask)
        let words = _mm256_packus_epi32(q, q)
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), gather)
        let eight = UInt64(bitPattern: _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)))
        for j in 0..<count { codes[k + j] = UInt8(truncatingIfNeeded: eight >> UInt64(8 * j)) }
        k += 8
    }
}
