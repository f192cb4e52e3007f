/// Conversions between Float and the 16-bit float types (round to nearest even).
public enum Float16Codec {
    @inline(__always) public static func bf16Bits(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: bits >> 16) | 0x40 }
        let rounding = 0x7FFF &+ ((bits >> 16) & 1)
        return UInt16(truncatingIfNeeded: (bits &+ rounding) >> 16)
    }

    @inline(__always) public static func fromBF16(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    @inline(__always) public static func f16Bits(_ x: Float) -> UInt16 { Float16(x).bitPattern }

    @inline(__always) public static func fromF16(_ bits: UInt16) -> Float { Float(Float16(bitPattern: bits)) }

    /// The value a Float becomes once stored as `type` (scales are used as they will be read back).
    @inline(__always) static func rounded(_ x: Float, to type: FloatType) -> Float {
        switch type {
        case .f32: return x
        case .f16: return fromF16(f16Bits(x))
        case .bf16: return fromBF16(bf16Bits(x))
        }
    }

    static func load(_ raw: UnsafeRawPointer, index: Int, type: FloatType) -> Float {
        switch type {
        case .f32: return raw.loadUnaligned(fromByteOffset: index * 4, as: Float.self)
        case .f16: return fromF16(raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
        case .bf16: return fromBF16(raw.loadUnaligned(fromByteOffset: index * 2, as: UInt16.self))
        }
    }

    static func store(_ x: Float, _ raw: UnsafeMutableRawPointer, index: Int, type: FloatType) {
        switch type {
        case .f32: raw.storeBytes(of: x, toByteOffset: index * 4, as: Float.self)
        case .f16: raw.storeBytes(of: f16Bits(x), toByteOffset: index * 2, as: UInt16.self)
        case .bf16: raw.storeBytes(of: bf16Bits(x), toByteOffset: index * 2, as: UInt16.self)
        }
    }
}
