import _Builtin_intrinsics.intel

// AVX-512 (F/BW/VL) kernels for integer block quantization. Rules for this module (DESIGN.md):
// intrinsics and plain scalar code only (no generic stdlib calls such as min/max, whose
// specializations would be compiled for AVX-512 and could be picked by the linker for baseline code).
// Every kernel computes exactly what the scalar reference in QuantKit computes.

@inline(__always) private func tailMask16(_ n: Int) -> __mmask16 { __mmask16(truncatingIfNeeded: (1 << n) - 1) }

/// Smallest and largest of n floats (n >= 1).
public func avx512MinMax(_ p: UnsafePointer<Float>, _ n: Int) -> (min: Float, max: Float) {
    var lo = _mm512_set1_ps(Float.greatestFiniteMagnitude)
    var hi = _mm512_set1_ps(-Float.greatestFiniteMagnitude)
    var i = 0
    while i + 16 <= n {
        let v = _mm512_loadu_ps(p + i)
        lo = _mm512_min_ps(lo, v)
        hi = _mm512_max_ps(hi, v)
        i += 16
    }
    if i < n {
        let mask = tailMask16(n - i)
        lo = _mm512_mask_min_ps(lo, mask, lo, _mm512_maskz_loadu_ps(mask, p + i))
        hi = _mm512_mask_max_ps(hi, mask, hi, _mm512_maskz_loadu_ps(mask, p + i))
    }
    return (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}

/// Codes of n floats, one byte each, masked to `codeMask`:
/// halfEven: clamp(rne(x / scale) + zp); halfAway: clamp(roundAway(x * (1/scale) + zp)).
/// scale must be non-zero (the caller fills a zero-scale group with the zero point).
public func avx512EncodeBlock(
    _ p: UnsafePointer<Float>, _ n: Int, scale: Float, zeroPoint: Int32, codeMin: Int32, codeMax: Int32,
    codeMask: Int32, tiesAway: Bool, codes: UnsafeMutablePointer<UInt8>
) {
    let vscale = _mm512_set1_ps(scale)
    let vreciprocal = _mm512_set1_ps(1 / scale)
    let vzpFloat = _mm512_set1_ps(Float(zeroPoint))
    let vzp = _mm512_set1_epi32(zeroPoint)
    let vmin = _mm512_set1_epi32(codeMin), vmax = _mm512_set1_epi32(codeMax), vmask = _mm512_set1_epi32(codeMask)
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let lanes = tailMask16(count)
        let x = _mm512_maskz_loadu_ps(lanes, p + i)
        var q: __m512i
        if tiesAway {
            // t = x * (1/scale) + zp, rounded half away from zero without a rounding-mode change:
            // trunc(t) + trunc(2 * (t - trunc(t))), all steps exact for |t| < 2^31.
            let t = _mm512_add_ps(_mm512_mul_ps(x, vreciprocal), vzpFloat)
            let whole = _mm512_cvttps_epi32(t)
            let fraction = _mm512_sub_ps(t, _mm512_cvtepi32_ps(whole))
            q = _mm512_add_epi32(whole, _mm512_cvttps_epi32(_mm512_add_ps(fraction, fraction)))
        } else {
            // cvtps rounds with MXCSR's default mode: to nearest, ties to even.
            q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_div_ps(x, vscale)), vzp)
        }
        q = _mm512_and_si512(_mm512_min_epi32(_mm512_max_epi32(q, vmin), vmax), vmask)
        _mm512_mask_cvtepi32_storeu_epi8(codes + i, lanes, q)
        i += 16
    }
}

/// out[i] = codes[2i] | codes[2i+1] << 4 for i < n/2 (n even, codes already 4-bit).
public func avx512PackNibbles(_ codes: UnsafePointer<UInt8>, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
    let lowMask = _mm512_set1_epi16(0x000F), highMask = _mm512_set1_epi16(0x00F0)
    var i = 0
    while i + 64 <= n {
        let w = _mm512_loadu_si512(codes + i)
        let packed = _mm512_or_si512(_mm512_and_si512(w, lowMask), _mm512_and_si512(_mm512_srli_epi16(w, 4), highMask))
        _mm256_storeu_si256(UnsafeMutableRawPointer(out + i / 2).assumingMemoryBound(to: __m256i_u.self), _mm512_cvtepi16_epi8(packed))
        i += 64
    }
    while i + 1 < n {
        out[i / 2] = codes[i] | (codes[i + 1] << 4)
        i += 2
    }
}

/// out[i] = (value(code_i) - zp) * scale for n codes stored as 4-bit nibbles (low first) or bytes.
/// `signed` sign-extends the codes (int4/int8); `nibbles` selects the 4-bit layout.
/// The nibble form starts at an even element: codes begin at byte 0 of `data`.
public func avx512DecodeBlock(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scale: Float, zeroPoint: Int32,
    out: UnsafeMutablePointer<Float>
) {
    let vscale = _mm512_set1_ps(scale), vzp = _mm512_set1_ps(Float(zeroPoint))
    let signBit = _mm512_set1_epi32(nibbles ? 8 : 128)
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let lanes = tailMask16(count)
        var bytes: __m128i
        if nibbles {
            // 8 bytes hold 16 nibbles; pdep spreads them into one byte each, in order.
            var raw: UInt64 = 0
            let available = (count + 1) / 2
            for b in 0..<available { raw |= UInt64(data[i / 2 + b]) << UInt64(8 * b) }
            let lo = _pdep_u64(raw & 0xFFFF_FFFF, 0x0F0F_0F0F_0F0F_0F0F)
            let hi = _pdep_u64(raw >> 32, 0x0F0F_0F0F_0F0F_0F0F)
            bytes = _mm_set_epi64x(Int64(bitPattern: hi), Int64(bitPattern: lo))
        } else {
            bytes = _mm_maskz_loadu_epi8(lanes, data + i)
        }
        var q = _mm512_cvtepu8_epi32(bytes)
        if signed { q = _mm512_sub_epi32(_mm512_xor_si512(q, signBit), signBit) }
        let v = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), vzp), vscale)
        _mm512_mask_storeu_ps(out + i, lanes, v)
        i += 16
    }
}

/// true when no element is NaN or +-Inf (exponent bits all ones).
public func avx512AllFinite(_ p: UnsafePointer<Float>, _ n: Int) -> Bool {
    let exponent = _mm512_set1_epi32(0x7F80_0000)
    var worst = _mm512_setzero_si512()
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let bits = _mm512_castps_si512(_mm512_maskz_loadu_ps(tailMask16(count), p + i))
        worst = _mm512_max_epu32(worst, _mm512_and_si512(bits, exponent))
        i += 16
    }
    return _mm512_reduce_max_epu32(worst) != 0x7F80_0000
}
