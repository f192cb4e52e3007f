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
