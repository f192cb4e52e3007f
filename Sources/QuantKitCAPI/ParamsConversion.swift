import CQuantKit
import QuantKit

/// qk_quant_params -> QuantParams, rejecting unknown enum values by name.
extension QuantParams {
    init(c pointer: UnsafePointer<qk_quant_params>?) throws {
        guard let pointer else { throw nullArgument("params") }
        let size = MemoryLayout<qk_quant_params>.size
        guard pointer.pointee.struct_size >= UInt32(size) else {
            throw QuantError(.version, "params.struct_size is \(pointer.pointee.struct_size), expected at least \(size) (call qk_quant_params_init)")
        }
        let c = pointer.pointee
        self.init(format: try decode(c.format, as: QuantFormat.self, "params.format"))
        scheme = try decode(c.scheme, as: QuantScheme.self, "params.scheme")
        granularity = try decode(c.granularity, as: Granularity.self, "params.granularity")
        axis = Int(c.axis)
        blockSize = Int(c.block_size)
        method = try decode(c.method, as: ScaleMethod.self, "params.method")
        rounding = try decode(c.rounding, as: Rounding.self, "params.rounding")
        layout = try decode(c.layout, as: PackingLayout.self, "params.layout")
        scaleType = try decode(c.scale_dtype, as: FloatType.self, "params.scale_dtype")
        threads = Int(c.num_threads)
        percentile = c.percentile
        searchSteps = Int(c.search_steps)
        minClipRatio = c.min_clip_ratio
        guard percentile.isFinite, minClipRatio.isFinite else { throw QuantError(.invalidArgument, "params.percentile and params.min_clip_ratio must be finite") }
    }

    /// The C struct with every field of this version.
    var c: qk_quant_params {
        qk_quant_params(
            struct_size: UInt32(MemoryLayout<qk_quant_params>.size), format: format.rawValue, scheme: scheme.rawValue,
            granularity: granularity.rawValue, axis: Int32(axis), block_size: Int32(blockSize), method: method.rawValue,
            rounding: rounding.rawValue, layout: layout.rawValue, scale_dtype: scaleType.rawValue, num_threads: Int32(threads),
            percentile: percentile, search_steps: Int32(searchSteps), min_clip_ratio: minClipRatio)
    }
}

func decode<T: RawRepresentable>(_ value: Int32, as type: T.Type, _ name: String) throws -> T where T.RawValue == Int32 {
    guard let decoded = T(rawValue: value) else { throw QuantError(.invalidArgument, "\(name) has unknown value \(value)") }
    return decoded
}

/// Checks that a caller-declared output struct is at least as large as this version writes.
func checkStructSize(_ declared: UInt32, _ type: Any.Type, size: Int, _ name: String) throws {
    guard declared >= UInt32(size) else {
        throw QuantError(.version, "\(name).struct_size is \(declared), expected at least \(size) (sizeof(\(type)))")
    }
}
