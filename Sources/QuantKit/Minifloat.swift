/// A small binary float (FP4 E2M1, FP8 E4M3FN, FP8 E5M2): sign bit on top, then exponent and
/// mantissa. Encoding rounds to the nearest finite value and saturates, as ONNX's saturating cast.
public struct Minifloat: Sendable {
    public let bits: Int
    public let exponentBits: Int
    public let mantissaBits: Int
    public let bias: Int
    /// Largest magnitude code that is finite (codes above it are Inf/NaN, or do not exist).
    public let maxFiniteCode: Int
    /// Value of each magnitude code 0...maxFiniteCode, increasing.
    public let magnitudes: [Float]

    public var maxFinite: Float { magnitudes[maxFiniteCode] }
    var signBit: Int { 1 << (bits - 1) }

    init(exponentBits: Int, mantissaBits: Int, bias: Int, maxFiniteCode: Int) {
        self.bits = 1 + exponentBits + mantissaBits
        self.exponentBits = exponentBits
        self.mantissaBits = mantissaBits
        self.bias = bias
        self.maxFiniteCode = maxFiniteCode
        let mantissaScale = Float(1 << mantissaBits)
        magnitudes = (0...maxFiniteCode).map { code in
            let exponent = code >> mantissaBits
            let mantissa = Float(code & ((1 << mantissaBits) - 1))
            if exponent == 0 { return mantissa / mantissaScale * Float.pow2(1 - bias) }
            return (1 + mantissa / mantissaScale) * Float.pow2(exponent - bias)
        }
    }

    public static let e2m1 = Minifloat(exponentBits: 2, mantissaBits: 1, bias: 1, maxFiniteCode: 0x7)
    public static let e4m3fn = Minifloat(exponentBits: 4, mantissaBits: 3, bias: 7, maxFiniteCode: 0x7E)
    public static let e5m2 = Minifloat(exponentBits: 5, mantissaBits: 2, bias: 15, maxFiniteCode: 0x7B)

    /// Code of the nearest value to a finite x; ties go to the even code (or away from zero).
    @inline(__always)
    func encode(_ x: Float, tiesAway: Bool) -> Int {
        let sign = x.sign == .minus ? signBit : 0
        let a = x.magnitude
        if a >= maxFinite { return sign | maxFiniteCode }
        // Largest code whose value is <= a (binary search over at most 127 entries).
        var low = 0, high = maxFiniteCode
        while low < high {
            let mid = (low + high + 1) >> 1
            if magnitudes[mid] <= a { low = mid } else { high = mid - 1 }
        }
        let below = magnitudes[low]
        if below == a { return sign | low }
        let midpoint = (below + magnitudes[low + 1]) * 0.5  // exact: few mantissa bits
        if a < midpoint { return sign | low }
        if a > midpoint { return sign | (low + 1) }
        if tiesAway { return sign | (low + 1) }
        return sign | ((low & 1) == 0 ? low : low + 1)
    }

    /// Value of any code, including the Inf/NaN codes of FP8.
    func decode(_ code: Int) -> Float {
        let magnitudeCode = code & (signBit - 1)
        let negative = code & signBit != 0
        var value: Float
        if magnitudeCode <= maxFiniteCode {
            value = magnitudes[magnitudeCode]
        } else if exponentBits == 5 && magnitudeCode == 0x7C {
            value = .infinity
        } else {
            value = .nan
        }
        if negative { value = -value }
        return value
    }
}

/// Non-uniform 16-level formats. Encoding picks the nearest level by comparing with the midpoints
/// between neighbours; a value exactly on a midpoint goes to the lower level, as bitsandbytes does.
public struct Codebook: Sendable {
    /// Level of each 4-bit code.
    public let levels: [Float]
    /// true: code = sign bit (8) | magnitude code, and `sortedCodes` covers magnitudes only.
    let signMagnitude: Bool
    /// Codes in increasing order of their level (all 16, or the 8 magnitudes).
    let sortedCodes: [UInt8]
    /// thresholds[i] separates sortedCodes[i] and sortedCodes[i + 1].
    let thresholds: [Float]
    public let isFloatFormat: Bool

    init(levels: [Float], signMagnitude: Bool, thresholds: [Float]? = nil, isFloatFormat: Bool) {
        self.levels = levels
        self.signMagnitude = signMagnitude
        self.isFloatFormat = isFloatFormat
        let candidates = signMagnitude ? Array(0..<8) : Array(0..<16)
        let sorted = candidates.sorted { levels[$0] < levels[$1] }
        sortedCodes = sorted.map { UInt8($0) }
        self.thresholds = thresholds ?? (0..<(sorted.count - 1)).map { (levels[sorted[$0]] + levels[sorted[$0 + 1]]) * 0.5 }
    }

    @inline(__always)
    func encode(_ x: Float) -> Int {
        if signMagnitude {
            let sign = x < 0 ? 8 : 0
            return sign | Int(sortedCodes[rank(x.magnitude)])
        }
        return Int(sortedCodes[rank(x)])
    }

    @inline(__always)
    private func rank(_ x: Float) -> Int {
        var r = 0
        for t in thresholds where x > t { r += 1 }
        return r
    }

    /// QLoRA NormalFloat4 levels, with the decision thresholds bitsandbytes hard-codes.
    public static let nf4 = Codebook(
        levels: [
            -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
            -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
            0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
            0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
        ],
        signMagnitude: false,
        thresholds: [
            -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
            -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
            0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
            0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
        ],
        isFloatFormat: true)

    /// bitsandbytes FP4 (sign-magnitude codes; magnitude code order is not the level order).
    public static let fp4Bnb = Codebook(
        levels: [
            0.0, 0.005208333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25,
            -0.0, -0.005208333333, -0.66666667, -1.0, -0.33333333, -0.5, -0.16666667, -0.25,
        ],
        signMagnitude: true,
        thresholds: [0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333],
        isFloatFormat: true)

    /// Logarithmic: sign and a power of two, magnitudes {0, 2^-6, ..., 2^-1, 1}.
    public static let log4 = Codebook(
        levels: (0..<16).map { code -> Float in
            let magnitude: Float = (code & 7) == 0 ? 0 : Float.pow2((code & 7) - 7)
            return code & 8 != 0 ? -magnitude : magnitude
        },
        signMagnitude: true,
        isFloatFormat: false)
}

extension Float {
    static func pow2(_ e: Int) -> Float { Float(sign: .plus, exponent: e, significand: 1) }
}
