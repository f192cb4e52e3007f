/// Chooses the scale and zero point of one group of values (min-max, MSE clipping search, or
/// percentile clipping). Scales come back already rounded to the type they are stored in.
struct ScaleSelector {
    let plan: QuantPlan
    let coder: ElementCoder
    let spec: FormatSpec
    /// ONNX Runtime's MLAS rules (MatMulNBits layout): symmetric scale = signed extreme / -2^(b-1).
    let mlasRules: Bool

    // Constants of the min-max rule, resolved once per call rather than once per group.
    private let isInteger: Bool
    private let symmetric: Bool
    private let symmetricZeroPoint: Int32
    private let positiveCodes: Float
    private let mlasDivisor: Float
    private let levelMax: Float
    private let scaleType: FloatType

    init(plan: QuantPlan, coder: ElementCoder) {
        self.plan = plan
        self.coder = coder
        spec = plan.codeSpec
        mlasRules = plan.params.layout == .matMulNBits
        isInteger = spec.isInteger
        symmetric = plan.params.scheme == .symmetric
        symmetricZeroPoint = spec.symmetricZeroPoint
        // reduce_range: levels -64...64, ONNX Runtime's 7-bit range (QuantParams.reduceRange).
        positiveCodes = plan.params.reduceRange ? 64 : Float((1 << (spec.bits - 1)) - 1)
        mlasDivisor = -Float(1 << (spec.bits - 1))
        levelMax = spec.levelMax
        scaleType = plan.params.scaleType
    }

    func choose(_ values: UnsafeBufferPointer<Float>) -> (scale: Float, zeroPoint: Int32) {
        switch plan.params.method {
        case .minMax:
            let (lo, hi) = range(values)
            return fromRange(lo: lo, hi: hi)
        case .percentile:
            return percentileScale(values)
        case .mse:
            return mseScale(values)
        }
    }

    private func range(_ values: UnsafeBufferPointer<Float>) -> (Float, Float) {
        var lo = Float.greatestFiniteMagnitude, hi = -Float.greatestFiniteMagnitude
        for v in values {
            lo = min(lo, v)
            hi = max(hi, v)
        }
        return values.isEmpty ? (0, 0) : (lo, hi)
    }

    /// The min-max rule on a (possibly clipped) range.
    @inline(__always)
    func fromRange(lo: Float, hi: Float) -> (scale: Float, zeroPoint: Int32) {
        guard isInteger else {
            let amax = max(lo.magnitude, hi.magnitude)
            return (Float16Codec.rounded(amax / levelMax, to: scaleType), 0)
        }
        if symmetric {
            if mlasRules {
                let extreme = hi.magnitude > lo.magnitude ? hi : lo
                return (Float16Codec.rounded(extreme / mlasDivisor, to: scaleType), symmetricZeroPoint)
            }
            let amax = max(lo.magnitude, hi.magnitude)
            return (Float16Codec.rounded(amax / positiveCodes, to: scaleType), symmetricZeroPoint)
        }
        let (qmin, qmax) = (Float(coder.codeMin), Float(coder.codeMax))
        let low = min(lo, 0), high = max(hi, 0)
        let scale = Float16Codec.rounded((high - low) / (qmax - qmin), to: scaleType)
        if scale == 0 { return (0, Int32(max(qmin, min(qmax, 0)))) }
        let zp = rounding(qmin - low / scale)
        return (scale, Int32(max(qmin, min(qmax, zp))))
    }

    /// `fromRange` of `count` groups' ranges into `scales` and `zeroPoints`; says whether every
    /// scale is finite, and whether one is zero. The same bits as calling `fromRange` per group: the
    /// common float32 symmetric rules run as tight loops (the MLAS divisor is a power of two, so
    /// multiplying by its reciprocal is exact), the rest per group.
    func fromRanges(lo: UnsafePointer<Float>, hi: UnsafePointer<Float>, count: Int,
                    scales: UnsafeMutablePointer<Float>, zeroPoints: UnsafeMutablePointer<Int32>) -> (finite: Bool, anyZero: Bool) {
        if isInteger && symmetric && scaleType == .f32 {
            zeroPoints.update(repeating: symmetricZeroPoint, count: count)
            if mlasRules {
                let reciprocal = 1 / mlasDivisor
                for g in 0..<count {
                    let (l, h) = (lo[g], hi[g])
                    scales[g] = (h.magnitude > l.magnitude ? h : l) * reciprocal
                }
            } else {
                for g in 0..<count { scales[g] = Swift.max(lo[g].magnitude, hi[g].magnitude) / positiveCodes }
            }
        } else {
            for g in 0..<count { (scales[g], zeroPoints[g]) = fromRange(lo: lo[g], hi: hi[g]) }
        }
        var (finite, anyZero) = (true, false)
        for g in 0..<count {
            finite = finite && scales[g].isFinite
            anyZero = anyZero || scales[g] == 0
        }
        return (finite, anyZero)
    }

    private func rounding(_ x: Float) -> Float {
        plan.params.rounding == .halfEven ? x.rounded(.toNearestOrEven) : x.rounded(.toNearestOrAwayFromZero)
    }

    /// Clip at the given percentile of |x| (symmetric) or of x at both ends (asymmetric).
    private func percentileScale(_ values: UnsafeBufferPointer<Float>) -> (scale: Float, zeroPoint: Int32) {
        guard !values.isEmpty else { return fromRange(lo: 0, hi: 0) }
        let p = Double(plan.params.percentile) / 100
        func quantile(_ sorted: [Float], _ q: Double) -> Float {
            let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
            return sorted[max(0, min(sorted.count - 1, rank))]
        }
        if plan.params.scheme == .symmetric || !spec.isInteger {
            let amax = quantile(values.map { $0.magnitude }.sorted(), p)
            return fromRange(lo: -amax, hi: amax)
        }
        let sorted = values.sorted()
        return fromRange(lo: quantile(sorted, 1 - p), hi: quantile(sorted, p))
    }

    /// Shrink the range by ratios from 1 down to min_clip_ratio; keep the least squared error.
    private func mseScale(_ values: UnsafeBufferPointer<Float>) -> (scale: Float, zeroPoint: Int32) {
        let (lo, hi) = range(values)
        var best = fromRange(lo: lo, hi: hi)
        var bestError = squaredError(values, best)
        let steps = plan.params.searchSteps
        guard steps > 1 else { return best }
        let minRatio = plan.params.minClipRatio
        for i in 1..<steps {
            let ratio = 1 - (1 - minRatio) * Float(i) / Float(steps - 1)
            let candidate = fromRange(lo: lo * ratio, hi: hi * ratio)
            let error = squaredError(values, candidate)
            if error < bestError {
                best = candidate
                bestError = error
            }
        }
        return best
    }

    private func squaredError(_ values: UnsafeBufferPointer<Float>, _ s: (scale: Float, zeroPoint: Int32)) -> Double {
        var sum: Double = 0
        for v in values {
            let q = coder.encode(v, scale: s.scale, zeroPoint: s.zeroPoint)
            let e = Double(coder.decode(q, scale: s.scale, zeroPoint: s.zeroPoint) - v)
            sum += e * e
        }
        return sum
    }
}
