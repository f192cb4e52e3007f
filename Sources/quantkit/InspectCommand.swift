import ArgumentParser
import Foundation
import QuantKit
import QuantKitONNX

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a model's operators, parameters per dtype, and which nodes can be quantized.")

    @Argument(help: "The ONNX model to inspect.")
    var input: String

    @Flag(help: "Print JSON on stdout.")
    var json = false

    func run() throws {
        let model: ONNXModel
        do {
            model = try ONNXModel.load(path: input)
        } catch {
            throw fail(error, during: .reading)
        }
        let summary = ModelSummary(model.proto, external: ExternalDataReader(modelPath: input))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(summary), as: UTF8.self))
        } else {
            print(summary.render(path: input))
        }
    }
}

/// What `inspect` reports about a model.
struct ModelSummary: Encodable {
    struct DTypeTotal: Encodable {
        var dtype: String
        var tensors = 0
        var elements = 0
        var bytes = 0
    }

    struct Candidate: Encodable {
        var node: String
        var opType: String
        var weight: String?
        var shape: [Int]?
        var quantizable: Bool
        var reason: String?
    }

    var irVersion: Int64
    var producer: String
    var opsets: [String: Int64]
    var nodes = 0
    var subgraphs = -1
    var operators: [String: Int] = [:]
    var parameters: [DTypeTotal] = []
    var candidates: [Candidate] = []

    init(_ model: Onnx_ModelProto, external: ExternalDataReader) {
        irVersion = model.irVersion
        producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        opsets = Dictionary(model.opsetImport.map { ($0.domain.isEmpty ? "ai.onnx" : $0.domain, $0.version) }, uniquingKeysWith: max)
        var totals: [Int32: DTypeTotal] = [:]
        var scanned: [(Onnx_GraphProto, [String: Onnx_TensorProto])] = []
        collect(model.graph, scope: [:], into: &scanned)
        for (graph, scope) in scanned {
            subgraphs += 1
            nodes += graph.node.count
            for node in graph.node {
                let key = node.domain.isEmpty || node.domain == "ai.onnx" ? node.opType : "\(node.domain)::\(node.opType)"
                operators[key, default: 0] += 1
            }
            for tensor in graph.initializer {
                let name = ONNXType(rawValue: tensor.dataType)?.name ?? "type \(tensor.dataType)"
                var total = totals[tensor.dataType] ?? DTypeTotal(dtype: name)
                total.tensors += 1
                total.elements += (try? TensorData.elementCount(of: tensor)) ?? 0
                total.bytes += TensorData.storedBytes(of: tensor)
                totals[tensor.dataType] = total
            }
            for (index, node) in graph.node.enumerated() where LinearLayer.opTypes.contains(node.opType) {
                do {
                    guard let layer = try LinearLayer.match(node: node, at: index, constant: { scope[$0] }, external: external) else { continue }
                    candidates.append(Candidate(node: node.name, opType: node.opType, weight: layer.weight.name, shape: [layer.k, layer.n], quantizable: true))
                } catch {
                    candidates.append(Candidate(node: node.name, opType: node.opType, quantizable: false, reason: "\(error)"))
                }
            }
        }
        parameters = totals.values.sorted { $0.bytes > $1.bytes }
    }

    /// Each graph with the constants visible in it (outer initializers included).
    private func collect(_ graph: Onnx_GraphProto, scope outer: [String: Onnx_TensorProto], into list: inout [(Onnx_GraphProto, [String: Onnx_TensorProto])]) {
        var scope = outer
        let inputs = Set(graph.input.map(\.name))
        for tensor in graph.initializer where !inputs.contains(tensor.name) { scope[tensor.name] = tensor }
        list.append((graph, scope))
        for node in graph.node {
            for attribute in node.attribute {
                if attribute.hasG { collect(attribute.g, scope: scope, into: &list) }
                for g in attribute.graphs { collect(g, scope: scope, into: &list) }
            }
        }
    }

    func render(path: String) -> String {
        var lines = ["\(path): IR \(irVersion), opsets \(opsets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))"
                     + (producer.isEmpty ? "" : ", produced by \(producer)")]
        lines.append("  \(nodes) nodes" + (subgraphs > 0 ? " (\(subgraphs) subgraphs)" : ""))
        lines.append("  operators: " + operators.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        lines.append("  parameters:")
        for total in parameters {
            lines.append("    \(total.dtype.padding(10)) \(String(total.tensors).padding(5)) tensors  \(Self.count(total.elements).padding(8)) elements  \(SummaryText.bytes(total.bytes))")
        }
        let ready = candidates.filter(\.quantizable)
        let weights = ready.reduce(0) { $0 + ($1.shape?.reduce(1, *) ?? 0) }
        lines.append("  quantizable: \(ready.count) of \(candidates.count) MatMul/Gemm/Gather nodes, \(Self.count(weights)) weights")
        for (op, count) in Dictionary(grouping: ready, by: \.opType).mapValues(\.count).sorted(by: { $0.key < $1.key }) {
            lines.append("    \(op) \(count)")
        }
        let notReady = candidates.filter { !$0.quantizable }
        if !notReady.isEmpty {
            lines.append("  not quantizable:")
            for (reason, nodes) in Dictionary(grouping: notReady, by: { $0.reason ?? "" }).sorted(by: { $0.value.count > $1.value.count }) {
                lines.append("    \(nodes.count) × \(reason)")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func count(_ n: Int) -> String {
        if n >= 1_000_000 { return String(format: "%.1fM", Double(n) / 1e6) }
        if n >= 1_000 { return String(format: "%.1fk", Double(n) / 1e3) }
        return "\(n)"
    }
}
