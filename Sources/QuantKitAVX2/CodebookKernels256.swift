import _Builtin_intrinsics.intel

/// See Codebook512 (QuantKitAVX512): the same codes, 8 lanes at a time; 16-entry lookups are two
/// 8-entry permutes and a blend on bit 3 of the index.
public struct Codebook256 {
    let thresholdsLow: __m256, thresholdsHigh: __m256
    let codesLow: __m256i, codesHigh: __m256i
    let signMagnitude: Bool
    let tiesAway: Bool

    public init(thresholds: UnsafePointer<Float>, codes: UnsafePointer<Int32>, signMagnitude: Bool, tiesAway: Bool) {
        thresholdsLow = _mm256_loadu_ps(thresholds)
        thresholdsHigh = _mm256_loadu_ps(thresholds + 8)
        codesLow = _mm256_loadu_si256(UnsafeRawPointer(codes).assumingMemoryBound(to: __m256i_u.self))
        codesHigh = _mm256_loadu_si256(UnsafeRawPointer(codes + 8).assumingMemoryBound(to: __m256i_u.self))
        self.signMagnitude = signMagnitude
        self.tiesAway = tiesAway
    }

    /// Entry `index` (0...15) of a 16-entry table held as two halves.
    @inline(__always) private func lookup(_ low: __m256, _ high: __m256, _ index: __m256i) -> __m256 {
        let upper = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28))  // bit 3 to the sign bit
        return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, index), _mm256_permutevar8x32_ps(high, index), upper)
    }

    @inline(__always) func codes(_ scaled: __m256) -> __m256i {
        var key = scaled
        var negative = _mm256_setzero_si256()
        if signMagnitude {
            let bits = _mm256_castps_si256(scaled)
            let magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(Int32.max))
            // x < 0: the sign bit set on a non-zero value.
            negative = _mm256_andnot_si256(_mm256_cmpeq_epi32(magnitude, _mm256_setzero_si256()), _mm256_srai_epi32(bits, 31))
            key = _mm256_castsi256_ps(magnitude)
        }
        var rank = _mm256_setzero_si256()
        @inline(__always) func step(_ size: Int32) {
            let threshold = lookup(thresholdsLow, thresholdsHigh, _mm256_add_epi32(rank, _mm256_set1_epi32(size - 1)))
            let above = _mm256_srai_epi32(_mm256_castps_si256(_mm256_sub_ps(threshold, key)), 31)  // see Codebook512
            rank = _mm256_add_epi32(rank, _mm256_and_si256(above, _mm256_set1_epi32(size)))
        }
        step(8); step(4); step(2); step(1)
        let code = _mm256_castps_si256(lookup(_mm256_castsi256_ps(codesLow), _mm256_castsi256_ps(codesHigh), rank))
        return _mm256_or_si256(code, _mm256_and_si256(negative, _mm256_set1_epi32(8)))
    }
}

/// See avx512EncodeCodebook.
public func avx2EncodeCodebook(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool,
                               _ book: Codebook256, _ out: UnsafeMutablePointer<UInt8>) {
    encodeScaled256(x, n, scales, perElement: perElement, tiesAway: book.tiesAway, out) { book.codes($0) }
}
