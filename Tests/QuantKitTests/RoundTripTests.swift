@testable import QuantKit
import XCTest

/// Every format dequantizes to within half a level step of the original, per group.
final class RoundTripTests: XCTestCase {
    /// Minimum SQNR (dB) on normal data, blocked 32: a loose floor that still catches broken coding.
    let sqnrFloor: [QuantFormat: Double] = [
        .int8: 38, .uint8: 38, .int4: 15, .uint4: 15, .int3: 9, .uint3: 9, .int2: 2, .uint2: 2,
        .nf4: 17, .fp4E2M1: 13, .fp8E4M3FN: 28, .fp8E5M2: 22, .fp16: 60, .bf16: 45, .log4: 10, .fp4Bnb: 12,
    ]

    func testEveryFormatRoundTripsWithinHalfAStep() throws {
        var rng = SplitMix(seed: 1)
        let shape = [7, 100]  // K not a multiple of the block
        let values = rng.normal(count: 700, scale: 0.05)
        for spec in FormatTable.all {
            let q = try quantized(values, shape, { _ in }, format: spec.format)
            let restored = try q.dequantized()
            let stats = try q.error(against: values)
            XCTAssertGreaterThan(stats.sqnrDB, sqnrFloor[spec.format]!, "\(spec.name)")
            guard spec.needsScale else { continue }
            let scales = q.scaleValues
            let gap = largestLevelGap(spec)
            for i in values.indices {
                let group = spec.format == .fp8E4M3FN || spec.format == .fp8E5M2 ? 0 : (i / 100) * 4 + (i % 100) / 32
                let bound = 0.5 * gap * scales[group].magnitude * (1 + 1e-5) + 1e-9
                XCTAssertLessThanOrEqual((restored[i] - values[i]).magnitude, bound, "\(spec.name) element \(i)")
            }
        }
    }

    func testAsymmetricIntegersStayWithinHalfAStep() throws {
        var rng = SplitMix(seed: 2)
        let values = rng.normal(count: 3 * 64).map { $0 + 0.7 }  // off-centre data
        for format in [QuantFormat.uint4, .int4, .uint8, .int8, .uint2, .int3] {
            let q = try quantized(values, [3, 64], { $0.scheme = .asymmetric; $0.blockSize = 16 }, format: format)
            let restored = try q.dequantized()
            let scales = q.scaleValues
            for i in values.indices {
                let bound = 0.5 * scales[i / 16] * (1 + 1e-5) + 1e-9
                XCTAssertLessThanOrEqual((restored[i] - values[i]).magnitude, bound, "\(format) element \(i)")
            }
        }
    }

    func testGranularitiesAndAxes() throws {
        var rng = SplitMix(seed: 3)
        let shape = [6, 10, 12]
        let values = rng.normal(count: 720)
        let cases: [(Granularity, Int, Int, [Int])] = [
            (.perTensor, 0, 0, []), (.perAxis, 0, 0, [6]), (.perAxis, 1, 0, [10]), (.perAxis, -1, 0, [12]),
            (.blocked, 0, 4, [2, 10, 12]), (.blocked, 1, 3, [6, 4, 12]), (.blocked, 2, 5, [6, 10, 3]),
        ]
        for (granularity, axis, block, scalesShape) in cases {
            let q = try quantized(values, shape, { $0.granularity = granularity; $0.axis = axis; $0.blockSize = max(block, 1) }, format: .int8)
            XCTAssertEqual(q.plan.scalesShape, scalesShape, "\(granularity) axis \(axis)")
            XCTAssertGreaterThan(try q.error(against: values).sqnrDB, 35, "\(granularity) axis \(axis)")
        }
    }

    func testPerAxisScalesFollowTheirChannel() throws {
        // Channel c of axis 1 holds values up to c+1: its scale must be (c+1)/127.
        var values: [Float] = []
        for _ in 0..<2 {
            for c in 0..<3 { values += [Float(c + 1), -Float(c + 1) / 2] }
        }
        let q = try quantized(values, [2, 3, 2], { $0.granularity = .perAxis; $0.axis = 1 }, format: .int8)
        XCTAssertEqual(q.scaleValues, [Float(1) / 127, Float(2) / 127, Float(3) / 127])
    }

    func testResultsDoNotDependOnThreadCount() throws {
        var rng = SplitMix(seed: 4)
        let values = rng.normal(count: 64 * 300)
        for format in [QuantFormat.int4, .nf4, .fp8E4M3FN, .uint8] {
            let one = try quantized(values, [64, 300], { $0.threads = 1; $0.method = .mse }, format: format)
            let two = try quantized(values, [64, 300], { $0.threads = 2; $0.method = .mse }, format: format)
            let all = try quantized(values, [64, 300], { $0.threads = 0; $0.method = .mse }, format: format)
            XCTAssertEqual(one.data, two.data)
            XCTAssertEqual(one.data, all.data)
            XCTAssertEqual(one.scales, all.scales)
        }
    }

    func testScaleTypesAreUsedAsStored() throws {
        var rng = SplitMix(seed: 5)
        let values = rng.normal(count: 4 * 64)
        for type in [FloatType.f16, .bf16] {
            let q = try quantized(values, [4, 64], { $0.scaleType = type }, format: .int4)
            XCTAssertEqual(q.scales.count, 4 * 2 * 2)
            // Codes were computed with the rounded scale, so the half-step bound holds with it.
            let restored = try q.dequantized()
            for i in values.indices {
                XCTAssertLessThanOrEqual((restored[i] - values[i]).magnitude, 0.5 * q.scaleValues[i / 32] * 1.00001 + 1e-7)
            }
        }
    }
}
