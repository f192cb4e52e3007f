/// Turns one scaled value into a code and back, for the formats of at most 8 bits.
/// The formulas follow the rounding rule's reference exactly (see QK_ROUND_* in the header).
struct ElementCoder {
    /// The per-element path, with payloads free of arrays so that a switch costs no reference counting.
    private enum Path {
        case integer
        case minifloat(MinifloatEncoder, plusZero: Bool)
        case codebook(Codebook.Encoder)
        case none
    }

    private let path: Path
    let rounding: Rounding
    let codeMin: Int32
    let codeMax: Int32
    let mask: Int32
    /// Value of each stored code before scaling (and before subtracting the zero point).
    let decodeTable: [Float]

    init(spec: FormatSpec, rounding: Rounding) {
        switch spec.kind {
        case .integer: path = .integer
        // ONNX's FLOAT4E2M1 reference adds the zero point (+0), turning -0 into +0; its FP8
        // reference keeps -0. Both are matched.
        case .minifloat(let mf): path = .minifloat(mf.encoder, plusZero: mf.bits == 4)
        case .codebook(let book): path = .codebook(book.encoder)
        case .float16: path = .none
        }
        self.rounding = rounding
        (codeMin, codeMax) = spec.codeRange
        mask = spec.bits >= 8 ? 0xFF : (1 << Int32(spec.bits)) - 1
        let codes = 1 << min(spec.bits, 8)
        decodeTable = (0..<codes).map { code in
            switch spec.kind {
            case .integer(let signed):
                if signed && code >= codes / 2 { return Float(code - codes) }
                return Float(code)
            case .minifloat(let mf): return mf.decode(code)
            case .codebook(let book): return book.levels[code]
            case .float16: return 0
            }
        }
    }

    /// The minifloat encoder and its -0 rule, for the ISA kernels (nil for other formats).
    var minifloat: (encoder: MinifloatEncoder, plusZero: Bool)? {
        if case .minifloat(let encoder, let plusZero) = path { return (encoder, plusZero) }
        return nil
    }

    /// The codebook encoder, for the ISA kernels (nil for other formats).
    var codebook: Codebook.Encoder? {
        if case .codebook(let encoder) = path { return encoder }
        return nil
    }

    /// Stored code (masked to the format's width) of x in a group with this scale and zero point.
    @inline(__always)
    func encode(_ x: Float, scale: Float, zeroPoint: Int32) -> UInt8 {
        switch path {
        case .integer:
            var q: Float
            if rounding == .halfEven {
                q = scale == 0 ? 0 : (x / scale).rounded(.toNearestOrEven)
                q += Float(zeroPoint)
            } else {
                let reciprocal: Float = scale == 0 ? 0 : 1 / scale
                q = (x * reciprocal + Float(zeroPoint)).rounded(.toNearestOrAwayFromZero)
            }
            let clamped = Int32(max(Float(codeMin), min(Float(codeMax), q)))
            return UInt8(truncatingIfNeeded: clamped & mask)
        case .minifloat(let encoder, let plusZero):
            return minifloatCode(encoder, plusZero, scaled(x, scale))
        case .codebook(let encoder):
            return UInt8(truncatingIfNeeded: encoder.encode(scaled(x, scale)))
        case .none:
            return 0
        }
    }

    /// `encode` of `count` consecutive elements that share one scale and zero point, into
    /// codes[0..<count]: the same codes, with the format's path chosen once per run instead of per
    /// element (measured: the per-element switch took half of an NF4 conversion's time).
    func encode(_ x: UnsafePointer<Float>, count: Int, scale: Float, zeroPoint: Int32, into codes: UnsafeMutablePointer<UInt8>) {
        switch path {
        case .minifloat(let encoder, let plusZero):
            for k in 0..<count { codes[k] = minifloatCode(encoder, plusZero, scaled(x[k], scale)) }
        case .codebook(let encoder):
            for k in 0..<count { codes[k] = UInt8(truncatingIfNeeded: encoder.encode(scaled(x[k], scale))) }
        case .integer, .none:
            for k in 0..<count { codes[k] = encode(x[k], scale: scale, zeroPoint: zeroPoint) }
        }
    }

    @inline(__always)
    private func minifloatCode(_ encoder: MinifloatEncoder, _ plusZero: Bool, _ scaledValue: Float) -> UInt8 {
        var y = scaledValue
        if plusZero && y == 0 { y = 0 }
        return UInt8(truncatingIfNeeded: encoder.encode(y, tiesAway: rounding == .halfAway))
    }

    @inline(__always)
    private func scaled(_ x: Float, _ scale: Float) -> Float {
        if scale == 0 { return 0 }
        return rounding == .halfEven ? x / scale : x * (1 / scale)
    }

    @inline(__always)
    func decode(_ code: UInt8, scale: Float, zeroPoint: Int32) -> Float {
        (decodeTable[Int(code)] - Float(zeroPoint)) * scale
    }

    /// `decode` of a run of `count` codes whose group advances by `groupStride` per element
    /// (0: one group), reading scales[k · groupStride] and zeroPoints[k · groupStride]: the same
    /// floats, in a loop with no per-element call.
    func decode(_ codes: UnsafePointer<UInt8>, count: Int, scales: UnsafePointer<Float>, zeroPoints: UnsafePointer<Int32>,
                groupStride: Int, into out: UnsafeMutablePointer<Float>) {
        decodeTable.withUnsafeBufferPointer { table in
            let levels = table.baseAddress!  // 2^bits entries: every code indexes it
            if groupStride == 0 {
                let (scale, zeroPoint) = (scales[0], Float(zeroPoints[0]))
                for k in 0..<count { out[k] = (levels[Int(codes[k])] - zeroPoint) * scale }
            } else {
                for k in 0..<count {
                    let g = k * groupStride
                    out[k] = (levels[Int(codes[k])] - Float(zeroPoints[g])) * scales[g]
                }
            }
        }
    }

    /// Zero point as stored (masked code) and back (sign-extended for signed formats).
    @inline(__always) func storedZeroPoint(_ zp: Int32) -> UInt8 { UInt8(truncatingIfNeeded: zp & mask) }
    @inline(__always) func zeroPointValue(_ stored: UInt8) -> Int32 { Int32(decodeTable[Int(stored)]) }
}
