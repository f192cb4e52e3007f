/// Every name a model uses (values, initializers, nodes, in every graph and subgraph), so that names
/// a pass invents never collide with an existing one anywhere, also not with a name a subgraph
/// refers to from its outer scope.
public struct ModelNames: Sendable {
    private var used: Set<String> = []

    public init(_ model: Onnx_ModelProto) {
        ModelWalk.forEachGraph(model.graph) { graph in
            for tensor in graph.initializer { used.insert(tensor.name) }
            for value in graph.input { used.insert(value.name) }
            for value in graph.output { used.insert(value.name) }
            for value in graph.valueInfo { used.insert(value.name) }
            for node in graph.node {
                used.insert(node.name)
                used.formUnion(node.input)
                used.formUnion(node.output)
            }
        }
    }

    /// `base` itself when it is free, else `base_1`, `base_2`, ...; the name is then taken.
    public mutating func unique(_ base: String) -> String {
        var name = base
        var n = 0
        while used.contains(name) {
            n += 1
            name = "\(base)_\(n)"
        }
        used.insert(name)
        return name
    }

    public func contains(_ name: String) -> Bool { used.contains(name) }
}

/// Visits graphs and their subgraphs (the graph attributes of If, Loop, Scan and custom nodes).
public enum ModelWalk {
    public static func forEachGraph(_ graph: Onnx_GraphProto, _ body: (Onnx_GraphProto) -> Void) {
        body(graph)
        for node in graph.node {
            for attribute in node.attribute {
                if attribute.hasG { forEachGraph(attribute.g, body) }
                for g in attribute.graphs { forEachGraph(g, body) }
            }
        }
    }

    /// Names a graph (or any of its subgraphs) reads as node inputs or exposes as outputs.
    public static func referencedNames(_ graph: Onnx_GraphProto) -> Set<String> {
        var names = Set<String>()
        forEachGraph(graph) { g in
            for node in g.node { names.formUnion(node.input) }
            for output in g.output { names.insert(output.name) }
        }
        return names
    }

    /// Applies `body` to the graph and then, depth first, to every subgraph, in place.
    public static func transformGraphs(_ graph: inout Onnx_GraphProto, depth: Int = 0, _ body: (inout Onnx_GraphProto, Int) throws -> Void) rethrows {
        try body(&graph, depth)
        for n in graph.node.indices {
            for a in graph.node[n].attribute.indices {
                if graph.node[n].attribute[a].hasG {
                    try transformGraphs(&graph.node[n].attribute[a].g, depth: depth + 1, body)
                }
                for g in graph.node[n].attribute[a].graphs.indices {
                    try transformGraphs(&graph.node[n].attribute[a].graphs[g], depth: depth + 1, body)
                }
            }
        }
    }
}
