#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import FoundationEssentials
import QuantKit

/// A quantized weight in the buffers its initializers will hold (no copy when they are made).
public struct QuantizedWeight {
    public let plan: QuantPlan
    public var data: Data
    public var scales: Data
    public var zeroPoints: Data
    /// Error against the weight (nil when not measured).
    public var error: ErrorStats?

    public var byteCount: Int { data.count + scales.count + zeroPoints.count }
}

extension LinearLayer {
    /// Quantizes the weight straight from where it is stored (the mapped model file, a side file,
    /// or the tensor's raw data), band by band with `TiledQuantizer`: as W [K, N], or as Wᵀ [N, K]
    /// when `transposed` (the MatMulNBits and bnb4 layouts), alpha folded in, rows padded with
    /// zeros to `shape[1]`. The bytes equal quantizing `weightMatrix` / `transposedWeightMatrix`.
    public func quantizeWeight(_ params: QuantParams, shape: [Int], transposed: Bool, external: ExternalDataReader?,
                               measureError: Bool, workspace: BandWorkspace? = nil, pool: TensorBufferPool? = nil) throws -> QuantizedWeight {
        let plan = try QuantPlan(params: params, shape: shape)
        // The quantizer writes every byte (block padding included): no zero fill needed, and the
        // pages fault in on the threads that write them (or were mapped by an earlier layer).
        func uninitialized(_ count: Int) -> Data { pool?.data(count: count) ?? Self.uninitializedData(count) }
        // The outputs are allocated only once the stored values are known to match the weight's
        // shape: a shape that claims more than its file holds is an invalid model, not a request
        // for that much memory.
        return try withStoredValues(external: external) { bytes, type, release in
            var data = uninitialized(plan.dataBytes)
            var scales = uninitialized(plan.scaleBytes)
            var zeroPoints = uninitialized(plan.zeroPointBytes)
            let source = try MatrixSource(bytes: bytes, type: type, rows: weightTransposed ? n : k, columns: weightTransposed ? k : n,
                                          transposed: transposed != weightTransposed, factor: alpha, paddedColumns: shape[1])
            let error = try data.withUnsafeMutableBytes { d in
                try scales.withUnsafeMutableBytes { s in
                    try zeroPoints.withUnsafeMutableBytes { z in
                        let buffers = QuantizedBuffers(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil)
                        return try TiledQuantizer.quantize(plan, from: source, into: buffers, measureError: measureError, workspace: workspace,
                                                           sourceRead: release)
                    }
                }
            }
            return QuantizedWeight(plan: plan, data: data, scales: scales, zeroPoints: zeroPoints, error: error)
        }
    }

    static func uninitializedData(_ count: Int) -> Data {
        guard count > 0, let bytes = malloc(count) else { return Data(count: count) }
        return Data(bytesNoCopy: bytes, count: count, deallocator: .free)
    }

    /// Calls `body` with the weight's stored little-endian values and their type: mapped bytes for
    /// external data (released afterwards, so resident memory stays bounded), the raw data, or
    /// the typed fields decoded to float32. The body may release mapped bytes early with its third
    /// argument, once it no longer reads them (a no-op for values that are not mapped).
    func withStoredValues<R>(external: ExternalDataReader?, _ body: (UnsafeRawBufferPointer, FloatType, _ release: () -> Void) throws -> R) throws -> R {
        let type: FloatType
        switch weightType {
        case .float: type = .f32
        case .float16: type = .f16
        case .bfloat16: type = .bf16
        default:
            // Other float types (float64) take the decoding path.
            let values = try TensorData.floats(of: weight, external: external)
            return try values.withUnsafeBytes { try body($0, .f32, {}) }
        }
        let count = try TensorData.elementCount(of: weight)
        func checked(_ bytes: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer {
            try TensorData.checkStoredSize(bytes, count: count, width: type.byteCount, name: weight.name)
            return bytes
        }
        if TensorData.isExternal(weight) {
            guard let external else {
                throw QuantError(.invalidModel, "tensor '\(weight.name)' is stored externally, but no model folder is known")
            }
            let bytes = try external.bytes(of: weight)
            var released = false
            let release = {
                if !released { external.release(bytes) }
                released = true
            }
            defer { release() }
            let values = try checked(bytes)
            external.populate(values)
            return try body(values, type, release)
        }
        if !weight.rawData.isEmpty || count == 0 {
            return try weight.rawData.withUnsafeBytes { try body(try checked($0), type, {}) }
        }
        let values = try TensorData.floats(of: weight, external: external)
        return try values.withUnsafeBytes { try body($0, .f32, {}) }
    }
}
