import FoundationEssentials
import QuantKit

/// Raises a model's default-domain opset and rewrites the nodes whose inputs, attributes or meaning
/// changed on the way, so the model means what it meant before (e.g. ReduceMean's `axes` attribute
/// becomes an input at opset 18; ONNX Runtime's own quantizer forgets that and writes invalid models).
///
/// `changes` lists, per operator, every version in 8...23 at which the `onnx` package's schemas show
/// a different signature (inputs, outputs, attributes), plus the changes of meaning that keep the
/// signature (Softmax's axis, GridSample's modes, ...); the Python test checks it against the schemas.
/// A change this file cannot rewrite throws instead of leaving a broken node.
public enum OpsetUpgrade {
    enum Step: Equatable {
        /// Types or optional attributes were added: an old node means the same.
        case compatible
        /// The `axes` attribute became input 1 (Reduce*, Squeeze, Unsqueeze).
        case axesToInput
        case splitToInput, splitNumOutputs, padInputs, clipInputs, sliceInputs, topKInput, dropoutRatio
        /// Opset 13 changed `axis` from "flatten to 2-D there" to "this one axis": only -1 agrees.
        case lastAxisOnly
        case batchNormSpatial, batchNormOutputs, roiAlignMode, gridSampleMode
        /// The operator was deprecated in favour of one with the same meaning.
        case renamed(String)
        case unsupported(String)
    }

    static let changes: [String: [Int: Step]] = [
        "ArgMax": [12: .compatible],
        "ArgMin": [12: .compatible],
        "AveragePool": [10: .compatible, 19: .compatible],
        "BatchNormalization": [9: .batchNormSpatial, 14: .batchNormOutputs],
        "Cast": [19: .compatible],
        "CastLike": [19: .compatible],
        "Clip": [11: .clipInputs],
        "Constant": [11: .compatible, 12: .compatible],
        "DFT": [20: .unsupported("its axis attribute became an input")],
        "DepthToSpace": [11: .compatible],
        "DequantizeLinear": [13: .compatible, 19: .compatible, 21: .compatible, 23: .compatible],
        "Dropout": [12: .dropoutRatio],
        "GRU": [14: .compatible],
        "GatherND": [12: .compatible],
        "Gemm": [11: .compatible],
        "GridSample": [20: .gridSampleMode],
        "GroupNormalization": [21: .unsupported("its scale and bias changed from one value per group to one per channel")],
        "Hardmax": [13: .lastAxisOnly],
        "LSTM": [14: .compatible],
        "LogSoftmax": [13: .lastAxisOnly],
        "LpPool": [18: .compatible],
        "MaxPool": [8: .compatible, 10: .compatible],
        "OptionalHasElement": [18: .compatible],
        "Pad": [11: .padInputs, 18: .compatible],
        "QuantizeLinear": [13: .compatible, 19: .compatible, 21: .compatible, 23: .compatible],
        "RNN": [14: .compatible],
        "ReduceL1": [18: .axesToInput],
        "ReduceL2": [18: .axesToInput],
        "ReduceLogSum": [18: .axesToInput],
        "ReduceLogSumExp": [18: .axesToInput],
        "ReduceMax": [18: .axesToInput],
        "ReduceMean": [18: .axesToInput],
        "ReduceMin": [18: .axesToInput],
        "ReduceProd": [18: .axesToInput],
        "ReduceSum": [13: .axesToInput],
        "ReduceSumSquare": [18: .axesToInput],
        "Reshape": [14: .compatible],
        "Resize": [11: .unsupported("opset 11 changed its inputs and its coordinate mapping"), 13: .compatible, 18: .compatible],
        "RoiAlign": [16: .roiAlignMode],
        "Scan": [9: .unsupported("its inputs and attributes changed")],
        "Scatter": [11: .renamed("ScatterElements")],
        "ScatterElements": [16: .compatible],
        "ScatterND": [16: .compatible],
        "Shape": [15: .compatible],
        "Slice": [10: .sliceInputs],
        "Softmax": [13: .lastAxisOnly],
        "Split": [13: .splitToInput, 18: .splitNumOutputs],
        "Squeeze": [13: .axesToInput],
        "TopK": [10: .topKInput, 11: .compatible],
        "Unsqueeze": [13: .axesToInput],
        "Upsample": [9: .unsupported("its scales attribute became an input"), 10: .unsupported("it is deprecated: use Resize")],
    ]

    /// The lowest IR version that may import a default opset (from onnx.helper.VERSION_TABLE).
    static func minimumIRVersion(forOpset opset: Int) -> Int64 {
        switch opset {
        case ..<9: return 3
        case 9: return 4
        case 10: return 5
        case 11: return 6
        case 12...14: return 7
        case 15...18: return 8
        case 19...20: return 9
        case 21...22: return 10
        default: return 11
        }
    }

    /// Raises the default opset import (and the IR version, when too low) to `version` and rewrites
    /// the nodes of every graph, subgraph and local function that need it. Returns the names of the
    /// nodes it changed (a node without a name by its first output).
    public static func upgrade(_ model: inout Onnx_ModelProto, to version: Int) throws -> [String] {
        let from = Converter.opsetVersion(of: model, domain: "")
        guard version > from else { return [] }
        guard version <= 23 else { throw QuantError(.unsupported, "upgrading to opset \(version) is not supported (at most 23)") }
        guard from == 0 || from >= 7 else {
            throw QuantError(.unsupported, "upgrading a model from opset \(from) is not supported (at least 7)")
        }
        var names = ModelNames(model)
        var changed: [String] = []
        try ModelWalk.transformGraphs(&model.graph) { graph, _ in
            var sink = ConstantSink(inFunction: false)
            let types = elementTypes(graph)
            graph.node = try upgradeNodes(graph.node, from: from, to: version, names: &names, sink: &sink,
                                          changed: &changed, types: types)
            graph.initializer += sink.initializers
        }
        for f in model.functions.indices {
            let aliases = ["", "ai.onnx"]
            guard let i = model.functions[f].opsetImport.firstIndex(where: { aliases.contains($0.domain) }),
                  model.functions[f].opsetImport[i].version < Int64(version) else { continue }
            let functionFrom = Int(model.functions[f].opsetImport[i].version)
            var sink = ConstantSink(inFunction: true)
            model.functions[f].node = try upgradeNodes(model.functions[f].node, from: functionFrom, to: version, names: &names,
                                                       sink: &sink, changed: &changed, types: [:])
            model.functions[f].opsetImport[i].version = Int64(version)
        }
        setDefaultOpset(&model, version)
        model.irVersion = max(model.irVersion, minimumIRVersion(forOpset: version))
        return changed
    }

    static func setDefaultOpset(_ model: inout Onnx_ModelProto, _ version: Int) {
        if let i = model.opsetImport.firstIndex(where: { $0.domain.isEmpty || $0.domain == "ai.onnx" }) {
            model.opsetImport[i].version = Int64(version)
        } else {
            var entry = Onnx_OperatorSetIdProto()
            entry.version = Int64(version)
            model.opsetImport.append(entry)
        }
    }

    /// Element types of the values a graph declares (inputs, outputs, value_info, initializers).
    static func elementTypes(_ graph: Onnx_GraphProto) -> [String: Int32] {
        var types: [String: Int32] = [:]
        for value in graph.input + graph.output + graph.valueInfo {
            guard case .tensorType(let tensor)? = value.type.value else { continue }
            types[value.name] = tensor.elemType
        }
        for tensor in graph.initializer { types[tensor.name] = tensor.dataType }
        return types
    }

    /// New constants: initializers in a graph, `Constant` nodes in a function (which has none).
    struct ConstantSink {
        let inFunction: Bool
        var initializers: [Onnx_TensorProto] = []
        var nodes: [Onnx_NodeProto] = []

        mutating func add(_ tensor: Onnx_TensorProto, names: inout ModelNames) -> String {
            if !inFunction {
                initializers.append(tensor)
                return tensor.name
            }
            var value = Onnx_AttributeProto()
            value.name = "value"
            value.type = .tensor
            value.t = tensor
            value.t.name = ""
            nodes.append(Onnx_NodeProto("Constant", name: names.unique("\(tensor.name)_Constant"), inputs: [], outputs: [tensor.name], attributes: [value]))
            return tensor.name
        }
    }

    static func upgradeNodes(
        _ nodes: [Onnx_NodeProto], from: Int, to: Int, names: inout ModelNames, sink: inout ConstantSink,
        changed: inout [String], types: [String: Int32]
    ) throws -> [Onnx_NodeProto] {
        var result: [Onnx_NodeProto] = []
        result.reserveCapacity(nodes.count)
        for original in nodes {
            var node = original
            if node.domain.isEmpty || node.domain == "ai.onnx", changes[node.opType] != nil {
                // The rewriter borrows the name set and the sink (swapped, not copied: both are large).
                var rewriter = NodeRewriter(node: node, to: to, names: ModelNames(Onnx_ModelProto()),
                                            sink: ConstantSink(inFunction: sink.inFunction), types: types)
                swap(&names, &rewriter.names)
                swap(&sink, &rewriter.sink)
                var version = from
                while let steps = changes[rewriter.node.opType],
                      let step = steps.keys.filter({ $0 > version && $0 <= to }).min() {
                    try rewriter.apply(steps[step]!, at: step)
                    version = step
                }
                swap(&names, &rewriter.names)
                swap(&sink, &rewriter.sink)
                result += sink.nodes  // Constant nodes (functions), then CastLike nodes that read them
                sink.nodes = []
                result += rewriter.extraNodes
                if rewriter.node != original {
                    node = rewriter.node
                    changed.append(node.name.isEmpty ? (node.output.first ?? "") : node.name)
                }
            }
            result.append(node)
        }
        return result
    }
}

/// Rewrites one node for one version step; new constants go to the sink, helper nodes (CastLike)
/// before the node.
struct NodeRewriter {
    var node: Onnx_NodeProto
    let to: Int
    var names: ModelNames
    var sink: OpsetUpgrade.ConstantSink
    let types: [String: Int32]
    var extraNodes: [Onnx_NodeProto] = []

    var label: String { "\(node.opType) node '\(node.name.isEmpty ? (node.output.first ?? "") : node.name)'" }

    mutating func apply(_ step: OpsetUpgrade.Step, at version: Int) throws {
        switch step {
        case .compatible: break
        case .axesToInput:
            if let axes = take("axes") { setInput(1, int64s(axes.ints, "axes")) }
        case .splitToInput:
            if let split = take("split") { setInput(1, int64s(split.ints, "split")) }
        case .splitNumOutputs:
            // Opset 18 wants the sizes or the number of parts; the old equal split is the latter.
            if node.input.count < 2 || node.input[1].isEmpty, attribute("num_outputs") == nil {
                node.attribute.append(.int("num_outputs", node.output.count))
            }
        case .padInputs:
            guard let pads = take("pads") else { throw QuantError(.invalidModel, "\(label) has no pads attribute") }
            setInput(1, int64s(pads.ints, "pads"))
            if let value = take("value"), value.f != 0 { setInput(2, try scalar(value.f, like: node.input[0], "constant_value")) }
        case .clipInputs:
            if let low = take("min") { setInput(1, try scalar(low.f, like: node.input[0], "min")) }
            if let high = take("max") { setInput(2, try scalar(high.f, like: node.input[0], "max")) }
        case .sliceInputs:
            guard let starts = take("starts"), let ends = take("ends") else {
                throw QuantError(.invalidModel, "\(label) lacks starts or ends")
            }
            setInput(1, int64s(starts.ints, "starts"))
            setInput(2, int64s(ends.ints, "ends"))
            if let axes = take("axes") { setInput(3, int64s(axes.ints, "axes")) }
        case .topKInput:
            guard let k = take("k") else { throw QuantError(.invalidModel, "\(label) has no k attribute") }
            setInput(1, int64s([k.i], "k"))
        case .dropoutRatio:
            if let ratio = take("ratio") {
                setInput(1, sink.add(TensorData.make(name: names.unique(base("ratio")), floats: [ratio.f], dims: [], type: .float), names: &names))
            }
        case .lastAxisOnly:
            let axis = attribute("axis")?.i ?? 1
            guard axis == -1 else {
                throw QuantError(.unsupported, "\(label): opset 13 changed what axis means (from flattening to 2-D at the axis to one axis); only axis = -1 keeps its meaning, this node has axis \(axis)")
            }
        case .batchNormSpatial:
            if let spatial = take("spatial"), spatial.i != 1 {
                throw QuantError(.unsupported, "\(label) has spatial = \(spatial.i), which opset 9 removed")
            }
        case .batchNormOutputs:
            guard node.output.dropFirst().allSatisfy(\.isEmpty) else {
                throw QuantError(.unsupported, "\(label) uses training outputs, which opset 14 redefined")
            }
        case .roiAlignMode:
            if attribute("coordinate_transformation_mode") == nil {
                node.attribute.append(.string("coordinate_transformation_mode", "output_half_pixel"))  // the old behaviour
            }
        case .gridSampleMode:
            if let i = node.attribute.firstIndex(where: { $0.name == "mode" }) {
                let renamed = ["bilinear": "linear", "bicubic": "cubic"]
                if let new = renamed[String(decoding: node.attribute[i].s, as: UTF8.self)] { node.attribute[i].s = Data(new.utf8) }
            }
        case .renamed(let op):
            node.opType = op
        case .unsupported(let why):
            throw QuantError(.unsupported, "\(label) cannot be upgraded to opset \(to): at opset \(version) \(why)")
        }
    }

    func attribute(_ name: String) -> Onnx_AttributeProto? { node.attribute.first { $0.name == name } }

    /// Removes and returns an attribute.
    mutating func take(_ name: String) -> Onnx_AttributeProto? {
        guard let i = node.attribute.firstIndex(where: { $0.name == name }) else { return nil }
        return node.attribute.remove(at: i)
    }

    mutating func setInput(_ index: Int, _ name: String) {
        while node.input.count <= index { node.input.append("") }
        node.input[index] = name
    }

    func base(_ what: String) -> String { "\(node.name.isEmpty ? (node.output.first ?? "node") : node.name)_\(what)" }

    mutating func int64s(_ values: [Int64], _ what: String) -> String {
        sink.add(TensorData.make(name: names.unique(base(what)), int64s: values, dims: [values.count]), names: &names)
    }

    /// A scalar of `input`'s element type: a float32 constant cast with CastLike (opset 15+), or
    /// typed directly when the graph declares the input's type.
    mutating func scalar(_ value: Float, like input: String, _ what: String) throws -> String {
        if to >= 15 {
            let constant = sink.add(TensorData.make(name: names.unique(base("\(what)_float")), floats: [value], dims: [], type: .float), names: &names)
            let cast = names.unique(base(what))
            extraNodes.append(Onnx_NodeProto("CastLike", name: names.unique(base("\(what)_CastLike")), inputs: [constant, input], outputs: [cast]))
            return cast
        }
        guard let raw = types[input], let type = ONNXType(rawValue: raw), type.isFloat else {
            throw QuantError(.unsupported, "\(label): its \(what) attribute becomes an input of the input's type, which the graph does not declare as a float type")
        }
        let name = names.unique(base(what))
        let tensor = type == .double
            ? TensorData.make(name: name, type: .double, dims: [], raw: withUnsafeBytes(of: Double(value)) { [UInt8]($0) })
            : TensorData.make(name: name, floats: [value], dims: [], type: type)
        return sink.add(tensor, names: &names)
    }
}

extension Onnx_AttributeProto {
    static func string(_ name: String, _ value: String) -> Onnx_AttributeProto {
        var a = Onnx_AttributeProto()
        a.name = name
        a.type = .string
        a.s = Data(value.utf8)
        return a
    }
}
