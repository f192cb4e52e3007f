import QuantKit

/// MatMul/Gemm → standard `DequantizeLinear(Wq, scale, zero point)` + `MatMul` (+ `Add` for a Gemm
/// bias); Gather → `DequantizeLinear` + `Gather`. Only default-domain operators, so any ONNX runtime
/// runs the result (ONNX Runtime fuses DequantizeLinear + MatMul into its own kernels).
///
/// The weight is quantized as W[K, N] exactly as `QuantizeLinear` would (ONNX layout, round half to
/// even): blocks run along K (axis 0, scales [⌈K/block⌉, N], opset 21); block size 0 means one scale
/// per output column (axis 1, scales [N]). A Gather table [rows, cols] is blocked along its columns
/// (axis 1) or scaled per row (axis 0). Scales have the weight's float type; a zero point is written
/// only when the format stores one (asymmetric or unsigned), in the codes' type.
public struct QDQPass: LinearRewritePass {
    public let target = ConversionTarget.qdq
    public init() {}

    /// The formats `DequantizeLinear` takes, with the opset that introduced each.
    static func formatOpset(_ format: QuantFormat) -> Int? {
        switch format {
        case .int8, .uint8: return 13
        case .fp8E4M3FN, .fp8E5M2: return 19
        case .int4, .uint4: return 21
        case .fp4E2M1: return 23
        default: return nil
        }
    }

    public func check(_ layer: LinearLayer, _ settings: LayerSettings) throws {
        guard Self.formatOpset(settings.format) != nil else {
            throw QuantError(.unsupported, "DequantizeLinear takes int8, uint8, int4, uint4, fp8-e4m3, fp8-e5m2 or fp4-e2m1, not \(settings.format.spec.name) (use --target matmulnbits, bnb4 or quantkit)")
        }
        guard settings.blockSize >= 0 else {
            throw QuantError(.invalidArgument, "block size \(settings.blockSize) is negative")
        }
        guard layer.weightType.scaleType != nil else { throw SkipReason("its weight is \(layer.weightType.name)") }
    }

    /// The default-domain opset the rewritten nodes need.
    static func requiredOpset(_ layer: LinearLayer, _ settings: LayerSettings) -> Int {
        var version = formatOpset(settings.format) ?? 23
        if settings.blockSize > 0 { version = max(version, 21) }  // block_size attribute
        if layer.weightType != .float { version = max(version, 19) }  // float16/bfloat16 scales
        return version
    }

    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? {
        guard let scaleType = layer.weightType.scaleType else {
            throw QuantError(.internalError, "QDQPass called without check")
        }
        let isGather = layer.kind == .gather
        var params = QuantParams(format: settings.format)
        params.scheme = settings.scheme
        params.method = settings.method
        params.layout = .onnx
        params.rounding = .halfEven
        params.scaleType = scaleType
        params.reduceRange = settings.reduceRange
        if settings.blockSize > 0 {
            params.granularity = .blocked
            params.blockSize = settings.blockSize
            params.axis = isGather ? 1 : 0
        } else {
            params.granularity = .perAxis
            params.axis = isGather ? 0 : 1
        }
        return WeightRequest(params: params, shape: [layer.k, layer.n], transposed: false)  // [K, N] (Gather: [rows, cols])
    }

    public func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite {
        let isGather = layer.kind == .gather
        let q = try context.quantizedWeight(layer, try weightRequest(layer, settings)!)
        guard let codeType = ONNXType(storing: settings.format) else {
            throw QuantError(.unsupported, "\(settings.format.spec.name) has no ONNX tensor type")
        }

        var out = Rewrite()
        let base = layer.weight.name
        let codes = TensorData.make(name: context.names.unique("\(base)_quantized"), type: codeType, dims: [layer.k, layer.n], data: q.data)
        let scales = TensorData.make(name: context.names.unique("\(base)_scale"), type: layer.weightType, dims: q.plan.scalesShape, data: q.scales)
        out.initializers = [codes, scales]
        var dqInputs = [codes.name, scales.name]
        if q.plan.storesZeroPoints {
            let zeroPoints = TensorData.make(name: context.names.unique("\(base)_zero_point"), type: codeType, dims: q.plan.scalesShape, data: q.zeroPoints)
            dqInputs.append(zeroPoints.name)
            out.initializers.append(zeroPoints)
        }
        var attributes: [Onnx_AttributeProto] = [.int("axis", q.plan.params.axis)]
        if settings.blockSize > 0 { attributes.append(.int("block_size", settings.blockSize)) }
        let dequantized = context.names.unique("\(base)_dequantized")
        out.nodes = [Onnx_NodeProto("DequantizeLinear", name: context.names.unique("\(layer.baseName)_DequantizeLinear"),
                                    inputs: dqInputs, outputs: [dequantized], attributes: attributes)]

        // The product keeps the original node's name (the node itself is gone).
        let productName = layer.node.name.isEmpty ? "" : layer.node.name
        if isGather {
            out.nodes.append(Onnx_NodeProto("Gather", name: productName, inputs: [dequantized, layer.activation], outputs: [layer.output]))
        } else {
            let biasInput: String?
            switch layer.bias {
            case .constant(let name, let values):
                let bias = TensorData.make(name: context.names.unique("\(name)_bias"), floats: values, dims: [layer.n], type: layer.weightType)
                out.initializers.append(bias)
                biasInput = bias.name
            case .tensor(let name): biasInput = name
            case nil: biasInput = nil
            }
            let product = biasInput == nil ? layer.output : context.names.unique("\(layer.output)_matmul")
            out.nodes.append(Onnx_NodeProto("MatMul", name: productName, inputs: [layer.activation, dequantized], outputs: [product]))
            if let biasInput {
                out.nodes.append(Onnx_NodeProto("Add", name: context.names.unique("\(layer.baseName)_bias_add"),
                                                inputs: [product, biasInput], outputs: [layer.output]))
            }
        }
        out.quantizedBytes = q.byteCount
        out.error = q.error
        out.opsets = ["": Self.requiredOpset(layer, settings)]
        return out
    }
}
