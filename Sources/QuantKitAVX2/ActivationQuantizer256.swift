import _Builtin_intrinsics.intel

// int8 activation quantization for the fused matmul's INT8 mode (contract: ActivationKernel in
// QuantKit/Matmul/Activations.swift), eight floats at a time. Blocks are whole multiples of 8.

/// Folds 8 integer lanes into one with `combine` (lane permutes: no immediates needed).
@inline(__always) private func foldInt(_ v: __m256i, _ combine: (__m256i, __m256i) -> __m256i) -> Int32 {
    var r = combine(v, _mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(4, 5, 6, 7, 0, 1, 2, 3)))
    r = combine(r, _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(2, 3, 0, 1, 2, 3, 0, 1)))
    r = combine(r, _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(1, 0, 1, 0, 1, 0, 1, 0)))
    return _mm256_cvtsi256_si32(r)
}

/// See avx512QuantizeActivations.
public func avx2QuantizeActivations(_ x: UnsafePointer<Float>, _ blocks: Int, _ block: Int, _ codes: UnsafeMutablePointer<Int8>,
                                    _ scales: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Int32>) -> Bool {
    let magnitude = _mm256_set1_epi32(0x7FFF_FFFF), exponent = _mm256_set1_epi32(0x7F80_0000)
    let high = _mm256_set1_epi32(127), low = _mm256_set1_epi32(-127)
    // Byte 0 of each 32-bit lane, lanes 0..3 then 4..7, into the low 8 bytes.
    let gather = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                  0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1)
    let halves = _mm256_setr_epi32(0, 4, 0, 4, 0, 4, 0, 4)
    var b = 0
    while b < blocks {
        let start = x + b * block
        var largest = _mm256_setzero_si256(), worst = _mm256_setzero_si256()
        var c = 0
        while c < block {
            let bits = _mm256_castps_si256(_mm256_loadu_ps(start + c))
            largest = _mm256_max_epu32(largest, _mm256_and_si256(bits, magnitude))
            worst = _mm256_max_epu32(worst, _mm256_and_si256(bits, exponent))
            c += 8
        }
        if foldInt(worst, { _mm256_max_epu32($0, $1) }) == 0x7F80_0000 { return false }
        let maxAbs = Float(bitPattern: UInt32(bitPattern: foldInt(largest, { _mm256_max_epu32($0, $1) })))
        let ratio = 127 / maxAbs
        let inverse = _mm256_set1_ps(ratio.isFinite ? ratio : 0)
        var sum = _mm256_setzero_si256()
        let out = codes + b * block
        c = 0
        while c < block {
            // vcvtps2dq rounds half to even under the default MXCSR, like rounded(.toNearestOrEven).
            var q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(start + c), inverse))
            q = _mm256_max_epi32(_mm256_min_epi32(q, high), low)
            sum = _mm256_add_epi32(sum, q)
            let bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(q, gather), halves)
            UnsafeMutableRawPointer(out + c).storeBytes(of: _mm_cvtsi128_si64(_mm256_castsi256_si128(bytes)), as: Int64.self)
            c += 8
        }
        scales[b] = maxAbs / 127
        sums[b] = foldInt(sum, { _mm256_add_epi32($0, $1) })
        b += 1
    }
    return true
}
