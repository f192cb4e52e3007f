/// The fast path of `TiledQuantizer` for one band: integer 4- and 8-bit codes with min-max
/// scales in contiguous blocks that own whole bytes (MatMulNBits, ONNX blocked), the ISA row
/// kernels called once per row. Writes what `FastPaths.quantize` writes (the same per-group
/// kernels and scale rule), and measures the error from the codes, without a dequantized copy.
/// One per thread: it owns the band's scratch buffers.
final class BandRowQuantizer {
    let plan: QuantPlan
    let kernels: BlockKernels
    let coder: ElementCoder
    let selector: ScaleSelector
    let scratch: GroupScratch
    let lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>
    /// The ranges a transposed read gathers, group-major (see GroupRanges).
    let readLo: UnsafeMutablePointer<Float>, readHi: UnsafeMutablePointer<Float>
    let poison: UnsafeMutablePointer<Float>, sums: UnsafeMutablePointer<Float>
    let nibbles: Bool, tiesAway: Bool, matMulNBits: Bool
    /// Bytes between groups' codes, and per row.
    let groupStride: Int, dataPerRow: Int

    static func supports(_ plan: QuantPlan, variant: KernelVariant) -> Bool {
        let bits = plan.codeSpec.bits
        return BlockKernels.of(variant) != nil && plan.params.method == .minMax && plan.codeSpec.isInteger && (bits == 4 || bits == 8)
            && (plan.params.layout == .matMulNBits || plan.params.layout == .onnx) && plan.block * bits % 8 == 0
    }

    /// `bandPlan`: the plan of a full band (its group count sizes the scratch).
    init(_ bandPlan: QuantPlan, variant: KernelVariant) {
        plan = bandPlan
        kernels = BlockKernels.of(variant)!
        coder = ElementCoder(spec: bandPlan.codeSpec, rounding: bandPlan.params.rounding)
        selector = ScaleSelector(plan: bandPlan, coder: coder)
        scratch = GroupScratch(bandPlan, withCodes: false)
        let groups = max(bandPlan.groupCount, 1)
        (lo, hi) = (.allocate(capacity: groups), .allocate(capacity: groups))
        (readLo, readHi) = (.allocate(capacity: groups), .allocate(capacity: groups))
        (poison, sums) = (.allocate(capacity: 16), .allocate(capacity: 64))
        nibbles = bandPlan.codeSpec.bits == 4
        tiesAway = bandPlan.params.rounding == .halfAway
        matMulNBits = bandPlan.params.layout == .matMulNBits
        groupStride = bandPlan.block * bandPlan.codeSpec.bits / 8
        dataPerRow = bandPlan.dataBytes / bandPlan.shape[0]
    }

    deinit {
        scratch.deallocate()
        for p in [lo, hi, readLo, readHi, poison, sums] { p.deallocate() }
    }

    /// Where `MatrixSource.read` may put the band's group ranges; tell `quantize` whether it did.
    func rangesToRead() -> GroupRanges {
        poison.initialize(repeating: 0, count: 16)
        return GroupRanges(block: plan.block, stride: plan.shape[0], lo: readLo, hi: readHi, poison: poison)
    }

    /// Quantizes the band's rows of `values` into its buffers (`bandPlan`'s layout); adds the
    /// error of every `foldRows` rows to the next accumulator of `errors` when given. Throws on NaN/Inf or an overflowing scale (the caller then
    /// reports what quantizing the whole matrix reports). `rangesRead`: the read that wrote
    /// `values` filled `rangesToRead()` (otherwise the ranges are measured here).
    func quantize(_ values: UnsafePointer<Float>, _ bandPlan: QuantPlan, into out: QuantizedBuffers,
                  errors: UnsafeMutablePointer<ErrorAccumulator>?, foldRows: Int, rangesRead: Bool = false) throws {
        let (rows, columns) = (bandPlan.shape[0], bandPlan.shape[1])
        let (blocks, block) = (bandPlan.blocksPerDim, bandPlan.block)
        guard let data = out.data.baseAddress?.assumingMemoryBound(to: UInt8.self), rows > 0 else { return }
        if rangesRead {
            // Group-major to row-major: read in order, write `blocks` apart.
            for b in 0..<blocks {
                let (sourceLo, sourceHi) = (readLo + b * plan.shape[0], readHi + b * plan.shape[0])
                var target = b
                for r in 0..<rows {
                    (lo[target], hi[target]) = (sourceLo[r], sourceHi[r])
                    target &+= blocks
                }
            }
        } else {
            poison.initialize(repeating: 0, count: 16)
            for r in 0..<rows { kernels.rowMinMax(values + r * columns, columns, block, lo + r * blocks, hi + r * blocks, poison) }
        }
        guard kernels.poisonIsClean(poison) else { throw QuantError(.nonFinite, "a value is NaN or infinite") }
        let (scales, zeroPoints) = (scratch.scales, scratch.zeroPoints)
        let chosen = selector.fromRanges(lo: lo, hi: hi, count: bandPlan.groupCount, scales: scales, zeroPoints: zeroPoints)
        guard chosen.finite else { throw QuantError(.overflow, "a scale overflows") }
        if let errors {
            // Float lane sums over `foldRows` rows (about ErrorAccumulator.pieceLength floats), then Doubles.
            for r0 in stride(from: 0, to: rows, by: foldRows) {
                sums.initialize(repeating: 0, count: 64)
                let end = min(rows, r0 + foldRows)
                for r in r0..<end {
                    kernels.rowEncodeMeasuring(values + r * columns, columns, block, scales + r * blocks, zeroPoints + r * blocks, coder, tiesAway,
                                               nibbles, data + r * dataPerRow, groupStride, sums)
                }
                errors[r0 / foldRows].add(lanes: sums, count: (end - r0) * columns)
            }
        } else {
            for r in 0..<rows {
                kernels.rowEncode(values + r * columns, columns, block, scales + r * blocks, zeroPoints + r * blocks, coder, tiesAway, nibbles,
                                  data + r * dataPerRow, groupStride)
            }
        }
        // What the row kernel leaves to the caller, as FastPaths does it: zero-scale groups, and
        // the padding of a short last block.
        let lastLength = columns - (blocks - 1) * block
        for r in 0..<rows where chosen.anyZero || lastLength < block {
            for b in 0..<blocks {
                let g = r * blocks + b
                let isLast = b == blocks - 1
                guard scales[g] == 0 || (isLast && lastLength < block) else { continue }
                let length = isLast ? lastLength : block
                let written = nibbles ? (length + 1) / 2 : length
                let destination = data + r * dataPerRow + b * groupStride
                if scales[g] == 0 {
                    let code = coder.storedZeroPoint(zeroPoints[g])
                    destination.update(repeating: nibbles ? code | code << 4 : code, count: written)
                    if nibbles && length % 2 == 1 { destination[written - 1] &= 0x0F }  // padding nibble
                }
                if matMulNBits { (destination + written).update(repeating: 0, count: groupStride - written) }  // block padding
            }
        }
        Quantizer.writeScales(bandPlan, scratch, into: out)
    }
}
