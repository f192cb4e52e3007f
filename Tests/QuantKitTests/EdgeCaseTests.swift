@testable import QuantKit
import XCTest

/// Degenerate data and bad parameters: clear errors, never wrong numbers.
final class EdgeCaseTests: XCTestCase {
    func testAllZerosGiveZeroScalesAndExactZeros() throws {
        for spec in FormatTable.all {
            let q = try quantized([Float](repeating: 0, count: 64), [2, 32], { _ in }, format: spec.format)
            XCTAssertEqual(try q.dequantized(), [Float](repeating: 0, count: 64), spec.name)
        }
    }

    func testConstantBlockIsExactForIntegers() throws {
        let values = [Float](repeating: 0.37, count: 32)
        for format in [QuantFormat.int4, .int8, .uint4, .int2] {
            let q = try quantized(values, [32], { _ in }, format: format)
            for v in try q.dequantized() { XCTAssertEqual(v, 0.37, accuracy: 1e-6, "\(format)") }
        }
    }

    func testOneHugeOutlierOnlyCostsItsOwnBlock() throws {
        var rng = SplitMix(seed: 9)
        var values = rng.normal(count: 128, scale: 0.01)
        values[5] = 1000
        let q = try quantized(values, [128], { _ in }, format: .int4)
        let restored = try q.dequantized()
        XCTAssertEqual(restored[5], 1000, accuracy: 1000 / 14)
        // Blocks 1...3 keep their own fine scales.
        for i in 32..<128 { XCTAssertEqual(restored[i], values[i], accuracy: q.scaleValues[i / 32] / 2 + 1e-9) }
    }

    func testSubnormalInputsStayFinite() throws {
        let values: [Float] = [1e-40, -1e-41, 0, 1e-39]
        for spec in FormatTable.all {
            let q = try quantized(values, [4], { $0.granularity = .perTensor }, format: spec.format)
            XCTAssertTrue(try q.dequantized().allSatisfy { $0.isFinite }, spec.name)
        }
    }

    func testNaNAndInfinityAreRejected() {
        for bad in [Float.nan, .infinity, -.infinity] {
            XCTAssertThrowsStatus(.nonFinite, try quantized([1, bad, 2], [3], { _ in }, format: .int4))
        }
    }

    func testEmptyTensors() throws {
        let q = try quantized([], [0, 32], { _ in }, format: .int4)
        XCTAssertEqual(q.data.count, 0)
        XCTAssertEqual(q.scales.count, 0)
        XCTAssertEqual(try q.dequantized(), [])
    }

    func testKSmallerThanOneBlock() throws {
        let q = try quantized([1, -2, 3], [1, 3], { $0.blockSize = 128 }, format: .int4)
        XCTAssertEqual(q.plan.scalesShape, [1, 1])
        XCTAssertEqual(try q.dequantized()[2], 3, accuracy: 1e-6)
    }

    func testInvalidParameters() {
        XCTAssertThrowsStatus(.unsupported, try quantized([1], [1], { $0.scheme = .asymmetric }, format: .nf4))
        XCTAssertThrowsStatus(.invalidArgument, try quantized([1], [1], { $0.axis = 1 }, format: .int4))
        XCTAssertThrowsStatus(.invalidArgument, try quantized([1], [1], { $0.blockSize = 0 }, format: .int4))
        XCTAssertThrowsStatus(.invalidArgument, try quantized([1], [], { _ in }, format: .int4))
        XCTAssertThrowsStatus(.invalidArgument, try quantized([Float](repeating: 1, count: 48), [2, 24], { $0.layout = .matMulNBits; $0.blockSize = 24 }, format: .int4))
        XCTAssertThrowsStatus(.unsupported, try quantized([1, 2], [1, 2], { $0.layout = .matMulNBits; $0.blockSize = 16 }, format: .int3))
        XCTAssertThrowsStatus(.unsupported, try quantized([1, 2], [2], { $0.layout = .bnb4 }, format: .int4))
        XCTAssertThrowsStatus(.invalidArgument, try quantized([1, 2], [2], { $0.method = .percentile; $0.percentile = 0 }, format: .int8))
        XCTAssertThrowsStatus(.shapeMismatch, try quantized([1, 2, 3], [2], { _ in }, format: .int8))
        XCTAssertThrowsStatus(.overflow, try QuantPlan(params: QuantParams(format: .int4), shape: [Int.max / 2, 4]))
    }
}
