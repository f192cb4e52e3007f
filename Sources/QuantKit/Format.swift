/// Every weight format, numbered exactly as `QK_FORMAT_*` in Include/quantkit.h.
public enum QuantFormat: Int32, CaseIterable, Sendable {
    case int8 = 1, uint8, int4, uint4, int3, uint3, int2, uint2
    case nf4 = 9, fp4E2M1, fp8E4M3FN, fp8E5M2, fp16, bf16, log4, fp4Bnb

    public var spec: FormatSpec { FormatTable.spec(self) }
}

/// How a stored code becomes a number before scaling.
public enum ElementKind: Sendable {
    /// Two's-complement (signed) or plain unsigned integer codes; asymmetric zero points allowed.
    case integer(signed: Bool)
    /// A small IEEE-like float (FP4 E2M1, FP8): encoded by rounding to the nearest representable value.
    case minifloat(Minifloat)
    /// Non-uniform levels from a 16-entry table (NF4, bitsandbytes FP4, LOG4).
    case codebook(Codebook)
    /// 16-bit float conversion without a scale.
    case float16(bfloat: Bool)
}

/// One row of the format table: everything the kernels need to know about a format.
public struct FormatSpec: Sendable {
    public let format: QuantFormat
    public let name: String
    public let aliases: [String]
    public let description: String
    public let bits: Int
    public let kind: ElementKind

    /// Flag bits as published in the header (`QK_FORMAT_FLAG_*`).
    public struct Flags: OptionSet, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let signed = Flags(rawValue: 1)
        public static let float = Flags(rawValue: 2)
        public static let codebook = Flags(rawValue: 4)
        public static let scaled = Flags(rawValue: 8)
        public static let zeroPoint = Flags(rawValue: 16)
    }

    public var flags: Flags {
        switch kind {
        case .integer(let signed): return signed ? [.signed, .scaled, .zeroPoint] : [.scaled, .zeroPoint]
        case .minifloat: return [.signed, .float, .scaled]
        case .codebook(let book): return book.isFloatFormat ? [.signed, .float, .codebook, .scaled] : [.signed, .codebook, .scaled]
        case .float16: return [.signed, .float]
        }
    }

    /// Smallest and largest integer code (integer formats); 0 and codes-1 otherwise.
    public var codeRange: (min: Int32, max: Int32) {
        switch kind {
        case .integer(let signed):
            return signed ? (-(1 << Int32(bits - 1)), (1 << Int32(bits - 1)) - 1) : (0, (1 << Int32(bits)) - 1)
        case .float16: return (0, 0xFFFF)
        default: return (0, (1 << Int32(bits)) - 1)
        }
    }

    /// The largest magnitude before scaling: symmetric min-max maps max|x| onto it.
    public var levelMax: Float {
        switch kind {
        case .integer: return Float((1 << (bits - 1)) - 1)  // unsigned: above the zero point 2^(bits-1)
        case .minifloat(let mf): return mf.maxFinite
        case .codebook: return 1
        case .float16(let bfloat): return bfloat ? Float(bitPattern: 0x7F7F_0000) : 65504  // largest finite values
        }
    }

    public var isInteger: Bool { if case .integer = kind { return true } else { return false } }
    public var isUnsignedInteger: Bool { if case .integer(false) = kind { return true } else { return false } }
    public var needsScale: Bool { if case .float16 = kind { return false } else { return true } }

    /// Zero point an unsigned integer format uses when symmetric: the middle code.
    public var symmetricZeroPoint: Int32 { isUnsignedInteger ? 1 << Int32(bits - 1) : 0 }
}

public enum FormatTable {
    public static let all: [FormatSpec] = [
        FormatSpec(format: .int8, name: "int8", aliases: ["i8", "q8"], description: "8-bit signed integer", bits: 8, kind: .integer(signed: true)),
        FormatSpec(format: .uint8, name: "uint8", aliases: ["u8"], description: "8-bit unsigned integer", bits: 8, kind: .integer(signed: false)),
        FormatSpec(format: .int4, name: "int4", aliases: ["i4", "q4"], description: "4-bit signed integer", bits: 4, kind: .integer(signed: true)),
        FormatSpec(format: .uint4, name: "uint4", aliases: ["u4"], description: "4-bit unsigned integer", bits: 4, kind: .integer(signed: false)),
        FormatSpec(format: .int3, name: "int3", aliases: ["i3", "q3"], description: "3-bit signed integer", bits: 3, kind: .integer(signed: true)),
        FormatSpec(format: .uint3, name: "uint3", aliases: ["u3"], description: "3-bit unsigned integer", bits: 3, kind: .integer(signed: false)),
        FormatSpec(format: .int2, name: "int2", aliases: ["i2", "q2"], description: "2-bit signed integer", bits: 2, kind: .integer(signed: true)),
        FormatSpec(format: .uint2, name: "uint2", aliases: ["u2"], description: "2-bit unsigned integer", bits: 2, kind: .integer(signed: false)),
        FormatSpec(format: .nf4, name: "nf4", aliases: ["normalfloat4"], description: "4-bit NormalFloat (QLoRA/bitsandbytes levels), absmax-scaled", bits: 4, kind: .codebook(.nf4)),
        FormatSpec(format: .fp4E2M1, name: "fp4-e2m1", aliases: ["fp4", "e2m1", "float4e2m1"], description: "4-bit float E2M1 (OCP MX, ONNX FLOAT4E2M1), max 6", bits: 4, kind: .minifloat(.e2m1)),
        FormatSpec(format: .fp8E4M3FN, name: "fp8-e4m3", aliases: ["fp8", "e4m3", "e4m3fn", "fp8-e4m3fn", "float8e4m3fn"], description: "8-bit float E4M3FN, max 448", bits: 8, kind: .minifloat(.e4m3fn)),
        FormatSpec(format: .fp8E5M2, name: "fp8-e5m2", aliases: ["e5m2", "float8e5m2"], description: "8-bit float E5M2, max 57344", bits: 8, kind: .minifloat(.e5m2)),
        FormatSpec(format: .fp16, name: "fp16", aliases: ["f16", "float16", "half"], description: "IEEE half precision (conversion, no scale)", bits: 16, kind: .float16(bfloat: false)),
        FormatSpec(format: .bf16, name: "bf16", aliases: ["bfloat16"], description: "bfloat16 (conversion, no scale)", bits: 16, kind: .float16(bfloat: true)),
        FormatSpec(format: .log4, name: "log4", aliases: ["logarithmic4", "pot4"], description: "4-bit logarithmic: sign and power of two, +-{0, 2^-6..1}, absmax-scaled", bits: 4, kind: .codebook(.log4)),
        FormatSpec(format: .fp4Bnb, name: "fp4-bnb", aliases: ["bnb-fp4"], description: "bitsandbytes FP4 levels (MatMulBnb4 quant_type 0), absmax-scaled", bits: 4, kind: .codebook(.fp4Bnb)),
    ]

    public static func spec(_ format: QuantFormat) -> FormatSpec {
        all[Int(format.rawValue) - 1]
    }

    /// Looks a format up by name or alias, ignoring case and '_' versus '-'.
    public static func lookup(_ name: String) -> QuantFormat? {
        let key = name.lowercased().replacingUnderscores()
        return all.first { $0.name == key || $0.aliases.contains(key) }?.format
    }
}

extension String {
    fileprivate func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}
