@testable import QuantKit
import XCTest

final class ScaleMethodTests: XCTestCase {
    func testMSESearchNeverLosesToMinMax() throws {
        var rng = SplitMix(seed: 11)
        var values = rng.normal(count: 64 * 64, scale: 0.02)
        for i in stride(from: 0, to: values.count, by: 97) { values[i] *= 12 }  // heavy tails
        for format in [QuantFormat.int4, .int3, .nf4, .uint4, .fp4E2M1] {
            let minmax = try quantized(values, [64, 64], { _ in }, format: format)
            let mse = try quantized(values, [64, 64], { $0.method = .mse }, format: format)
            XCTAssertLessThanOrEqual(try mse.error(against: values).rmse, try minmax.error(against: values).rmse * (1 + 1e-9), "\(format)")
        }
        let minmax = try quantized(values, [64, 64], { _ in }, format: .int3)
        let mse = try quantized(values, [64, 64], { $0.method = .mse }, format: .int3)
        XCTAssertLessThan(try mse.error(against: values).rmse, try minmax.error(against: values).rmse * 0.97, "clipping must help 3-bit on heavy tails")
    }

    func testPercentileClipsOutliers() throws {
        var values = (0..<1000).map { Float($0 % 10) / 10 }
        values[0] = 500
        let q = try quantized(values, [1000], { $0.granularity = .perTensor; $0.method = .percentile; $0.percentile = 99 }, format: .int8)
        XCTAssertEqual(q.scaleValues[0], 0.9 / 127, accuracy: 1e-7)
        let clipped = try q.dequantized()[0]
        XCTAssertEqual(clipped, 0.9, accuracy: 1e-5, "the outlier saturates at the clip value")
    }

    func testAsymmetricPercentileClipsBothEnds() throws {
        var values = (0..<1000).map { Float($0 % 100) / 100 }
        values[1] = -50
        values[2] = 80
        let q = try quantized(values, [1000], { $0.granularity = .perTensor; $0.method = .percentile; $0.percentile = 99; $0.scheme = .asymmetric }, format: .uint8)
        XCTAssertLessThan(q.scaleValues[0], 1.0 / 255 * 1.01)
    }
}
