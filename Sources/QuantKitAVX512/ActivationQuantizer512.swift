import _Builtin_intrinsics.intel

// int8 activation quantization for the fused matmul's INT8 mode (contract: ActivationKernel in
// QuantKit/Matmul/Activations.swift). Blocks are whole multiples of 8 floats.

/// Per block: scale = max|x| / 127, code = round-half-even(x * (127 / max|x|)) clamped to +-127
/// (0 when 127 / max|x| is not finite), and the sum of the codes. Returns false, with outputs
/// unspecified, when a value is NaN or Inf.
public func avx512QuantizeActivations(_ x: UnsafePointer<Float>, _ blocks: Int, _ block: Int, _ codes: UnsafeMutablePointer<Int8>,
                                      _ scales: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Int32>) -> Bool {
    let magnitude = _mm512_set1_epi32(0x7FFF_FFFF), exponent = _mm512_set1_epi32(0x7F80_0000)
    let high = _mm512_set1_epi32(127), low = _mm512_set1_epi32(-127)
    var b = 0
    while b < blocks {
        let start = x + b * block
        // Largest magnitude as integer bits (same order as the floats) and the largest exponent field.
        var largest = _mm512_setzero_si512(), worst = _mm512_setzero_si512()
        var c = 0
        while c < block {
            let lanes: __mmask16 = block - c >= 16 ? 0xFFFF : 0x00FF
            let bits = _mm512_castps_si512(_mm512_maskz_loadu_ps(lanes, start + c))
            largest = _mm512_max_epu32(largest, _mm512_and_si512(bits, magnitude))
            worst = _mm512_max_epu32(worst, _mm512_and_si512(bits, exponent))
            c += 16
        }
        if _mm512_reduce_max_epu32(worst) == 0x7F80_0000 { return false }
        let maxAbs = Float(bitPattern: _mm512_reduce_max_epu32(largest))
        let ratio = 127 / maxAbs
        let inverse = _mm512_set1_ps(ratio.isFinite ? ratio : 0)
        var sum = _mm512_setzero_si512()
        let out = codes + b * block
        c = 0
        while c < block {
            let lanes: __mmask16 = block - c >= 16 ? 0xFFFF : 0x00FF
            // vcvtps2dq rounds half to even under the default MXCSR, like rounded(.toNearestOrEven).
            var q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(lanes, start + c), inverse))
            q = _mm512_max_epi32(_mm512_min_epi32(q, high), low)
            sum = _mm512_add_epi32(sum, q)
            _mm512_mask_cvtepi32_storeu_epi8(out + c, lanes, q)
            c += 16
        }
        scales[b] = maxAbs / 127
        sums[b] = _mm512_reduce_add_epi32(sum)
        b += 1
    }
    return true
}
