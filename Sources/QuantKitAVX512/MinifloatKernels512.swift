import _Builtin_intrinsics.intel

/// Minifloat (FP8 E4M3FN/E5M2, FP4 E2M1) codes by the bit arithmetic of QuantKit's
/// `MinifloatEncoder`, 16 lanes at a time, with the same results for every input (NaN and Inf
/// included). Positive floats order like their bit patterns, so the range tests are integer
/// compares of the magnitude bits (a NaN's bits are above every finite bound, which sends it to the
/// saturated code, as the scalar path's clamp does).
public struct Minifloat512 {
    let signBit: __m512i, maxFiniteCode: __m512i, maxFiniteBits: __m512i, minNormalBits: __m512i
    let stepsPerUnit: __m512, shift: __m512i, half: __m512i, halfMinusOne: __m512i, rebias: __m512i
    let tiesAway: Bool, plusZero: Bool

    /// The `MinifloatEncoder` fields; `tiesAway`: round half away from zero (else to even);
    /// `plusZero`: -0 codes as +0 (FP4's reference adds a +0 zero point).
    public init(signBit: Int32, maxFiniteCode: Int32, maxFinite: Float, minNormal: Float, stepsPerUnit: Float, shift: UInt32,
                exponentRebias: Int32, tiesAway: Bool, plusZero: Bool) {
        self.signBit = _mm512_set1_epi32(signBit)
        self.maxFiniteCode = _mm512_set1_epi32(maxFiniteCode)
        maxFiniteBits = _mm512_set1_epi32(Int32(bitPattern: maxFinite.bitPattern))
        minNormalBits = _mm512_set1_epi32(Int32(bitPattern: minNormal.bitPattern))
        self.stepsPerUnit = _mm512_set1_ps(stepsPerUnit)
        self.shift = _mm512_set1_epi32(Int32(shift))
        half = _mm512_set1_epi32(Int32(1) << Int32(shift - 1))
        halfMinusOne = _mm512_set1_epi32((Int32(1) << Int32(shift - 1)) - 1)
        rebias = _mm512_set1_epi32(exponentRebias)
        self.tiesAway = tiesAway
        self.plusZero = plusZero
    }

    /// Codes (0...255) of already scaled values.
    @inline(__always) func codes(_ scaled: __m512) -> __m512i {
        var bits = _mm512_castps_si512(scaled)
        if plusZero {
            // -0 (exactly the sign bit) becomes +0.
            let notMinusZero = _mm512_test_epi32_mask(_mm512_xor_si512(bits, _mm512_set1_epi32(Int32.min)), _mm512_set1_epi32(-1))
            bits = _mm512_maskz_mov_epi32(notMinusZero, bits)
        }
        let negative = _mm512_movepi32_mask(bits)
        let magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(Int32.max))
        // a < bound as the sign of a - bound: both are in [0, 2^31), so the difference cannot overflow.
        let subnormal = _mm512_movepi32_mask(_mm512_sub_epi32(magnitude, minNormalBits))
        let saturated = ~_mm512_movepi32_mask(_mm512_sub_epi32(magnitude, maxFiniteBits))

        // Normals: round the mantissa to the format's width; a carry moves into the exponent.
        let bias = tiesAway ? half : _mm512_add_epi32(halfMinusOne, _mm512_and_si512(_mm512_srlv_epi32(magnitude, shift), _mm512_set1_epi32(1)))
        var code = _mm512_sub_epi32(_mm512_srlv_epi32(_mm512_add_epi32(magnitude, bias), shift), rebias)
        code = _mm512_min_epi32(code, maxFiniteCode)

        // Subnormals: whole multiples of the smallest step (the product is exact).
        let steps = _mm512_mul_ps(_mm512_castsi512_ps(magnitude), stepsPerUnit)
        let rounded: __m512i
        if tiesAway {
            let whole = _mm512_cvttps_epi32(steps)
            let fraction = _mm512_sub_ps(steps, _mm512_cvtepi32_ps(whole))
            rounded = _mm512_add_epi32(whole, _mm512_cvttps_epi32(_mm512_add_ps(fraction, fraction)))
        } else {
            rounded = _mm512_cvtps_epi32(steps)  // MXCSR's default: to nearest, ties to even
        }
        code = _mm512_mask_mov_epi32(code, subnormal, rounded)
        code = _mm512_mask_mov_epi32(code, saturated, maxFiniteCode)
        return _mm512_or_si512(code, _mm512_maskz_mov_epi32(negative, signBit))
    }
}

/// One minifloat code byte per float: x / scale (ties to even) or x · (1 / scale) (ties away),
/// with `scales` one per element (`perElement`) or scales[0] for all; a zero scale codes 0 (+0).
public func avx512EncodeMinifloat(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool,
                                  _ format: Minifloat512, _ out: UnsafeMutablePointer<UInt8>) {
    encodeScaled512(x, n, scales, perElement: perElement, tiesAway: format.tiesAway, out) { format.codes($0) }
}

/// One code byte per float of `codes(x / scale)`, scaled as avx512EncodeMinifloat describes.
@inline(__always) func encodeScaled512(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool, tiesAway: Bool,
                                       _ out: UnsafeMutablePointer<UInt8>, _ codes: (__m512) -> __m512i) {
    let one = _mm512_set1_ps(1)
    var scale = _mm512_set1_ps(scales[0])
    var i = 0
    while i < n {
        let lanes = tailMask16(n - i < 16 ? n - i : 16)
        let v = _mm512_maskz_loadu_ps(lanes, x + i)
        if perElement { scale = _mm512_mask_loadu_ps(one, lanes, scales + i) }
        var scaled = tiesAway ? _mm512_mul_ps(v, _mm512_div_ps(one, scale)) : _mm512_div_ps(v, scale)
        let nonZeroScale = _mm512_test_epi32_mask(_mm512_castps_si512(scale), _mm512_set1_epi32(Int32.max))
        scaled = _mm512_maskz_mov_ps(nonZeroScale, scaled)  // lanes whose scale is ±0 become +0
        _mm512_mask_cvtepi32_storeu_epi8(out + i, lanes, codes(scaled))
        i += 16
    }
}
