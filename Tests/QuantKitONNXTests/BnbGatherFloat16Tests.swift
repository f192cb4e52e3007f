import QuantKit
@testable import QuantKitONNX
import Foundation
import XCTest

/// Structure and error handling of the MatMulBnb4, GatherBlockQuantized and whole-model fp16/bf16
/// passes. Numbers are checked against ONNX Runtime and numpy in Tests/converter/test_*.py.
final class BnbGatherFloat16Tests: XCTestCase {
    /// A model: X [2, 3, k] → MatMul(W [k, n]) → Y, plus ids → Gather(table [rows, d]) → E.
    func model(k: Int, n: Int, rows: Int = 20, d: Int = 40, type: ONNXType = .float) -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.name = "g"
        let w = (0..<(k * n)).map { Float(($0 * 7919) % 101) / 50 - 1 }
        let t = (0..<(rows * d)).map { Float(($0 * 104729) % 97) / 40 - 1.2 }
        g.initializer = [TensorData.make(name: "W", floats: w, dims: [k, n], type: type),
                         TensorData.make(name: "T", floats: t, dims: [rows, d], type: type),
                         TensorData.make(name: "shape", int64s: [2, 3, Int64(n)], dims: [3])]
        g.node = [Onnx_NodeProto("MatMul", name: "mm", inputs: ["X", "W"], outputs: ["Y"]),
                  Onnx_NodeProto("Gather", name: "emb", inputs: ["T", "ids"], outputs: ["E"])]
        return ModelFixture.model(g)
    }

    func options(_ format: QuantFormat, block: Int = 32, scheme: QuantScheme = .symmetric) -> ConversionOptions {
        var o = ConversionOptions()
        o.defaults = LayerSettings(format: format, blockSize: block, scheme: scheme)
        o.embeddingBits = nil
        return o
    }

    func attribute(_ node: Onnx_NodeProto, _ name: String) -> Int64? {
        node.attribute.first { $0.name == name }?.i
    }

    func testNF4MatMulBecomesMatMulBnb4WithORTNamesAndSizes() throws {
        var m = model(k: 37, n: 5)
        let report = try Converter(options: options(.nf4, block: 64)).convert(&m, external: nil)
        let node = try XCTUnwrap(m.graph.node.first { $0.opType == "MatMulBnb4" })
        XCTAssertEqual(node.domain, "com.microsoft")
        XCTAssertEqual(node.name, "mm_Bnb4")
        XCTAssertEqual(node.input, ["X", "W_Bnb4", "W_absmax"])
        XCTAssertEqual(attribute(node, "K"), 37)
        XCTAssertEqual(attribute(node, "N"), 5)
        XCTAssertEqual(attribute(node, "block_size"), 64)
        XCTAssertEqual(attribute(node, "quant_type"), 1)
        let packed = try XCTUnwrap(m.graph.initializer.first { $0.name == "W_Bnb4" })
        XCTAssertEqual(packed.dims, [93])  // ⌈185 / 2⌉
        let absmax = try XCTUnwrap(m.graph.initializer.first { $0.name == "W_absmax" })
        XCTAssertEqual(absmax.dims, [3])  // ⌈185 / 64⌉
        XCTAssertFalse(m.graph.initializer.contains { $0.name == "W" })
        XCTAssertTrue(m.opsetImport.contains { $0.domain == "com.microsoft" })
        XCTAssertEqual(report.quantized.first?.target, "bnb4")
    }

    func testBnb4GemmBiasBecomesAdd() throws {
        var m = model(k: 32, n: 4)
        m.graph.initializer.append(TensorData.make(name: "Wt", floats: [Float](repeating: 0.5, count: 32 * 4), dims: [4, 32], type: .float))
        m.graph.initializer.append(TensorData.make(name: "C", floats: [1, 2, 3, 4], dims: [4], type: .float))
        m.graph.node = [Onnx_NodeProto("Gemm", name: "fc", inputs: ["X", "Wt", "C"], outputs: ["Y"],
                                       attributes: [.int("transB", 1), .float("beta", 2)])]
        _ = try Converter(options: options(.fp4Bnb)).convert(&m, external: nil)
        XCTAssertEqual(m.graph.node.map(\.opType), ["MatMulBnb4", "Add"])
        XCTAssertEqual(attribute(m.graph.node[0], "quant_type"), 0)
        XCTAssertEqual(m.graph.node[1].output, ["Y"])
        let bias = try XCTUnwrap(m.graph.initializer.first { $0.name == m.graph.node[1].input[1] })
        XCTAssertEqual(try TensorData.floats(of: bias, external: nil), [2, 4, 6, 8])  // beta folded
    }

    func testBnb4RejectsIntegerFormatsAndBadBlocks() {
        let layer = LinearLayerFixture.matMul(k: 32, n: 4)
        XCTAssertThrowsError(try Bnb4Pass().check(layer, LayerSettings(format: .int4, target: .bnb4)))
        XCTAssertThrowsError(try Bnb4Pass().check(layer, LayerSettings(format: .nf4, blockSize: 48)))
        XCTAssertNoThrow(try Bnb4Pass().check(layer, LayerSettings(format: .nf4, blockSize: 16)))
    }

    func testGatherGoesToGatherBlockQuantizedWhateverTheMatMulTarget() throws {
        for (format, type, bits, zeroPoints) in [(QuantFormat.int4, ONNXType.int4, nil as Int64?, false), (.uint4, .uint4, nil, true),
                                                 (.int8, .uint8, 8, false), (.uint8, .uint8, 8, true)] {
            var m = model(k: 32, n: 4, rows: 20, d: 40)
            var o = options(.nf4)
            o.rules = [LayerRule(pattern: "emb", settings: LayerSettings(format: format, blockSize: 16, scheme: format.spec.isUnsignedInteger ? .asymmetric : .symmetric))]
            _ = try Converter(options: o).convert(&m, external: nil)
            let node = try XCTUnwrap(m.graph.node.first { $0.opType == "GatherBlockQuantized" }, "\(format)")
            XCTAssertEqual(node.input.count, zeroPoints ? 4 : 3)
            XCTAssertEqual(node.input[1], "ids")
            XCTAssertEqual(attribute(node, "bits"), bits)
            XCTAssertEqual(attribute(node, "block_size"), 16)
            XCTAssertEqual(attribute(node, "quantize_axis"), 1)
            let data = try XCTUnwrap(m.graph.initializer.first { $0.name == node.input[0] })
            XCTAssertEqual(data.dataType, type.rawValue)
            XCTAssertEqual(data.dims, [20, 40])
            let scales = try XCTUnwrap(m.graph.initializer.first { $0.name == node.input[2] })
            XCTAssertEqual(scales.dims, [20, 3])  // ⌈40 / 16⌉
            XCTAssertFalse(m.graph.initializer.contains { $0.name == "T" })
        }
    }

    func testGatherSkipsFormatsWithoutAKernel() throws {
        var m = model(k: 32, n: 4)
        var o = options(.int4)
        o.rules = [LayerRule(pattern: "emb", settings: LayerSettings(format: .nf4, blockSize: 32))]
        let report = try Converter(options: o).convert(&m, external: nil)
        let entry = try XCTUnwrap(report.layers.first { $0.node == "emb" })
        XCTAssertNotNil(entry.skipped)
        XCTAssertTrue(m.graph.node.contains { $0.opType == "Gather" })
    }

    func testFloat16StoresHalvesBehindCasts() throws {
        var m = model(k: 32, n: 8)
        m.graph.initializer.append(TensorData.make(name: "big", floats: [Float](repeating: 1e6, count: 32), dims: [32], type: .float))
        m.graph.initializer.append(TensorData.make(name: "eps", floats: [1e-5], dims: [], type: .float))
        let report = try Float16Pass.apply(to: &m, format: .fp16)
        XCTAssertEqual(m.graph.node.prefix(2).map(\.opType), ["Cast", "Cast"])
        XCTAssertEqual(Set(m.graph.node.prefix(2).flatMap(\.output)), ["W", "T"])
        let w = try XCTUnwrap(m.graph.initializer.first { $0.name == "W_fp16" })
        XCTAssertEqual(w.dataType, ONNXType.float16.rawValue)
        XCTAssertEqual(w.rawData.count, 32 * 8 * 2)
        XCTAssertEqual(m.graph.initializer.first { $0.name == "shape" }?.dataType, ONNXType.int64.rawValue)
        XCTAssertEqual(m.graph.initializer.first { $0.name == "big" }?.dataType, ONNXType.float.rawValue)
        XCTAssertEqual(m.graph.initializer.first { $0.name == "eps" }?.dataType, ONNXType.float.rawValue)
        XCTAssertEqual(report.quantized.count, 2)
        XCTAssertEqual(report.skipped.count, 2)
        XCTAssertTrue(report.skipped.contains { $0.weight == "big" && $0.skipped!.contains("range") })
        // An empty tensor has no values to convert (and no buffer to convert them into).
        for type in [ONNXType.float16, .bfloat16] {
            XCTAssertEqual(TensorData.make(name: "none", floats: [], dims: [0], type: type).rawData.count, 0)
        }
    }

    func testBFloat16NeedsOpset13AndRejectsOtherFormats() throws {
        var m = model(k: 32, n: 8)
        m.opsetImport[0].version = 12
        XCTAssertThrowsError(try Float16Pass.apply(to: &m, format: .bf16))
        XCTAssertThrowsError(try Float16Pass.apply(to: &m, format: .int8))
        m.opsetImport[0].version = 13
        _ = try Float16Pass.apply(to: &m, format: .bf16)
        XCTAssertEqual(m.graph.initializer.first { $0.name == "W_bf16" }?.dataType, ONNXType.bfloat16.rawValue)
    }

    func testFloat16FollowsPreIR4GraphInputs() throws {
        var m = model(k: 32, n: 8)
        m.irVersion = 3
        var input = Onnx_ValueInfoProto()
        input.name = "W"
        input.type.tensorType.elemType = ONNXType.float.rawValue
        m.graph.input = [input]
        _ = try Float16Pass.apply(to: &m, format: .fp16)
        XCTAssertEqual(m.graph.input.map(\.name), ["W_fp16"])
        XCTAssertEqual(m.graph.input[0].type.tensorType.elemType, ONNXType.float16.rawValue)
        // From IR 4 an initializer listed as an input may be overridden: it stays as it is.
        var n = model(k: 32, n: 8)
        n.graph.input = [input]
        _ = try Float16Pass.apply(to: &n, format: .fp16)
        XCTAssertEqual(n.graph.initializer.first { $0.name == "W" }?.dataType, ONNXType.float.rawValue)
    }
}

/// Linear layers for `check` tests, matched from a one-node graph.
enum LinearLayerFixture {
    static func matMul(k: Int, n: Int) -> LinearLayer {
        let w = TensorData.make(name: "W", floats: [Float](repeating: 1, count: k * n), dims: [k, n], type: .float)
        let node = Onnx_NodeProto("MatMul", name: "mm", inputs: ["X", "W"], outputs: ["Y"])
        // The fixture is well formed, so matching cannot fail.
        return try! LinearLayer.match(node: node, at: 0, constant: { $0 == "W" ? w : nil }, external: nil)!
    }
}

/// Test models around a graph.
enum ModelFixture {
    /// IR version 8, importing the default domain at `opset`.
    static func model(_ graph: Onnx_GraphProto, opset: Int = 17) -> Onnx_ModelProto {
        var m = Onnx_ModelProto()
        m.irVersion = 8
        var entry = Onnx_OperatorSetIdProto()
        entry.version = Int64(opset)
        m.opsetImport = [entry]
        m.graph = graph
        return m
    }
}
