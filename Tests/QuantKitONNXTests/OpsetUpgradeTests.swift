import QuantKit
@testable import QuantKitONNX
import XCTest

/// OpsetUpgrade on small graphs (the Python tests run upgraded models in ONNX Runtime).
final class OpsetUpgradeTests: XCTestCase {
    func model(opset: Int, nodes: [Onnx_NodeProto]) -> Onnx_ModelProto {
        var g = Onnx_GraphProto()
        g.node = nodes
        return ModelFixture.model(g, opset: opset)
    }

    func ints(_ name: String, _ values: [Int64]) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .ints
        a.ints = values
        return a
    }

    func testReduceMeanAxesBecomeAnInt64InitializerAt18() throws {
        var m = model(opset: 17, nodes: [Onnx_NodeProto("ReduceMean", name: "mean", inputs: ["x"], outputs: ["y"], attributes: [ints("axes", [-1]), .int("keepdims", 1)])])
        let changed = try OpsetUpgrade.upgrade(&m, to: 21)
        XCTAssertEqual(changed, ["mean"])
        XCTAssertEqual(Converter.opsetVersion(of: m, domain: ""), 21)
        XCTAssertEqual(m.irVersion, 10)
        let node = m.graph.node[0]
        XCTAssertEqual(node.attribute.map(\.name), ["keepdims"])
        XCTAssertEqual(node.input.count, 2)
        let axes = try XCTUnwrap(m.graph.initializer.first { $0.name == node.input[1] })
        XCTAssertEqual(axes.dataType, ONNXType.int64.rawValue)
        XCTAssertEqual(axes.dims, [1])
        XCTAssertEqual(axes.rawData.withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }, -1)
    }

    func testUnchangedOperatorsAndUpToDateNodesAreLeftAlone() throws {
        var m = model(opset: 13, nodes: [
            Onnx_NodeProto("MatMul", name: "mm", inputs: ["a", "b"], outputs: ["c"]),
            Onnx_NodeProto("Squeeze", name: "sq", inputs: ["c", "axes"], outputs: ["d"]),  // already inputs at 13
            Onnx_NodeProto("ReduceSum", name: "rs", inputs: ["d"], outputs: ["e"]),       // no axes: reduce all, same at 13
        ])
        let before = m.graph.node
        XCTAssertEqual(try OpsetUpgrade.upgrade(&m, to: 21), [])
        XCTAssertEqual(m.graph.node, before)
    }

    func testSplitGetsNumOutputsAt18() throws {
        var m = model(opset: 11, nodes: [Onnx_NodeProto("Split", name: "sp", inputs: ["x"], outputs: ["a", "b", "c"], attributes: [.int("axis", 1)])])
        XCTAssertEqual(try OpsetUpgrade.upgrade(&m, to: 21), ["sp"])
        XCTAssertEqual(m.graph.node[0].attribute.first { $0.name == "num_outputs" }?.i, 3)
    }

    func testSoftmaxWithAnAxisOtherThanLastIsRefused() {
        var m = model(opset: 11, nodes: [Onnx_NodeProto("Softmax", name: "sm", inputs: ["x"], outputs: ["y"], attributes: [.int("axis", 1)])])
        XCTAssertThrowsError(try OpsetUpgrade.upgrade(&m, to: 21)) { error in
            let e = error as? QuantError
            XCTAssertEqual(e?.status, .unsupported)
            XCTAssertTrue(e?.message.contains("Softmax node 'sm'") == true, e?.message ?? "")
        }
        var ok = model(opset: 11, nodes: [Onnx_NodeProto("Softmax", name: "sm", inputs: ["x"], outputs: ["y"], attributes: [.int("axis", -1)])])
        XCTAssertEqual(try OpsetUpgrade.upgrade(&ok, to: 21), [])
    }

    func testGroupNormalizationIsRefusedWithBothVersions() {
        var m = model(opset: 18, nodes: [Onnx_NodeProto("GroupNormalization", name: "gn", inputs: ["x", "s", "b"], outputs: ["y"], attributes: [.int("num_groups", 2)])])
        XCTAssertThrowsError(try OpsetUpgrade.upgrade(&m, to: 21)) { error in
            XCTAssertTrue((error as? QuantError)?.message.contains("opset 21") == true)
        }
    }

    func testClipBelowOpset15NeedsTheDeclaredType() throws {
        var m = model(opset: 9, nodes: [Onnx_NodeProto("Clip", name: "clip", inputs: ["x"], outputs: ["y"], attributes: [.float("min", -1), .float("max", 1)])])
        XCTAssertThrowsError(try OpsetUpgrade.upgrade(&m, to: 13))  // type of x unknown
        var input = Onnx_ValueInfoProto()
        input.name = "x"
        input.type.tensorType.elemType = ONNXType.float16.rawValue
        m.graph.input = [input]
        XCTAssertEqual(try OpsetUpgrade.upgrade(&m, to: 13), ["clip"])
        XCTAssertEqual(m.graph.node[0].input.count, 3)
        XCTAssertEqual(m.graph.initializer.map(\.dataType), [ONNXType.float16.rawValue, ONNXType.float16.rawValue])
    }

    func testFunctionNodesGetConstantNodes() throws {
        var m = model(opset: 17, nodes: [])
        var f = Onnx_FunctionProto()
        f.name = "rms"
        f.domain = "local"
        var entry = Onnx_OperatorSetIdProto()
        entry.version = 17
        f.opsetImport = [entry]
        f.node = [Onnx_NodeProto("ReduceMean", name: "fmean", inputs: ["x"], outputs: ["y"], attributes: [ints("axes", [1])])]
        m.functions = [f]
        XCTAssertEqual(try OpsetUpgrade.upgrade(&m, to: 21), ["fmean"])
        let nodes = m.functions[0].node
        XCTAssertEqual(nodes.map(\.opType), ["Constant", "ReduceMean"])
        XCTAssertEqual(nodes[0].output, [nodes[1].input[1]])
        XCTAssertEqual(m.functions[0].opsetImport[0].version, 21)
    }
}
