/// Activation rows in the form the kernels read, K padded to whole kernel blocks (zeros past K):
/// float compute keeps the float rows (and their per-block sums when the weights have mins); int8
/// compute keeps only the int8 codes with their per-block scales and code sums.
final class Activations {
    let rows: Int
    let kPadded: Int
    let blocks: Int
    let block: Int
    /// Float compute only.
    let x: UnsafeMutablePointer<Float>?
    let floatSums: UnsafeMutablePointer<Float>?
    /// The same float rows block by block (`blocked`), when asked for (the float tile kernels): at
    /// 4096 x 4096, 1 thread, INT4 b32 took 65 ms at M = 128 instead of 70-72 and 258-260 at
    /// M = 512 instead of 290-293; b128 took 1-3% longer at M = 512.
    let blockedX: UnsafeMutablePointer<Float>?
    /// Int8 compute only.
    let codes: UnsafeMutablePointer<Int8>?
    let scales: UnsafeMutablePointer<Float>?
    let codeSums: UnsafeMutablePointer<Int32>?
    /// The same codes block by block (`blocked`), when asked for (the int8 tile kernels). A group
    /// of rows then reads one contiguous run per block instead of one stream per row, K bytes
    /// apart (4 KiB at K = 4096, so all in the same L1 sets as each other): at M = 512,
    /// 4096 x 4096, 1 thread, W8A8 took 41.0 ms instead of 47.0 and INT4 b128 55.9 ms instead of
    /// 64.3 (medians of 8-10 interleaved runs, on an AVX-512 machine). Kept slice by slice
    /// (BlockedLayout) rather than block by block over all rows, INT4 b32 took 138-142 ms instead
    /// of 163-164 (AVX2, M = 512).
    let blockedCodes: UnsafeMutablePointer<Int8>?
    /// Where blockedX or blockedCodes keep each row's blocks.
    let blocked: BlockedLayout?

    /// `load(row, destination)` writes row `row`'s K floats (int8 compute calls it from several
    /// threads at once); `dense`, when given, holds the same rows (row m at dense + m * K);
    /// `quantizer` makes the int8 codes; `blockedSlices`, when given, also keeps the codes (or the
    /// float rows) block by block for tiles that take rows in slices of that many.
    init(rows: Int, matrix w: PackedMatrix, quantize: Bool, quantizer: ActivationKernel, threads: Int, blockedSlices: Int? = nil,
         dense: UnsafePointer<Float>?, load: (Int, UnsafeMutablePointer<Float>) -> Void) throws {
        self.rows = rows
        kPadded = w.kPadded
        blocks = w.blocks
        block = w.block
        let layout = blockedSlices.map { BlockedLayout(rows: rows, kPadded: w.kPadded, block: w.block, sliceRows: $0) }
        blocked = layout
        let count = try checkedProduct([max(rows, 1), kPadded])
        let perBlock = try checkedProduct([max(rows, 1), blocks])
        if quantize {
            x = nil
            floatSums = nil
            blockedX = nil
            let codes = UnsafeMutablePointer<Int8>.allocate(capacity: count)
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: perBlock)
            let sums = UnsafeMutablePointer<Int32>.allocate(capacity: perBlock)
            self.codes = codes
            self.scales = scales
            codeSums = sums
            let copy = layout == nil ? nil : UnsafeMutablePointer<Int8>.allocate(capacity: count)
            blockedCodes = copy
            try Self.quantizeRows(rows, w, quantizer, threads, dense, load, codes, scales, sums, blocked: copy, layout)
        } else {
            codes = nil
            blockedCodes = nil
            scales = nil
            codeSums = nil
            let x = UnsafeMutablePointer<Float>.allocate(capacity: count)
            self.x = x
            for m in 0..<rows {
                let row = x + m * kPadded
                load(m, row)
                (row + w.k).initialize(repeating: 0, count: kPadded - w.k)
            }
            // The kernels take the sums even without mins (and then ignore their values).
            let sums = UnsafeMutablePointer<Float>.allocate(capacity: perBlock)
            floatSums = sums
            if w.mins != nil {
                Parallel.forEachChunk(count: rows, threads: threads, minChunk: 8) { range in
                    for m in range { Self.sumBlocks(x + m * w.kPadded, w.blocks, w.block, into: sums + m * w.blocks) }
                }
            }
            blockedX = layout == nil ? nil : UnsafeMutablePointer<Float>.allocate(capacity: count)
            if let blockedX, let layout {
                Parallel.forEachChunk(count: rows, threads: threads, minChunk: 8) { range in
                    for m in range { layout.copy(row: m, from: x + m * w.kPadded, to: blockedX) }
                }
            }
        }
    }

    /// Each row goes straight into its codes, read in place from `dense` when K fills whole
    /// blocks, otherwise through a per-thread scratch row: the float rows are never stored whole.
    private static func quantizeRows(_ rows: Int, _ w: PackedMatrix, _ quantizer: ActivationKernel, _ threads: Int,
                                     _ dense: UnsafePointer<Float>?, _ load: (Int, UnsafeMutablePointer<Float>) -> Void,
                                     _ codes: UnsafeMutablePointer<Int8>,
                                     _ scales: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Int32>,
                                     blocked: UnsafeMutablePointer<Int8>?, _ layout: BlockedLayout?) throws {
        let kPadded = w.kPadded, blocks = w.blocks
        func copyBlocks(_ m: Int) {
            guard let blocked, let layout else { return }
            layout.copy(row: m, from: codes + m * kPadded, to: blocked)
        }
        let failed = UnsafeMutablePointer<Bool>.allocate(capacity: max(rows, 1))
        failed.initialize(repeating: false, count: max(rows, 1))
        defer { failed.deallocate() }
        Parallel.forEachChunk(count: rows, threads: threads, minChunk: 8) { range in
            if let dense, w.k == kPadded {
                for m in range {
                    failed[m] = !quantizer(dense + m * kPadded, blocks, w.block, codes + m * kPadded, scales + m * blocks, sums + m * blocks)
                    copyBlocks(m)
                }
                return
            }
            let row = UnsafeMutablePointer<Float>.allocate(capacity: kPadded)
            defer { row.deallocate() }
            (row + w.k).initialize(repeating: 0, count: kPadded - w.k)
            for m in range {
                load(m, row)
                failed[m] = !quantizer(row, blocks, w.block, codes + m * kPadded, scales + m * blocks, sums + m * blocks)
                copyBlocks(m)
            }
        }
        guard let m = (0..<rows).first(where: { failed[$0] }) else { return }
        let row = [Float](unsafeUninitializedCapacity: w.k) { buffer, initialized in
            load(m, buffer.baseAddress!)
            initialized = w.k
        }
        let column = row.firstIndex { !$0.isFinite } ?? 0
        throw QuantError(.nonFinite, "x[\(m), \(column)] is \(row[column]): int8 compute needs finite activations")
    }

    private static func sumBlocks(_ x: UnsafePointer<Float>, _ blocks: Int, _ block: Int, into sums: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            var sum: Float = 0
            for c in 0..<block { sum += x[b * block + c] }
            sums[b] = sum
        }
    }

    deinit {
        x?.deallocate()
        floatSums?.deallocate()
        blockedX?.deallocate()
        codes?.deallocate()
        blockedCodes?.deallocate()
        scales?.deallocate()
        codeSums?.deallocate()
    }
}

/// Where a blocked copy of the activations keeps row m's block b: rows in the driver's slices of
/// `sliceRows`, and within a slice block by block, each block's rows one after another, so that
/// the tiles over a slice read one contiguous run, block after block.
struct BlockedLayout {
    let rows: Int, kPadded: Int, block: Int, sliceRows: Int

    /// Offset, in elements, of row m's block b.
    func offset(row m: Int, block b: Int) -> Int {
        let first = m / sliceRows * sliceRows
        return first * kPadded + (b * min(sliceRows, rows - first) + m - first) * block
    }

    /// Distance, in elements, from a block of row m to its next block: the rows of m's slice times block.
    func blockStride(row m: Int) -> Int { min(sliceRows, rows - m / sliceRows * sliceRows) * block }

    /// Copies row m (kPadded elements at `row`) into its places in `copy`.
    func copy<T>(row m: Int, from row: UnsafePointer<T>, to copy: UnsafeMutablePointer<T>) {
        var b = 0
        while b * block < kPadded {
            (copy + offset(row: m, block: b)).initialize(from: row + b * block, count: block)
            b += 1
        }
    }
}

/// Quantizes `blocks` blocks of `block` floats (a multiple of 8) to int8, per block:
/// scale = max|x| / 127, code = round-half-even(x * (127 / max|x|)) clamped to +-127, and the sum
/// of the block's codes. Codes are 0 when 127 / max|x| is not finite (max|x| below 3.7e-37, zero
/// included): such a block adds nothing, as it would within the int8 error bound. Returns false when a value is NaN or Inf (the
/// outputs are then unspecified). Every ISA variant gives the same bits as `reference`.
typealias ActivationKernel = (_ x: UnsafePointer<Float>, _ blocks: Int, _ block: Int, _ codes: UnsafeMutablePointer<Int8>,
                              _ scales: UnsafeMutablePointer<Float>, _ sums: UnsafeMutablePointer<Int32>) -> Bool

enum ReferenceActivations {
    static let quantize: ActivationKernel = { x, blocks, block, codes, scales, sums in
        for b in 0..<blocks {
            let start = b * block
            var maxAbs: Float = 0
            for c in 0..<block {
                let v = x[start + c]
                guard v.isFinite else { return false }
                maxAbs = max(maxAbs, v.magnitude)
            }
            let ratio = 127 / maxAbs
            let inverse: Float = ratio.isFinite ? ratio : 0
            var sum: Int32 = 0
            for c in 0..<block {
                let q = Int8(max(-127, min(127, (x[start + c] * inverse).rounded(.toNearestOrEven))))
                codes[start + c] = q
                sum += Int32(q)
            }
            scales[b] = maxAbs / 127
            sums[b] = sum
        }
        return true
    }
}
