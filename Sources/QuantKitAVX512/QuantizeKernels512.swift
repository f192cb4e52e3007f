import _Builtin_intrinsics.intel

// AVX-512 (F/BW/VL) kernels for integer block quantization. Rules for this module (DESIGN.md):
// intrinsics and plain scalar code only (no generic stdlib calls such as min/max, whose
// specializations would be compiled for AVX-512 and could be picked by the linker for baseline code).
// Every kernel computes exactly what the scalar reference in QuantKit computes.

@inline(__always) func tailMask16(_ n: Int) -> __mmask16 { __mmask16(truncatingIfNeeded: (1 << n) - 1) }

/// Smallest and largest of n floats (n >= 1). Also adds x - x of every element into the 16
/// floats at `poison`: 0 for finite x, NaN for NaN or Inf (min/max alone would skip a NaN). The
/// caller checks the accumulator once per batch of groups (see avx512AllZero).
public func avx512MinMax(_ p: UnsafePointer<Float>, _ n: Int, _ poisonAccumulator: UnsafeMutablePointer<Float>) -> (min: Float, max: Float) {
    var lo = _mm512_set1_ps(Float.greatestFiniteMagnitude)
    var hi = _mm512_set1_ps(-Float.greatestFiniteMagnitude)
    var poison = _mm512_loadu_ps(poisonAccumulator)
    var i = 0
    while i + 16 <= n {
        let v = _mm512_loadu_ps(p + i)
        lo = _mm512_min_ps(lo, v)
        hi = _mm512_max_ps(hi, v)
        poison = _mm512_add_ps(poison, _mm512_sub_ps(v, v))
        i += 16
    }
    if i < n {
        let mask = tailMask16(n - i)
        let v = _mm512_maskz_loadu_ps(mask, p + i)
        lo = _mm512_mask_min_ps(lo, mask, lo, v)
        hi = _mm512_mask_max_ps(hi, mask, hi, v)
        poison = _mm512_add_ps(poison, _mm512_sub_ps(v, v))
    }
    _mm512_storeu_ps(poisonAccumulator, poison)
    return (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi))
}

/// Constants of one group's quantization, broadcast once.
public struct Encoding512 {
    let scale: __m512, reciprocal: __m512, zeroPointFloat: __m512, zeroPoint: __m512i
    let codeMin: __m512i, codeMax: __m512i, codeMask: __m512i
    let tiesAway: Bool

    /// halfEven: clamp(rne(x / scale) + zp); halfAway: clamp(roundAway(x * (1/scale) + zp)),
    /// codes masked to `codeMask`. scale must be non-zero (zero-scale groups are filled by the caller).
    public init(scale: Float, zeroPoint: Int32, codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool) {
        self.scale = _mm512_set1_ps(scale)
        reciprocal = _mm512_set1_ps(1 / scale)
        zeroPointFloat = _mm512_set1_ps(Float(zeroPoint))
        self.zeroPoint = _mm512_set1_epi32(zeroPoint)
        self.codeMin = _mm512_set1_epi32(codeMin)
        self.codeMax = _mm512_set1_epi32(codeMax)
        self.codeMask = _mm512_set1_epi32(codeMask)
        self.tiesAway = tiesAway
    }

    @inline(__always) func codes(_ x: __m512) -> __m512i {
        _mm512_and_si512(clamped(x), codeMask)
    }

    /// The codes before masking: the integer each stored code decodes back to.
    @inline(__always) func clamped(_ x: __m512) -> __m512i {
        var q: __m512i
        if tiesAway {
            // Half away from zero without changing the rounding mode:
            // trunc(t) + trunc(2 * (t - trunc(t))), every step exact for |t| < 2^31.
            let t = _mm512_add_ps(_mm512_mul_ps(x, reciprocal), zeroPointFloat)
            let whole = _mm512_cvttps_epi32(t)
            let fraction = _mm512_sub_ps(t, _mm512_cvtepi32_ps(whole))
            q = _mm512_add_epi32(whole, _mm512_cvttps_epi32(_mm512_add_ps(fraction, fraction)))
        } else {
            // cvtps rounds with MXCSR's default mode: to nearest, ties to even.
            q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_div_ps(x, scale)), zeroPoint)
        }
        return _mm512_min_epi32(_mm512_max_epi32(q, codeMin), codeMax)
    }
}

/// One code byte per float.
public func avx512EncodeBytes(_ p: UnsafePointer<Float>, _ n: Int, _ e: Encoding512, _ out: UnsafeMutablePointer<UInt8>) {
    var i = 0
    while i < n {
        let lanes = tailMask16(n - i < 16 ? n - i : 16)
        _mm512_mask_cvtepi32_storeu_epi8(out + i, lanes, e.codes(_mm512_maskz_loadu_ps(lanes, p + i)))
        i += 16
    }
}

/// Two 4-bit codes per byte, first in the low nibble; (n+1)/2 bytes, an odd tail padded with 0.
public func avx512EncodeNibbles(_ p: UnsafePointer<Float>, _ n: Int, _ e: Encoding512, _ out: UnsafeMutablePointer<UInt8>) {
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let lanes = tailMask16(count)
        // Lanes past n become code 0: the padding nibble.
        let q = _mm512_maskz_mov_epi32(lanes, e.codes(_mm512_maskz_loadu_ps(lanes, p + i)))
        // Each 64-bit lane holds codes (2j, 2j+1) at bits 0 and 32: fold the second onto bit 4.
        let pairs = _mm512_or_si512(q, _mm512_srli_epi64(q, 28))
        let bytes = (count + 1) / 2
        _mm512_mask_cvtepi64_storeu_epi8(out + i / 2, __mmask8(truncatingIfNeeded: (1 << bytes) - 1), pairs)
        i += 16
    }
}

/// true when all 16 floats at p are exactly zero (a clean poison accumulator).
public func avx512AllZero(_ p: UnsafePointer<Float>) -> Bool {
    _mm512_reduce_add_ps(_mm512_abs_ps(_mm512_loadu_ps(p))) == 0
}

/// Codes i..<i+count (count <= 16) as 16 int32 lanes: nibbles (low first, or high first) from
/// element i (even) on, or bytes; `signed` sign-extends them (int4/int8).
@inline(__always) private func codeLanes(_ data: UnsafePointer<UInt8>, _ i: Int, _ count: Int, nibbles: Bool, signed: Bool,
                                         highNibbleFirst: Bool = false) -> __m512i {
    var bytes: __m128i
    if nibbles {
        // 8 bytes hold 16 nibbles; pdep spreads them into one byte each, in order.
        var raw: UInt64 = 0
        for b in 0..<((count + 1) / 2) { raw |= UInt64(data[i / 2 + b]) << UInt64(8 * b) }
        if highNibbleFirst { raw = (raw >> 4) & 0x0F0F_0F0F_0F0F_0F0F | (raw & 0x0F0F_0F0F_0F0F_0F0F) << 4 }
        let lo = _pdep_u64(raw & 0xFFFF_FFFF, 0x0F0F_0F0F_0F0F_0F0F)
        let hi = _pdep_u64(raw >> 32, 0x0F0F_0F0F_0F0F_0F0F)
        bytes = _mm_set_epi64x(Int64(bitPattern: hi), Int64(bitPattern: lo))
    } else {
        bytes = _mm_maskz_loadu_epi8(tailMask16(count), data + i)
    }
    let q = _mm512_cvtepu8_epi32(bytes)
    guard signed else { return q }
    let signBit = _mm512_set1_epi32(nibbles ? 8 : 128)
    return _mm512_sub_epi32(_mm512_xor_si512(q, signBit), signBit)
}

/// out[i] = (value(code_i) - zp) * scale for n codes stored as 4-bit nibbles or bytes.
/// value(code) is the code itself, sign-extended when `signed` (int4/int8), or `table[code]` when
/// a 16-entry table is given (nibbles only: the codebook and minifloat 4-bit formats).
/// Nibbles are stored low first, or high first (`highNibbleFirst`, bitsandbytes' layout); the
/// nibble form starts at an even element: codes begin at byte 0 of `data`.
public func avx512DecodeBlock(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scale: Float, zeroPoint: Int32,
    table: UnsafePointer<Float>? = nil, highNibbleFirst: Bool = false, out: UnsafeMutablePointer<Float>
) {
    let vscale = _mm512_set1_ps(scale), vzp = _mm512_set1_ps(Float(zeroPoint))
    let levels = table.map { _mm512_loadu_ps($0) } ?? _mm512_setzero_ps()
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let q = codeLanes(data, i, count, nibbles: nibbles, signed: signed && table == nil, highNibbleFirst: highNibbleFirst)
        let value = table != nil ? _mm512_permutexvar_ps(q, levels) : _mm512_cvtepi32_ps(q)
        _mm512_mask_storeu_ps(out + i, tailMask16(count), _mm512_mul_ps(_mm512_sub_ps(value, vzp), vscale))
        i += 16
    }
}

/// out[k] = (code_k - zeroPoints[k]) * scales[k] for n integer codes (element k in group k: strided
/// groups read row by row), as 4-bit nibbles (low first, from an even element) or bytes;
/// `signed` sign-extends the codes.
public func avx512DecodePerLane(
    _ data: UnsafePointer<UInt8>, _ n: Int, nibbles: Bool, signed: Bool, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
    out: UnsafeMutablePointer<Float>
) {
    var i = 0
    while i < n {
        let count = n - i < 16 ? n - i : 16
        let lanes = tailMask16(count)
        let q = codeLanes(data, i, count, nibbles: nibbles, signed: signed)
        let zp = _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(lanes, zeroPoints + i))
        _mm512_mask_storeu_ps(out + i, lanes, _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(q), zp), _mm512_maskz_loadu_ps(lanes, scales + i)))
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

// MARK: - Per-lane groups: element k of a run belongs to group k (strided groups read row by row)

/// lo[k] = min(lo[k], x[k]), hi[k] = max(hi[k], x[k]) for k < n.
public func avx512MinMaxPerLane(_ x: UnsafePointer<Float>, _ n: Int, _ lo: UnsafeMutablePointer<Float>, _ hi: UnsafeMutablePointer<Float>) {
    var k = 0
    while k < n {
        let lanes = tailMask16(n - k < 16 ? n - k : 16)
        let v = _mm512_maskz_loadu_ps(lanes, x + k)
        _mm512_mask_storeu_ps(lo + k, lanes, _mm512_min_ps(_mm512_maskz_loadu_ps(lanes, lo + k), v))
        _mm512_mask_storeu_ps(hi + k, lanes, _mm512_max_ps(_mm512_maskz_loadu_ps(lanes, hi + k), v))
        k += 16
    }
}

/// Codes of x[k] with scale s[k] and zero point z[k], one byte each, by the rules of Encoding512;
/// a zero scale gives the zero point's code, as in the reference.
public func avx512EncodePerLane(
    _ x: UnsafePointer<Float>, _ n: Int, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
    codeMin: Int32, codeMax: Int32, codeMask: Int32, tiesAway: Bool, codes: UnsafeMutablePointer<UInt8>
) {
    let one = _mm512_set1_ps(1), magnitude = _mm512_set1_epi32(0x7FFF_FFFF)
    let vmin = _mm512_set1_epi32(codeMin), vmax = _mm512_set1_epi32(codeMax), vmask = _mm512_set1_epi32(codeMask)
    var k = 0
    while k < n {
        let lanes = tailMask16(n - k < 16 ? n - k : 16)
        let v = _mm512_maskz_loadu_ps(lanes, x + k)
        let s = _mm512_maskz_loadu_ps(lanes, scales + k)
        let zp = _mm512_maskz_loadu_epi32(lanes, zeroPoints + k)
        var q: __m512i
        if tiesAway {
            let t = _mm512_add_ps(_mm512_mul_ps(v, _mm512_div_ps(one, s)), _mm512_cvtepi32_ps(zp))
            let whole = _mm512_cvttps_epi32(t)
            let fraction = _mm512_sub_ps(t, _mm512_cvtepi32_ps(whole))
            q = _mm512_add_epi32(whole, _mm512_cvttps_epi32(_mm512_add_ps(fraction, fraction)))
        } else {
            q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_div_ps(v, s)), zp)
        }
        let nonZeroScale = _mm512_test_epi32_mask(_mm512_castps_si512(s), magnitude)
        q = _mm512_mask_mov_epi32(zp, nonZeroScale, q)
        q = _mm512_and_si512(_mm512_min_epi32(_mm512_max_epi32(q, vmin), vmax), vmask)
        _mm512_mask_cvtepi32_storeu_epi8(codes + k, lanes, q)
        k += 16
    }
}
