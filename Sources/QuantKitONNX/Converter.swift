import QuantKit

/// Rewrites the linear layers of a model (main graph and subgraphs) into quantized operators.
///
/// Per candidate node: `LinearLayer.match` (constant 2-D weight?), `LayerPolicy.decide` (which
/// settings, or why not), the target pass's `check` and `rewrite`. Every candidate of a graph is
/// decided first, so that the weights the passes will quantize (`weightRequest`) are quantized
/// ahead, side by side on worker threads (`WeightPrefetcher`), while the rewrites run in node order.
/// Nodes are replaced in place, so the node order stays topological; a weight initializer is
/// removed once nothing reads it. Nodes, tensors and fields that no pass rewrites are kept as they are.
public struct Converter {
    public var options: ConversionOptions
    /// Called after each candidate node: (done, total, node name).
    public var progress: ((Int, Int, String) -> Void)?

    public init(options: ConversionOptions) {
        self.options = options
    }

    /// The pass for each target.
    public static func pass(for target: ConversionTarget) throws -> any LinearRewritePass {
        switch target {
        case .matMulNBits: return MatMulNBitsPass()
        case .qdq: return QDQPass()
        case .dynamicInt8: return DynamicInt8Pass()
        case .bnb4: return Bnb4Pass()
        case .quantkit:
            throw QuantError(
                .unsupported,
                "no stock ONNX Runtime operator runs this format; it needs QuantKit's own operators, which need the ONNX Runtime plugin in libquantkit.so (not available yet)")
        }
    }

    /// Converts `model` in place and reports what happened to every candidate node. `external`
    /// reads weights stored in side files (nil for a model without a folder). With a `spool`, the
    /// new weight tensors go into the output's side file as each layer is done; save the model
    /// with `ONNXModel.save(spool:reader:)` afterwards.
    public func convert(_ model: inout Onnx_ModelProto, external: ExternalDataReader?,
                        spool: ExternalDataSpool? = nil) throws -> ConversionReport {
        var report = ConversionReport()
        let opset = Self.opsetVersion(of: model, domain: "")
        report.opsetBefore = opset
        var context = RewriteContext(names: ModelNames(model), external: external, opset: opset,
                                     measureError: options.measureError, threads: options.threads, spool: spool)
        let policy = LayerPolicy(options: options, model: model)
        var state = WalkState(total: Self.candidateCount(model.graph, opTypes: options.opTypes), irVersion: model.irVersion)

        try convertGraph(&model.graph, depth: 0, scope: [:], policy: policy, context: &context, state: &state, report: &report)
        Self.removeUnreferencedInitializers(&model.graph, names: state.replacedWeights)
        if let needed = state.opsets[""], needed > opset {
            // The new nodes need a newer default opset: raise it and rewrite the nodes it changes.
            report.upgradedNodes = try OpsetUpgrade.upgrade(&model, to: needed)
        }
        try Self.requireOpsets(state.opsets, in: &model)
        report.opsetAfter = Self.opsetVersion(of: model, domain: "")
        return report
    }

    struct WalkState {
        let total: Int
        let irVersion: Int64
        var done = 0
        var replacedWeights = Set<String>()
        var opsets: [String: Int] = [:]
    }

    private func convertGraph(
        _ graph: inout Onnx_GraphProto, depth: Int, scope outer: [String: Onnx_TensorProto], policy: LayerPolicy,
        context: inout RewriteContext, state: inout WalkState, report: inout ConversionReport
    ) throws {
        // Constants visible here: the enclosing graphs' initializers, then this graph's. Since IR
        // version 4 an initializer that is also a graph input is only a default value (callers
        // may feed another), so it is not a constant; before IR 4 every initializer was listed
        // as an input.
        var scope = outer
        let inputs = Set(graph.input.map(\.name))
        for name in inputs { scope[name] = nil }
        for tensor in graph.initializer where state.irVersion < 4 || !inputs.contains(tensor.name) {
            scope[tensor.name] = tensor
        }

        // First decide every candidate (match, policy, check), so that the weights to quantize are
        // known ahead and can be quantized side by side; then rewrite in order.
        var candidates: [Candidate] = []
        var jobs: [WeightPrefetcher.Job] = []
        for (index, node) in graph.node.enumerated() where options.opTypes.contains(node.opType) {
            if let candidate = try plan(node, at: index, depth: depth, scope: scope, policy: policy, context: context, jobs: &jobs) {
                candidates.append(candidate)
            }
        }
        let prefetcher = startPrefetcher(jobs, context: context)
        defer { prefetcher?.stop() }

        var replacements: [Int: [Onnx_NodeProto]] = [:]
        var newInitializers: [Onnx_TensorProto] = []
        var saturatingLayers = 0
        for candidate in candidates {
            var entry = candidate.entry
            if let work = candidate.work {
                if let job = work.job, let prefetcher {
                    context.prefetched = (work.layer.weight.name, jobs[job].request, prefetcher.take(job))
                }
                defer { context.prefetched = nil }
                let layer = work.layer, settings = work.settings
                do {
                    var rewrite = try work.pass.rewrite(layer, settings, &context)
                    if let spool = context.spool {
                        // In place, so the spooled buffers are freed here, for the next layer to reuse.
                        for i in rewrite.initializers.indices { try spool.take(&rewrite.initializers[i]) }
                    }
                    replacements[candidate.index] = rewrite.nodes
                    newInitializers += rewrite.initializers
                    state.replacedWeights.insert(layer.weight.name)
                    if case .constant(let name, _) = layer.bias { state.replacedWeights.insert(name) }
                    state.opsets.merge(rewrite.opsets, uniquingKeysWith: max)
                    entry.settings = settings.summary
                    entry.target = settings.target.rawValue
                    if work.pass is DynamicInt8Pass && settings.format == .int8 && !settings.reduceRange { saturatingLayers += 1 }
                    entry.bytesAfter = rewrite.quantizedBytes
                    entry.sqnrDB = rewrite.error?.sqnrDB
                    entry.maxAbsError = rewrite.error?.maxAbsError
                } catch let reason as SkipReason {
                    entry.skipped = reason.description
                } catch let error as QuantError where context.spool?.writeFailed != true {
                    // (A failed write to the spool, reported at a later `take`, is no node's error.)
                    throw QuantError(error.status, "node '\(layer.name)': \(error.message)")
                }
            }
            report.layers.append(entry)
            tick(&state, candidate.node)
        }
        if saturatingLayers > 0 { report.notes.append(Self.saturationNote(layers: saturatingLayers)) }

        if !replacements.isEmpty {
            var nodes: [Onnx_NodeProto] = []
            nodes.reserveCapacity(graph.node.count + replacements.count)
            for (index, node) in graph.node.enumerated() {
                if let replacement = replacements[index] { nodes += replacement } else { nodes.append(node) }
            }
            graph.node = nodes
            graph.initializer += newInitializers
        }

        // Subgraphs (If/Loop/Scan bodies) see this graph's constants.
        for n in graph.node.indices {
            for a in graph.node[n].attribute.indices {
                if graph.node[n].attribute[a].hasG {
                    try convertGraph(&graph.node[n].attribute[a].g, depth: depth + 1, scope: scope, policy: policy,
                                     context: &context, state: &state, report: &report)
                }
                for g in graph.node[n].attribute[a].graphs.indices {
                    try convertGraph(&graph.node[n].attribute[a].graphs[g], depth: depth + 1, scope: scope, policy: policy,
                                     context: &context, state: &state, report: &report)
                }
            }
        }
    }

    /// A candidate node, its report entry, and the rewrite decided for it (nil: left alone).
    private struct Candidate {
        let index: Int
        let node: Onnx_NodeProto
        var entry: ConversionReport.Layer
        var work: (layer: LinearLayer, settings: LayerSettings, pass: any LinearRewritePass, job: Int?)?
    }

    /// Matches a candidate node, applies the policy and the pass's check; a weight the pass will
    /// quantize becomes a prefetch job. Nil for a node that is no linear layer at all (e.g. a
    /// Gather of shapes). A bad request (`QuantError`) stops the conversion here.
    private func plan(_ node: Onnx_NodeProto, at index: Int, depth: Int, scope: [String: Onnx_TensorProto], policy: LayerPolicy,
                      context: RewriteContext, jobs: inout [WeightPrefetcher.Job]) throws -> Candidate? {
        let layer: LinearLayer
        do {
            guard let matched = try LinearLayer.match(node: node, at: index, constant: { scope[$0] }, external: context.external) else { return nil }
            layer = matched
        } catch let reason as SkipReason {
            return Candidate(index: index, node: node, entry: Self.entry(node: node, weight: "", depth: depth, role: .linear, k: 0, n: 0, skipped: reason.description), work: nil)
        }
        var entry = Self.entry(node: node, weight: layer.weight.name, depth: depth, role: policy.role(of: layer), k: layer.k, n: layer.n, skipped: nil)
        entry.bytesBefore = TensorData.storedBytes(of: layer.weight)
        entry.bytesAfter = entry.bytesBefore
        switch policy.decide(layer) {
        case .failure(let reason):
            entry.skipped = reason.description
            return Candidate(index: index, node: node, entry: entry, work: nil)
        case .success(var settings):
            // reduce_range serves int8 matmul kernels: embeddings (Gather) keep their 8 bits.
            if layer.kind == .gather { settings.reduceRange = false }
            do {
                // Embeddings go to GatherBlockQuantized whatever the MatMul target is, except
                // for QDQ, whose promise is standard operators only (it writes DequantizeLinear + Gather).
                let pass: any LinearRewritePass = layer.kind == .gather && settings.target != .qdq
                    ? GatherBlockQuantizedPass(target: settings.target) : try Self.pass(for: settings.target)
                if settings.reduceRange && !(pass is DynamicInt8Pass || pass is QDQPass) {
                    throw QuantError(.unsupported, "reduce_range applies to the dynamic-int8 and qdq targets, not \(settings.target.rawValue)")
                }
                try pass.check(layer, settings)
                var job: Int?
                if let request = try pass.weightRequest(layer, settings) {
                    job = jobs.count
                    jobs.append(WeightPrefetcher.Job(layer: layer, request: request))
                }
                return Candidate(index: index, node: node, entry: entry, work: (layer, settings, pass, job))
            } catch let reason as SkipReason {
                entry.skipped = reason.description
                return Candidate(index: index, node: node, entry: entry, work: nil)
            } catch let error as QuantError {
                throw QuantError(error.status, "node '\(layer.name)': \(error.message)")
            }
        }
    }

    /// Worker threads for the weights, when there are several weights and threads.
    private func startPrefetcher(_ jobs: [WeightPrefetcher.Job], context: RewriteContext) -> WeightPrefetcher? {
        let threads = options.threads > 0 ? options.threads : Runtime.defaultThreadCount
        guard threads > 1, jobs.count > 1 else { return nil }
        return WeightPrefetcher(jobs: jobs, workers: threads, threads: threads, external: context.external,
                                measureError: context.measureError, workspace: context.workspace, pool: context.tensorBuffers)
    }

    private func tick(_ state: inout WalkState, _ node: Onnx_NodeProto) {
        state.done += 1
        progress?(state.done, state.total, node.name)
    }

    static func entry(node: Onnx_NodeProto, weight: String, depth: Int, role: LayerPolicy.Role, k: Int, n: Int, skipped: String?) -> ConversionReport.Layer {
        ConversionReport.Layer(node: node.name, opType: node.opType, weight: weight, depth: depth, role: role, k: k, n: n,
                               settings: nil, target: nil, bytesBefore: 0, bytesAfter: 0, sqnrDB: nil, maxAbsError: nil, skipped: skipped)
    }

    static func candidateCount(_ graph: Onnx_GraphProto, opTypes: Set<String>) -> Int {
        var count = 0
        ModelWalk.forEachGraph(graph) { g in count += g.node.filter { opTypes.contains($0.opType) }.count }
        return count
    }

    /// Removes the replaced weights that no node in any graph reads any more (an initializer read
    /// by another node, e.g. a tied embedding, stays). Also drops their graph-input entries, which
    /// models before IR 4 carry for every initializer.
    static func removeUnreferencedInitializers(_ graph: inout Onnx_GraphProto, names: Set<String>) {
        guard !names.isEmpty else { return }
        let referenced = ModelWalk.referencedNames(graph)
        let unused = names.subtracting(referenced)
        guard !unused.isEmpty else { return }
        ModelWalk.transformGraphs(&graph) { g, _ in
            g.initializer.removeAll { unused.contains($0.name) }
            g.input.removeAll { unused.contains($0.name) }
        }
    }

    /// The version of `domain` the model imports (0 when it imports none).
    public static func opsetVersion(of model: Onnx_ModelProto, domain: String) -> Int {
        let aliases = domain.isEmpty ? ["", "ai.onnx"] : [domain]
        return Int(model.opsetImport.first { aliases.contains($0.domain) }?.version ?? 0)
    }

    /// Adds the operator sets the new nodes need. Raising the default domain changes the meaning
    /// of existing nodes, so that is the opset upgrade's job, not done here.
    static func requireOpsets(_ needed: [String: Int], in model: inout Onnx_ModelProto) throws {
        for (domain, version) in needed.sorted(by: { $0.key < $1.key }) {
            let aliases = domain.isEmpty ? ["", "ai.onnx"] : [domain]
            if let i = model.opsetImport.firstIndex(where: { aliases.contains($0.domain) }) {
                guard model.opsetImport[i].version < Int64(version) else { continue }
                guard !domain.isEmpty else {
                    throw QuantError(.unsupported, "the rewritten nodes need opset \(version), the model has \(model.opsetImport[i].version)")
                }
                model.opsetImport[i].version = Int64(version)
            } else {
                var entry = Onnx_OperatorSetIdProto()
                entry.domain = domain
                entry.version = Int64(version)
                model.opsetImport.append(entry)
            }
        }
    }

    /// ONNX Runtime's uint8 x int8 MatMulInteger kernel on x86 without VNNI sums pairs of products
    /// in 16 bits with saturation; full-range int8 weights overflow them (measured on an AMD Zen 3).
    static func saturationNote(layers: Int) -> String {
        "\(layers) MatMulInteger layer\(layers == 1 ? " holds" : "s hold") full-range int8 weights: on x86 CPUs without VNNI (AMD Zen 3 "
            + "and older, Intel before Cascade Lake) ONNX Runtime's int8 kernel saturates on them (on an AMD EPYC, SmolLM2-135M's "
            + "perplexity went from 16 to over 200000). For such CPUs convert with --reduce-range (7-bit weights, exact, as fast) or "
            + "--format uint8 (exact, slower)."
    }
}
