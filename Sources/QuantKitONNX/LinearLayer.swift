import QuantKit

/// A node that multiplies activations by a constant weight matrix: `MatMul(A, W)` or
/// `Gemm(A, W, C)`, and the embedding `Gather(W, ids)`. Found by `LinearLayer.match`; the weight
/// values are read only when a pass rewrites the node, one layer at a time.
public struct LinearLayer {
    public enum Kind: String, Sendable { case matMul = "MatMul", gemm = "Gemm", gather = "Gather" }

    /// What Gemm adds after the product (`beta * C`).
    public enum Bias {
        /// A constant vector of N values, beta already applied.
        case constant(name: String, values: [Float])
        /// A computed tensor, added as it is (beta = 1).
        case tensor(String)
    }

    public let kind: Kind
    /// Index of the node in its graph's node list.
    public let nodeIndex: Int
    public let node: Onnx_NodeProto
    /// The activation input (for Gather: the indices).
    public let activation: String
    public let output: String
    /// The weight initializer as stored in the model.
    public let weight: Onnx_TensorProto
    public let weightType: ONNXType
    /// `Y = A[.., K] · W[K, N]`; for Gather, W is the table [K = rows, N = columns].
    public let k: Int
    public let n: Int
    /// Gemm's `transB = 1`: W is stored as [N, K].
    public let weightTransposed: Bool
    /// Gemm's alpha, folded into the weight before quantizing.
    public let alpha: Float
    public let bias: Bias?

    public var name: String { node.name.isEmpty ? output : node.name }
    public var parameterCount: Int { k * n }

    /// A name based on the node's, for the nodes and tensors a rewrite creates.
    public var baseName: String { node.name.isEmpty ? weight.name : node.name }
}

/// Why a candidate node is left as it is.
public struct SkipReason: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ text: String) { description = text }
}

extension LinearLayer {
    /// The op types the converter can rewrite.
    public static let opTypes: Set<String> = ["MatMul", "Gemm", "Gather"]

    /// Whether `node` is a linear layer with a constant weight. `constant` finds initializers
    /// visible from the node's graph (its own and those of enclosing graphs) that no graph input
    /// overrides. Returns nil for op types that are not candidates at all; throws `SkipReason`
    /// for candidates that cannot be rewritten.
    public static func match(
        node: Onnx_NodeProto, at index: Int, constant: (String) -> Onnx_TensorProto?, external: ExternalDataReader?
    ) throws -> LinearLayer? {
        guard node.domain.isEmpty || node.domain == "ai.onnx", opTypes.contains(node.opType) else { return nil }
        switch node.opType {
        case "MatMul": return try matchMatMul(node, index, constant)
        case "Gemm": return try matchGemm(node, index, constant, external)
        default: return try matchGather(node, index, constant)
        }
    }

    static func weight(_ name: String, of node: Onnx_NodeProto, _ constant: (String) -> Onnx_TensorProto?) throws -> (Onnx_TensorProto, ONNXType, [Int]) {
        guard let tensor = constant(name) else {
            throw SkipReason("its weight is computed, not a constant initializer")
        }
        guard let type = ONNXType(rawValue: tensor.dataType), type.isFloat, type != .double else {
            throw SkipReason("its weight is \(ONNXType(rawValue: tensor.dataType)?.name ?? "type \(tensor.dataType)"), not float32/float16/bfloat16")
        }
        let shape = try TensorData.shape(of: tensor)
        // [1, ..., 1, K, N] is 2-D in all but name (as ONNX Runtime's quantizer also accepts).
        guard shape.count >= 2, shape.dropLast(2).allSatisfy({ $0 == 1 }) else {
            throw SkipReason("its weight has shape \(shape), not 2-D")
        }
        let matrix = Array(shape.suffix(2))
        guard matrix[0] > 0, matrix[1] > 0 else { throw SkipReason("its weight is empty (shape \(shape))") }
        return (tensor, type, matrix)
    }

    static func matchMatMul(_ node: Onnx_NodeProto, _ index: Int, _ constant: (String) -> Onnx_TensorProto?) throws -> LinearLayer {
        guard node.input.count == 2, node.output.count == 1 else { throw SkipReason("a MatMul needs 2 inputs and 1 output") }
        if constant(node.input[0]) != nil && constant(node.input[1]) == nil {
            throw SkipReason("its constant is the left operand (A), not the weight")
        }
        let (tensor, type, shape) = try weight(node.input[1], of: node, constant)
        if shape.count != tensor.dims.count, tensor.dims.count > 2 {
            // A rank-3+ weight broadcasts the output to its rank when A has lower rank; rewriting
            // it as 2-D would change the output shape for such inputs.
            throw SkipReason("its weight has leading unit dimensions \(tensor.dims), which can change the output rank")
        }
        return LinearLayer(kind: .matMul, nodeIndex: index, node: node, activation: node.input[0], output: node.output[0],
                           weight: tensor, weightType: type, k: shape[0], n: shape[1], weightTransposed: false, alpha: 1, bias: nil)
    }

    static func matchGemm(_ node: Onnx_NodeProto, _ index: Int, _ constant: (String) -> Onnx_TensorProto?, _ external: ExternalDataReader?) throws -> LinearLayer {
        guard (2...3).contains(node.input.count), node.output.count == 1 else { throw SkipReason("a Gemm needs 2 or 3 inputs and 1 output") }
        var alpha: Float = 1, beta: Float = 1, transA = 0, transB = 0
        for attribute in node.attribute {
            switch attribute.name {
            case "alpha": alpha = attribute.f
            case "beta": beta = attribute.f
            case "transA": transA = Int(attribute.i)
            case "transB": transB = Int(attribute.i)
            default: break
            }
        }
        guard transA == 0 else { throw SkipReason("Gemm with transA = 1 is not rewritten") }
        guard alpha.isFinite, beta.isFinite else { throw SkipReason("Gemm's alpha or beta is not finite") }
        let (tensor, type, shape) = try weight(node.input[1], of: node, constant)
        guard tensor.dims.count == 2 else { throw SkipReason("Gemm's B must be 2-D") }
        let k = transB == 0 ? shape[0] : shape[1]
        let n = transB == 0 ? shape[1] : shape[0]
        var bias: Bias?
        if node.input.count == 3 && !node.input[2].isEmpty && beta != 0 {
            let c = node.input[2]
            if let cTensor = constant(c) {
                let cShape = try TensorData.shape(of: cTensor)
                let cCount = cShape.reduce(1, *)
                // C broadcasts to [M, N]; a constant that varies only along N is a bias vector.
                guard cShape.count <= 2, cCount == n || cCount == 1, cShape.count < 2 || cShape[0] == 1 else {
                    throw SkipReason("Gemm's C has shape \(cShape), not a bias of \(n) values")
                }
                guard ONNXType(rawValue: cTensor.dataType)?.isFloat == true else {
                    throw SkipReason("Gemm's C is not a float tensor")
                }
                // Values are read here: a bias is small (N values).
                let values = try TensorData.floats(of: cTensor, external: external)
                let full = cCount == n ? values : [Float](repeating: values.first ?? 0, count: n)
                bias = .constant(name: c, values: full.map { $0 * beta })
            } else {
                guard beta == 1 else { throw SkipReason("Gemm's C is computed and beta is \(beta), not 1") }
                bias = .tensor(c)
            }
        }
        return LinearLayer(kind: .gemm, nodeIndex: index, node: node, activation: node.input[0], output: node.output[0],
                           weight: tensor, weightType: type, k: k, n: n, weightTransposed: transB != 0, alpha: alpha, bias: bias)
    }

    static func matchGather(_ node: Onnx_NodeProto, _ index: Int, _ constant: (String) -> Onnx_TensorProto?) throws -> LinearLayer? {
        guard node.input.count == 2, node.output.count == 1 else { throw SkipReason("a Gather needs 2 inputs and 1 output") }
        // Only a lookup in a constant 2-D float table is an embedding; other Gathers (shapes,
        // indices) are not candidates at all.
        guard let table = constant(node.input[0]), table.dims.count == 2, ONNXType(rawValue: table.dataType)?.isFloat == true else {
            return nil
        }
        let axis = node.attribute.first { $0.name == "axis" }?.i ?? 0
        guard axis == 0 else { throw SkipReason("Gather along axis \(axis) is not an embedding lookup") }
        let (tensor, type, shape) = try weight(node.input[0], of: node, constant)
        return LinearLayer(kind: .gather, nodeIndex: index, node: node, activation: node.input[1], output: node.output[0],
                           weight: tensor, weightType: type, k: shape[0], n: shape[1], weightTransposed: false, alpha: 1, bias: nil)
    }

    /// The weight as W[K, N] floats, row-major, with alpha folded in (Gather: the table [rows, cols]).
    public func weightMatrix(external: ExternalDataReader?) throws -> [Float] {
        var values = try TensorData.floats(of: weight, external: external)
        guard values.count == k * n else {
            throw QuantError(.invalidModel, "weight '\(weight.name)' has \(values.count) values, expected \(k * n)")
        }
        if weightTransposed { values = Self.transpose(values, rows: n, cols: k) }
        if alpha != 1 { for i in values.indices { values[i] *= alpha } }
        return values
    }

    /// The weight as Wᵀ[N, K] (the layout MatMulNBits and MatMulBnb4 store), alpha folded in.
    public func transposedWeightMatrix(external: ExternalDataReader?) throws -> [Float] {
        var values = try TensorData.floats(of: weight, external: external)
        guard values.count == k * n else {
            throw QuantError(.invalidModel, "weight '\(weight.name)' has \(values.count) values, expected \(k * n)")
        }
        if !weightTransposed { values = Self.transpose(values, rows: k, cols: n) }
        if alpha != 1 { for i in values.indices { values[i] *= alpha } }
        return values
    }

    /// Transposes a row-major [rows, cols] matrix, in cache-sized tiles.
    public static func transpose(_ a: [Float], rows: Int, cols: Int) -> [Float] {
        let tile = 32
        return [Float](unsafeUninitializedCapacity: a.count) { out, initialized in
            a.withUnsafeBufferPointer { src in
                for r0 in stride(from: 0, to: rows, by: tile) {
                    for c0 in stride(from: 0, to: cols, by: tile) {
                        for r in r0..<min(r0 + tile, rows) {
                            for c in c0..<min(c0 + tile, cols) { out[c * rows + r] = src[r * cols + c] }
                        }
                    }
                }
            }
            initialized = a.count
        }
    }
}
