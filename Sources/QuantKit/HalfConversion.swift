/// fp32 <-> fp16 / bf16 for runs of values, on the ISA kernels where the CPU has them (Swift's
/// own Float16 conversion is a library call per value on x86).
public enum HalfConversion {
    /// out[i] = Float16Codec.f16Bits(x[i]) (bf16Bits when `bfloat`) for i in 0..<count: round to
    /// nearest even, NaN payloads kept; the same bits on every variant.
    public static func narrow(_ x: UnsafePointer<Float>, count: Int, bfloat: Bool, into out: UnsafeMutablePointer<UInt16>,
                              variant: KernelVariant = Runtime.kernelVariant) {
        let done = BlockKernels.of(variant)?.narrowHalves(x, count, bfloat, out) ?? 0
        for i in done..<count { out[i] = bfloat ? Float16Codec.bf16Bits(x[i]) : Float16Codec.f16Bits(x[i]) }
    }

    /// The first i in 0..<count with |x[i]| >= limit, skipping NaN, and Inf when `finiteOnly` (a
    /// value that would not fit the half type). Chunks whose ISA min/max is inside the limit are
    /// not scanned value by value.
    public static func firstIndex(magnitudeAtLeast limit: Float, in x: UnsafePointer<Float>, count: Int, finiteOnly: Bool,
                                  variant: KernelVariant = Runtime.kernelVariant) -> Int? {
        let kernels = BlockKernels.of(variant)
        let poison = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        defer { poison.deallocate() }
        let chunk = 4096
        var start = 0
        while start < count {
            let n = min(chunk, count - start)
            start += n
            if let kernels {
                poison.initialize(repeating: 0, count: 16)
                let (lo, hi) = kernels.minMax(x + start - n, n, poison)
                if lo > -limit && hi < limit { continue }  // (false when either is NaN: scanned)
            }
            for i in start - n..<start where x[i].magnitude >= limit && (x[i].isFinite || !finiteOnly) { return i }
        }
        return nil
    }

    /// out[i] = the value of the fp16 (bf16) bits h[i] for i in 0..<count: exact for every value
    /// but NaN, which stays NaN (a signalling one may come back quiet on the ISA variants).
    public static func widen(_ h: UnsafePointer<UInt16>, count: Int, bfloat: Bool, into out: UnsafeMutablePointer<Float>,
                             variant: KernelVariant = Runtime.kernelVariant) {
        let done = BlockKernels.of(variant)?.widenHalves(h, count, bfloat, out) ?? 0
        for i in done..<count { out[i] = bfloat ? Float16Codec.fromBF16(h[i]) : Float16Codec.fromF16(h[i]) }
    }
}
