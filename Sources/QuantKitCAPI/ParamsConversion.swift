import CQuantKit
import QuantKit

/// qk_quant_params -> QuantParams, rejecting unknown enum values by name.
extension QuantParams {
    init(c pointer: UnsafePointer<qk_quant_params>?) throws {
        guard let pointer else { throw nullArgument("params") }
        try StructVersion.checkInput(pointer, "params")
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

    /// The C struct with every field of this version (struct_size is the caller's to set).
    func c(structSize: UInt32) -> qk_quant_params {
        qk_quant_params(
            struct_size: structSize, format: format.rawValue, scheme: scheme.rawValue,
            granularity: granularity.rawValue, axis: Int32(axis), block_size: Int32(blockSize), method: method.rawValue,
            rounding: rounding.rawValue, layout: layout.rawValue, scale_dtype: scaleType.rawValue, num_threads: Int32(threads),
            percentile: percentile, search_steps: Int32(searchSteps), min_clip_ratio: minClipRatio)
    }
}

func decode<T: RawRepresentable>(_ value: Int32, as type: T.Type, _ name: String) throws -> T where T.RawValue == Int32 {
    guard let decoded = T(rawValue: value) else { throw QuantError(.invalidArgument, "\(name) has unknown value \(value)") }
    return decoded
}

/// The struct_size rules of the header: a caller's struct may be newer (larger) than this library's,
/// never older. Unknown trailing bytes must be zero on input and are zeroed on output.
enum StructVersion {
    /// Larger than any struct this ABI will grow to: a bigger struct_size is garbage, not a version.
    static let largest = 4096

    static func declaredSize<T>(_ pointer: UnsafePointer<T>, _ name: String) throws -> Int {
        let declared = Int(UnsafeRawPointer(pointer).load(as: UInt32.self))
        let known = MemoryLayout<T>.size
        guard declared >= known else {
            throw QuantError(.version, "\(name).struct_size is \(declared), expected at least \(known) (sizeof(\(T.self)))")
        }
        guard declared <= largest else { throw QuantError(.version, "\(name).struct_size \(declared) is not a valid size") }
        return declared
    }

    static func checkInput<T>(_ pointer: UnsafePointer<T>, _ name: String) throws {
        let declared = try declaredSize(pointer, name)
        let bytes = UnsafeRawPointer(pointer)
        for offset in MemoryLayout<T>.size..<declared where bytes.load(fromByteOffset: offset, as: UInt8.self) != 0 {
            throw QuantError(.version, "\(name) sets fields (byte \(offset)) from a newer QuantKit than this library (\(QuantKitInfo.version))")
        }
    }

    /// Validates an output struct; nothing is written until `OutputStruct.write`, after every
    /// other argument was checked.
    static func prepareOutput<T>(_ pointer: UnsafeMutablePointer<T>?, _ name: String) throws -> OutputStruct<T> {
        guard let pointer else { throw nullArgument(name) }
        return OutputStruct(pointer: pointer, declaredSize: try declaredSize(UnsafePointer(pointer), name))
    }
}

/// A checked output struct of the caller's (possibly newer, larger) version.
struct OutputStruct<T> {
    let pointer: UnsafeMutablePointer<T>
    let declaredSize: Int

    var structSize: UInt32 { UInt32(declaredSize) }

    /// Stores this version's fields and zeroes the bytes this library does not know.
    func write(_ value: T) {
        pointer.pointee = value
        let known = MemoryLayout<T>.size
        if declaredSize > known {
            (UnsafeMutableRawPointer(pointer) + known).initializeMemory(as: UInt8.self, repeating: 0, count: declaredSize - known)
        }
    }
}
