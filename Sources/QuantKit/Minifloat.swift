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
    func encode(_ x: Float, tiesAway: Bool) -> Int { encoder.encode(x, tiesAway: tiesAway) }

    /// The scalars `encode` needs, without the `magnitudes` array (no reference counting per call).
    var encoder: MinifloatEncoder {
        MinifloatEncoder(signBit: signBit, maxFiniteCode: maxFiniteCode, maxFinite: maxFinite, minNormal: Float.pow2(1 - bias),
                         subnormalStepsPerUnit: Float.pow2(bias - 1 + mantissaBits), shift: UInt32(23 - mantissaBits),
                         exponentRebias: (127 - bias) << mantissaBits)
    }

    /// Reference twin of `encode`: binary search for the neighbours, then compare with the midpoint.
    func encodeBySearch(_ x: Float, tiesAway: Bool) -> Int {
        let sign = x.sign == .minus ? signBit : 0
        let a = x.magnitude
        if a >= maxFinite { return sign | maxFiniteCode }
        var low = 0, high = maxFiniteCode
        while low < high {
            let mid = (low + high + 1) >> 1
            if magnitudes[mid] <= a { low = mid } else { high = mid - 1 }
        }
        let below = magnitudes[low]
        if below == a { return sign | low }
        let midpoint = (below + magnitudes[low + 1]) * 0.5  // exact: few mantissa bits
        if a < midpoint { return sign | low }
        if a > midpoint || tiesAway { return sign | (low + 1) }
        return sign | ((low & 1) == 0 ? low : low + 1)
    }

    var minNormal: Float { Float.pow2(1 - bias) }

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

/// Float-to-minifloat rounding by bit arithmetic on the float32 pattern: normals round the mantissa
/// to the format's width (a carry moves to the next binade, as it should); subnormals are multiples
/// of the smallest step. `Minifloat.encodeBySearch` is its reference twin.
struct MinifloatEncoder: Sendable {
    let signBit: Int
    let maxFiniteCode: Int
    let maxFinite: Float
    let minNormal: Float
    let subnormalStepsPerUnit: Float
    let shift: UInt32
    /// (127 - bias) << mantissaBits: turns a float32 exponent|mantissa prefix into this format's code.
    let exponentRebias: Int

    @inline(__always)
    func encode(_ x: Float, tiesAway: Bool) -> Int {
        let sign = x.sign == .minus ? signBit : 0
        let a = x.magnitude
        if a >= maxFinite { return sign | maxFiniteCode }
        if a < minNormal {
            let steps = a * subnormalStepsPerUnit  // exact: a power-of-two scaling
            let rounded = tiesAway ? steps.rounded(.toNearestOrAwayFromZero) : steps.rounded(.toNearestOrEven)
            return sign | Int(rounded)
        }
        let bits = a.bitPattern
        let half = UInt32(1) << (shift - 1)
        let roundingBias = tiesAway ? half : half - 1 + ((bits >> shift) & 1)
        let code = Int((bits + roundingBias) >> shift) - exponentRebias
        return sign | min(code, maxFiniteCode)
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
    let encoder: Encoder
    var grid: RankGrid { encoder.grid }
    public let isFloatFormat: Bool

    init(levels: [Float], signMagnitude: Bool, thresholds: [Float]? = nil, isFloatFormat: Bool) {
        self.levels = levels
        self.signMagnitude = signMagnitude
        self.isFloatFormat = isFloatFormat
        let candidates = signMagnitude ? Array(0..<8) : Array(0..<16)
        let sorted = candidates.sorted { levels[$0] < levels[$1] }
        sortedCodes = sorted.map { UInt8($0) }
        let cuts = thresholds ?? (0..<(sorted.count - 1)).map { (levels[sorted[$0]] + levels[sorted[$0 + 1]]) * 0.5 }
        self.thresholds = cuts
        let codes = UnsafeMutablePointer<UInt8>.allocate(capacity: sortedCodes.count)
        codes.initialize(from: sortedCodes, count: sortedCodes.count)
        // The ISA kernels' tables: 16 thresholds padded with +infinity (never below a value) and
        // 16 codes (padding never indexed: a rank is at most the threshold count).
        let paddedThresholds = UnsafeMutablePointer<Float>.allocate(capacity: 16)
        paddedThresholds.initialize(repeating: .infinity, count: 16)
        paddedThresholds.update(from: cuts, count: min(cuts.count, 16))
        let paddedCodes = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
        paddedCodes.initialize(repeating: 0, count: 16)
        for (i, code) in sortedCodes.prefix(16).enumerated() { paddedCodes[i] = Int32(code) }
        encoder = Encoder(signMagnitude: signMagnitude, sortedCodes: codes, grid: RankGrid(thresholds: cuts, low: signMagnitude ? 0 : -1, high: 1),
                          paddedThresholds: paddedThresholds, paddedCodes: paddedCodes,
                          fitsKernels: cuts.count <= 15 && !cuts.contains(0) && cuts == cuts.sorted())
    }

    @inline(__always)
    func encode(_ x: Float) -> Int { encoder.encode(x) }

    /// Cells narrower than the closest pair of thresholds, each holding at most one of them, so a
    /// value's rank (thresholds below it) costs one lookup and one comparison. The tables belong to
    /// the three static codebooks and live as long as the process (plain pointers: no reference
    /// counting on the per-element path).
    struct RankGrid: @unchecked Sendable {
        let low: Float
        let cellsPerUnit: Float
        let cells: Int
        let baseRank: UnsafeMutablePointer<UInt8>   // thresholds below the cell's start
        let threshold: UnsafeMutablePointer<Float>  // the threshold inside the cell, or +infinity
        let thresholds: UnsafeMutablePointer<Float>
        let thresholdCount: Int

        init(thresholds cuts: [Float], low: Float, high: Float) {
            self.low = low
            let closest = zip(cuts.dropFirst(), cuts).map { $0 - $1 }.min() ?? (high - low)
            cells = max(16, Int(((high - low) / closest * 2).rounded(.up)))
            cellsPerUnit = Float(cells) / (high - low)
            baseRank = .allocate(capacity: cells)
            threshold = .allocate(capacity: cells)
            threshold.initialize(repeating: .infinity, count: cells)
            thresholds = .allocate(capacity: cuts.count)
            thresholds.initialize(from: cuts, count: cuts.count)
            thresholdCount = cuts.count
            for c in 0..<cells {
                let start = low + Float(c) / cellsPerUnit
                baseRank[c] = UInt8(cuts.filter { $0 < start }.count)
            }
            for t in cuts { threshold[min(cells - 1, max(0, Int((t - low) * cellsPerUnit)))] = t }
        }

        @inline(__always)
        func rank(_ x: Float) -> Int {
            let position = (x - low) * cellsPerUnit
            guard position >= 0, position < Float(cells) else { return slowRank(x) }
            let c = Int(position)
            var r = Int(baseRank[c]) + (x > threshold[c] ? 1 : 0)
            // Cell edges are computed in float: confirm against the neighbours (exact, and cheap).
            while r > 0 && !(x > thresholds[r - 1]) { r -= 1 }
            while r < thresholdCount && x > thresholds[r] { r += 1 }
            return r
        }

        /// Reference twin of `rank`: count the thresholds below x.
        func slowRank(_ x: Float) -> Int {
            var r = 0
            for i in 0..<thresholdCount where x > thresholds[i] { r += 1 }
            return r
        }
    }

    /// What `encode` needs, as plain values and pointers.
    struct Encoder: @unchecked Sendable {
        let signMagnitude: Bool
        let sortedCodes: UnsafeMutablePointer<UInt8>
        let grid: RankGrid
        /// For the ISA kernels (`BlockKernels.encodeCodebook`), when `fitsKernels`: at most 15
        /// ascending thresholds, none zero (their binary search and sign test rely on it).
        let paddedThresholds: UnsafeMutablePointer<Float>
        let paddedCodes: UnsafeMutablePointer<Int32>
        let fitsKernels: Bool

        @inline(__always)
        func encode(_ x: Float) -> Int {
            if signMagnitude { return (x < 0 ? 8 : 0) | Int(sortedCodes[grid.rank(x.magnitude)]) }
            return Int(sortedCodes[grid.rank(x)])
        }
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
        isFloatFormat: false)  // quantiles of a normal distribution, not a float type's levels

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
