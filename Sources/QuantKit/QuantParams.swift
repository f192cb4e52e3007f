/// Swift mirrors of the header's parameter enums (same raw values as the C constants).
public enum QuantScheme: Int32, Sendable { case symmetric = 0, asymmetric = 1 }
public enum Granularity: Int32, Sendable { case perTensor = 0, perAxis = 1, blocked = 2 }
public enum ScaleMethod: Int32, Sendable { case minMax = 0, mse = 1, percentile = 2 }
public enum Rounding: Int32, Sendable { case halfEven = 0, halfAway = 1 }
public enum PackingLayout: Int32, Sendable { case onnx = 0, matMulNBits = 1, bnb4 = 2 }

/// Float element types that cross the API (values of `QK_DTYPE_*`).
public enum FloatType: Int32, Sendable {
    case f32 = 1, f16 = 2, bf16 = 3
    public var byteCount: Int { self == .f32 ? 4 : 2 }
}

/// Everything that decides how a tensor is quantized (the C `qk_quant_params`).
public struct QuantParams: Sendable, Equatable {
    public var format: QuantFormat
    public var scheme: QuantScheme = .symmetric
    public var granularity: Granularity = .blocked
    public var axis: Int = -1
    public var blockSize: Int = 32
    public var method: ScaleMethod = .minMax
    public var rounding: Rounding = .halfEven
    public var layout: PackingLayout = .onnx
    public var scaleType: FloatType = .f32
    /// 0 = the library default (`Runtime.defaultThreadCount`).
    public var threads: Int = 0
    public var percentile: Float = 99.99
    public var searchSteps: Int = 20
    public var minClipRatio: Float = 0.5
    /// Symmetric 8-bit integers take levels -64...64 only (scale max|x| / 64, min-max), as ONNX
    /// Runtime's reduce_range writes them: u8 x s8 kernels without VNNI (vpmaddubsw) are then
    /// exact, and QuantKit's AVX2 kernels multiply them with one instruction fewer per 32 products.
    /// Not in the C struct: growing qk_quant_params would turn away callers built against the
    /// current header (its struct_size rule); the converter sets it (--reduce-range).
    public var reduceRange = false

    /// Defaults for a format: block 32 for the low-bit formats, per-tensor for FP8.
    public init(format: QuantFormat) {
        self.format = format
        switch format {
        case .fp8E4M3FN, .fp8E5M2, .fp16, .bf16: granularity = .perTensor
        default: break
        }
    }
}
