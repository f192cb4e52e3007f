import QuantKit

/// MatMul/Gemm → standard dynamic quantization, as ONNX Runtime's `quantize_dynamic` writes it:
///
///     DynamicQuantizeLinear(A) → a_q (uint8), a_scale, a_zero_point
///     MatMulInteger(a_q, Wq, a_zero_point[, w_zero_point]) → int32
///     Cast(to float) · Mul(a_scale · w_scale) (+ Add bias)
///
/// Wq is int8 (or uint8) per output column: W[K, N] with one scale per column (w_scale [N]); a zero
/// point [N] only when the format stores one. `DynamicQuantizeLinear` takes float32 only, so layers
/// of float16/bfloat16 models are left alone.
public struct DynamicInt8Pass: LinearRewritePass {
    public let target = ConversionTarget.dynamicInt8
    public init() {}

    public func check(_ layer: LinearLayer, _ settings: LayerSettings) throws {
        guard settings.format == .int8 || settings.format == .uint8 else {
            throw QuantError(.unsupported, "dynamic-int8 stores int8 or uint8 weights, not \(settings.format.spec.name)")
        }
        guard settings.blockSize == 0 else {
            throw QuantError(.invalidArgument, "dynamic-int8 quantizes per output channel (MatMulInteger has no blocks): use block size 0, not \(settings.blockSize)")
        }
        guard layer.kind != .gather else { throw SkipReason("MatMulInteger does not take a Gather") }
        guard layer.weightType == .float else {
            throw SkipReason("its weight is \(layer.weightType.name); DynamicQuantizeLinear takes float32 only")
        }
    }

    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? {
        var params = QuantParams(format: settings.format)
        params.scheme = settings.scheme
        params.method = settings.method
        params.granularity = .perAxis
        params.axis = 1
        params.layout = .onnx
        params.rounding = .halfEven
        params.scaleType = .f32
        params.reduceRange = settings.reduceRange
        return WeightRequest(params: params, shape: [layer.k, layer.n], transposed: false)  // [K, N]
    }

    public func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite {
        let q = try context.quantizedWeight(layer, try weightRequest(layer, settings)!)
        let codeType: ONNXType = settings.format == .int8 ? .int8 : .uint8

        var out = Rewrite()
        let base = layer.weight.name
        let node = layer.baseName
        let codes = TensorData.make(name: context.names.unique("\(base)_quantized"), type: codeType, dims: [layer.k, layer.n], data: q.data)
        let scales = TensorData.make(name: context.names.unique("\(base)_scale"), type: .float, dims: [layer.n], data: q.scales)
        out.initializers = [codes, scales]

        let aq = context.names.unique("\(layer.activation)_quantized")
        let aScale = context.names.unique("\(layer.activation)_scale")
        let aZero = context.names.unique("\(layer.activation)_zero_point")
        out.nodes.append(Onnx_NodeProto("DynamicQuantizeLinear", name: context.names.unique("\(node)_DynamicQuantizeLinear"),
                                        inputs: [layer.activation], outputs: [aq, aScale, aZero]))
        var integerInputs = [aq, codes.name, aZero]
        if q.plan.storesZeroPoints {
            let zeroPoints = TensorData.make(name: context.names.unique("\(base)_zero_point"), type: codeType, dims: [layer.n], data: q.zeroPoints)
            out.initializers.append(zeroPoints)
            integerInputs.append(zeroPoints.name)
        }
        let integer = context.names.unique("\(layer.output)_int32")
        out.nodes.append(Onnx_NodeProto("MatMulInteger", name: context.names.unique("\(node)_MatMulInteger"), inputs: integerInputs, outputs: [integer]))
        let product = context.names.unique("\(layer.output)_float")
        out.nodes.append(Onnx_NodeProto("Cast", name: context.names.unique("\(node)_Cast"), inputs: [integer], outputs: [product],
                                        attributes: [.int("to", Int(ONNXType.float.rawValue))]))
        let scale = context.names.unique("\(layer.output)_scale")
        out.nodes.append(Onnx_NodeProto("Mul", name: context.names.unique("\(node)_scale_mul"), inputs: [aScale, scales.name], outputs: [scale]))

        let biasInput: String?
        switch layer.bias {
        case .constant(let name, let values):
            let bias = TensorData.make(name: context.names.unique("\(name)_bias"), floats: values, dims: [layer.n], type: .float)
            out.initializers.append(bias)
            biasInput = bias.name
        case .tensor(let name): biasInput = name
        case nil: biasInput = nil
        }
        let scaled = biasInput == nil ? layer.output : context.names.unique("\(layer.output)_matmul")
        out.nodes.append(Onnx_NodeProto("Mul", name: layer.node.name, inputs: [product, scale], outputs: [scaled]))
        if let biasInput {
            out.nodes.append(Onnx_NodeProto("Add", name: context.names.unique("\(node)_bias_add"), inputs: [scaled, biasInput], outputs: [layer.output]))
        }
        out.quantizedBytes = q.byteCount
        out.error = q.error
        out.opsets = ["": 11]  // DynamicQuantizeLinear
        return out
    }
}
