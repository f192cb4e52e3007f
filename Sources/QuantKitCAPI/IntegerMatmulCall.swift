import CQuantKit
import QuantKit

/// A validated qk_tensor of U8, I8, I32 or F32 elements, read element by element.
struct ElementTensorView {
    let base: UnsafeMutableRawPointer?
    let dtype: Int32
    let shape: [Int]
    let count: Int
    let strides: [Int]
    let elementSize: Int

    init(_ pointer: UnsafePointer<qk_tensor>?, name: String, allowed: [Int32]) throws {
        guard let pointer else { throw nullArgument(name) }
        let t = pointer.pointee
        guard t.ndim >= 0 && t.ndim <= Int32(QK_MAX_DIMS) else {
            throw QuantError(.invalidArgument, "\(name).ndim is \(t.ndim), expected 0...\(QK_MAX_DIMS)")
        }
        guard allowed.contains(t.dtype) else {
            let names = allowed.map { Self.dtypeName($0) }.joined(separator: " or ")
            throw QuantError(.unsupported, "\(name).dtype is \(Self.dtypeName(t.dtype)), expected \(names)")
        }
        let rank = Int(t.ndim)
        guard rank == 0 || t.shape != nil else { throw nullArgument("\(name).shape") }
        var shape: [Int] = []
        for d in 0..<rank {
            guard t.shape[d] >= 0 else { throw QuantError(.invalidArgument, "\(name).shape[\(d)] is \(t.shape[d]); dimensions must be >= 0") }
            shape.append(Int(t.shape[d]))
        }
        dtype = t.dtype
        elementSize = t.dtype == Int32(QK_DTYPE_U8) || t.dtype == Int32(QK_DTYPE_I8) ? 1 : 4
        count = try FloatTensorView.elementCount(shape, name: name)
        guard count == 0 || t.data != nil else { throw nullArgument("\(name).data") }
        base = t.data
        self.shape = shape
        if let s = t.strides, rank > 0 {
            strides = (0..<rank).map { Int(s[$0]) }
            try FloatTensorView.checkStrides(strides, shape: shape, elementSize: elementSize, name: name)
        } else {
            strides = FloatTensorView.rowMajor(shape)
        }
    }

    static func dtypeName(_ dtype: Int32) -> String {
        switch dtype {
        case Int32(QK_DTYPE_U8): return "U8"
        case Int32(QK_DTYPE_I8): return "I8"
        case Int32(QK_DTYPE_I32): return "I32"
        case Int32(QK_DTYPE_F32): return "F32"
        default: return "dtype \(dtype)"
        }
    }

    /// Byte offset of element [i, j] of a matrix, or of element i of a vector.
    @inline(__always) func offset(_ i: Int, _ j: Int = 0) -> Int {
        (shape.count == 2 ? i * strides[0] + j * strides[1] : shape.count == 1 ? i * strides[0] : 0) * elementSize
    }

    @inline(__always) func integer(_ i: Int, _ j: Int = 0) -> Int32 {
        guard let base else { return 0 }
        switch dtype {
        case Int32(QK_DTYPE_U8): return Int32(base.load(fromByteOffset: offset(i, j), as: UInt8.self))
        case Int32(QK_DTYPE_I8): return Int32(base.load(fromByteOffset: offset(i, j), as: Int8.self))
        default: return base.loadUnaligned(fromByteOffset: offset(i, j), as: Int32.self)
        }
    }

    @inline(__always) func float(_ i: Int) -> Float {
        base?.loadUnaligned(fromByteOffset: offset(i), as: Float.self) ?? 0
    }

    /// A scalar or a vector of `length`: the value for index i.
    func isScalarOrVector(of length: Int) -> Bool { shape.isEmpty || shape == [1] || shape == [length] }
    @inline(__always) func broadcast(_ i: Int) -> Int { count == 1 ? 0 : i }
}

/// qk_matmul_integer: validates every argument, subtracts the zero points into int16 operands,
/// multiplies exactly, then writes int32 or rescaled floats.
struct IntegerMatmulCall {
    let a: ElementTensorView
    let b: ElementTensorView
    let aZero: ElementTensorView?
    let bZero: ElementTensorView?
    let aScale: ElementTensorView?
    let bScale: ElementTensorView?
    let bias: ElementTensorView?
    let y: ElementTensorView
    let threads: Int

    init(a: UnsafePointer<qk_tensor>?, aZeroPoint: UnsafePointer<qk_tensor>?, b: UnsafePointer<qk_tensor>?,
         bZeroPoint: UnsafePointer<qk_tensor>?, aScale: UnsafePointer<qk_tensor>?, bScale: UnsafePointer<qk_tensor>?,
         bias: UnsafePointer<qk_tensor>?, y: UnsafeMutablePointer<qk_tensor>?, threads: Int32) throws {
        let bytes = [Int32(QK_DTYPE_U8), Int32(QK_DTYPE_I8)]
        let aView = try ElementTensorView(a, name: "a", allowed: bytes)
        let bView = try ElementTensorView(b, name: "b", allowed: bytes)
        self.a = aView
        self.b = bView
        guard self.a.shape.count == 2, self.b.shape.count == 2 else {
            throw QuantError(.invalidArgument, "a and b must be matrices, got shapes \(self.a.shape) and \(self.b.shape)")
        }
        let (m, k, n) = (self.a.shape[0], self.a.shape[1], self.b.shape[1])
        guard self.b.shape[0] == k else { throw QuantError(.shapeMismatch, "a is [\(m), \(k)] but b is \(self.b.shape): their K differ") }
        aZero = try aZeroPoint.map { try ElementTensorView($0, name: "a_zero_point", allowed: [aView.dtype]) }
        bZero = try bZeroPoint.map { try ElementTensorView($0, name: "b_zero_point", allowed: [bView.dtype]) }
        if let z = aZero, !z.isScalarOrVector(of: m) { throw QuantError(.shapeMismatch, "a_zero_point has shape \(z.shape), expected [] or [\(m)]") }
        if let z = bZero, !z.isScalarOrVector(of: n) { throw QuantError(.shapeMismatch, "b_zero_point has shape \(z.shape), expected [] or [\(n)]") }
        let f32 = [Int32(QK_DTYPE_F32)]
        let aScaleView = try aScale.map { try ElementTensorView($0, name: "a_scale", allowed: f32) }
        self.aScale = aScaleView
        self.bScale = try bScale.map { try ElementTensorView($0, name: "b_scale", allowed: f32) }
        guard (self.aScale == nil) == (self.bScale == nil) else { throw QuantError(.invalidArgument, "give both a_scale and b_scale, or neither") }
        if let s = self.aScale, !s.isScalarOrVector(of: m) { throw QuantError(.shapeMismatch, "a_scale has shape \(s.shape), expected [] or [\(m)]") }
        if let s = self.bScale, !s.isScalarOrVector(of: n) { throw QuantError(.shapeMismatch, "b_scale has shape \(s.shape), expected [] or [\(n)]") }
        self.bias = try bias.map { try ElementTensorView($0, name: "bias", allowed: f32) }
        if let bv = self.bias {
            guard self.aScale != nil else { throw QuantError(.invalidArgument, "bias needs a_scale and b_scale (the int32 output has no bias)") }
            guard bv.shape == [n] else { throw QuantError(.shapeMismatch, "bias has shape \(bv.shape), expected [\(n)]") }
        }
        self.y = try ElementTensorView(UnsafePointer(y), name: "y", allowed: [aScaleView == nil ? Int32(QK_DTYPE_I32) : Int32(QK_DTYPE_F32)])
        guard self.y.shape == [m, n] else { throw QuantError(.shapeMismatch, "y has shape \(self.y.shape), expected [\(m), \(n)]") }
        guard threads >= 0 else { throw QuantError(.invalidArgument, "num_threads \(threads) is negative") }
        self.threads = Int(threads)
    }

    func run() throws {
        let (m, k, n) = (a.shape[0], a.shape[1], b.shape[1])
        guard m > 0, n > 0 else { return }
        let left = UnsafeMutablePointer<Int16>.allocate(capacity: max(m * k, 1))
        let right = UnsafeMutablePointer<Int16>.allocate(capacity: max(n * k, 1))
        let acc = UnsafeMutablePointer<Int32>.allocate(capacity: m * n)
        defer {
            left.deallocate()
            right.deallocate()
            acc.deallocate()
        }
        for i in 0..<m {
            let z = aZero.map { $0.integer($0.broadcast(i)) } ?? 0
            for c in 0..<k { left[i * k + c] = Int16(a.integer(i, c) - z) }
        }
        for j in 0..<n {
            let z = bZero.map { $0.integer($0.broadcast(j)) } ?? 0
            for c in 0..<k { right[j * k + c] = Int16(b.integer(c, j) - z) }
        }
        IntegerMatmul.run(a: left, bT: right, m: m, n: n, k: k, threads: threads, into: acc)
        guard let base = y.base else { return }
        for i in 0..<m {
            for j in 0..<n {
                let value = acc[i * n + j]
                if let aScale, let bScale {
                    let scaled = Float(value) * aScale.float(aScale.broadcast(i)) * bScale.float(bScale.broadcast(j)) + (bias?.float(j) ?? 0)
                    base.storeBytes(of: scaled, toByteOffset: y.offset(i, j), as: Float.self)
                } else {
                    base.storeBytes(of: value, toByteOffset: y.offset(i, j), as: Int32.self)
                }
            }
        }
    }
}
