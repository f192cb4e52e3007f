/// Dispatch to the ISA kernels for the cases that dominate real use. Each function returns false
/// when the case is not one it covers; the reference path in Quantizer then does the work.
enum FastPaths {
    static func allFinite(_ p: UnsafePointer<Float>, count: Int) -> Bool {
        var allBits: UInt32 = 0
        // An exponent of all ones marks NaN and Inf.
        for i in 0..<count where p[i].bitPattern & 0x7F80_0000 == 0x7F80_0000 { allBits = 1; break }
        return allBits == 0
    }

    static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, into out: QuantizedBuffers) throws -> Bool {
        false
    }

    static func dequantize(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>) throws -> Bool {
        false
    }
}
