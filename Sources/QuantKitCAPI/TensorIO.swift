import CQuantKit
import QuantKit

/// A validated view of a qk_tensor holding floats: shape, element type and element offsets.
struct FloatTensorView {
    let base: UnsafeMutableRawPointer?
    let type: FloatType
    let shape: [Int]
    let count: Int
    /// nil when the elements are dense and row-major.
    let strides: [Int]?

    init(_ pointer: UnsafePointer<qk_tensor>?, name: String) throws {
        guard let pointer else { throw nullArgument(name) }
        let t = pointer.pointee
        guard t.ndim >= 0 && t.ndim <= Int32(QK_MAX_DIMS) else {
            throw QuantError(.invalidArgument, "\(name).ndim is \(t.ndim), expected 0...\(QK_MAX_DIMS)")
        }
        let rank = Int(t.ndim)
        guard rank == 0 || t.shape != nil else { throw nullArgument("\(name).shape") }
        var shape: [Int] = []
        for d in 0..<rank {
            let dim = t.shape[d]
            guard dim >= 0 else { throw QuantError(.invalidArgument, "\(name).shape[\(d)] is \(dim); dimensions must be >= 0") }
            shape.append(Int(dim))
        }
        switch t.dtype {
        case Int32(QK_DTYPE_F32): type = .f32
        case Int32(QK_DTYPE_F16): type = .f16
        case Int32(QK_DTYPE_BF16): type = .bf16
        case Int32(QK_DTYPE_F64), Int32(QK_DTYPE_I8), Int32(QK_DTYPE_U8), Int32(QK_DTYPE_I32):
            throw QuantError(.unsupported, "\(name).dtype \(t.dtype) is not a float type QuantKit quantizes (f32, f16, bf16)")
        default:
            throw QuantError(.invalidArgument, "\(name).dtype has unknown value \(t.dtype)")
        }
        count = try Self.elementCount(shape, name: name)
        guard count == 0 || t.data != nil else { throw nullArgument("\(name).data") }
        base = t.data
        self.shape = shape
        if let s = t.strides, rank > 0 {
            let strides = (0..<rank).map { Int(s[$0]) }
            try Self.checkStrides(strides, shape: shape, elementSize: type.byteCount, name: name)
            strides == Self.rowMajor(shape) ? (self.strides = nil) : (self.strides = strides)
        } else {
            strides = nil
        }
    }

    static func elementCount(_ shape: [Int], name: String) throws -> Int {
        var count = 1
        for dim in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: dim)
            guard !overflow, p <= Int(Int64.max / 16) else {
                throw QuantError(.overflow, "\(name).shape \(shape) has more elements than fit in memory")
            }
            count = p
        }
        return count
    }

    static func rowMajor(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var step = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = step
            step &*= max(shape[d], 1)
        }
        return strides
    }

    /// Strides (negative ones too: the data pointer is the first element, others may lie before
    /// it) whose nearest and furthest elements' byte offsets fit in the address space.
    static func checkStrides(_ strides: [Int], shape: [Int], elementSize: Int, name: String) throws {
        guard !shape.contains(0) else { return }
        var lowest = 0, highest = 0
        let limit = Int(Int64.max / 16) / elementSize
        for (d, s) in strides.enumerated() {
            let (span, o1) = (shape[d] - 1).multipliedReportingOverflow(by: s)
            guard !o1, span.magnitude <= UInt(limit) else { throw QuantError(.overflow, "\(name).strides[\(d)] = \(s) reaches past the address space") }
            if span < 0 { lowest += span } else { highest += span }
            guard lowest >= -limit, highest <= limit else { throw QuantError(.overflow, "\(name).strides reach past the address space") }
        }
    }

    /// Byte offset of the element with row-major index `linear`.
    @inline(__always) func byteOffset(_ linear: Int) -> Int {
        guard let strides else { return linear * type.byteCount }
        var rest = linear, offset = 0
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            offset += (rest % shape[d]) * strides[d]
            rest /= shape[d]
        }
        return offset * type.byteCount
    }

    var isDenseF32: Bool {
        type == .f32 && strides == nil && (base.map { Int(bitPattern: $0) % 4 == 0 } ?? true)
    }

    /// Calls body with the elements as dense floats (borrowed when possible, converted otherwise).
    func withFloats<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R) rethrows -> R {
        if isDenseF32 {
            return try body(UnsafeBufferPointer(start: base?.assumingMemoryBound(to: Float.self), count: count))
        }
        let copy = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
        defer { copy.deallocate() }
        if let base {
            for i in 0..<count { copy[i] = FloatLoad.load(base + byteOffset(i), type) }
        }
        return try body(UnsafeBufferPointer(rebasing: copy[0..<count]))
    }

    /// Calls body with a dense float buffer, then stores it into the tensor in its own type.
    func fillFloats(_ body: (UnsafeMutableBufferPointer<Float>) throws -> Void) throws {
        if isDenseF32 {
            try body(UnsafeMutableBufferPointer(start: base?.assumingMemoryBound(to: Float.self), count: count))
            return
        }
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(count, 1))
        defer { buffer.deallocate() }
        try body(UnsafeMutableBufferPointer(rebasing: buffer[0..<count]))
        guard let base else { return }
        for i in 0..<count { FloatLoad.store(buffer[i], base + byteOffset(i), type) }
    }
}

/// One float element of any API float type at a byte address.
enum FloatLoad {
    static func load(_ p: UnsafeRawPointer, _ type: FloatType) -> Float {
        switch type {
        case .f32: return p.loadUnaligned(as: Float.self)
        case .f16: return Float(Float16(bitPattern: p.loadUnaligned(as: UInt16.self)))
        case .bf16: return Float(bitPattern: UInt32(p.loadUnaligned(as: UInt16.self)) << 16)
        }
    }

    static func store(_ x: Float, _ p: UnsafeMutableRawPointer, _ type: FloatType) {
        switch type {
        case .f32: p.storeBytes(of: x, as: Float.self)
        case .f16: p.storeBytes(of: Float16(x).bitPattern, as: UInt16.self)
        case .bf16:
            let bits = x.bitPattern
            let rounded = x.isNaN ? (bits >> 16) | 0x40 : (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
            p.storeBytes(of: UInt16(truncatingIfNeeded: rounded), as: UInt16.self)
        }
    }
}

/// qk_quantized -> raw buffers, checked against what the plan needs.
struct QuantizedArgs {
    let data: UnsafeMutableRawBufferPointer
    let scales: UnsafeMutableRawBufferPointer
    let zeroPoints: UnsafeMutableRawBufferPointer?

    init(_ pointer: UnsafePointer<qk_quantized>?, plan: QuantPlan, name: String) throws {
        guard let pointer else { throw nullArgument(name) }
        try StructVersion.checkInput(pointer, name)
        let q = pointer.pointee
        func buffer(_ p: UnsafeMutableRawPointer?, _ bytes: Int, needed: Int, _ field: String) throws -> UnsafeMutableRawBufferPointer {
            guard needed > 0 else { return UnsafeMutableRawBufferPointer(start: p, count: p == nil ? 0 : bytes) }
            guard let p else { throw nullArgument("\(name).\(field)") }
            guard bytes >= needed else {
                throw QuantError(.bufferTooSmall, "\(name).\(field)_bytes is \(bytes), the layout needs \(needed)")
            }
            return UnsafeMutableRawBufferPointer(start: p, count: bytes)
        }
        // size_t arrives as Int: a value past Int.max shows up negative.
        guard q.data_bytes >= 0, q.scales_bytes >= 0, q.zero_points_bytes >= 0 else {
            throw QuantError(.overflow, "\(name) declares a buffer larger than the address space")
        }
        data = try buffer(q.data, q.data_bytes, needed: plan.dataBytes, "data")
        scales = try buffer(q.scales, q.scales_bytes, needed: plan.scaleBytes, "scales")
        zeroPoints = plan.storesZeroPoints
            ? try buffer(q.zero_points, q.zero_points_bytes, needed: plan.zeroPointBytes, "zero_points") : nil
    }

    var buffers: QuantizedBuffers { QuantizedBuffers(data: data, scales: scales, zeroPoints: zeroPoints) }
    var view: QuantizedView {
        QuantizedView(data: UnsafeRawBufferPointer(data), scales: UnsafeRawBufferPointer(scales), zeroPoints: zeroPoints.map { UnsafeRawBufferPointer($0) })
    }
}

extension FloatTensorView {
    /// Copies `count` elements starting at row-major index `first` into dense floats.
    func read(from first: Int, count: Int, into destination: UnsafeMutablePointer<Float>) {
        guard let base, count > 0 else { return }
        if isDenseF32 {
            destination.update(from: base.assumingMemoryBound(to: Float.self) + first, count: count)
            return
        }
        for i in 0..<count { destination[i] = FloatLoad.load(base + byteOffset(first + i), type) }
    }

    /// Stores `count` floats at row-major index `first` onward, in the tensor's own type.
    func write(_ values: UnsafePointer<Float>, count: Int, at first: Int) {
        guard let base, count > 0 else { return }
        if isDenseF32 {
            (base.assumingMemoryBound(to: Float.self) + first).update(from: values, count: count)
            return
        }
        for i in 0..<count { FloatLoad.store(values[i], base + byteOffset(first + i), type) }
    }

    /// Addresses of the first and one past the last byte any element occupies.
    var byteRange: Range<UInt> {
        guard let base, count > 0 else { return 0..<0 }
        let start = UInt(bitPattern: Int(bitPattern: base))
        guard let strides else { return start..<start + UInt(count * type.byteCount) }
        var low = 0, high = 0
        for (d, s) in strides.enumerated() {
            let span = (shape[d] - 1) * s
            if span < 0 { low += span } else { high += span }
        }
        return UInt(bitPattern: Int(bitPattern: base) + low * type.byteCount)..<UInt(bitPattern: Int(bitPattern: base) + (high + 1) * type.byteCount)
    }

    func overlaps(_ other: FloatTensorView) -> Bool { byteRange.overlaps(other.byteRange) }
}
