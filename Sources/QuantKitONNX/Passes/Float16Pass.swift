import QuantKit

/// Whole-model half precision (`--format fp16|bf16`), weight-only: every float32 initializer is
/// stored as float16 (or bfloat16) and read through a `Cast` back to float32, so the file is about
/// half the size while every node still computes what it did, in float32. Runs on any runtime
/// (ONNX Runtime's CPU provider has few bfloat16 kernels, so computing in bf16 is no option), and
/// the stored values are exactly the round-to-nearest-even halves of the originals.
///
/// The stored tensor is renamed `<name>_fp16` (`_bf16`) and the Cast outputs the original name,
/// so consumers, subgraphs reading it from their outer scope, and graph outputs stay untouched.
/// Left alone: non-float32 tensors (integers: shapes, indices), tensors a graph input can override
/// (IR ≥ 4), tiny tensors (below `minimumElements`; scalars gain nothing and cost a node), and
/// fp16 tensors holding a finite value beyond the fp16 range (it would become infinite).
public enum Float16Pass {
    /// Tensors with fewer elements stay in float32.
    public static let minimumElements = 16

    /// Converts `model` in place. `format` is `.fp16` or `.bf16`; `external` reads weights stored
    /// in side files. The converted halves are written inline, or, with a `spool`, go to the
    /// output's side file as each one is made (so the converted model is never held in memory
    /// whole; save with `ONNXModel.save(spool:reader:)`). One report entry per float32
    /// initializer: converted (settings "fp16 → Cast") or skipped with the reason.
    public static func apply(to model: inout Onnx_ModelProto, format: QuantFormat, external: ExternalDataReader? = nil,
                             spool: ExternalDataSpool? = nil) throws -> ConversionReport {
        let type: ONNXType
        switch format {
        case .fp16: type = .float16
        case .bf16: type = .bfloat16
        default: throw QuantError(.invalidArgument, "whole-model half precision takes fp16 or bf16, not \(format.spec.name)")
        }
        let opset = Converter.opsetVersion(of: model, domain: "")
        // Cast takes its `to` as an int from opset 6 and bfloat16 from opset 13.
        let needed = type == .bfloat16 ? 13 : 6
        guard opset >= needed else {
            throw QuantError(.unsupported, "a Cast from \(type.name) needs opset \(needed), the model has \(opset)")
        }
        var report = ConversionReport()
        report.opsetBefore = opset
        report.opsetAfter = opset
        var names = ModelNames(model)
        let irVersion = model.irVersion
        try ModelWalk.transformGraphs(&model.graph) { graph, depth in
            try convert(&graph, depth: depth, to: type, irVersion: irVersion, names: &names, external: external, spool: spool,
                        report: &report)
        }
        return report
    }

    static func convert(_ graph: inout Onnx_GraphProto, depth: Int, to type: ONNXType, irVersion: Int64, names: inout ModelNames,
                        external: ExternalDataReader?, spool: ExternalDataSpool?, report: inout ConversionReport) throws {
        let inputs = Set(graph.input.map(\.name))
        let suffix = type == .float16 ? "fp16" : "bf16"
        var casts: [Onnx_NodeProto] = []
        for i in graph.initializer.indices where graph.initializer[i].dataType == ONNXType.float.rawValue {
            let tensor = graph.initializer[i]
            var entry = ConversionReport.Layer(node: "", opType: "Cast", weight: tensor.name, depth: depth, role: .linear, k: 0, n: 0,
                                               settings: nil, target: nil, bytesBefore: TensorData.storedBytes(of: tensor), bytesAfter: 0,
                                               sqnrDB: nil, maxAbsError: nil, skipped: nil)
            entry.bytesAfter = entry.bytesBefore
            defer { report.layers.append(entry) }
            let count = try TensorData.elementCount(of: tensor)
            entry.k = count
            entry.n = 1
            let overridable = irVersion >= 4 && inputs.contains(tensor.name)
            if overridable { entry.skipped = "a graph input can override it"; continue }
            if count < minimumElements { entry.skipped = "only \(count) values (minimum \(minimumElements))"; continue }
            let values = try TensorData.floats(of: tensor, external: external)
            if type == .float16, let i = values.withUnsafeBufferPointer({
                HalfConversion.firstIndex(magnitudeAtLeast: 65520, in: $0.baseAddress!, count: $0.count, finiteOnly: true)
            }) {
                entry.skipped = "it holds \(values[i]), beyond the float16 range"
                continue
            }
            let stored = names.unique("\(tensor.name)_\(suffix)")
            var half = TensorData.make(name: stored, floats: values, dims: try TensorData.shape(of: tensor), type: type)
            half.docString = tensor.docString
            entry.bytesAfter = half.rawData.count
            let error = Self.error(of: half, against: values, bfloat: type == .bfloat16)
            entry.sqnrDB = error.sqnrDB
            entry.maxAbsError = error.maxAbsError
            try spool?.take(&half)
            graph.initializer[i] = half
            // Before IR 4 every initializer is also listed as a graph input: that entry follows it.
            if let j = graph.input.firstIndex(where: { $0.name == tensor.name }) {
                graph.input[j].name = stored
                graph.input[j].type.tensorType.elemType = type.rawValue
            }
            let nodeName = names.unique("\(tensor.name)_cast")
            casts.append(Onnx_NodeProto("Cast", name: nodeName, inputs: [stored], outputs: [tensor.name],
                                        attributes: [.int("to", Int(ONNXType.float.rawValue))]))
            entry.node = nodeName
            entry.settings = "\(suffix) → Cast to float32"
            entry.target = "cast"
        }
        // The casts read initializers only, so they can go first in the graph's node order.
        if !casts.isEmpty { graph.node.insert(contentsOf: casts, at: 0) }
    }

    /// The error of the stored halves against the float32 values, a cache-sized piece at a time.
    static func error(of half: Onnx_TensorProto, against values: [Float], bfloat: Bool) -> ErrorStats {
        let piece = 4096
        let restored = UnsafeMutablePointer<Float>.allocate(capacity: piece)
        defer { restored.deallocate() }
        var sums = ErrorAccumulator()
        half.rawData.withUnsafeBytes { raw in
            values.withUnsafeBufferPointer { reference in
                let halves = raw.bindMemory(to: UInt16.self)
                var start = 0
                while start < reference.count {
                    let count = min(piece, reference.count - start)
                    HalfConversion.widen(halves.baseAddress! + start, count: count, bfloat: bfloat, into: restored)
                    sums.add(reference: reference.baseAddress! + start, actual: restored, count: count)
                    start += count
                }
            }
        }
        return sums.stats
    }
}
