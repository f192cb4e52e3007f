import QuantKitAVX2
import QuantKitAVX512

/// One ISA's block kernels (see QuantKitAVX2 / QuantKitAVX512 for their contracts).
struct BlockKernels {
    /// min, max of a group; adds x - x of each element into the poison accumulator.
    let minMax: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> (min: Float, max: Float)
    /// true when the poison accumulator is still all zeros (every element seen was finite).
    let poisonIsClean: (UnsafePointer<Float>) -> Bool
    /// Codes of one group at one byte each (8-bit) or two per byte (4-bit, low nibble first).
    let encode: (_ x: UnsafePointer<Float>, _ n: Int, _ scale: Float, _ zeroPoint: Int32, _ coder: ElementCoder, _ tiesAway: Bool,
                 _ nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>) -> Void
    /// (value(code) - zero point) * scale of one group's codes: value is the integer code, or
    /// table[code] for 4-bit table formats; nibbles low first, or high first (bnb4).
    let decode: (_ data: UnsafePointer<UInt8>, _ n: Int, _ nibbles: Bool, _ signed: Bool, _ scale: Float, _ zeroPoint: Int32,
                 _ table: UnsafePointer<Float>?, _ highNibbleFirst: Bool, _ out: UnsafeMutablePointer<Float>) -> Void
    /// decode for runs whose element k is in group k (strided groups), integer codes only.
    let decodePerLane: (_ data: UnsafePointer<UInt8>, _ n: Int, _ nibbles: Bool, _ signed: Bool, _ scales: UnsafePointer<Float>,
                        _ zeroPoints: UnsafePointer<Int32>, _ out: UnsafeMutablePointer<Float>) -> Void
    let allFinite: (UnsafePointer<Float>, Int) -> Bool
    /// Per-lane groups (element k of a run in group k): running min/max, and byte codes.
    let minMaxPerLane: (UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    let encodePerLane: (_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, _ zeroPoints: UnsafePointer<Int32>,
                        _ coder: ElementCoder, _ tiesAway: Bool, _ codes: UnsafeMutablePointer<UInt8>) -> Void
    /// Error sums of (reference, actual, n) into 4 x 16 lanes (see ErrorAccumulator).
    let errorSums: (UnsafePointer<Float>, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void
    /// Transpose of a block of at most 16 × 16 floats (see MatrixSource.transposeBlock).
    let transposeBlock: (UnsafeRawPointer, Int, Int, Int, UnsafeMutablePointer<Float>, Int) -> Void
    /// transposeBlock that also folds each target row's values into lo/hi and finiteness into the
    /// poison accumulator (see MatrixSource.transposeBlockRanges); nil: not on this ISA.
    let transposeBlockRanges: ((UnsafeRawPointer, Int, Int, Int, UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>,
                                UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void)?
    /// One row of contiguous groups per call (see TiledQuantizer): per-group min/max, codes of the
    /// groups with a finite non-zero scale, error sums of the decoded codes.
    let rowMinMax: (UnsafePointer<Float>, Int, Int, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    let rowEncode: (_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>, _ zeroPoints: UnsafePointer<Int32>,
                    _ coder: ElementCoder, _ tiesAway: Bool, _ nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int) -> Void
    /// rowEncode that also adds the error of the codes' values against x into 4 × 16 lane sums
    /// (see ErrorAccumulator), zero-scale groups included (their values are 0).
    let rowEncodeMeasuring: (_ x: UnsafePointer<Float>, _ n: Int, _ block: Int, _ scales: UnsafePointer<Float>, _ zeroPoints: UnsafePointer<Int32>,
                             _ coder: ElementCoder, _ tiesAway: Bool, _ nibbles: Bool, _ out: UnsafeMutablePointer<UInt8>, _ groupStride: Int,
                             _ sums: UnsafeMutablePointer<Float>) -> Void

    /// Minifloat codes, one byte per element, of x / scale (or x · (1 / scale) when `tiesAway`):
    /// scales[k] for element k when `perElement`, else scales[0] (see ElementCoder.encode).
    let encodeMinifloat: (_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, _ perElement: Bool,
                          _ encoder: MinifloatEncoder, _ tiesAway: Bool, _ plusZero: Bool, _ out: UnsafeMutablePointer<UInt8>) -> Void
    /// Codebook codes (NF4, FP4-bnb, log4), one byte per element, scales as in encodeMinifloat;
    /// only for books whose encoder `fitsKernels`.
    let encodeCodebook: (_ x: UnsafePointer<Float>, _ n: Int, _ scales: UnsafePointer<Float>, _ perElement: Bool,
                         _ book: Codebook.Encoder, _ tiesAway: Bool, _ out: UnsafeMutablePointer<UInt8>) -> Void
    /// fp16 (bf16 when true) bits of a run of floats, whole vectors only: returns how many it did
    /// (see HalfConversion).
    let narrowHalves: (_ x: UnsafePointer<Float>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<UInt16>) -> Int
    /// Floats of a run of fp16 (bf16) bits, whole vectors only: returns how many it did.
    let widenHalves: (_ h: UnsafePointer<UInt16>, _ n: Int, _ bfloat: Bool, _ out: UnsafeMutablePointer<Float>) -> Int

    static func of(_ variant: KernelVariant) -> BlockKernels? {
        switch variant {
        case .scalar: return nil
        case .avx2:
            return BlockKernels(
                minMax: avx2MinMax,
                poisonIsClean: avx2AllZero,
                encode: { x, n, scale, zp, coder, tiesAway, nibbles, out in
                    let e = Encoding256(scale: scale, zeroPoint: zp, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway)
                    if nibbles { avx2EncodeNibbles(x, n, e, out) } else { avx2EncodeBytes(x, n, e, out) }
                },
                decode: { avx2DecodeBlock($0, $1, nibbles: $2, signed: $3, scale: $4, zeroPoint: $5, table: $6, highNibbleFirst: $7, out: $8) },
                decodePerLane: { avx2DecodePerLane($0, $1, nibbles: $2, signed: $3, scales: $4, zeroPoints: $5, out: $6) },
                allFinite: avx2AllFinite,
                minMaxPerLane: avx2MinMaxPerLane,
                encodePerLane: { x, n, s, z, coder, tiesAway, codes in
                    avx2EncodePerLane(x, n, scales: s, zeroPoints: z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway, codes: codes)
                },
                errorSums: avx2ErrorSums,
                transposeBlock: avx2TransposeBlock,
                transposeBlockRanges: avx2TransposeBlockRanges,
                rowMinMax: avx2RowMinMax,
                rowEncode: { x, n, block, s, z, coder, tiesAway, nibbles, out, stride in
                    avx2RowEncode(x, n, block, s, z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway,
                                   nibbles: nibbles, out, stride)
                },
                rowEncodeMeasuring: { x, n, block, s, z, coder, tiesAway, nibbles, out, stride, sums in
                    avx2RowEncodeMeasuring(x, n, block, s, z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway,
                                   nibbles: nibbles, out, stride, sums)
                },
                encodeMinifloat: { x, n, scales, perElement, e, tiesAway, plusZero, out in
                    let format = Minifloat256(signBit: Int32(e.signBit), maxFiniteCode: Int32(e.maxFiniteCode), maxFinite: e.maxFinite,
                                              minNormal: e.minNormal, stepsPerUnit: e.subnormalStepsPerUnit, shift: e.shift,
                                              exponentRebias: Int32(e.exponentRebias), tiesAway: tiesAway, plusZero: plusZero)
                    avx2EncodeMinifloat(x, n, scales, perElement: perElement, format, out)
                },
                encodeCodebook: { x, n, scales, perElement, book, tiesAway, out in
                    let tables = Codebook256(thresholds: book.paddedThresholds, codes: book.paddedCodes, signMagnitude: book.signMagnitude, tiesAway: tiesAway)
                    avx2EncodeCodebook(x, n, scales, perElement: perElement, tables, out)
                },
                narrowHalves: avx2NarrowHalves,
                widenHalves: avx2WidenHalfRun)
        case .avx512:
            return BlockKernels(
                minMax: avx512MinMax,
                poisonIsClean: avx512AllZero,
                encode: { x, n, scale, zp, coder, tiesAway, nibbles, out in
                    let e = Encoding512(scale: scale, zeroPoint: zp, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway)
                    if nibbles { avx512EncodeNibbles(x, n, e, out) } else { avx512EncodeBytes(x, n, e, out) }
                },
                decode: { avx512DecodeBlock($0, $1, nibbles: $2, signed: $3, scale: $4, zeroPoint: $5, table: $6, highNibbleFirst: $7, out: $8) },
                decodePerLane: { avx512DecodePerLane($0, $1, nibbles: $2, signed: $3, scales: $4, zeroPoints: $5, out: $6) },
                allFinite: avx512AllFinite,
                minMaxPerLane: avx512MinMaxPerLane,
                encodePerLane: { x, n, s, z, coder, tiesAway, codes in
                    avx512EncodePerLane(x, n, scales: s, zeroPoints: z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway, codes: codes)
                },
                errorSums: avx512ErrorSums,
                transposeBlock: avx512TransposeBlock,
                transposeBlockRanges: avx512TransposeBlockRanges,
                rowMinMax: avx512RowMinMax,
                rowEncode: { x, n, block, s, z, coder, tiesAway, nibbles, out, stride in
                    avx512RowEncode(x, n, block, s, z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway,
                                   nibbles: nibbles, out, stride)
                },
                rowEncodeMeasuring: { x, n, block, s, z, coder, tiesAway, nibbles, out, stride, sums in
                    avx512RowEncodeMeasuring(x, n, block, s, z, codeMin: coder.codeMin, codeMax: coder.codeMax, codeMask: coder.mask, tiesAway: tiesAway,
                                   nibbles: nibbles, out, stride, sums)
                },
                encodeMinifloat: { x, n, scales, perElement, e, tiesAway, plusZero, out in
                    let format = Minifloat512(signBit: Int32(e.signBit), maxFiniteCode: Int32(e.maxFiniteCode), maxFinite: e.maxFinite,
                                              minNormal: e.minNormal, stepsPerUnit: e.subnormalStepsPerUnit, shift: e.shift,
                                              exponentRebias: Int32(e.exponentRebias), tiesAway: tiesAway, plusZero: plusZero)
                    avx512EncodeMinifloat(x, n, scales, perElement: perElement, format, out)
                },
                encodeCodebook: { x, n, scales, perElement, book, tiesAway, out in
                    let tables = Codebook512(thresholds: book.paddedThresholds, codes: book.paddedCodes, signMagnitude: book.signMagnitude, tiesAway: tiesAway)
                    avx512EncodeCodebook(x, n, scales, perElement: perElement, tables, out)
                },
                narrowHalves: avx512NarrowHalves,
                widenHalves: avx512WidenHalves)
        }
    }
}

/// The cases that dominate real use, on the ISA kernels: 4- and 8-bit integer formats, min-max
/// scales, groups that are contiguous runs (blocked along the last axis, per-row, per-tensor), in
/// the ONNX or MatMulNBits layout. Each function returns false for any other case, and the
/// reference path in Quantizer does the work. Results are bit-identical to the reference.
enum FastPaths {
    static func allFinite(_ p: UnsafePointer<Float>, count: Int, variant: KernelVariant = Runtime.kernelVariant) -> Bool {
        if let kernels = BlockKernels.of(variant) { return kernels.allFinite(p, count) }
        for i in 0..<count where !p[i].isFinite { return false }
        return true
    }

    static func covers(_ plan: QuantPlan, variant: KernelVariant) -> Bool {
        guard variant != .scalar, plan.codeSpec.isInteger, plan.codeSpec.bits == 4 || plan.codeSpec.bits == 8,
              plan.groupCount > 0, plan.groupsAreContiguous
        else { return false }
        switch plan.params.layout {
        case .matMulNBits: return true
        case .bnb4: return false
        case .onnx: return plan.codeSpec.bits == 8 || groupsStartOnWholeBytes(plan)
        }
    }

    /// 4-bit ONNX layout: every group must begin at an even element to own whole bytes.
    private static func groupsStartOnWholeBytes(_ plan: QuantPlan) -> Bool {
        switch plan.params.granularity {
        case .perTensor: return true
        case .perAxis: return plan.inner % 2 == 0 || plan.dim == 1
        case .blocked:
            return (plan.block % 2 == 0 || plan.blocksPerDim == 1) && (plan.dim % 2 == 0 || plan.outer == 1)
        }
    }

    /// One pass in L2-sized batches of groups: min, max and finiteness of the batch, then its codes
    /// while it is still in cache. A second full pass to validate first would cost ~40% on tensors
    /// larger than the caches, so on NaN/Inf `out.data` may be partly written (the header says so);
    /// scales and zero points are written only after every group succeeded.
    static func quantize(_ plan: QuantPlan, input: UnsafeBufferPointer<Float>, into out: QuantizedBuffers,
                         variant: KernelVariant = Runtime.kernelVariant) throws -> Bool {
        guard plan.params.method == .minMax, covers(plan, variant: variant), let kernels = BlockKernels.of(variant),
              let source = input.baseAddress, let dataBase = out.data.baseAddress
        else { return false }
        let data = dataBase.assumingMemoryBound(to: UInt8.self)
        let scratch = GroupScratch(plan, withCodes: false)
        defer { scratch.deallocate() }
        let coder = ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding)
        let selector = ScaleSelector(plan: plan, coder: coder)
        let nibbles = plan.codeSpec.bits == 4
        let tiesAway = plan.params.rounding == .halfAway
        let matMulNBits = plan.params.layout == .matMulNBits
        if plan.groupCount == 1 && !matMulNBits {
            try quantizeSingleGroup(plan, source, data, kernels, coder, selector, scratch)
            Quantizer.writeScales(plan, scratch, into: out)
            return true
        }
        let blockBytes = plan.block * plan.codeSpec.bits / 8
        let groupsPerTask = Quantizer.groupsPerTask(plan)
        let tasks = (plan.groupCount + groupsPerTask - 1) / groupsPerTask
        let zeroCode = { (zp: Int32) -> UInt8 in
            let code = coder.storedZeroPoint(zp)
            return nibbles ? code | code << 4 : code
        }
        var finite = [Bool](repeating: true, count: tasks)
        finite.withUnsafeMutableBufferPointer { finiteFlags in
            Parallel.forEachChunk(count: tasks, threads: plan.params.threads) { taskRange in
                // Software pipeline: while batch i is encoded from cache, batch i+1 streams in
                // through its min/max pass, so memory reads overlap the encoding work.
                let batch = BatchSpans(capacity: groupsPerTask), next = BatchSpans(capacity: groupsPerTask)
                defer { batch.deallocate(); next.deallocate() }
                func groups(_ task: Int) -> Range<Int> { (task * groupsPerTask)..<min(plan.groupCount, (task + 1) * groupsPerTask) }
                func scanRange(_ spans: BatchSpans, _ k: Int) {
                    let range = kernels.minMax(source + spans.base[k], spans.length[k], spans.poison)
                    (scratch.scales[spans.group[k]], scratch.zeroPoints[spans.group[k]]) = selector.fromRange(lo: range.min, hi: range.max)
                }
                func encode(_ spans: BatchSpans, _ k: Int) {
                    let (g, base, length) = (spans.group[k], spans.base[k], spans.length[k])
                    let (scale, zp) = (scratch.scales[g], scratch.zeroPoints[g])
                    let destination = matMulNBits ? data + g * blockBytes : data + (nibbles ? base / 2 : base)
                    let written = nibbles ? (length + 1) / 2 : length
                    if scale == 0 {
                        destination.update(repeating: zeroCode(zp), count: written)
                        if nibbles && length % 2 == 1 { destination[written - 1] &= 0x0F }  // padding nibble
                    } else if scale.isFinite {
                        kernels.encode(source + base, length, scale, zp, coder, tiesAway, nibbles, destination)
                    }
                    if matMulNBits { (destination + written).update(repeating: 0, count: blockBytes - written) }  // block padding
                }
                guard let first = taskRange.first else { return }
                batch.load(plan, groups(first))
                for k in 0..<batch.count { scanRange(batch, k) }
                for task in taskRange {
                    finiteFlags[task] = kernels.poisonIsClean(batch.poison)
                    guard finiteFlags[task] else { return }  // the call fails; stop writing
                    if task + 1 < taskRange.upperBound { next.load(plan, groups(task + 1)) } else { next.count = 0 }
                    for k in 0..<max(batch.count, next.count) {
                        if k < next.count { scanRange(next, k) }
                        if k < batch.count { encode(batch, k) }
                    }
                    batch.swap(with: next)
                }
            }
        }
        if finite.contains(false) { try Quantizer.checkFinite(input, threads: plan.params.threads) }
        try Quantizer.checkScalesFinite(plan, scratch.scales, input)
        Quantizer.writeScales(plan, scratch, into: out)
        return true
    }

    static func dequantize(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>,
                           variant: KernelVariant = Runtime.kernelVariant) throws -> Bool {
        let table = coversTableDecode(plan, variant: variant)
        guard table || covers(plan, variant: variant), let kernels = BlockKernels.of(variant),
              let target = output.baseAddress, let dataBase = q.data.baseAddress
        else { return false }
        let data = dataBase.assumingMemoryBound(to: UInt8.self)
        let scratch = GroupScratch(plan, withCodes: false)
        defer { scratch.deallocate() }
        try Quantizer.readScales(plan, q, into: scratch, requireFinite: false)
        let nibbles = plan.codeSpec.bits == 4
        let signed = plan.codeSpec.flags.contains(.signed)
        let matMulNBits = plan.params.layout == .matMulNBits
        let highNibbleFirst = plan.params.layout == .bnb4
        let blockBytes = plan.block * plan.codeSpec.bits / 8
        let values = table ? ElementCoder(spec: plan.codeSpec, rounding: plan.params.rounding).decodeTable : []
        values.withUnsafeBufferPointer { levels in
            let levels = table ? levels.baseAddress : nil
            Parallel.forEachChunk(count: plan.groupCount, threads: plan.params.threads, minChunk: Quantizer.groupsPerTask(plan)) { groups in
                forEachContiguousGroup(plan, groups) { g, base, length in
                    let offset = matMulNBits ? g * blockBytes : (nibbles ? base / 2 : base)
                    kernels.decode(data + offset, length, nibbles, signed, scratch.scales[g], scratch.zeroPoints[g], levels, highNibbleFirst,
                                   target + base)
                }
            }
        }
        return true
    }

    /// Integer codes in strided groups (blocks along a leading axis, one scale per column) in
    /// ONNX's layout, a run at a time, each run's element k in group k; runs of nibbles must start
    /// on whole bytes. Returns false (nothing written) where it does not apply.
    static func dequantizePerLane(_ plan: QuantPlan, _ q: QuantizedView, into output: UnsafeMutableBufferPointer<Float>,
                                  variant: KernelVariant = Runtime.kernelVariant) throws -> Bool {
        let bits = plan.codeSpec.bits
        guard variant != .scalar, plan.codeSpec.isInteger, bits == 4 || bits == 8, plan.params.layout == .onnx, plan.count > 0,
              plan.runsAdvanceOneGroupPerElement, let kernels = BlockKernels.of(variant),
              let target = output.baseAddress, let dataBase = q.data.baseAddress
        else { return false }
        let nibbles = bits == 4
        if nibbles && (0..<plan.runCount).contains(where: { plan.run($0).start % 2 != 0 }) { return false }
        let data = dataBase.assumingMemoryBound(to: UInt8.self)
        let scratch = GroupScratch(plan, withCodes: false)
        defer { scratch.deallocate() }
        try Quantizer.readScales(plan, q, into: scratch, requireFinite: false)
        let signed = plan.codeSpec.flags.contains(.signed)
        let perRun = max(1, plan.count / plan.runCount)
        Parallel.forEachChunk(count: plan.runCount, threads: plan.params.threads, minChunk: max(1, 16384 / perRun)) { runs in
            for i in runs {
                let r = plan.run(i)
                kernels.decodePerLane(data + (nibbles ? r.start / 2 : r.start), r.count, nibbles, signed, scratch.scales + r.groupBase,
                                      scratch.zeroPoints + r.groupBase, target + r.start)
            }
        }
        return true
    }

    /// 4-bit codebook and minifloat codes (NF4, FP4, log4) decode through their 16-value table, in
    /// groups that are contiguous and start on whole bytes: ONNX's layout (low nibble first) and
    /// bitsandbytes' (high nibble first).
    static func coversTableDecode(_ plan: QuantPlan, variant: KernelVariant) -> Bool {
        guard variant != .scalar, !plan.codeSpec.isInteger, plan.codeSpec.bits == 4, plan.groupCount > 0, plan.groupsAreContiguous
        else { return false }
        switch plan.params.layout {
        case .bnb4: return plan.block % 2 == 0
        case .onnx: return groupsStartOnWholeBytes(plan)
        case .matMulNBits: return false
        }
    }

    /// One group over the whole tensor (per tensor), split into chunks so that every thread works:
    /// min/max and finiteness of every chunk, then the codes of every chunk.
    private static func quantizeSingleGroup(_ plan: QuantPlan, _ source: UnsafePointer<Float>, _ data: UnsafeMutablePointer<UInt8>,
                                            _ kernels: BlockKernels, _ coder: ElementCoder, _ selector: ScaleSelector,
                                            _ scratch: GroupScratch) throws {
        let chunk = QuantPlan.chunk  // even, so every chunk but the last owns whole bytes of nibbles
        let chunks = (plan.count + chunk - 1) / chunk
        let stats = UnsafeMutablePointer<Float>.allocate(capacity: chunks * 18)  // min, max, 16 poison lanes
        defer { stats.deallocate() }
        stats.initialize(repeating: 0, count: chunks * 18)
        Parallel.forEachChunk(count: chunks, threads: plan.params.threads) { range in
            for c in range {
                let start = c * chunk
                let r = kernels.minMax(source + start, min(chunk, plan.count - start), stats + c * 18 + 2)
                (stats[c * 18], stats[c * 18 + 1]) = (r.min, r.max)
            }
        }
        var (lo, hi) = (Float.greatestFiniteMagnitude, -Float.greatestFiniteMagnitude)
        for c in 0..<chunks {
            guard kernels.poisonIsClean(stats + c * 18 + 2) else {
                try Quantizer.checkFinite(UnsafeBufferPointer(start: source, count: plan.count), threads: plan.params.threads)
                return
            }
            (lo, hi) = (min(lo, stats[c * 18]), max(hi, stats[c * 18 + 1]))
        }
        let (scale, zp) = selector.fromRange(lo: lo, hi: hi)
        (scratch.scales[0], scratch.zeroPoints[0]) = (scale, zp)
        try Quantizer.checkScalesFinite(plan, scratch.scales, UnsafeBufferPointer(start: source, count: plan.count))
        let nibbles = plan.codeSpec.bits == 4
        let zeroByte = nibbles ? coder.storedZeroPoint(zp) | coder.storedZeroPoint(zp) << 4 : coder.storedZeroPoint(zp)
        Parallel.forEachChunk(count: chunks, threads: plan.params.threads) { range in
            for c in range {
                let start = c * chunk, length = min(chunk, plan.count - start)
                let destination = data + (nibbles ? start / 2 : start)
                guard scale != 0 else {
                    let written = nibbles ? (length + 1) / 2 : length
                    destination.update(repeating: zeroByte, count: written)
                    if nibbles && length % 2 == 1 { destination[written - 1] &= 0x0F }  // padding nibble
                    continue
                }
                kernels.encode(source + start, length, scale, zp, coder, plan.params.rounding == .halfAway, nibbles, destination)
            }
        }
    }

    /// Contiguous groups are adjacent runs in group order: walk them without a division per group.
    @inline(__always)
    static func forEachContiguousGroup(_ plan: QuantPlan, _ groups: Range<Int>, _ body: (Int, Int, Int) -> Void) {
        guard let first = groups.first else { return }
        let start = plan.span(ofGroup: first)
        var base = start.base
        if plan.params.granularity != .blocked || plan.params.layout == .bnb4 {
            // bnb4's last block may be shorter than the others: each group's own length.
            for g in groups {
                let span = g == first ? start : plan.span(ofGroup: g)
                body(g, span.base, span.elementCount)
            }
            return
        }
        var block = first % plan.blocksPerDim
        for g in groups {
            let length = min(plan.block, plan.dim - block * plan.block)
            body(g, base, length)
            base += length
            block += 1
            if block == plan.blocksPerDim { block = 0 }
        }
    }

    /// One batch of contiguous groups: group index, first element and length of each, and the
    /// batch's finiteness accumulator.
    final class BatchSpans {
        var group: UnsafeMutablePointer<Int>
        var base: UnsafeMutablePointer<Int>
        var length: UnsafeMutablePointer<Int>
        var poison: UnsafeMutablePointer<Float>
        var count = 0

        init(capacity: Int) {
            group = .allocate(capacity: capacity)
            base = .allocate(capacity: capacity)
            length = .allocate(capacity: capacity)
            poison = .allocate(capacity: 16)
        }

        func load(_ plan: QuantPlan, _ groups: Range<Int>) {
            count = 0
            poison.initialize(repeating: 0, count: 16)
            forEachContiguousGroup(plan, groups) { g, start, n in
                (group[count], base[count], length[count]) = (g, start, n)
                count += 1
            }
        }

        func swap(with other: BatchSpans) {
            (group, other.group) = (other.group, group)
            (base, other.base) = (other.base, base)
            (length, other.length) = (other.length, length)
            (poison, other.poison) = (other.poison, poison)
            (count, other.count) = (other.count, count)
        }

        func deallocate() {
            group.deallocate()
            base.deallocate()
            length.deallocate()
            poison.deallocate()
        }
    }
}
