import FoundationEssentials
import QuantKit

/// Embedding `Gather(table, ids)` → `com.microsoft::GatherBlockQuantized`.
///
/// The table [rows, d] is quantized in blocks along d (`quantize_axis` 1, `gather_axis` 0); the
/// operator gathers rows and dequantizes them, `(code − zero point) · scale`. Storage by format:
/// - int4 / uint4: data of ONNX type int4 / uint4 (logical shape [rows, d], the ONNX layout, as
///   ONNX Runtime's own `MatMulNBitsQuantizer.quantize_gather` writes), zero points of the same
///   type shaped like the scales (absent: 0).
/// - int8 / uint8: data uint8 with `bits` = 8, zero points uint8 (absent: 128). ONNX Runtime takes no
///   int8 data here, so signed codes and zero points are stored offset by 128 (x ^ 0x80), which
///   leaves every difference code − zero point as it was.
/// - fp8 (E4M3FN, E5M2) and fp4 E2M1: data of that type, symmetric, no zero points.
/// Scales [rows, ⌈d/block⌉] have the table's type (float32 or float16: ONNX Runtime's CPU kernel has
/// no bfloat16 output).
public struct GatherBlockQuantizedPass: LinearRewritePass {
    /// Gathers are rewritten whatever target the MatMuls go to; this names the family in reports.
    public let target: ConversionTarget
    public init(target: ConversionTarget = .matMulNBits) { self.target = target }

    /// The ONNX type the codes are stored as, and the `bits` attribute (nil: not written).
    static func storage(_ format: QuantFormat) -> (type: ONNXType, bits: Int?)? {
        switch format {
        case .int4: return (.int4, nil)
        case .uint4: return (.uint4, nil)
        case .int8, .uint8: return (.uint8, 8)
        case .fp8E4M3FN: return (.float8E4M3FN, nil)
        case .fp8E5M2: return (.float8E5M2, nil)
        case .fp4E2M1: return (.float4E2M1, nil)
        default: return nil
        }
    }

    /// The block along d: the requested one, or for per-channel settings (block 0) one block per row.
    static func blockSize(_ settings: LayerSettings, columns: Int) -> Int {
        guard settings.blockSize == 0 else { return settings.blockSize }
        var block = 16
        while block < columns { block *= 2 }
        return block
    }

    public func check(_ layer: LinearLayer, _ settings: LayerSettings) throws {
        guard layer.kind == .gather else { throw SkipReason("GatherBlockQuantized replaces a Gather only") }
        guard Self.storage(settings.format) != nil else {
            throw SkipReason("GatherBlockQuantized stores int4, uint4, int8, uint8, fp8 or fp4 codes, not \(settings.format.spec.name)")
        }
        let block = Self.blockSize(settings, columns: layer.n)
        guard block >= 16, block & (block - 1) == 0 else {
            throw SkipReason("GatherBlockQuantized needs a block size that is a power of two ≥ 16, not \(block)")
        }
        guard layer.weightType == .float || layer.weightType == .float16 else {
            throw SkipReason("its table is \(layer.weightType.name); ONNX Runtime's GatherBlockQuantized outputs float32 or float16 only")
        }
    }

    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? {
        guard let scaleType = layer.weightType.scaleType else {
            throw QuantError(.internalError, "GatherBlockQuantizedPass called without check")
        }
        let spec = settings.format.spec
        var params = QuantParams(format: settings.format)
        params.scheme = spec.isInteger ? settings.scheme : .symmetric
        params.granularity = .blocked
        params.axis = 1
        params.blockSize = Self.blockSize(settings, columns: layer.n)
        params.layout = .onnx
        params.rounding = .halfEven
        params.method = settings.method
        params.scaleType = scaleType
        return WeightRequest(params: params, shape: [layer.k, layer.n], transposed: false)  // the table [rows, d]
    }

    public func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite {
        guard let storage = Self.storage(settings.format) else {
            throw QuantError(.internalError, "GatherBlockQuantizedPass.rewrite called without check")
        }
        let spec = settings.format.spec
        let block = Self.blockSize(settings, columns: layer.n)
        var q = try context.quantizedWeight(layer, try weightRequest(layer, settings)!)
        if storage.type == .uint8 && spec.isInteger && !spec.isUnsignedInteger {
            Self.offsetBy128(&q.data)
            Self.offsetBy128(&q.zeroPoints)
        }

        var out = Rewrite()
        let bits = spec.bits
        let weightName = layer.weight.name
        let blocks = q.plan.scalesShape.last ?? 1
        let quantized = TensorData.make(name: context.names.unique("\(weightName)_Q\(bits)"), type: storage.type,
                                        dims: [layer.k, layer.n], data: q.data)
        let scales = TensorData.make(name: context.names.unique("\(weightName)_scales"), type: layer.weightType,
                                     dims: [layer.k, blocks], data: q.scales)
        var inputs = [quantized.name, layer.activation, scales.name]
        out.initializers = [quantized, scales]
        if q.plan.storesZeroPoints {
            let tensor = TensorData.make(name: context.names.unique("\(weightName)_zero_points"), type: storage.type,
                                         dims: [layer.k, blocks], data: q.zeroPoints)
            inputs.append(tensor.name)
            out.initializers.append(tensor)
        }

        var attributes: [Onnx_AttributeProto] = [.int("gather_axis", 0), .int("quantize_axis", 1), .int("block_size", block)]
        if let b = storage.bits { attributes.append(.int("bits", b)) }
        let nodeName = layer.node.name.isEmpty ? "" : context.names.unique("\(layer.node.name)_Q\(bits)")
        out.nodes = [Onnx_NodeProto("GatherBlockQuantized", domain: "com.microsoft", name: nodeName,
                                    inputs: inputs, outputs: [layer.output], attributes: attributes)]
        out.quantizedBytes = q.byteCount
        out.error = q.error
        out.opsets = ["com.microsoft": 1]
        return out
    }

    /// Signed 8-bit codes stored as uint8: x ^ 0x80 on every byte (a loop the compiler vectorizes).
    static func offsetBy128(_ bytes: inout Data) {
        bytes.withUnsafeMutableBytes { raw in
            guard let base = raw.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            for i in 0..<raw.count { base[i] ^= 0x80 }
        }
    }
}
