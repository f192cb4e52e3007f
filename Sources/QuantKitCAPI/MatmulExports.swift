import CQuantKit
import QuantKit

// The fused-matmul part of the ABI (since ABI 2): packed weights, qk_matmul, qk_matmul_integer.
// A qk_packed_matrix* is a retained PackedMatrix (Unmanaged); release drops that reference.

@c @implementation public func qk_pack_weights(
    _ params: UnsafePointer<qk_quant_params>!, _ n: Int64, _ k: Int64, _ weights: UnsafePointer<qk_quantized>!,
    _ options: UnsafePointer<qk_pack_options>!, _ out: UnsafeMutablePointer<OpaquePointer?>!
) -> qk_status {
    guarded("qk_pack_weights") {
        let p = try QuantParams(c: params)
        guard let out else { throw nullArgument("out") }
        guard n >= 0, k >= 0 else { throw QuantError(.invalidArgument, "n = \(n) and k = \(k) must not be negative") }
        guard n <= Int64(Int32.max), k <= Int64(Int32.max) else { throw QuantError(.overflow, "n = \(n), k = \(k) exceed 2^31 - 1") }
        var orientation = WeightOrientation.nk
        var threads = p.threads
        if let options {
            try StructVersion.checkInput(options, "options")
            orientation = try decode(options.pointee.orientation, as: WeightOrientation.self, "options.orientation")
            guard options.pointee.num_threads >= 0 else { throw QuantError(.invalidArgument, "options.num_threads is negative") }
            guard options.pointee.reserved == 0 else { throw QuantError(.invalidArgument, "options.reserved must be 0") }
            threads = Int(options.pointee.num_threads)
        }
        let shape = orientation == .nk ? [Int(n), Int(k)] : [Int(k), Int(n)]
        let plan = try QuantPlan(params: p, shape: shape)
        let buffers = try QuantizedArgs(weights, plan: plan, name: "weights")
        let matrix = try PackedMatrix.pack(params: p, n: Int(n), k: Int(k), orientation: orientation, weights: buffers.view, threads: threads)
        out.pointee = OpaquePointer(Unmanaged.passRetained(matrix).toOpaque())
    }
}

@c @implementation public func qk_packed_matrix_release(_ matrix: OpaquePointer!) {
    guard let matrix else { return }
    Unmanaged<PackedMatrix>.fromOpaque(UnsafeRawPointer(matrix)).release()
}

private func packedMatrix(_ handle: OpaquePointer?, _ name: String) throws -> PackedMatrix {
    guard let handle else { throw nullArgument(name) }
    return Unmanaged<PackedMatrix>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

@c @implementation public func qk_packed_matrix_get_info(_ matrix: OpaquePointer!, _ info: UnsafeMutablePointer<qk_packed_matrix_info>!) -> qk_status {
    guarded("qk_packed_matrix_get_info") {
        let w = try packedMatrix(matrix, "matrix")
        let output = try StructVersion.prepareOutput(info, "info")
        var value = qk_packed_matrix_info()
        value.struct_size = output.structSize
        value.format = w.format.rawValue
        value.n = Int64(w.n)
        value.k = Int64(w.k)
        value.block_size = Int32(w.block)
        value.int8_compute = w.integerCodes ? 1 : 0
        value.packed_bytes = w.packedBytes
        output.write(value)
    }
}

@c @implementation public func qk_matmul(
    _ w: OpaquePointer!, _ x: UnsafePointer<qk_tensor>!, _ bias: UnsafePointer<qk_tensor>!, _ y: UnsafeMutablePointer<qk_tensor>!,
    _ options: UnsafePointer<qk_matmul_options>!
) -> qk_status {
    guarded("qk_matmul") {
        let matrix = try packedMatrix(w, "w")
        let xv = try FloatTensorView(x, name: "x")
        let yv = try FloatTensorView(y, name: "y")
        var compute = MatmulCompute.float
        var threads = 0
        if let options {
            try StructVersion.checkInput(options, "options")
            compute = try decode(options.pointee.compute, as: MatmulCompute.self, "options.compute")
            guard options.pointee.num_threads >= 0 else { throw QuantError(.invalidArgument, "options.num_threads is negative") }
            threads = Int(options.pointee.num_threads)
        }
        guard let kx = xv.shape.last else { throw QuantError(.invalidArgument, "x is a scalar; it needs shape [..., K]") }
        guard kx == matrix.k else { throw QuantError(.shapeMismatch, "x has K = \(kx), the packed matrix K = \(matrix.k)") }
        let leading = Array(xv.shape.dropLast())
        guard yv.shape == leading + [matrix.n] else {
            throw QuantError(.shapeMismatch, "y has shape \(yv.shape), expected \(leading + [matrix.n])")
        }
        var biasValues: UnsafePointer<Float>?
        if let bias {
            let b = try FloatTensorView(bias, name: "bias")
            guard b.type == .f32 else { throw QuantError(.unsupported, "bias must be F32") }
            guard b.shape == [matrix.n] else { throw QuantError(.shapeMismatch, "bias has shape \(b.shape), expected [\(matrix.n)]") }
            biasValues = b.base.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) }
            guard b.strides == nil, Int(bitPattern: b.base) % 4 == 0 else { throw QuantError(.unsupported, "bias must be dense and 4-byte aligned") }
        }
        guard !xv.overlaps(yv) else { throw QuantError(.invalidArgument, "y overlaps x") }
        let rows = leading.reduce(1, *)
        let k = matrix.k, n = matrix.n
        try Matmul.run(matrix, rows: rows, compute: compute, bias: biasValues, threads: threads,
                       denseX: xv.isDenseF32 ? xv.base.map { UnsafePointer($0.assumingMemoryBound(to: Float.self)) } : nil,
                       denseY: yv.isDenseF32 ? yv.base?.assumingMemoryBound(to: Float.self) : nil,
                       load: { m, destination in xv.read(from: m * k, count: k, into: destination) },
                       store: { m, values in yv.write(values, count: n, at: m * n) })
    }
}

@c @implementation public func qk_matmul_integer(
    _ a: UnsafePointer<qk_tensor>!, _ aZeroPoint: UnsafePointer<qk_tensor>!, _ b: UnsafePointer<qk_tensor>!,
    _ bZeroPoint: UnsafePointer<qk_tensor>!, _ aScale: UnsafePointer<qk_tensor>!, _ bScale: UnsafePointer<qk_tensor>!,
    _ bias: UnsafePointer<qk_tensor>!, _ y: UnsafeMutablePointer<qk_tensor>!, _ numThreads: Int32
) -> qk_status {
    guarded("qk_matmul_integer") {
        try IntegerMatmulCall(a: a, aZeroPoint: aZeroPoint, b: b, bZeroPoint: bZeroPoint, aScale: aScale, bScale: bScale,
                              bias: bias, y: y, threads: numThreads).run()
    }
}

@c @implementation public func qk_matmul_kernel_variant() -> UnsafePointer<CChar>! {
    StaticStrings.matmulVariantNames[Runtime.matmulVariant.rawValue]
}
