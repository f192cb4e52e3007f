import _Builtin_intrinsics.intel

// fp32 -> fp16 / bf16 bits, round to nearest even, by integer arithmetic (F16C's and AVX-512's
// vcvtps2ph are C macros that Swift cannot import), bit for bit as QuantKit's Float16Codec
// (f16Bits, bf16Bits), NaN payloads included. Module rules (DESIGN.md): intrinsics, while loops
// and plain scalar code only.

/// fp16 bits of 16 floats, in the low half of each 32-bit lane.
@inline(__always) private func halfBits(_ x: __m512) -> __m512i {
    let bits = _mm512_castps_si512(x)
    let a = _mm512_and_si512(bits, _mm512_set1_epi32(Int32.max))
    let sign = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x8000))
    // Normal halves: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even;
    // a carry out of the mantissa moves the exponent up, and past the largest half (and Inf) the
    // result is clamped to Inf.
    let odd = _mm512_and_si512(_mm512_srli_epi32(a, 13), _mm512_set1_epi32(1))
    let rounded = _mm512_add_epi32(_mm512_sub_epi32(a, _mm512_set1_epi32(0x3800_0000)), _mm512_add_epi32(_mm512_set1_epi32(0xFFF), odd))
    let normal = _mm512_min_epu32(_mm512_srli_epi32(rounded, 13), _mm512_set1_epi32(0x7C00))
    // Below the smallest normal half (2^-14): in |x| + 0.5 the float's last mantissa bits count
    // steps of 2^-24, the half's subnormal step, rounded to nearest even by the addition.
    let sum = _mm512_add_ps(_mm512_castsi512_ps(a), _mm512_set1_ps(0.5))
    let subnormal = _mm512_sub_epi32(_mm512_castps_si512(sum), _mm512_set1_epi32(0x3F00_0000))
    // NaN: quiet, with the top 9 payload bits.
    let nan = _mm512_or_si512(_mm512_set1_epi32(0x7E00), _mm512_and_si512(_mm512_srli_epi32(a, 13), _mm512_set1_epi32(0x1FF)))
    // a < bound as the sign of a - bound (both in [0, 2^31): no overflow).
    let small = _mm512_movepi32_mask(_mm512_sub_epi32(a, _mm512_set1_epi32(0x3880_0000)))
    let isNaN = _mm512_movepi32_mask(_mm512_sub_epi32(_mm512_set1_epi32(0x7F80_0000), a))
    let h = _mm512_mask_blend_epi32(isNaN, _mm512_mask_blend_epi32(small, normal, subnormal), nan)
    return _mm512_or_si512(h, sign)
}

/// bf16 bits of 16 floats: the top half, rounded to nearest even; a NaN keeps its top bits, made quiet.
@inline(__always) private func bfloatBits(_ x: __m512) -> __m512i {
    let bits = _mm512_castps_si512(x)
    let odd = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1))
    let rounded = _mm512_srli_epi32(_mm512_add_epi32(bits, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16)
    let nan = _mm512_or_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(0x40))
    let a = _mm512_and_si512(bits, _mm512_set1_epi32(Int32.max))
    return _mm512_mask_blend_epi32(_mm512_movepi32_mask(_mm512_sub_epi32(_mm512_set1_epi32(0x7F80_0000), a)), rounded, nan)
}

/// out[i] = fp16 (or bf16) bits of x[i] for i below n rounded down to a multiple of 16; returns
/// that count (the caller converts the rest).
public func avx512NarrowHalves(_ x: UnsafePointer<Float>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<UInt16>) -> Int {
    var i = 0
    while i + 16 <= n {
        let v = _mm512_loadu_ps(x + i)
        let h = bfloat ? bfloatBits(v) : halfBits(v)
        _mm256_storeu_si256(UnsafeMutableRawPointer(out + i).assumingMemoryBound(to: __m256i_u.self), _mm512_cvtepi32_epi16(h))
        i += 16
    }
    return i
}

/// out[i] = the float value of fp16 (or bf16) bits h[i], for i below n rounded down to a multiple
/// of 16; returns that count. Exact for every non-NaN value; a signalling fp16 NaN comes back quiet.
public func avx512WidenHalves(_ h: UnsafePointer<UInt16>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<Float>) -> Int {
    var i = 0
    while i + 16 <= n {
        let v = _mm256_loadu_si256(UnsafeRawPointer(h + i).assumingMemoryBound(to: __m256i_u.self))
        if bfloat {
            _mm512_storeu_ps(out + i, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16)))
        } else {
            _mm512_storeu_ps(out + i, _mm512_cvtph_ps(v))
        }
        i += 16
    }
    return i
}
