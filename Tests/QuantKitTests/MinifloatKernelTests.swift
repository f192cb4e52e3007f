@testable import QuantKit
import XCTest

/// The ISA minifloat encoders (FP8 E4M3FN/E5M2, FP4 E2M1) give the scalar coder's byte for every
/// value tried: each level, midpoint and their float neighbours, the saturation and subnormal
/// bounds, ±0, ±Inf, NaN, float32 subnormals, random values; one scale for all and one per element,
/// zero scales included; both roundings.
final class MinifloatKernelTests: XCTestCase {
    var variants: [KernelVariant] { [KernelVariant.avx2, .avx512].filter { $0 <= Runtime.kernelVariant } }

    func probes(_ mf: Minifloat, _ rng: inout SplitMix) -> [Float] {
        var values: [Float] = [0, -0.0, .leastNonzeroMagnitude, .leastNormalMagnitude, 1e-30, 1e30, .infinity, .nan,
                               Float(bitPattern: 0x7FC0_0001), Float(bitPattern: 0xFFC0_0000), .greatestFiniteMagnitude,
                               mf.maxFinite, mf.maxFinite.nextUp, mf.maxFinite.nextDown, mf.maxFinite * 1.03,
                               mf.minNormal, mf.minNormal.nextUp, mf.minNormal.nextDown]
        let levels = mf.magnitudes
        for (a, b) in zip(levels, levels.dropFirst()) {
            for v in [a, (a + b) / 2] { values += [v, v.nextUp, v.nextDown] }
        }
        values += (0..<4000).map { _ in (rng.uniform() - 0.5) * mf.maxFinite * 2.2 }
        values += (0..<4000).map { _ in (rng.uniform() - 0.5) * mf.minNormal * 4 }
        return values + values.map { -$0 }
    }

    func testKernelsGiveTheScalarCodes() throws {
        XCTAssertFalse(variants.isEmpty, "this machine should have at least AVX2")
        var rng = SplitMix(seed: 41)
        for format in [QuantFormat.fp8E4M3FN, .fp8E5M2, .fp4E2M1] {
            guard case .minifloat(let mf) = format.spec.kind else { return XCTFail("\(format) is not a minifloat") }
            let values = probes(mf, &rng)
            // Scales: exactly 1 (the values are the scaled values), a value that rounds in x / scale,
            // and per element: varied, with zeros (those elements code as +0).
            var perElement = [Float](repeating: 0, count: values.count)
            for i in values.indices where i % 11 != 0 {
                perElement[i] = i % 7 == 0 ? -0.0 : 0.25 + Float(i % 13) * 0.37
            }
            perElement[1] = 3
            for rounding in [Rounding.halfEven, .halfAway] {
                let coder = ElementCoder(spec: format.spec, rounding: rounding)
                let minifloat = try XCTUnwrap(coder.minifloat)
                for scales in [[Float(1)], [0.37], [0], perElement] {
                    let expected = values.indices.map { i in coder.encode(values[i], scale: scales.count == 1 ? scales[0] : scales[i], zeroPoint: 0) }
                    for variant in variants {
                        let kernels = try XCTUnwrap(BlockKernels.of(variant))
                        // Every start offset and length around the vector width, then the rest at once.
                        for (start, count) in [(0, values.count), (3, 1), (5, 15), (16, 17), (1, 9), (7, 31)] {
                            var codes = [UInt8](repeating: 0xA5, count: count + 1)
                            values.withUnsafeBufferPointer { x in
                                scales.withUnsafeBufferPointer { s in
                                    kernels.encodeMinifloat(x.baseAddress! + start, count, s.baseAddress! + (scales.count == 1 ? 0 : start), scales.count > 1,
                                                            minifloat.encoder, rounding == .halfAway, minifloat.plusZero, &codes)
                                }
                            }
                            XCTAssertEqual(Array(codes[0..<count]), Array(expected[start..<(start + count)]),
                                           "\(variant.name) \(format) \(rounding) scales \(scales.count) start \(start)")
                            XCTAssertEqual(codes[count], 0xA5, "nothing written past the run")
                        }
                    }
                }
            }
        }
    }

    func testMinifloatTensorsMatchTheReferenceInEveryVariant() throws {
        var rng = SplitMix(seed: 42)
        for format in [QuantFormat.fp8E4M3FN, .fp8E5M2, .fp4E2M1] {
            for rounding in [Rounding.halfEven, .halfAway] {
                // Per tensor, per channel on the last axis (one group per element of a row), per row, blocked.
                // [300, 700]: a per-tensor group large enough to be cut into chunks for min/max.
                for (granularity, axis, block, shape) in [(Granularity.perTensor, -1, 1, [37, 29]), (.perTensor, -1, 1, [300, 700]), (.perAxis, 1, 1, [33, 70]),
                                                          (.perAxis, 0, 1, [9, 40]), (.blocked, 1, 32, [5, 96]), (.blocked, 0, 16, [40, 18])] {
                    var params = QuantParams(format: format)
                    (params.granularity, params.axis, params.blockSize, params.rounding) = (granularity, axis, block, rounding)
                    let plan = try QuantPlan(params: params, shape: shape)
                    var values = rng.normal(count: plan.count)
                    for i in stride(from: 0, to: values.count, by: 17) { values[i] = 0 }
                    for i in stride(from: 5, to: values.count, by: 23) { values[i] = -0.0 }
                    let reference = try quantize(plan, values, .scalar)
                    for variant in variants {
                        XCTAssertEqual(try quantize(plan, values, variant), reference, "\(variant.name) \(format) \(rounding) \(granularity) axis \(axis) \(shape)")
                    }
                }
            }
        }
    }

    func quantize(_ plan: QuantPlan, _ values: [Float], _ variant: KernelVariant) throws -> [UInt8] {
        var data = [UInt8](repeating: 0xA5, count: plan.dataBytes)
        var scales = [UInt8](repeating: 0xA5, count: plan.scaleBytes)
        try values.withUnsafeBufferPointer { input in
            try data.withUnsafeMutableBytes { d in
                try scales.withUnsafeMutableBytes { s in
                    try Quantizer.quantize(plan, input: input, into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil), variant: variant)
                }
            }
        }
        return data + scales
    }
}
