import _Builtin_intrinsics.intel

// fp16 -> fp32 with F16C (every AVX2 CPU the dispatcher accepts has it). Module rules (DESIGN.md):
// intrinsics, while loops and plain scalar code only.

/// out[0..<count] = the fp16 values at `halves` as fp32 (exact), 8 per instruction.
public func avx2WidenHalves(_ halves: UnsafePointer<UInt16>, _ out: UnsafeMutablePointer<Float>, _ count: Int) {
    var i = 0
    while i + 8 <= count {
        let v = _mm_loadu_si128(UnsafeRawPointer(halves + i).assumingMemoryBound(to: __m128i_u.self))
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(v))
        i += 8
    }
    while i < count {
        out[i] = _cvtsh_ss(halves[i])
        i += 1
    }
}

// fp32 -> fp16 / bf16 bits by integer arithmetic (F16C's vcvtps2ph is a C macro that Swift cannot
// import), bit for bit as QuantKit's Float16Codec (f16Bits, bf16Bits), NaN payloads included.
// The same steps as QuantKitAVX512's HalfKernels512.swift, 8 lanes at a time.

/// fp16 bits of 8 floats, in the low half of each 32-bit lane.
@inline(__always) private func halfBits(_ x: __m256) -> __m256i {
    let bits = _mm256_castps_si256(x)
    let a = _mm256_and_si256(bits, _mm256_set1_epi32(Int32.max))
    let sign = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x8000))
    // Normal halves: rebias, round the 13 dropped bits to nearest even, clamp to Inf.
    let odd = _mm256_and_si256(_mm256_srli_epi32(a, 13), _mm256_set1_epi32(1))
    let rounded = _mm256_add_epi32(_mm256_sub_epi32(a, _mm256_set1_epi32(0x3800_0000)), _mm256_add_epi32(_mm256_set1_epi32(0xFFF), odd))
    let normal = _mm256_min_epu32(_mm256_srli_epi32(rounded, 13), _mm256_set1_epi32(0x7C00))
    // Subnormal halves: |x| + 0.5 counts steps of 2^-24 in its last mantissa bits.
    let sum = _mm256_add_ps(_mm256_castsi256_ps(a), _mm256_set1_ps(0.5))
    let subnormal = _mm256_sub_epi32(_mm256_castps_si256(sum), _mm256_set1_epi32(0x3F00_0000))
    let nan = _mm256_or_si256(_mm256_set1_epi32(0x7E00), _mm256_and_si256(_mm256_srli_epi32(a, 13), _mm256_set1_epi32(0x1FF)))
    let small = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x3880_0000), a)
    let isNaN = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F80_0000))
    let h = _mm256_blendv_epi8(_mm256_blendv_epi8(normal, subnormal, small), nan, isNaN)
    return _mm256_or_si256(h, sign)
}

/// bf16 bits of 8 floats: the top half, rounded to nearest even; a NaN keeps its top bits, made quiet.
@inline(__always) private func bfloatBits(_ x: __m256) -> __m256i {
    let bits = _mm256_castps_si256(x)
    let odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1))
    let rounded = _mm256_srli_epi32(_mm256_add_epi32(bits, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), odd)), 16)
    let nan = _mm256_or_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(0x40))
    let a = _mm256_and_si256(bits, _mm256_set1_epi32(Int32.max))
    return _mm256_blendv_epi8(rounded, nan, _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F80_0000)))
}

/// out[i] = fp16 (or bf16) bits of x[i] for i below n rounded down to a multiple of 16; returns
/// that count (the caller converts the rest).
public func avx2NarrowHalves(_ x: UnsafePointer<Float>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<UInt16>) -> Int {
    var i = 0
    while i + 16 <= n {
        let v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8)
        let h0 = bfloat ? bfloatBits(v0) : halfBits(v0), h1 = bfloat ? bfloatBits(v1) : halfBits(v1)
        // packus interleaves the two inputs' 128-bit halves: put them back in order.
        let packed = _mm256_permutevar8x32_epi32(_mm256_packus_epi32(h0, h1), _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7))
        _mm256_storeu_si256(UnsafeMutableRawPointer(out + i).assumingMemoryBound(to: __m256i_u.self), packed)
        i += 16
    }
    return i
}

/// out[i] = the float value of fp16 (or bf16) bits h[i], for i below n rounded down to a multiple
/// of 8; returns that count. Exact for every non-NaN value; a signalling fp16 NaN comes back quiet.
public func avx2WidenHalfRun(_ h: UnsafePointer<UInt16>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<Float>) -> Int {
    var i = 0
    while i + 8 <= n {
        let v = _mm_loadu_si128(UnsafeRawPointer(h + i).assumingMemoryBound(to: __m128i_u.self))
        if bfloat {
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16)))
        } else {
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(v))
        }
        i += 8
    }
    return i
}
