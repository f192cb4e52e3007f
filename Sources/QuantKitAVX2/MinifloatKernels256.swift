import _Builtin_intrinsics.intel

/// See Minifloat512 (QuantKitAVX512): the same codes, 8 lanes at a time.
public struct Minifloat256 {
    let signBit: __m256i, maxFiniteCode: __m256i, maxFiniteBits: __m256i, minNormalBits: __m256i
    let stepsPerUnit: __m256, shift: __m256i, half: __m256i, halfMinusOne: __m256i, rebias: __m256i
    let tiesAway: Bool, plusZero: Bool

    public init(signBit: Int32, maxFiniteCode: Int32, maxFinite: Float, minNormal: Float, stepsPerUnit: Float, shift: UInt32,
                exponentRebias: Int32, tiesAway: Bool, plusZero: Bool) {
        self.signBit = _mm256_set1_epi32(signBit)
        self.maxFiniteCode = _mm256_set1_epi32(maxFiniteCode)
        maxFiniteBits = _mm256_set1_epi32(Int32(bitPattern: maxFinite.bitPattern))
        minNormalBits = _mm256_set1_epi32(Int32(bitPattern: minNormal.bitPattern))
        self.stepsPerUnit = _mm256_set1_ps(stepsPerUnit)
        self.shift = _mm256_set1_epi32(Int32(shift))
        half = _mm256_set1_epi32(Int32(1) << Int32(shift - 1))
        halfMinusOne = _mm256_set1_epi32((Int32(1) << Int32(shift - 1)) - 1)
        rebias = _mm256_set1_epi32(exponentRebias)
        self.tiesAway = tiesAway
        self.plusZero = plusZero
    }

    /// Codes (0...255) of already scaled values.
    @inline(__always) func codes(_ scaled: __m256) -> __m256i {
        var bits = _mm256_castps_si256(scaled)
        if plusZero { bits = _mm256_andnot_si256(_mm256_cmpeq_epi32(bits, _mm256_set1_epi32(Int32.min)), bits) }  // -0 → +0
        let negative = _mm256_srai_epi32(bits, 31)
        let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(Int32.max))
        let subnormal = _mm256_cmpgt_epi32(minNormalBits, magnitude)
        let saturated = _mm256_xor_si256(_mm256_cmpgt_epi32(maxFiniteBits, magnitude), _mm256_set1_epi32(-1))

        let one = _mm256_set1_epi32(1)
        let bias = tiesAway ? half : _mm256_add_epi32(halfMinusOne, _mm256_and_si256(_mm256_srlv_epi32(magnitude, shift), one))
        var code = _mm256_sub_epi32(_mm256_srlv_epi32(_mm256_add_epi32(magnitude, bias), shift), rebias)
        code = _mm256_min_epi32(code, maxFiniteCode)

        let steps = _mm256_mul_ps(_mm256_castsi256_ps(magnitude), stepsPerUnit)
        let rounded: __m256i
        if tiesAway {
            let whole = _mm256_cvttps_epi32(steps)
            let fraction = _mm256_sub_ps(steps, _mm256_cvtepi32_ps(whole))
            rounded = _mm256_add_epi32(whole, _mm256_cvttps_epi32(_mm256_add_ps(fraction, fraction)))
        } else {
            rounded = _mm256_cvtps_epi32(steps)
        }
        code = _mm256_blendv_epi8(code, rounded, subnormal)
        code = _mm256_blendv_epi8(code, maxFiniteCode, saturated)
        return _mm256_or_si256(code, _mm256_and_si256(negative, signBit))
    }
}

/// See avx512EncodeMinifloat.
public func avx2EncodeMinifloat(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool,
                                _ format: Minifloat256, _ out: UnsafeMutablePointer<UInt8>) {
    encodeScaled256(x, n, scales, perElement: perElement, tiesAway: format.tiesAway, out) { format.codes($0) }
}

/// See encodeScaled512 (QuantKitAVX512).
@inline(__always) func encodeScaled256(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool, tiesAway: Bool,
                                       _ out: UnsafeMutablePointer<UInt8>, _ codes: (__m256) -> __m256i) {
    let one = _mm256_set1_ps(1)
    var scale = _mm256_set1_ps(scales[0])
    var i = 0
    while i < n {
        let count = n - i < 8 ? n - i : 8
        let lanes = laneMask(count)
        let v = _mm256_maskload_ps(x + i, lanes)
        if perElement { scale = _mm256_maskload_ps(scales + i, lanes) }
        var scaled = tiesAway ? _mm256_mul_ps(v, _mm256_div_ps(one, scale)) : _mm256_div_ps(v, scale)
        let zeroScale = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(scale), _mm256_set1_epi32(Int32.max)), _mm256_setzero_si256())
        scaled = _mm256_andnot_ps(_mm256_castsi256_ps(zeroScale), scaled)  // lanes whose scale is ±0 become +0
        let q = codes(scaled)
        // Pack to u16, to u8, then gather dword 0 of each 128-bit lane.
        let words = _mm256_packus_epi32(q, q)
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(words, words), _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4))
        let eight = UInt64(bitPattern: _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)))
        for k in 0..<count { out[i + k] = UInt8(truncatingIfNeeded: eight >> UInt64(8 * k)) }
        i += 8
    }
}
