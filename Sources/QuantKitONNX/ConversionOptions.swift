import QuantKit

/// The operator family a quantized layer is written as.
public enum ConversionTarget: String, CaseIterable, Sendable, Codable {
    /// `com.microsoft::MatMulNBits` (2, 4, 8 bits, blocked along K).
    case matMulNBits = "matmulnbits"
    /// Standard `DequantizeLinear` + `MatMul` (int4/uint4 blocked at opset 21, int8 per channel, FP8 at opset 19).
    case qdq
    /// Standard `DynamicQuantizeLinear` + `MatMulInteger` (int8 weights, uint8 activations).
    case dynamicInt8 = "dynamic-int8"
    /// `com.microsoft::MatMulBnb4` (NF4 and FP4, bitsandbytes layout).
    case bnb4
    /// QuantKit's own operators, run by the plugin in libquantkit.so.
    case quantkit

    /// The target a format goes to when the user names none.
    public static func defaultTarget(for format: QuantFormat) -> ConversionTarget {
        switch format {
        case .int2, .uint2, .int4, .uint4, .int8, .uint8: return .matMulNBits
        case .nf4, .fp4Bnb: return .bnb4
        case .fp8E4M3FN, .fp8E5M2, .fp4E2M1, .fp16, .bf16: return .qdq
        case .int3, .uint3, .log4: return .quantkit
        }
    }
}

/// How one layer is quantized.
public struct LayerSettings: Sendable, Equatable {
    public var format: QuantFormat
    /// Elements per block along K; 0 = one scale per output channel.
    public var blockSize: Int
    public var scheme: QuantScheme
    public var target: ConversionTarget
    /// MatMulNBits' `accuracy_level` attribute (nil: not written; 4 = int8 activations).
    public var accuracyLevel: Int?
    public var method: ScaleMethod
    /// Symmetric int8/uint8 weights in 7 bits, -64...64 (QuantParams.reduceRange): ONNX Runtime's
    /// reduce_range, exact in its u8 x s8 kernel on CPUs without VNNI. dynamic-int8 and qdq only;
    /// embeddings (Gather) keep 8 bits.
    public var reduceRange: Bool

    public init(format: QuantFormat = .int4, blockSize: Int = 32, scheme: QuantScheme = .symmetric,
                target: ConversionTarget? = nil, accuracyLevel: Int? = nil, method: ScaleMethod = .minMax, reduceRange: Bool = false) {
        self.format = format
        self.blockSize = blockSize
        self.scheme = scheme
        self.target = target ?? ConversionTarget.defaultTarget(for: format)
        self.accuracyLevel = accuracyLevel
        self.method = method
        self.reduceRange = reduceRange
    }

    /// Short text for reports: "int4 b32 sym → matmulnbits".
    public var summary: String {
        let granularity = blockSize == 0 ? "per-channel" : "b\(blockSize)"
        let schemeText = format.spec.isInteger ? (scheme == .symmetric ? " sym" : " asym") : ""
        return "\(format.spec.name)\(reduceRange ? " 7-bit" : "") \(granularity)\(schemeText) → \(target.rawValue)"
    }
}

/// A per-node override: a glob pattern over node names and weight names, and what to do there.
public struct LayerRule: Sendable, Equatable {
    public var pattern: String
    /// nil: leave matching nodes as they are.
    public var settings: LayerSettings?

    public init(pattern: String, settings: LayerSettings?) {
        self.pattern = pattern
        self.settings = settings
    }
}

/// Everything that decides what `Converter` does to a model.
public struct ConversionOptions: Sendable {
    /// Settings for every layer no rule or policy decides otherwise.
    public var defaults = LayerSettings()
    /// Op types to consider (of MatMul, Gemm, Gather).
    public var opTypes: Set<String> = ["MatMul", "Gemm", "Gather"]
    /// Glob patterns over node and weight names: only matching nodes are quantized (empty: all).
    public var include: [String] = []
    /// Glob patterns over node and weight names: matching nodes are left alone.
    public var exclude: [String] = []
    /// Overrides, first match wins (recipe files and command-line rules).
    public var rules: [LayerRule] = []
    /// Bits for the output projection (lm_head) and embeddings: kept wider than the rest, as
    /// practitioners advise. nil keeps them in float.
    public var lmHeadBits: Int? = 8
    public var embeddingBits: Int? = 8
    /// Measure each layer's quantization error (SQNR) by dequantizing it again.
    public var measureError = true
    /// Layers with fewer weights than this are left alone (tiny projections gain nothing).
    public var minimumWeights = 0
    /// Threads for the quantization kernels (0 = all cores).
    public var threads = 0

    public init() {}
}
