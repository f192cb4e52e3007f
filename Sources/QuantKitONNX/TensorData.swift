import FoundationEssentials
import QuantKit

/// ONNX element types the converter reads or writes (`TensorProto.DataType` values).
public enum ONNXType: Int32, Sendable {
    case float = 1, uint8 = 2, int8 = 3, int32 = 6, int64 = 7, float16 = 10, double = 11, bfloat16 = 16
    case float8E4M3FN = 17, float8E5M2 = 19, uint4 = 21, int4 = 22, float4E2M1 = 23

    /// The float types a weight may have.
    public var isFloat: Bool { self == .float || self == .float16 || self == .bfloat16 || self == .double }

    /// The scale type that matches this activation type (MatMulNBits wants scales in A's type).
    public var scaleType: FloatType? {
        switch self {
        case .float: return .f32
        case .float16: return .f16
        case .bfloat16: return .bf16
        default: return nil
        }
    }

    public var name: String { ONNXType.names[self] ?? "type \(rawValue)" }

    static let names: [ONNXType: String] = [
        .float: "float32", .uint8: "uint8", .int8: "int8", .int32: "int32", .int64: "int64", .float16: "float16",
        .double: "float64", .bfloat16: "bfloat16", .float8E4M3FN: "float8e4m3fn", .float8E5M2: "float8e5m2",
        .uint4: "uint4", .int4: "int4", .float4E2M1: "float4e2m1",
    ]

    /// The ONNX type that stores a QuantKit format's codes in the ONNX layout.
    public init?(storing format: QuantFormat) {
        switch format {
        case .int8: self = .int8
        case .uint8: self = .uint8
        case .int4: self = .int4
        case .uint4: self = .uint4
        case .fp8E4M3FN: self = .float8E4M3FN
        case .fp8E5M2: self = .float8E5M2
        case .fp4E2M1: self = .float4E2M1
        case .fp16: self = .float16
        case .bf16: self = .bfloat16
        default: return nil
        }
    }
}

/// Reading tensor values out of a `TensorProto`, wherever they are stored (raw bytes, typed
/// fields, or external data).
public enum TensorData {
    /// The tensor's dimensions as `Int`, rejecting negative ones.
    public static func shape(of tensor: Onnx_TensorProto) throws -> [Int] {
        try tensor.dims.map { d in
            guard d >= 0, d <= Int64(Int32.max) * 1024 else {
                throw QuantError(.invalidModel, "tensor '\(tensor.name)' has dimension \(d)")
            }
            return Int(d)
        }
    }

    public static func elementCount(of tensor: Onnx_TensorProto) throws -> Int {
        var count = 1
        for d in try shape(of: tensor) {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow else { throw QuantError(.invalidModel, "tensor '\(tensor.name)' has too many elements") }
            count = p
        }
        return count
    }

    public static func isExternal(_ tensor: Onnx_TensorProto) -> Bool {
        tensor.dataLocation == .external
    }

    /// The values of a float tensor (float32, float16, bfloat16 or float64) as Float.
    public static func floats(of tensor: Onnx_TensorProto, external: ExternalDataReader?) throws -> [Float] {
        guard let type = ONNXType(rawValue: tensor.dataType), type.isFloat else {
            throw QuantError(.unsupported, "tensor '\(tensor.name)' is \(ONNXType(rawValue: tensor.dataType)?.name ?? "type \(tensor.dataType)"), not a float type")
        }
        let count = try elementCount(of: tensor)
        if isExternal(tensor) {
            guard let external else {
                throw QuantError(.invalidModel, "tensor '\(tensor.name)' is stored externally, but no model folder is known")
            }
            let bytes = try external.bytes(of: tensor)
            defer { external.release(bytes) }
            return try decode(bytes, type: type, count: count, name: tensor.name)
        }
        if !tensor.rawData.isEmpty || count == 0 {
            return try tensor.rawData.withUnsafeBytes { try decode($0, type: type, count: count, name: tensor.name) }
        }
        let values: [Float]
        switch type {
        case .float: values = tensor.floatData
        case .double: values = tensor.doubleData.map { Float($0) }
        // float16 and bfloat16 values sit in int32_data, one 16-bit pattern per entry.
        case .float16: values = tensor.int32Data.map { Float16Codec.fromF16(UInt16(truncatingIfNeeded: $0)) }
        default: values = tensor.int32Data.map { Float16Codec.fromBF16(UInt16(truncatingIfNeeded: $0)) }
        }
        guard values.count == count else {
            throw QuantError(.invalidModel, "tensor '\(tensor.name)' holds \(values.count) values, its shape needs \(count)")
        }
        return values
    }

    /// Checks that `raw` holds exactly `count` values of `width` bytes: a shape that claims more
    /// than the stored bytes (or more than memory can address) makes the model invalid.
    static func checkStoredSize(_ raw: UnsafeRawBufferPointer, count: Int, width: Int, name: String) throws {
        let (needed, overflow) = count.multipliedReportingOverflow(by: width)
        guard !overflow, raw.count == needed else {
            let shapeNeeds = overflow ? "more than memory can hold" : "\(needed)"
            throw QuantError(.invalidModel, "tensor '\(name)' has \(raw.count) bytes of data, its shape needs \(shapeNeeds)")
        }
    }

    static func decode(_ raw: UnsafeRawBufferPointer, type: ONNXType, count: Int, name: String) throws -> [Float] {
        let width = type == .double ? 8 : (type == .float ? 4 : 2)
        try checkStoredSize(raw, count: count, width: width, name: name)
        guard count > 0, let base = raw.baseAddress else { return [] }
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            switch type {
            case .float:
                UnsafeMutableRawBufferPointer(out).copyMemory(from: raw)
            case .double:
                for i in 0..<count { out[i] = Float(base.loadUnaligned(fromByteOffset: i * 8, as: Double.self)) }
            case .float16:
                for i in 0..<count { out[i] = Float16Codec.fromF16(base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
            default:
                for i in 0..<count { out[i] = Float16Codec.fromBF16(base.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self)) }
            }
            initialized = count
        }
    }

    /// The bytes a tensor occupies in storage (raw, typed fields or external), for size reports.
    public static func storedBytes(of tensor: Onnx_TensorProto) -> Int {
        if isExternal(tensor) {
            if let ref = try? ExternalDataReader.reference(of: tensor), let length = ref.length { return length }
            return 0
        }
        if !tensor.rawData.isEmpty { return tensor.rawData.count }
        return tensor.floatData.count * 4 + tensor.int32Data.count * 4 + tensor.int64Data.count * 8
            + tensor.doubleData.count * 8 + tensor.uint64Data.count * 8 + tensor.stringData.reduce(0) { $0 + $1.count }
    }

    /// A tensor with raw little-endian data.
    public static func make(name: String, type: ONNXType, dims: [Int], raw: [UInt8]) -> Onnx_TensorProto {
        make(name: name, type: type, dims: dims, data: Data(raw))
    }

    /// A tensor holding `data` as its raw data (not copied).
    public static func make(name: String, type: ONNXType, dims: [Int], data: Data) -> Onnx_TensorProto {
        var tensor = Onnx_TensorProto()
        tensor.name = name
        tensor.dataType = type.rawValue
        tensor.dims = dims.map { Int64($0) }
        tensor.rawData = data
        return tensor
    }

    /// A tensor of floats stored as `type` (float32, float16 or bfloat16).
    /// (Raw data is little-endian, as this host is.)
    public static func make(name: String, floats: [Float], dims: [Int], type: ONNXType) -> Onnx_TensorProto {
        guard type == .float16 || type == .bfloat16 else {
            return make(name: name, type: .float, dims: dims, data: floats.withUnsafeBytes { Data($0) })
        }
        var data = Data(count: floats.count * 2)
        data.withUnsafeMutableBytes { out in
            floats.withUnsafeBufferPointer { x in
                guard let source = x.baseAddress, let target = out.baseAddress else { return }  // (no values)
                HalfConversion.narrow(source, count: x.count, bfloat: type == .bfloat16, into: target.assumingMemoryBound(to: UInt16.self))
            }
        }
        return make(name: name, type: type, dims: dims, data: data)
    }

    public static func make(name: String, int64s: [Int64], dims: [Int]) -> Onnx_TensorProto {
        make(name: name, type: .int64, dims: dims, raw: int64s.withUnsafeBytes { [UInt8]($0) })
    }
}
