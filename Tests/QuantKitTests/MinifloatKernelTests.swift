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
            for rounding in [Rounding.halfEven, .halfAway] {
                let coder = ElementCoder(spec: format.spec, rounding: rounding)
                let minifloat = try XCTUnwrap(coder.minifloat)
                for scales in kernelTestScales(count: values.count) {
                    let expected = values.indices.map { i in coder.encode(values[i], scale: scales.count == 1 ? scales[0] : scales[i], zeroPoint: 0) }
                    for variant in variants {
                        let kernels = try XCTUnwrap(BlockKernels.of(variant))
                        assertCodeKernel(values, scales: scales, expected: expected, "\(variant.name) \(format) \(rounding) scales \(scales.count)") {
                            kernels.encodeMinifloat($0, $1, $2, $3, minifloat.encoder, rounding == .halfAway, minifloat.plusZero, $4)
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
                    let reference = try quantizedBytes(plan, values, .scalar)
                    for variant in variants {
                        XCTAssertEqual(try quantizedBytes(plan, values, variant), reference, "\(variant.name) \(format) \(rounding) \(granularity) axis \(axis) \(shape)")
                    }
                }
            }
        }
    }
}
