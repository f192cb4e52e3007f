@testable import QuantKit
import XCTest

/// The ISA fp32 -> fp16/bf16 kernels give Float16Codec's bits for every value tried: every fp16
/// and bf16 value, the midpoints between neighbours and their float neighbours (the ties), the
/// overflow and subnormal bounds, ±0, ±Inf, NaNs with payloads, float32 subnormals and random bit
/// patterns; at every offset and length around the vector width. Widening gives every one of the
/// 65536 patterns' values back.
final class HalfConversionTests: XCTestCase {
    var variants: [KernelVariant] { [KernelVariant.scalar, .avx2, .avx512].filter { $0 <= Runtime.kernelVariant } }

    func probes(bfloat: Bool) -> [Float] {
        var values: [Float] = [0, -0.0, .leastNonzeroMagnitude, .leastNormalMagnitude, .greatestFiniteMagnitude, .infinity, .nan,
                               Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0x7FC0_2001), Float(bitPattern: 0xFFBF_E000),
                               65504, 65519.996, 65520, 65536, 6.1035156e-05, 5.9604645e-08, 2.9802322e-08, 2.9802326e-08]
        let decode: (UInt16) -> Float = bfloat ? Float16Codec.fromBF16 : Float16Codec.fromF16
        for bits in stride(from: 0, to: 0x7C00 + (bfloat ? 0x0380 : 0), by: bfloat ? 7 : 1) {
            let a = decode(UInt16(bits)), b = decode(UInt16(bits + 1))
            for v in [a, (a + b) / 2] { values += [v, v.nextUp, v.nextDown] }
        }
        var rng = SplitMix(seed: 5)
        values += (0..<20000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: rng.next())) }
        return values + values.map { -$0 }
    }

    func testNarrowingGivesTheScalarBits() {
        for bfloat in [false, true] {
            let values = probes(bfloat: bfloat)
            let expected = values.map { bfloat ? Float16Codec.bf16Bits($0) : Float16Codec.f16Bits($0) }
            for variant in variants {
                var out = [UInt16](repeating: 0xDEAD, count: values.count)
                HalfConversion.narrow(values, count: values.count, bfloat: bfloat, into: &out, variant: variant)
                if let i = out.indices.first(where: { out[$0] != expected[$0] }) {
                    XCTFail("\(variant.name) bf16=\(bfloat): \(values[i]) (0x\(String(values[i].bitPattern, radix: 16))) -> "
                            + "0x\(String(out[i], radix: 16)), expected 0x\(String(expected[i], radix: 16))")
                }
                // Runs starting and ending off the vector grid: the kernel does whole vectors, the rest is scalar.
                for (start, count) in [(1, 0), (3, 15), (5, 17), (7, 33), (0, 47)] {
                    var run = [UInt16](repeating: 0xDEAD, count: count + 2)
                    values.withUnsafeBufferPointer { v in
                        run.withUnsafeMutableBufferPointer { HalfConversion.narrow(v.baseAddress! + start, count: count, bfloat: bfloat,
                                                                                   into: $0.baseAddress! + 1, variant: variant) }
                    }
                    XCTAssertEqual(Array(run[1..<count + 1]), Array(expected[start..<start + count]), "\(variant.name) bf16=\(bfloat) at \(start)")
                    XCTAssertEqual([run[0], run[count + 1]], [0xDEAD, 0xDEAD], "\(variant.name): wrote outside the run")
                }
            }
        }
    }

    func testWideningGivesEveryValueBack() {
        let patterns = (0...0xFFFF).map { UInt16($0) }
        for bfloat in [false, true] {
            for variant in variants {
                var out = [Float](repeating: 0, count: patterns.count)
                HalfConversion.widen(patterns, count: patterns.count, bfloat: bfloat, into: &out, variant: variant)
                for (h, x) in zip(patterns, out) {
                    let expected = bfloat ? Float16Codec.fromBF16(h) : Float16Codec.fromF16(h)
                    guard expected.isNaN ? !x.isNaN : x.bitPattern != expected.bitPattern else { continue }
                    XCTFail("\(variant.name) bf16=\(bfloat): 0x\(String(h, radix: 16)) -> \(x), expected \(expected)")
                    break
                }
            }
        }
    }

    /// The range check finds the first out-of-range value wherever it is (first chunk, a later one,
    /// the tail), past NaNs, and counts Inf only when asked to.
    func testFirstOutOfRangeValueIsFound() {
        var rng = SplitMix(seed: 9)
        let base = (0..<10_000).map { _ in Float(rng.uniform() - 0.5) * 1000 }
        for variant in variants {
            for (index, value) in [(0, Float(65520)), (4095, -70000), (4096, 1e30), (9999, 65520), (5000, Float.infinity)] {
                for finiteOnly in [false, true] {
                    var x = base
                    x[index] = value
                    x[index == 0 ? 1 : index / 2] = .nan
                    let expected = x.firstIndex { $0.magnitude >= 65520 && ($0.isFinite || !finiteOnly) }
                    let got = HalfConversion.firstIndex(magnitudeAtLeast: 65520, in: x, count: x.count, finiteOnly: finiteOnly, variant: variant)
                    XCTAssertEqual(got, expected, "\(variant.name) \(value) at \(index), finiteOnly \(finiteOnly)")
                }
            }
            XCTAssertNil(HalfConversion.firstIndex(magnitudeAtLeast: 65520, in: base, count: base.count, finiteOnly: false, variant: variant))
        }
    }
}
