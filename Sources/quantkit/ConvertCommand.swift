import ArgumentParser
import Foundation
import QuantKit
import QuantKitONNX

struct ConvertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Rewrite a model's linear layers (MatMul, Gemm, embedding Gather) into quantized operators.",
        discussion: """
            Defaults: int4, block 32, symmetric, com.microsoft::MatMulNBits; the output projection \
            (lm_head) and embeddings at 8 bits. The output is written atomically: a failed run leaves \
            nothing behind, and the input is never modified. An output that replaces a file (--force) \
            is synced to disk before it takes the old one's place; a new output is left to the \
            kernel's writeback, like cp's, unless --sync is given.

            Exit codes: 0 success, 2 input unreadable, 3 invalid or truncated model (or a NaN or infinite weight), 4 unsupported \
            model or request, 5 external data outside the model's folder, 6 external data file \
            missing, 7 output exists (use --force), 8 disk full, 9 other write failure, 64 bad \
            command line, 1 internal error.
            """)

    @Argument(help: "The ONNX model to convert.")
    var input: String

    @Option(name: .shortAndLong, help: "Where to write the converted model.")
    var output: String

    @Option(help: "Weight format: int4, uint4, int8, uint8, int2, uint2, nf4, fp4-bnb, fp8-e4m3, fp8-e5m2, fp16, bf16, ... (default int4; see `quantkit formats`).")
    var format: String?

    @Option(help: "Weights per block along K (power of two ≥ 16 for MatMulNBits); 0 = one scale per output channel (default 32).")
    var blockSize: Int?

    @Flag(help: "Asymmetric quantization (a zero point per block).")
    var asymmetric = false

    @Option(help: "Operators to write: matmulnbits, qdq, dynamic-int8, bnb4, quantkit (default: the format's natural target).")
    var target: String?

    @Option(help: "MatMulNBits accuracy_level (4 = int8 activations; default: not written, i.e. 0).")
    var accuracyLevel: Int?

    @Option(help: "Scale selection: minmax (round to nearest, ONNX Runtime's default), mse, percentile.")
    var method: String?

    @Flag(help: "int8/uint8 weights in 7 bits (-64...64), as ONNX Runtime's reduce_range: exact and fast in its int8 kernel on CPUs without VNNI (dynamic-int8, qdq; symmetric, minmax).")
    var reduceRange = false

    @Option(help: "A JSON recipe: defaults, include/exclude patterns and per-pattern overrides (see README).")
    var recipe: String?

    @Option(help: "Quantize only nodes whose name or weight name matches this glob (repeatable).")
    var include: [String] = []

    @Option(help: "Leave nodes whose name or weight name matches this glob alone (repeatable).")
    var exclude: [String] = []

    @Option(help: "Comma-separated op types to consider (default MatMul,Gemm,Gather).")
    var opTypes: String?

    @Option(help: "Bits for the output projection (lm_head): 8, 4, 2 or float (default 8).")
    var lmHeadBits: String?

    @Option(help: "Bits for embedding tables (Gather): 8, 4 or float (default 8).")
    var embeddingBits: String?

    @Option(name: .customLong("external-data"), help: "Where tensors go: auto (side file when the input had one or the model passes 2 GiB), inline, external (<output>.data).")
    var externalDataChoice: ExternalDataChoice = .auto

    @Flag(help: "Replace the output if it exists.")
    var force = false

    @Flag(help: "Sync the output to disk before exiting even when it replaces no file (by default only a replaced file is).")
    var sync = false

    @Flag(help: "Print the summary as JSON on stdout.")
    var json = false

    @Flag(name: .shortAndLong, help: "No progress bar, no summary (errors are still printed).")
    var quiet = false

    @Flag(help: "List every layer in the summary, not only the worst ones.")
    var verbose = false

    @Flag(help: "Skip measuring each layer's error (SQNR); slightly faster.")
    var noErrorStats = false

    @Option(help: "Threads for quantization (0 = all cores).")
    var threads: Int = 0

    func run() throws {
        let started = now()
        // Over a file size limit (ulimit -f), a write then fails with EFBIG, which is reported and
        // cleaned up like any write failure, instead of the signal killing the process mid-write.
        signal(SIGXFSZ, SIG_IGN)
        let options: ConversionOptions
        do {
            options = try conversionOptions()
        } catch {
            throw fail(error, during: .converting)
        }
        try checkPaths()

        let model: ONNXModel
        do {
            model = try ONNXModel.load(path: input)
        } catch {
            throw fail(error, during: .reading)
        }
        // The loaded model's reader maps the input's side files and its large inline tensors.
        let external = model.dataReader ?? ExternalDataReader(modelPath: input)
        var converted = model
        let syncPolicy: OutputSync = sync ? .always : .whenReplacing
        // An output that surely gets a side file has it opened now: each quantized weight goes
        // to disk as its layer is done (see ExternalDataSpool).
        var spool: ExternalDataSpool?
        if let side = model.sideFile(for: externalData) {
            do {
                spool = try ExternalDataSpool(modelPath: output, location: side.location, threshold: side.threshold, overwrite: force, sync: syncPolicy)
            } catch {
                throw fail(error, during: .writing)
            }
        }
        var report: ConversionReport
        do {
            if options.defaults.format == .fp16 || options.defaults.format == .bf16 {
                // Half precision is a whole-model conversion, not a per-layer quantization.
                report = try Float16Pass.apply(to: &converted.proto, format: options.defaults.format, external: external, spool: spool)
            } else {
                var converter = Converter(options: options)
                var bar = ProgressBar(enabled: !quiet && !json)
                converter.progress = { done, total, name in bar.update(done: done, total: total, label: name) }
                report = try converter.convert(&converted.proto, external: external, spool: spool)
            }
        } catch {
            throw fail(error, during: spool?.writeFailed == true ? .writing : .converting)
        }
        let written: [String]
        do {
            if let spool {
                written = try converted.save(spool: spool, reader: external)
            } else {
                written = try converted.save(to: output, overwrite: force, externalData: externalData, reader: external, sync: syncPolicy)
            }
        } catch {
            throw fail(error, during: .writing)
        }
        report.inputBytes = ModelFiles.totalBytes(model: model.proto, path: input)
        report.outputBytes = written.reduce(0) { $0 + fileSize($1) }
        report.seconds = now() - started
        if json {
            print(try SummaryText.json(report, input: input, output: output))
        } else if !quiet {
            print(SummaryText(report: report, input: input, output: output, verbose: verbose).render())
        }
    }

    /// Built-in defaults, then the recipe, then the command line.
    func conversionOptions() throws -> ConversionOptions {
        var options = ConversionOptions()
        options.measureError = !noErrorStats
        guard threads >= 0 else { throw QuantError(.invalidArgument, "--threads must be 0 (all cores) or more") }
        options.threads = threads
        let loadedRecipe = try recipe.map { try Recipe.load(path: $0) }
        if let loadedRecipe { options.defaults = try loadedRecipe.settingsOverride(options.defaults) }
        var flags = Recipe.Settings()
        flags.format = format
        flags.blockSize = blockSize
        flags.scheme = asymmetric ? "asymmetric" : nil
        flags.target = target
        flags.accuracyLevel = accuracyLevel
        flags.method = method
        flags.reduceRange = reduceRange ? true : nil
        options.defaults = try Recipe.apply(flags, to: options.defaults, context: "command line")
        try loadedRecipe?.apply(to: &options)
        if let lmHeadBits { options.lmHeadBits = try Self.bits(lmHeadBits, "--lm-head-bits") }
        if let embeddingBits { options.embeddingBits = try Self.bits(embeddingBits, "--embedding-bits") }
        options.include += include
        options.exclude += exclude
        if let opTypes {
            let types = Set(opTypes.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) })
            let unknown = types.subtracting(LinearLayer.opTypes)
            guard unknown.isEmpty, !types.isEmpty else {
                throw QuantError(.invalidArgument, "--op-types takes a list of \(LinearLayer.opTypes.sorted().joined(separator: ", ")), not '\(opTypes)'")
            }
            options.opTypes = types
        }
        return options
    }

    static func bits(_ text: String, _ flag: String) throws -> Int? {
        if text == "float" { return nil }
        guard let n = Int(text), [2, 4, 8].contains(n) else {
            throw QuantError(.invalidArgument, "\(flag) takes 8, 4, 2 or float, not '\(text)'")
        }
        return n
    }

    /// Fails before any work when the output cannot be written: it exists (without --force), or
    /// it is the input itself (never modified, even with --force).
    func checkPaths() throws {
        if let source = realPath(input), let target = realPath(output), source == target {
            throw fail(QuantError(.invalidArgument, "the output '\(output)' is the input model: write the result to another file"), during: .converting)
        }
        if fileExists(output) && !force {
            throw fail(ModelFileError(.outputExists, "'\(output)' already exists (use --force to replace it)"), during: .writing)
        }
    }
}

enum ExternalDataChoice: String, ExpressibleByArgument {
    case auto, inline, external
}

extension ConvertCommand {
    var externalData: ExternalDataPolicy {
        switch externalDataChoice {
        case .auto: return .automatic
        case .inline: return .inline
        case .external: return .external()
        }
    }
}

/// Sizes of a model on disk: the model file plus the external-data files it names.
enum ModelFiles {
    static func totalBytes(model: Onnx_ModelProto, path: String) -> Int {
        let folder = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
        var locations = Set<String>()
        ModelWalk.forEachGraph(model.graph) { graph in
            for tensor in graph.initializer where ExternalDataReader.isInSideFile(tensor) {
                if let ref = try? ExternalDataReader.reference(of: tensor) { locations.insert(ref.location) }
            }
        }
        return fileSize(path) + locations.reduce(0) { $0 + fileSize("\(folder)/\($1)") }
    }
}
