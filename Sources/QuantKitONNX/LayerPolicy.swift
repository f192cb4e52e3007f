#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import QuantKit

/// Decides, for each candidate layer, whether and how it is quantized: include/exclude patterns,
/// then the first matching rule, then the default policy (embeddings and lm_head kept at 8 bits),
/// then the default settings.
public struct LayerPolicy: Sendable {
    public let options: ConversionOptions
    /// Outputs of the main graph: a MatMul that produces one is the output projection.
    let graphOutputs: Set<String>

    public init(options: ConversionOptions, model: Onnx_ModelProto) {
        self.options = options
        graphOutputs = Set(model.graph.output.map(\.name))
    }

    /// The layer's role, which the default policy treats differently.
    public enum Role: String, Sendable, Codable { case linear, lmHead = "lm_head", embedding }

    public func role(of layer: LinearLayer) -> Role {
        if layer.kind == .gather { return .embedding }
        let names = [layer.node.name, layer.weight.name].map { $0.lowercased() }
        if names.contains(where: { $0.contains("lm_head") }) || graphOutputs.contains(layer.output) { return .lmHead }
        return .linear
    }

    /// The settings for `layer`, or the reason it is left alone.
    public func decide(_ layer: LinearLayer) -> Result<LayerSettings, SkipReason> {
        let names = [layer.node.name, layer.weight.name].filter { !$0.isEmpty }
        func matches(_ pattern: String) -> Bool { names.contains { Self.glob(pattern, $0) } }

        if let pattern = options.exclude.first(where: matches) {
            return .failure(SkipReason("excluded by pattern '\(pattern)'"))
        }
        if !options.include.isEmpty && !options.include.contains(where: matches) {
            return .failure(SkipReason("not matched by any include pattern"))
        }
        if let rule = options.rules.first(where: { matches($0.pattern) }) {
            guard let settings = rule.settings else { return .failure(SkipReason("kept by rule '\(rule.pattern)'")) }
            return .success(settings)
        }
        if layer.parameterCount < options.minimumWeights {
            return .failure(SkipReason("only \(layer.parameterCount) weights (minimum \(options.minimumWeights))"))
        }
        switch role(of: layer) {
        case .embedding:
            guard let bits = options.embeddingBits else { return .failure(SkipReason("embeddings are kept in float")) }
            return .success(wider(bits: bits))
        case .lmHead:
            guard let bits = options.lmHeadBits else { return .failure(SkipReason("the output projection (lm_head) is kept in float")) }
            return .success(wider(bits: bits))
        case .linear:
            return .success(options.defaults)
        }
    }

    /// The defaults at a given integer width (the policy for embeddings and lm_head). A target
    /// that cannot hold integers of that width (bnb4, FP8 QDQ) falls back to MatMulNBits.
    func wider(bits: Int) -> LayerSettings {
        var settings = options.defaults
        let format = defaultsFormat(bits: bits)
        guard settings.format != format, settings.format.spec.bits < bits || !settings.format.spec.isInteger else { return settings }
        settings.format = format
        switch settings.target {
        case .matMulNBits, .qdq, .dynamicInt8: break
        case .bnb4, .quantkit: settings.target = .matMulNBits
        }
        if settings.blockSize == 0 && settings.target == .matMulNBits { settings.blockSize = 32 }
        return settings
    }

    func defaultsFormat(bits: Int) -> QuantFormat {
        let unsigned = options.defaults.format.spec.isUnsignedInteger
        switch bits {
        case 2: return unsigned ? .uint2 : .int2
        case 4: return unsigned ? .uint4 : .int4
        default: return unsigned ? .uint8 : .int8
        }
    }

    /// Shell-style pattern matching (`*`, `?`, `[...]`), as fnmatch(3) without flags.
    public static func glob(_ pattern: String, _ name: String) -> Bool {
        fnmatch(pattern, name, 0) == 0
    }
}
