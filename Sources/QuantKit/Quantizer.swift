import Synchronization

/// Caller-owned output buffers of one quantized tensor.
public struct QuantizedBuffers {
    public var data: UnsafeMutableRawBufferPointer
    public var scales: UnsafeMutableRawBufferPointer
    /// nil when the plan stores no zero points.
    public var zeroPoints: UnsafeMutableRawBufferPointer?

    public init(data: UnsafeMutableRawBufferPointer, scales: UnsafeMutableRawBufferPointer, zeroPoints: UnsafeMutableRawBufferPointer?) {
        self.data = data
        self.scales = scales
        self.zeroPoints = zeroPoints
    }

    var readOnly: QuantizedView {
        QuantizedView(data: UnsafeRawBufferPointer(data), scales: UnsafeRawBufferPointer(scales), zeroPoints: zeroPoints.map { UnsafeRawBufferPointer($0) })
    }
}

/// Read-only buffers of one quantized tensor.
public struct QuantizedView {
    public var data: UnsafeRawBufferPointer
    public var scales: UnsafeRawBufferPointer
    public var zeroPoints: UnsafeRawBufferPointer?

    public init(data: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, zeroPoints: UnsafeRawBufferPointer?) {
        self.data = data
        self.scales = scales
        self.zeroPoints = zeroPoints
    }
}

/// Quantize, quantize with given scales, and dequantize: the reference path for every format and
/// layout, with fast kernels taking over the common cases (see FastPaths.swift).
public enum Quantizer {
    /// Chooses scales with plan.params.method, then writes codes, scales and zero points.
    public static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, into out: QuantizedBuffers) throws {
        try quantize(plan, input: input, into: out, variant: Runtime.kernelVariant)
    }

    /// `variant` picks the kernels (tests compare every variant with `.scalar`, the reference).
    static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, into out: QuantizedBuffers, variant: KernelVariant) throws {
        try checkSizes(plan, inputCount: input.count, data: out.data.count, scales: out.scales.count, zeroPoints: out.zeroPoints?.count)
        if try FastPaths.quantize(plan, input: input, into: out, variant: variant) { return }  // checks finiteness itself
        try checkFinite(input, threads: plan.params.threads)
        if case .float16(let bfloat) = plan.codeSpec.kind {
            try checkHalfRange(input, bfloat: bfloat)
            convertToHalf(input, bfloat: bfloat, into: out.data, threads: plan.params.threads)
            return
        }
        let scratch = GroupScratch(plan)
        defer { scratch.deallocate() }
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        // Strided integer groups with min-max scales take the per-lane kernels (min-max keeps
        // |x / scale| within the code range, which their int32 conversion needs).
        let perLane = plan.codeSpec.isInteger && plan.params.method == .minMax && plan.runsAdvanceOneGroupPerElement
            ? BlockKernels.of(variant) : nil
        try chooseScales(plan, input, coder: coder, kernels: BlockKernels.of(variant), into: scratch)
        try checkScalesFinite(plan, scratch.scales, input)
        if let perLane, let source = input.baseAddress {
            let tiesAway = plan.params.rounding == .halfAway
            Parallel.forEachChunk(count: plan.runCount, threads: plan.params.threads, minChunk: max(1, 16384 / max(1, plan.count / max(plan.runCount, 1)))) { runs in
                for i in runs {
                    let r = plan.run(i)
                    perLane.encodePerLane(source + r.start, r.count, scratch.scales + r.groupBase, scratch.zeroPoints + r.groupBase, coder, tiesAway, scratch.codes + r.start)
                }
            }
        } else {
            encodeCodes(plan, input, coder, scratch, kernels: BlockKernels.of(variant))
        }
        writeScales(plan, scratch, into: out)
        packCodes(plan, scratch.codes, into: out.data)
    }

    /// Scales and zero points of every group: min-max from the groups' ranges (read in memory
    /// order); MSE and percentile from each group's gathered values.
    private static func chooseScales(_ plan: QuantPlan, _ input: UnsafeBufferPointer<Float>, coder: ElementCoder, kernels: BlockKernels?,
                                     into scratch: GroupScratch) throws {
        let selector = ScaleSelector(plan: plan, coder: coder)
        if plan.params.method == .minMax {
            let lo = UnsafeMutablePointer<Float>.allocate(capacity: max(plan.groupCount, 1))
            let hi = UnsafeMutablePointer<Float>.allocate(capacity: max(plan.groupCount, 1))
            defer { lo.deallocate(); hi.deallocate() }
            plan.groupRanges(input, threads: plan.params.threads, kernels: kernels, into: lo, hi)
            _ = selector.fromRanges(lo: lo, hi: hi, count: plan.groupCount, scales: scratch.scales, zeroPoints: scratch.zeroPoints)
            return
        }
        Parallel.forEachChunk(count: plan.groupCount, threads: plan.params.threads, minChunk: groupsPerTask(plan)) { groups in
            let gathered = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(plan.maxGroupSize, 1))
            defer { gathered.deallocate() }
            for g in groups {
                var n = 0
                plan.span(ofGroup: g).forEach { gathered[n] = input[$0]; n += 1 }
                (scratch.scales[g], scratch.zeroPoints[g]) = selector.choose(UnsafeBufferPointer(rebasing: gathered[0..<n]))
            }
        }
    }

    /// A range too wide for the scale type (e.g. max - min past Float.max, or a scale past 65504
    /// in f16) gives an infinite scale: reported rather than silently dequantizing to NaN.
    static func checkScalesFinite(_ plan: QuantPlan, _ scales: UnsafeMutablePointer<Float>, _ input: UnsafeBufferPointer<Float>) throws {
        for g in 0..<plan.groupCount where !scales[g].isFinite {
            var (lo, hi) = (Float.infinity, -Float.infinity)
            plan.span(ofGroup: g).forEach { lo = min(lo, input[$0]); hi = max(hi, input[$0]) }
            throw QuantError(.overflow, "the values of scale group \(g) span [\(lo), \(hi)]: their \(plan.params.scaleType) scale overflows (use f32 scales or a finer granularity)")
        }
    }

    /// ONNX QuantizeLinear: reads the scales (and zero points) in `out`, writes only `out.data`.
    public static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, withScalesIn out: QuantizedBuffers) throws {
        try checkSizes(plan, inputCount: input.count, data: out.data.count, scales: out.scales.count, zeroPoints: out.zeroPoints?.count)
        try checkFinite(input, threads: plan.params.threads)
        if case .float16(let bfloat) = plan.codeSpec.kind {
            try checkHalfRange(input, bfloat: bfloat)
            convertToHalf(input, bfloat: bfloat, into: out.data, threads: plan.params.threads)
            return
        }
        let scratch = GroupScratch(plan)
        defer { scratch.deallocate() }
        try readScales(plan, out.readOnly, into: scratch, requireFinite: true)
        encodeCodes(plan, input, ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding), scratch,
                    kernels: BlockKernels.of(Runtime.kernelVariant))
        packCodes(plan, scratch.codes, into: out.data)
    }

    /// ONNX DequantizeLinear (and MatMulNBits / bitsandbytes dequantization) into floats.
    public static func dequantize(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>) throws {
        try dequantize(plan, q, into: output, variant: Runtime.kernelVariant)
    }

    static func dequantize(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>, variant: KernelVariant) throws {
        try checkSizes(plan, inputCount: output.count, data: q.data.count, scales: q.scales.count, zeroPoints: q.zeroPoints?.count)
        if case .float16(let bfloat) = plan.codeSpec.kind {
            convertFromHalf(q.data, bfloat: bfloat, into: output, threads: plan.params.threads)
            return
        }
        if try FastPaths.dequantize(plan, q, into: output, variant: variant) { return }
        if try FastPaths.dequantizePerLane(plan, q, into: output, variant: variant) { return }
        let scratch = GroupScratch(plan)
        defer { scratch.deallocate() }
        try readScales(plan, q, into: scratch, requireFinite: false)
        unpackCodes(plan, q.data, into: scratch.codes)
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        guard let out = output.baseAddress else { return }
        plan.forEachRun(threads: plan.params.threads) { r in
            coder.decode(scratch.codes + r.start, count: r.count, scales: scratch.scales + r.groupBase, zeroPoints: scratch.zeroPoints + r.groupBase,
                         groupStride: r.groupStride, into: out + r.start)
        }
    }

    // MARK: - Steps

    /// scratch.codes of every element from the scales and zero points in `scratch`; runs of one
    /// group are coded a run at a time, and minifloat and codebook runs (one group, or one group
    /// per element) by the ISA kernels when there are.
    private static func encodeCodes(_ plan: QuantPlan, _ input: UnsafeBufferPointer<Float>, _ coder: ElementCoder, _ scratch: GroupScratch,
                                    kernels: BlockKernels?) {
        guard let source = input.baseAddress else { return }
        // The two kernels taken out once: copying the whole kernel table per run cost more than
        // the codes of a 64-element run.
        let minifloat = coder.minifloat.flatMap { format in kernels.map { (format, $0.encodeMinifloat) } }
        let codebook = coder.codebook.flatMap { book in book.fitsKernels ? kernels.map { (book, $0.encodeCodebook) } : nil }
        let tiesAway = plan.params.rounding == .halfAway
        plan.forEachRun(threads: plan.params.threads) { r in
            if r.groupStride <= 1 {
                if let (format, encode) = minifloat {
                    encode(source + r.start, r.count, scratch.scales + r.groupBase, r.groupStride == 1,
                           format.encoder, tiesAway, format.plusZero, scratch.codes + r.start)
                    return
                }
                if let (book, encode) = codebook {
                    encode(source + r.start, r.count, scratch.scales + r.groupBase, r.groupStride == 1, book, tiesAway, scratch.codes + r.start)
                    return
                }
            }
            if r.groupStride == 0 {
                let g = r.groupBase
                coder.encode(source + r.start, count: r.count, scale: scratch.scales[g], zeroPoint: scratch.zeroPoints[g],
                             into: scratch.codes + r.start)
                return
            }
            for k in 0..<r.count {
                let (i, g) = (r.start + k, r.groupBase + k * r.groupStride)
                scratch.codes[i] = coder.encode(source[i], scale: scratch.scales[g], zeroPoint: scratch.zeroPoints[g])
            }
        }
    }

    static func checkSizes(_ plan: QuantPlan, inputCount: Int, data: Int, scales: Int, zeroPoints: Int?) throws {
        guard inputCount == plan.count else {
            throw QuantError(.shapeMismatch, "the tensor has \(inputCount) elements but the shape \(plan.shape) has \(plan.count)")
        }
        guard data >= plan.dataBytes else { throw QuantError(.bufferTooSmall, "data buffer has \(data) bytes, \(plan.dataBytes) needed") }
        guard scales >= plan.scaleBytes else { throw QuantError(.bufferTooSmall, "scales buffer has \(scales) bytes, \(plan.scaleBytes) needed") }
        if plan.storesZeroPoints {
            guard let zeroPoints else { throw QuantError(.nullPointer, "this layout stores zero points, but no zero-point buffer was given") }
            guard zeroPoints >= plan.zeroPointBytes else {
                throw QuantError(.bufferTooSmall, "zero-point buffer has \(zeroPoints) bytes, \(plan.zeroPointBytes) needed")
            }
        }
    }

    /// Rejects NaN and Inf, naming the first offending element.
    static func checkFinite(_ input: UnsafeBufferPointer<Float>, threads: Int) throws {
        guard let base = input.baseAddress, !input.isEmpty else { return }
        var finite = [Bool](repeating: true, count: 64)
        finite.withUnsafeMutableBufferPointer { flags in
            let chunks = min(64, (input.count + 65535) / 65536)
            let per = (input.count + chunks - 1) / chunks
            Parallel.forEachChunk(count: chunks, threads: threads) { range in
                for c in range where c * per < input.count {
                    flags[c] = FastPaths.allFinite(base + c * per, count: min(per, input.count - c * per))
                }
            }
        }
        if !finite.contains(false) { return }
        let index = input.firstIndex { !$0.isFinite } ?? 0
        throw QuantError(.nonFinite, "element \(index) is \(input[index]): quantization needs finite values")
    }

    static func groupsPerTask(_ plan: QuantPlan) -> Int { max(1, 32768 / max(1, plan.maxGroupSize)) }

    static func writeScales(_ plan: QuantPlan, _ scratch: GroupScratch, into out: QuantizedBuffers) {
        let type = plan.params.scaleType
        guard let scalesBase = out.scales.baseAddress else { return }
        if type == .f32 {
            scalesBase.copyMemory(from: scratch.scales, byteCount: plan.groupCount * 4)
        } else {
            for g in 0..<plan.groupCount { Float16Codec.store(scratch.scales[g], scalesBase, index: g, type: type) }
        }
        guard plan.storesZeroPoints, let zpBase = out.zeroPoints?.baseAddress else { return }
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        let stored = UnsafeMutablePointer<UInt8>.allocate(capacity: max(plan.groupCount, 1))
        defer { stored.deallocate() }
        for g in 0..<plan.groupCount { stored[g] = coder.storedZeroPoint(scratch.zeroPoints[g]) }
        let out = zpBase.assumingMemoryBound(to: UInt8.self)
        if plan.params.layout == .matMulNBits {
            Packing.packMatMulNBitsZeroPoints(stored, rows: plan.shape[0], blocks: plan.blocksPerDim, bits: plan.codeSpec.bits, into: out)
        } else {
            Packing.packLSB(stored, count: plan.groupCount, bits: plan.codeSpec.bits, into: out, bytes: 0..<plan.zeroPointBytes)
        }
    }

    /// Loads every group's scale and zero point (implied ones when the layout stores none), on
    /// `threads` threads: a packer reads millions of groups (1.4 M for 11008 x 4096 at block 32).
    /// With requireFinite, the first non-finite scale is the error, whatever the thread count.
    static func readScales(_ plan: QuantPlan, _ q: QuantizedView, into scratch: GroupScratch, requireFinite: Bool,
                           threads: Int = 1) throws {
        let count = plan.groupCount
        guard count > 0, let scalesBase = q.scales.baseAddress else { return }
        let type = plan.params.scaleType, scales = scratch.scales, zeroPoints = scratch.zeroPoints
        let firstBad = Atomic<Int>(.max)
        let implied = plan.storesZeroPoints && q.zeroPoints?.baseAddress != nil ? nil : plan.codeSpec.symmetricZeroPoint
        Parallel.forEachChunk(count: count, threads: threads, minChunk: 1 << 16) { range in
            for g in range {
                let s = Float16Codec.load(scalesBase, index: g, type: type)
                if requireFinite && !s.isFinite {
                    firstBad.min(g, ordering: .relaxed)
                    return
                }
                scales[g] = s
            }
            if let implied { (zeroPoints + range.lowerBound).initialize(repeating: implied, count: range.count) }
        }
        let bad = firstBad.load(ordering: .relaxed)
        if bad != .max {
            throw QuantError(.nonFinite, "scale \(bad) is \(Float16Codec.load(scalesBase, index: bad, type: type)): scales must be finite")
        }
        guard implied == nil, let zpBase = q.zeroPoints?.baseAddress else { return }
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        let stored = UnsafeMutablePointer<UInt8>.allocate(capacity: count)
        defer { stored.deallocate() }
        let bytes = zpBase.assumingMemoryBound(to: UInt8.self)
        if plan.params.layout == .matMulNBits {
            Packing.unpackMatMulNBitsZeroPoints(bytes, rows: plan.shape[0], blocks: plan.blocksPerDim, bits: plan.codeSpec.bits, into: stored)
        } else {
            Packing.unpackLSB(bytes, bits: plan.codeSpec.bits, into: stored, elements: 0..<count)
        }
        for g in 0..<count { zeroPoints[g] = coder.zeroPointValue(stored[g]) }
    }

    static func packCodes(_ plan: QuantPlan, _ codes: UnsafeMutablePointer<UInt8>, into data: UnsafeMutableRawBufferPointer) {
        guard let base = data.baseAddress, plan.count > 0 else { return }
        let out = base.assumingMemoryBound(to: UInt8.self)
        let bits = plan.codeSpec.bits
        switch plan.params.layout {
        case .onnx:
            Parallel.forEachChunk(count: plan.dataBytes, threads: plan.params.threads, minChunk: 65536) {
                Packing.packLSB(codes, count: plan.count, bits: bits, into: out, bytes: $0)
            }
        case .bnb4:
            let zeroCode = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding).encode(0, scale: 1, zeroPoint: 0)
            Parallel.forEachChunk(count: plan.dataBytes, threads: plan.params.threads, minChunk: 65536) {
                Packing.packHighNibbleFirst(codes, count: plan.count, padding: zeroCode, into: out, bytes: $0)
            }
        case .matMulNBits:
            Parallel.forEachChunk(count: plan.shape[0], threads: plan.params.threads, minChunk: 16) {
                Packing.packMatMulNBits(codes, k: plan.shape[1], block: plan.block, bits: bits, into: out, rows: $0)
            }
        }
    }

    static func unpackCodes(_ plan: QuantPlan, _ data: UnsafeRawBufferPointer, into codes: UnsafeMutablePointer<UInt8>) {
        guard let base = data.baseAddress, plan.count > 0 else { return }
        let bytes = base.assumingMemoryBound(to: UInt8.self)
        let bits = plan.codeSpec.bits
        switch plan.params.layout {
        case .onnx:
            Parallel.forEachChunk(count: plan.count, threads: plan.params.threads, minChunk: 65536) {
                Packing.unpackLSB(bytes, bits: bits, into: codes, elements: $0)
            }
        case .bnb4:
            Parallel.forEachChunk(count: plan.count, threads: plan.params.threads, minChunk: 65536) {
                Packing.unpackHighNibbleFirst(bytes, into: codes, elements: $0)
            }
        case .matMulNBits:
            Parallel.forEachChunk(count: plan.shape[0], threads: plan.params.threads, minChunk: 16) {
                Packing.unpackMatMulNBits(bytes, k: plan.shape[1], block: plan.block, bits: bits, into: codes, rows: $0)
            }
        }
    }

    /// A value that would round to infinity in fp16/bf16 is an error, not a silent Inf weight.
    private static func checkHalfRange(_ input: UnsafeBufferPointer<Float>, bfloat: Bool) throws {
        let limit: Float = bfloat ? Float(bitPattern: 0x7F7F_8000) : 65520  // first value that rounds to Inf
        guard let base = input.baseAddress else { return }
        if let i = HalfConversion.firstIndex(magnitudeAtLeast: limit, in: base, count: input.count, finiteOnly: false) {
            throw QuantError(.overflow, "element \(i) is \(input[i]), outside the \(bfloat ? "bf16" : "fp16") range")
        }
    }

    private static func convertToHalf(_ input: UnsafeBufferPointer<Float>, bfloat: Bool, into data: UnsafeMutableRawBufferPointer, threads: Int) {
        guard let base = data.baseAddress else { return }
        let out = base.assumingMemoryBound(to: UInt16.self)
        Parallel.forEachChunk(count: input.count, threads: threads, minChunk: 65536) { range in
            HalfConversion.narrow(input.baseAddress! + range.lowerBound, count: range.count, bfloat: bfloat, into: out + range.lowerBound)
        }
    }

    private static func convertFromHalf(_ data: UnsafeRawBufferPointer, bfloat: Bool, into output: UnsafeMutableBufferPointer<Float>, threads: Int) {
        guard let base = data.baseAddress else { return }
        Parallel.forEachChunk(count: output.count, threads: threads, minChunk: 65536) { range in
            for i in range {
                let bits = base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                output[i] = bfloat ? Float16Codec.fromBF16(bits) : Float16Codec.fromF16(bits)
            }
        }
    }
}

/// Per-call working memory: one code per element, one scale and zero point per group.
final class GroupScratch {
    let codes: UnsafeMutablePointer<UInt8>
    let scales: UnsafeMutablePointer<Float>
    let zeroPoints: UnsafeMutablePointer<Int32>

    /// `withCodes: false` skips the per-element code buffer (the fast paths pack as they go);
    /// `zeroCodes: false` leaves it unwritten, for a caller that writes every code first, and
    /// `zeroGroups: false` the scales and zero points, for one that reads them all first
    /// (Quantizer.readScales): zeroing is a single-threaded first touch of every page.
    init(_ plan: QuantPlan, withCodes: Bool = true, zeroCodes: Bool = true, zeroGroups: Bool = true) {
        let codeCount = withCodes ? max(plan.count, 1) : 1
        codes = .allocate(capacity: codeCount)
        if zeroCodes { codes.initialize(repeating: 0, count: codeCount) }
        let groupCount = max(plan.groupCount, 1)
        scales = .allocate(capacity: groupCount)
        zeroPoints = .allocate(capacity: groupCount)
        if zeroGroups {
            scales.initialize(repeating: 0, count: groupCount)
            zeroPoints.initialize(repeating: 0, count: groupCount)
        }
    }

    func deallocate() {
        codes.deallocate()
        scales.deallocate()
        zeroPoints.deallocate()
    }
}
