import QuantKit
@testable import QuantKitONNX
import Foundation
import XCTest

/// Every pass's `weightRequest`, answered by `LinearLayer.quantizeWeight` (band by band, or whole
/// for plans whose groups cross rows), gives the bytes of quantizing the float weight matrix
/// (`weightMatrix` / `transposedWeightMatrix`) with `QuantizedTensor`.
final class PassWeightRequestTests: XCTestCase {
    /// MatMul(X, W [k, n]) and Gemm(X, G [n, k], transB = 1, alpha = 0.5).
    func layers(k: Int, n: Int) throws -> [LinearLayer] {
        let w = TensorData.make(name: "W", floats: (0..<(k * n)).map { Float(($0 * 7919) % 211) / 100 - 1 }, dims: [k, n], type: .float)
        let g = TensorData.make(name: "G", floats: (0..<(k * n)).map { Float(($0 * 104729) % 97) / 40 - 1.2 }, dims: [n, k], type: .float)
        let constants = ["W": w, "G": g]
        let matMul = Onnx_NodeProto("MatMul", name: "mm", inputs: ["X", "W"], outputs: ["Y"])
        let gemm = Onnx_NodeProto("Gemm", name: "gemm", inputs: ["X", "G"], outputs: ["Z"], attributes: [.int("transB", 1), .float("alpha", 0.5)])
        return try [matMul, gemm].map { try XCTUnwrap(LinearLayer.match(node: $0, at: 0, constant: { constants[$0] }, external: nil)) }
    }

    func testRequestsGiveTheBytesOfQuantizingTheWeightMatrix() throws {
        let cases: [(any LinearRewritePass, LayerSettings)] = [
            (MatMulNBitsPass(), LayerSettings(format: .int4, blockSize: 32)),
            (MatMulNBitsPass(), LayerSettings(format: .uint4, blockSize: 16, scheme: .asymmetric)),
            (Bnb4Pass(), LayerSettings(format: .nf4, blockSize: 64)),
            (QDQPass(), LayerSettings(format: .int4, blockSize: 32, target: .qdq)),  // blocks along K: whole matrix
            (QDQPass(), LayerSettings(format: .uint8, blockSize: 0, scheme: .asymmetric, target: .qdq)),  // per column
            (QDQPass(), LayerSettings(format: .fp8E4M3FN, blockSize: 0, target: .qdq)),
            (DynamicInt8Pass(), LayerSettings(format: .int8, blockSize: 0, target: .dynamicInt8)),
        ]
        for layer in try layers(k: 96, n: 40) {
            for (pass, settings) in cases {
                try pass.check(layer, settings)
                let request = try XCTUnwrap(try pass.weightRequest(layer, settings))
                let weight = try layer.quantizeWeight(request.params, shape: request.shape, transposed: request.transposed,
                                                      external: nil, measureError: true)
                let matrix = request.transposed ? try layer.transposedWeightMatrix(external: nil) : try layer.weightMatrix(external: nil)
                let expected = try QuantizedTensor(quantizing: matrix, shape: request.shape, params: request.params)
                let what = "\(layer.kind) \(settings.summary)"
                XCTAssertEqual(Array(weight.data), expected.data, what)
                XCTAssertEqual(Array(weight.scales), expected.scales, what)
                XCTAssertEqual(Array(weight.zeroPoints), weight.plan.storesZeroPoints ? expected.zeroPoints : Array(weight.zeroPoints), what)
                // The band quantizer sums errors in float lanes, QuantizedTensor in double: the
                // same SQNR to about 1e-6 dB.
                let error = try XCTUnwrap(weight.error)
                XCTAssertEqual(error.sqnrDB, try expected.error(against: matrix).sqnrDB, accuracy: 1e-4, what)
            }
        }
    }

    func testAWholeMatrixPlanLetsTheCallerReleaseTheSourceOnceItIsRead() throws {
        let values = (0..<(64 * 48)).map { Float($0 % 17) - 8 }
        var blockedAlongRows = QuantParams(format: .int4)
        blockedAlongRows.axis = 0  // groups cross rows: read whole
        var blockedAlongColumns = QuantParams(format: .int4)
        blockedAlongColumns.axis = 1  // bands of rows
        for (params, releases) in [(blockedAlongRows, 1), (blockedAlongColumns, 0)] {
            let plan = try QuantPlan(params: params, shape: [64, 48])
            var data = [UInt8](repeating: 0, count: plan.dataBytes)
            var scales = [UInt8](repeating: 0, count: plan.scaleBytes)
            var calls = 0
            try values.withUnsafeBytes { bytes in
                let source = try MatrixSource(bytes: bytes, type: .f32, rows: 64, columns: 48)
                try data.withUnsafeMutableBytes { d in
                    try scales.withUnsafeMutableBytes { s in
                        _ = try TiledQuantizer.quantize(plan, from: source, into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil),
                                                        measureError: true, sourceRead: { calls += 1 })
                    }
                }
            }
            XCTAssertEqual(calls, releases, "axis \(params.axis)")
            XCTAssertEqual(data, try QuantizedTensor(quantizing: values, shape: [64, 48], params: params).data)
        }
    }
}
