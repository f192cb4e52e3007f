import QuantKit

/// MatMul/Gemm → `com.microsoft::MatMulNBits` (ONNX Runtime's weight-only operator).
///
/// Inputs: A, B uint8 [N, blocks, block·bits/8], scales [N, blocks] in A's type, zero points
/// [N, ⌈blocks·bits/8⌉] (asymmetric only; absent means 2^(bits−1)), and a bias at index 5.
/// Bytes and names follow ONNX Runtime's own quantizer (`MatMulNBitsQuantizer`, RTN): scales from
/// MLAS's rules, round half away from zero, weights padded to whole blocks with zeros, tensors named
/// `<weight>_Q<bits>`, `<weight>_scales`, `<weight>_zero_points`, the node `<node>_Q<bits>`.
public struct MatMulNBitsPass: LinearRewritePass {
    public let target = ConversionTarget.matMulNBits
    public init() {}

    public func check(_ layer: LinearLayer, _ settings: LayerSettings) throws {
        let spec = settings.format.spec
        guard spec.isInteger, [2, 4, 8].contains(spec.bits) else {
            throw QuantError(.unsupported, "MatMulNBits takes 2-, 4- or 8-bit integer formats, not \(spec.name) (use --target qdq, bnb4 or quantkit)")
        }
        guard settings.blockSize >= 16, settings.blockSize & (settings.blockSize - 1) == 0 else {
            throw QuantError(.invalidArgument, "MatMulNBits needs a block size that is a power of two ≥ 16, not \(settings.blockSize)")
        }
        guard layer.kind != .gather else { throw SkipReason("MatMulNBits does not take a Gather") }
        guard layer.weightType.scaleType != nil else { throw SkipReason("its weight is \(layer.weightType.name)") }
    }

    public func weightRequest(_ layer: LinearLayer, _ settings: LayerSettings) throws -> WeightRequest? {
        let block = settings.blockSize
        var params = QuantParams(format: settings.format)
        params.scheme = settings.scheme
        params.granularity = .blocked
        params.axis = 1
        params.blockSize = block
        params.layout = .matMulNBits
        params.rounding = .halfAway
        params.method = settings.method
        guard let scaleType = layer.weightType.scaleType else {
            throw QuantError(.internalError, "MatMulNBitsPass called without check")
        }
        params.scaleType = scaleType
        // Wᵀ [N, K], each row padded with zeros to whole blocks (as ONNX Runtime's quantizer pads
        // K, so the codes after K are the code of 0).
        let paddedK = (layer.k + block - 1) / block * block
        return WeightRequest(params: params, shape: [layer.n, paddedK], transposed: true)
    }

    public func rewrite(_ layer: LinearLayer, _ settings: LayerSettings, _ context: inout RewriteContext) throws -> Rewrite {
        let bits = settings.format.spec.bits
        let block = settings.blockSize
        let blocks = (layer.k + block - 1) / block
        let q = try context.quantizedWeight(layer, try weightRequest(layer, settings)!)

        var out = Rewrite()
        let weightName = layer.weight.name
        let packed = TensorData.make(name: context.names.unique("\(weightName)_Q\(bits)"), type: .uint8,
                                     dims: [layer.n, blocks, block * bits / 8], data: q.data)
        let scales = TensorData.make(name: context.names.unique("\(weightName)_scales"), type: layer.weightType,
                                     dims: [layer.n, blocks], data: q.scales)
        var inputs = [layer.activation, packed.name, scales.name]
        out.initializers = [packed, scales]
        if q.plan.storesZeroPoints {
            let zeroPoints = TensorData.make(name: context.names.unique("\(weightName)_zero_points"), type: .uint8,
                                             dims: [layer.n, (blocks * bits + 7) / 8], data: q.zeroPoints)
            inputs.append(zeroPoints.name)
            out.initializers.append(zeroPoints)
        }
        var output = layer.output
        var addAfter: String?
        switch layer.bias {
        case .constant(let name, let values):
            let bias = TensorData.make(name: context.names.unique("\(name)_bias"), floats: values, dims: [layer.n], type: layer.weightType)
            while inputs.count < 5 { inputs.append("") }  // zero points, g_idx: absent
            inputs.append(bias.name)
            out.initializers.append(bias)
        case .tensor(let name):
            addAfter = name
            output = context.names.unique("\(layer.output)_matmul")
        case nil: break
        }

        var attributes: [Onnx_AttributeProto] = [.int("K", layer.k), .int("N", layer.n), .int("bits", bits), .int("block_size", block)]
        if let level = settings.accuracyLevel, level != 0 { attributes.append(.int("accuracy_level", level)) }
        let nodeName = layer.node.name.isEmpty ? "" : context.names.unique("\(layer.node.name)_Q\(bits)")
        out.nodes = [Onnx_NodeProto("MatMulNBits", domain: "com.microsoft", name: nodeName, inputs: inputs, outputs: [output], attributes: attributes)]
        if let c = addAfter {
            out.nodes.append(Onnx_NodeProto("Add", name: context.names.unique("\(layer.baseName)_bias_add"), inputs: [output, c], outputs: [layer.output]))
        }
        out.quantizedBytes = q.byteCount
        out.error = q.error
        out.opsets = ["com.microsoft": 1]
        return out
    }
}
