import QuantKit

/// MatMul/Gemm → `com.microsoft::MatMulBnb4` (NF4 or bitsandbytes FP4, ONNX Runtime's operator).
///
/// Inputs: A, B uint8 [⌈N·K/2⌉] (Wᵀ [N, K] flattened, cut into flat blocks of `block_size`
/// elements, first element in the HIGH nibble), absmax [⌈N·K/block⌉] in A's type. Attributes K, N,
/// block_size, quant_type (0 = FP4, 1 = NF4). Bytes and names follow ONNX Runtime's own
/// `MatMulBnb4Quantizer`: `<weight>_Bnb4`, `<weight>_absmax`, the node `<node>_Bnb4`. A Gemm bias
/// becomes an Add after the product (the operator has no bias input).
public struct Bnb4Pass: LinearRewritePass {
    public let target = ConversionTarget.bnb4
    public init() {}

    /// MatMulBnb4's `quant_type` for a format (nil: not a bnb4 format).
    static func quantType(_ format: QuantFormat) -> Int? {
        switch format {
        case .fp4Bnb: return 0
        case .nf4: return 1
        default: return nil
        }
    }

    public func check(_ layer: LinearLayer, _ settings: LayerSettings) throws {
        guard Self.quantType(settings.format) != nil else {
            throw QuantError(.unsupported, "MatMulBnb4 takes nf4 or fp4-bnb, not \(settings.format.spec.name) (use --target matmulnbits, qdq or quantkit)")
        }
        // ONNX Runtime's kernel and quantizer accept any block size ≥ 16 that is a power of two
        // (bitsandbytes itself uses 64).
        guard settings.blockSize >= 16, settings.blockSize & (settings.blockSize - 1) == 0 else {
            throw QuantError(.invalidArgument, "MatMulBnb4 needs a block size that is a power of two ≥ 16, not \(settings.blockSize)")
        }
        guard layer.kind != .gather else { throw SkipReason("MatMulBnb4 does not take a Gather") }
        guard layer.weightType == .float || layer.weightType == .float16 else {
            throw SkipReason("its weight is \(layer.weightType.name); MatMulBnb4 runs on float32 and float16")
        }
    }

    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? {
        guard let scaleType = layer.weightType.scaleType else {
            throw QuantError(.internalError, "Bnb4Pass called without check")
        }
        var params = QuantParams(format: settings.format)
        params.granularity = .blocked
        params.blockSize = settings.blockSize
        params.layout = .bnb4
        params.scaleType = scaleType
        // Wᵀ [N, K], read transposed straight from where the weight is stored, band by band.
        return WeightRequest(params: params, shape: [layer.n, layer.k], transposed: true)
    }

    public func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite {
        guard let quantType = Self.quantType(settings.format) else {
            throw QuantError(.internalError, "Bnb4Pass.rewrite called without check")
        }
        let block = settings.blockSize
        let q = try context.quantizedWeight(layer, try weightRequest(layer, settings)!)

        var out = Rewrite()
        let weightName = layer.weight.name
        let packed = TensorData.make(name: context.names.unique("\(weightName)_Bnb4"), type: .uint8, dims: [q.data.count], data: q.data)
        let absmax = TensorData.make(name: context.names.unique("\(weightName)_absmax"), type: layer.weightType,
                                     dims: [q.plan.groupCount], data: q.scales)
        out.initializers = [packed, absmax]

        var output = layer.output
        var bias: String?
        switch layer.bias {
        case .constant(let name, let values):
            let tensor = TensorData.make(name: context.names.unique("\(name)_bias"), floats: values, dims: [layer.n], type: layer.weightType)
            out.initializers.append(tensor)
            bias = tensor.name
        case .tensor(let name):
            bias = name
        case nil: break
        }
        if bias != nil { output = context.names.unique("\(layer.output)_matmul") }

        let attributes: [Onnx_AttributeProto] = [
            .int("K", layer.k), .int("N", layer.n), .int("block_size", block), .int("quant_type", quantType),
        ]
        let nodeName = layer.node.name.isEmpty ? "" : context.names.unique("\(layer.node.name)_Bnb4")
        out.nodes = [Onnx_NodeProto("MatMulBnb4", domain: "com.microsoft", name: nodeName,
                                    inputs: [layer.activation, packed.name, absmax.name], outputs: [output], attributes: attributes)]
        if let bias {
            out.nodes.append(Onnx_NodeProto("Add", name: context.names.unique("\(layer.baseName)_bias_add"), inputs: [output, bias], outputs: [layer.output]))
        }
        out.quantizedBytes = q.byteCount
        out.error = q.error
        out.opsets = ["com.microsoft": 1]
        return out
    }
}
