import _Builtin_intrinsics.intel

/// A 16-level codebook's codes (NF4, bitsandbytes FP4, log4), as QuantKit's `Codebook.Encoder`
/// gives them: the rank of x is the number of thresholds below it, the code is sortedCodes[rank];
/// sign-magnitude books rank |x| and add 8 when x < 0. The rank is a 4-step branch-free binary
/// search over the 16 thresholds (padded with +infinity) held in one register.
public struct Codebook512 {
    let thresholds: __m512
    let codes: __m512i
    let signMagnitude: Bool
    let tiesAway: Bool

    /// `thresholds`: 16 floats, ascending, none zero, padded with +infinity; `codes`: the 16
    /// sorted codes (padding unused). `tiesAway`: scale as x · (1 / scale), else x / scale.
    public init(thresholds: UnsafePointer<Float>, codes: UnsafePointer<Int32>, signMagnitude: Bool, tiesAway: Bool) {
        self.thresholds = _mm512_loadu_ps(thresholds)
        self.codes = _mm512_loadu_si512(codes)
        self.signMagnitude = signMagnitude
        self.tiesAway = tiesAway
    }

    /// Codes (0...15) of already scaled finite values.
    @inline(__always) func codes(_ scaled: __m512) -> __m512i {
        var key = scaled
        var negative: __mmask16 = 0
        if signMagnitude {
            let bits = _mm512_castps_si512(scaled)
            // x < 0: the sign bit set on a non-zero value (-0 is not below 0).
            negative = _mm512_movepi32_mask(bits) & _mm512_test_epi32_mask(bits, _mm512_set1_epi32(Int32.max))
            key = _mm512_castsi512_ps(_mm512_and_si512(bits, _mm512_set1_epi32(Int32.max)))
        }
        var rank = _mm512_setzero_si512()
        @inline(__always) func step(_ size: Int32) {
            let threshold = _mm512_permutexvar_ps(_mm512_add_epi32(rank, _mm512_set1_epi32(size - 1)), thresholds)
            // key > threshold exactly when threshold - key is negative: the difference of two
            // different floats is never zero, equal ones give +0, and +infinity - key is positive.
            let above = _mm512_movepi32_mask(_mm512_castps_si512(_mm512_sub_ps(threshold, key)))
            rank = _mm512_mask_add_epi32(rank, above, rank, _mm512_set1_epi32(size))
        }
        step(8); step(4); step(2); step(1)
        let code = _mm512_permutexvar_epi32(rank, codes)
        return _mm512_mask_or_epi32(code, negative, code, _mm512_set1_epi32(8))
    }
}

/// One codebook code byte per float, scales as in avx512EncodeMinifloat (a zero scale codes the
/// code of +0).
public func avx512EncodeCodebook(_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, perElement: Bool,
                                 _ book: Codebook512, _ out: UnsafeMutablePointer<UInt8>) {
    encodeScaled512(x, n, scales, perElement: perElement, tiesAway: book.tiesAway, out) { book.codes($0) }
}
