/// Quantization parameters checked against one tensor shape: the group geometry and the byte size
/// of every buffer. Every quantize/dequantize call goes through a plan, so nothing below it has to
/// validate again.
public struct QuantPlan: Sendable {
    public let params: QuantParams
    public let shape: [Int]
    public let count: Int
    /// How elements are coded. For MatMulNBits this is the unsigned format of the same width.
    public let codeSpec: FormatSpec

    // The tensor seen as [outer, dim, inner] around the quantization axis; blocks split `dim`.
    let outer: Int
    let dim: Int
    let inner: Int
    let block: Int
    let blocksPerDim: Int

    public let groupCount: Int
    public let scalesShape: [Int]
    public let storesZeroPoints: Bool
    public let dataBytes: Int
    public let scaleBytes: Int
    public let zeroPointBytes: Int

    public init(params: QuantParams, shape: [Int]) throws {
        guard shape.count <= 8 else { throw QuantError.invalid("rank \(shape.count) exceeds the maximum of 8") }
        if let bad = shape.first(where: { $0 < 0 }) { throw QuantError.invalid("dimension \(bad) is negative") }
        let count = try checkedProduct(shape)
        self.params = params
        self.shape = shape
        self.count = count
        let spec = params.format.spec
        try QuantPlan.validate(params, spec: spec, rank: shape.count)

        // Geometry: which elements share a scale.
        let layout = params.layout
        var outer = 1, dim = count, inner = 1, block = max(count, 1)
        var granularity = spec.needsScale ? params.granularity : .perTensor
        if layout == .bnb4 {
            block = params.blockSize  // blocks run over the flattened tensor
        } else if granularity != .perTensor {
            let axis = params.axis < 0 ? params.axis + shape.count : params.axis
            outer = shape[..<axis].reduce(1, *)
            dim = shape[axis]
            inner = shape[(axis + 1)...].reduce(1, *)
            block = granularity == .blocked ? params.blockSize : max(dim, 1)
        }
        if !spec.needsScale { granularity = .perTensor }
        self.outer = outer
        self.dim = dim
        self.inner = inner
        self.block = block
        let blocks = dim == 0 ? 0 : (dim - 1) / block + 1
        self.blocksPerDim = blocks

        let scaleSize = params.scaleType.byteCount
        switch (spec.needsScale, granularity, layout) {
        case (false, _, _):
            groupCount = 0
            scalesShape = []
        case (true, .perTensor, _):
            groupCount = 1
            scalesShape = []
        case (true, .perAxis, _):
            groupCount = dim
            scalesShape = [dim]
        case (true, .blocked, .bnb4):
            groupCount = blocks
            scalesShape = [blocks]
        case (true, .blocked, _):
            groupCount = outer * blocks * inner
            var s = shape
            s[params.axis < 0 ? params.axis + shape.count : params.axis] = blocks
            scalesShape = s
        }

        switch layout {
        case .onnx:
            codeSpec = spec
            storesZeroPoints = spec.isInteger && (params.scheme == .asymmetric || spec.isUnsignedInteger)
            dataBytes = try bitBytes(count, spec.bits)
            zeroPointBytes = storesZeroPoints ? try bitBytes(groupCount, spec.bits) : 0
        case .matMulNBits:
            codeSpec = FormatTable.unsignedInteger(bits: spec.bits)
            storesZeroPoints = params.scheme == .asymmetric
            let rows = shape[0]
            dataBytes = try checkedProduct([rows, blocks, block * spec.bits / 8])
            zeroPointBytes = storesZeroPoints ? try checkedProduct([rows, (blocks * spec.bits + 7) / 8]) : 0
        case .bnb4:
            codeSpec = spec
            storesZeroPoints = false
            dataBytes = try bitBytes(count, 4)
            zeroPointBytes = 0
        }
        scaleBytes = try checkedProduct([groupCount, scaleSize])
    }

    /// Elements of one scale group: `outerCount` runs of `innerCount` elements.
    struct GroupSpan {
        var base: Int
        var outerCount: Int
        var outerStride: Int
        var innerCount: Int
        var innerStride: Int
        var elementCount: Int { outerCount * innerCount }

        @inline(__always) func forEach(_ body: (Int) -> Void) {
            var start = base
            for _ in 0..<outerCount {
                var index = start
                for _ in 0..<innerCount {
                    body(index)
                    index += innerStride
                }
                start += outerStride
            }
        }
    }

    /// Each group is one run of adjacent elements: per tensor, per axis when nothing precedes the
    /// axis (e.g. one row per output channel), blocks along the last axis (and bnb4's flat blocks).
    var groupsAreContiguous: Bool {
        if groupCount <= 1 || params.layout == .bnb4 { return true }
        switch params.granularity {
        case .perTensor: return true
        case .perAxis: return outer == 1
        case .blocked: return inner == 1
        }
    }

    func span(ofGroup g: Int) -> GroupSpan {
        if groupCount == 1 && params.layout != .bnb4 {
            return GroupSpan(base: 0, outerCount: 1, outerStride: 0, innerCount: count, innerStride: 1)
        }
        if params.granularity == .perAxis && params.layout == .onnx {
            return GroupSpan(base: g * inner, outerCount: outer, outerStride: dim * inner, innerCount: inner, innerStride: 1)
        }
        let r = g % inner
        let t = g / inner
        let b = t % blocksPerDim
        let o = t / blocksPerDim
        let start = b * block
        return GroupSpan(base: (o * dim + start) * inner + r, outerCount: 1, outerStride: 0,
                         innerCount: min(block, dim - start), innerStride: inner)
    }

    /// Largest group, for sizing scratch buffers.
    var maxGroupSize: Int {
        if groupCount == 0 { return 0 }
        if groupCount == 1 && params.layout != .bnb4 { return count }
        if params.granularity == .perAxis && params.layout == .onnx { return outer * inner }
        return min(block, dim)
    }

    private static func validate(_ p: QuantParams, spec: FormatSpec, rank: Int) throws {
        guard p.threads >= 0 else { throw QuantError.invalid("num_threads \(p.threads) is negative") }
        guard spec.needsScale else {
            guard p.layout == .onnx else { throw QuantError.unsupported("\(spec.name) has no packed layout other than onnx") }
            return
        }
        if p.scheme == .asymmetric && !spec.isInteger {
            throw QuantError.unsupported("\(spec.name) has no zero point: use the symmetric scheme")
        }
        if p.reduceRange {
            guard spec.isInteger, spec.bits == 8, p.scheme == .symmetric, p.method == .minMax, p.layout == .onnx else {
                throw QuantError.unsupported("reduce_range takes symmetric int8 or uint8 weights in the onnx layout with min-max scales")
            }
        }
        switch p.method {
        case .minMax: break
        case .mse:
            guard (1...10_000).contains(p.searchSteps) else { throw QuantError.invalid("search_steps \(p.searchSteps) is outside 1...10000") }
            guard p.minClipRatio > 0 && p.minClipRatio <= 1 else { throw QuantError.invalid("min_clip_ratio \(p.minClipRatio) is outside (0, 1]") }
        case .percentile:
            guard p.percentile > 0 && p.percentile <= 100 else { throw QuantError.invalid("percentile \(p.percentile) is outside (0, 100]") }
        }
        if p.granularity != .perTensor && p.layout != .bnb4 {
            guard rank > 0 else { throw QuantError.invalid("a scalar has no axis: use per-tensor granularity") }
            guard p.axis >= -rank && p.axis < rank else { throw QuantError.invalid("axis \(p.axis) is out of range for rank \(rank)") }
        }
        if p.granularity == .blocked {
            guard p.blockSize >= 1 else { throw QuantError.invalid("block_size \(p.blockSize) must be at least 1") }
            guard p.blockSize <= 1 << 30 else { throw QuantError.invalid("block_size \(p.blockSize) is too large") }
        }
        switch p.layout {
        case .onnx: break
        case .matMulNBits:
            guard spec.isInteger, [2, 4, 8].contains(spec.bits) else {
                throw QuantError.unsupported("the MatMulNBits layout takes 2-, 4- or 8-bit integer formats, not \(spec.name)")
            }
            guard rank == 2 else { throw QuantError.invalid("the MatMulNBits layout needs a 2-D weight [N, K], got rank \(rank)") }
            guard p.granularity == .blocked, p.axis == 1 || p.axis == -1 else {
                throw QuantError.invalid("the MatMulNBits layout is blocked along K (granularity blocked, axis 1)")
            }
            guard p.blockSize >= 16, p.blockSize & (p.blockSize - 1) == 0 else {
                throw QuantError.invalid("MatMulNBits block_size must be a power of two >= 16, got \(p.blockSize)")
            }
        case .bnb4:
            guard p.format == .nf4 || p.format == .fp4Bnb else {
                throw QuantError.unsupported("the bnb4 layout takes nf4 or fp4-bnb, not \(spec.name)")
            }
            guard p.granularity == .blocked else { throw QuantError.invalid("the bnb4 layout is blocked (absmax per block)") }
        }
    }
}

extension QuantError {
    static func internalError() -> QuantError { QuantError(.internalError, "internal error") }
    static func overflow(_ what: String) -> QuantError { QuantError(.overflow, "\(what) does not fit in memory") }
}

extension FormatTable {
    static func unsignedInteger(bits: Int) -> FormatSpec {
        switch bits {
        case 2: return spec(.uint2)
        case 3: return spec(.uint3)
        case 4: return spec(.uint4)
        default: return spec(.uint8)
        }
    }
}

/// Product of sizes, or an overflow error (never a trap).
func checkedProduct(_ values: [Int]) throws -> Int {
    var result = 1
    for v in values {
        let (p, overflow) = result.multipliedReportingOverflow(by: v)
        if overflow || p > Int(Int64.max / 16) { throw QuantError.overflow("a tensor of \(values) elements") }
        result = p
    }
    return result
}

/// Bytes for `count` codes of `bits` each, packed.
func bitBytes(_ count: Int, _ bits: Int) throws -> Int {
    let total = try checkedProduct([count, bits])
    return (total + 7) / 8
}
