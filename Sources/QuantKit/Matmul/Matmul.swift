/// How activations meet the weights (the C `QK_COMPUTE_*` values).
public enum MatmulCompute: Int32, Sendable {
    case float = 0
    case int8 = 1
}

/// Y[M, N] = X[M, K] . dequant(W)^T + bias on a packed matrix.
public enum Matmul {
    /// Rows of X arrive through `load(row, destination)` (K floats; int8 compute may call it from
    /// several threads at once) and rows of Y leave through `store(row, values)` (N floats, bias
    /// added), so callers handle dtypes and strides. Where X or Y are dense float rows, callers
    /// also pass them as `denseX` (row m at denseX + m * K) or `denseY` (row m at denseY + m * N):
    /// the kernels then read or write them in place where the layout allows, and `store` is not
    /// called when Y is written in place. Y must not overlap X.
    /// Results do not depend on `threads`, `variant` or the dense pointers.
    public static func run(_ w: PackedMatrix, rows: Int, compute: MatmulCompute, bias: UnsafePointer<Float>?, threads: Int = 0,
                           variant: MatmulVariant = Runtime.matmulVariant,
                           denseX: UnsafePointer<Float>? = nil, denseY: UnsafeMutablePointer<Float>? = nil,
                           load: (Int, UnsafeMutablePointer<Float>) -> Void,
                           store: (Int, UnsafePointer<Float>) -> Void) throws {
        guard rows > 0, w.n > 0 else { return }
        let integer = compute == .int8 && w.integerCodes
        let kernels = MatmulKernels.of(variant)
        let tile = integer ? kernels.intTile(w) : nil
        let floatTile = integer || w.block < kernels.floatTileMinBlock ? nil : kernels.floatTile(w.codes)
        // Rows in slices whose activations stay in L2 while every panel of a thread streams past.
        let rowsPerSlice = integer ? 256 : 64
        // Tiles serve every slice of at least their minimum rows, so the first one whenever rows reach it.
        let blocked = tile != nil ? rows >= kernels.intTileMinRows : floatTile != nil && rows >= kernels.floatTileMinRows
        let x = try Activations(rows: rows, matrix: w, quantize: integer, quantizer: kernels.quantizeActivations, threads: threads,
                                blockedSlices: blocked ? rowsPerSlice : nil, dense: denseX, load: load)
        let ldo = w.nPadded
        // The kernels write whole panels: Y takes them in place when N fills its last panel.
        let inPlace = denseY != nil && w.n == ldo
        let y = inPlace ? denseY! : UnsafeMutablePointer<Float>.allocate(capacity: try checkedProduct([rows, ldo]))
        defer { if !inPlace { y.deallocate() } }
        // Threads take whole groups of panels where the tile kernels may serve them (so groups
        // start at the same panels whatever the chunks). A decode step (M <= 4) is cut into 4
        // chunks per thread, taken as threads finish: measured on 16 cores, weights streamed from
        // DRAM went from 94-96 to 108-123 GB/s at 16 threads; larger M was no faster that way.
        let unit = tile != nil ? 4 : floatTile != nil ? 2 : 1
        let chunksPerThread = rows <= 4 ? 4 : 1
        Parallel.forEachChunk(count: (w.panels + unit - 1) / unit, threads: threads, chunksPerThread: chunksPerThread) { units in
            let panels = units.lowerBound * unit..<min(units.upperBound * unit, w.panels)
            // fp16 scales go to every kernel but the int8 panel ones as fp32, a group of panels at a time.
            let scratch = w.halfScales == nil ? nil
                : UnsafeMutablePointer<Float>.allocate(capacity: unit * w.blocks * PackedMatrix.panelWidth)
            defer { scratch?.deallocate() }
            var first = 0
            while first < rows {
                let count = min(rowsPerSlice, rows - first)
                if let tile, count >= kernels.intTileMinRows {
                    runTiles(w, panels, tile, kernels: kernels, x: x, first: first, count: count, y: y, ldo: ldo, scratch: scratch)
                } else if let floatTile, count >= kernels.floatTileMinRows {
                    runFloatTiles(w, panels, floatTile, kernels: kernels, x: x, first: first, count: count, y: y, ldo: ldo,
                                  scratch: scratch)
                } else {
                    for p in panels {
                        runPanel(w, p, kernels: kernels, integer: integer, x: x, first: first, count: count,
                                 out: y + first * ldo + p * PackedMatrix.panelWidth, ldo: ldo, scratch: scratch)
                    }
                }
                first += count
            }
        }
        for m in 0..<rows {
            let row = y + m * ldo
            if let bias { for j in 0..<w.n { row[j] += bias[j] } }
            if !inPlace { store(m, row) }
        }
    }

    /// Int8 tiles take panels in groups of 4 over every block; the kernel runs all rows of the
    /// slice over one block before the next, so the group's codes for that block stay in L1.
    private static func runTiles(_ w: PackedMatrix, _ panels: Range<Int>, _ tile: IntTileKernel, kernels: MatmulKernels,
                                 x: Activations, first: Int, count: Int, y: UnsafeMutablePointer<Float>, ldo: Int,
                                 scratch: UnsafeMutablePointer<Float>?) {
        guard let xq = x.blockedCodes, let layout = x.blocked, let xs = x.scales, let sums = x.codeSums else { return }
        let ldb = x.blocks
        runGroups(of: 4, w, panels, kernels: kernels, integer: true, x: x, first: first, count: count, y: y, ldo: ldo,
                  scratch: scratch) { p, out, ldOut, scales, mins in
            tile(w.codes(panel: p, block: 0), w.blocks * w.blockBytes, scales, w.blocks * PackedMatrix.panelWidth,
                 mins, w.blocks, w.block, w.zero, xq + layout.offset(row: first, block: 0), w.block, layout.blockStride(row: first),
                 xs + first * ldb, sums + first * ldb, ldb, count, out, ldOut)
        }
    }

    /// Float tiles take panels in pairs; the kernel decodes a block of the pair once and runs all
    /// rows of the slice over it. It is called block by block (the contract gives the same bits),
    /// so that it reads the activations block by block too (Activations.blockedX).
    private static func runFloatTiles(_ w: PackedMatrix, _ panels: Range<Int>, _ tile: FloatTileKernel, kernels: MatmulKernels,
                                      x: Activations, first: Int, count: Int, y: UnsafeMutablePointer<Float>, ldo: Int,
                                      scratch: UnsafeMutablePointer<Float>?) {
        guard let xb = x.blockedX, let layout = x.blocked, let sums = x.floatSums else { return }
        let ldb = x.blocks, width = PackedMatrix.panelWidth
        let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 2 * width * w.block)
        defer { buffer.deallocate() }
        runGroups(of: 2, w, panels, kernels: kernels, integer: false, x: x, first: first, count: count, y: y, ldo: ldo,
                  scratch: scratch) { p, out, ldOut, scales, mins in
            for b in 0..<w.blocks {
                tile(w.codes(panel: p, block: b), w.blocks * w.blockBytes, scales + b * width, w.blocks * width,
                     mins.map { $0 + b * width }, 1, w.block, w.zero, w.lut, xb + layout.offset(row: first, block: b), w.block,
                     sums + first * ldb + b, ldb, count, out, ldOut, buffer)
            }
        }
    }

    /// Calls `tile(first panel, outputs, their row stride, the group's fp32 scales, its mins)` on whole
    /// groups of `size` panels, then copies the outputs into Y; leftover panels go through the panel
    /// kernel. The tiles write into a zeroed buffer of the group's width (tile kernels continue from
    /// out, block after block): in Y, rows N floats apart (16 KiB at N = 4096) fall in the same
    /// cache sets, and at 4096 x 4096, 1 thread, INT4 b32 with int8 compute took 138-145 ms at
    /// M = 512 instead of 182, float compute at M = 128 71 ms instead of 79 (bits unchanged).
    private static func runGroups(of size: Int, _ w: PackedMatrix, _ panels: Range<Int>, kernels: MatmulKernels, integer: Bool,
                                  x: Activations, first: Int, count: Int, y: UnsafeMutablePointer<Float>, ldo: Int,
                                  scratch: UnsafeMutablePointer<Float>?,
                                  tile: (Int, UnsafeMutablePointer<Float>, Int, UnsafePointer<Float>, UnsafePointer<Float>?) -> Void) {
        let width = PackedMatrix.panelWidth, groupWidth = size * PackedMatrix.panelWidth
        let groupOut = UnsafeMutablePointer<Float>.allocate(capacity: count * groupWidth)
        defer { groupOut.deallocate() }
        var p = panels.lowerBound
        while p + size <= panels.upperBound {
            groupOut.initialize(repeating: 0, count: count * groupWidth)
            let s = w.scaleIndex(panel: p, block: 0)
            let scales = w.floatScales(from: s, count: size * w.blocks * width, scratch: scratch, widen: kernels.widenHalves)
            tile(p, groupOut, groupWidth, scales, w.mins.map { UnsafePointer($0 + s) })
            let out = y + first * ldo + p * width
            for m in 0..<count { (out + m * ldo).initialize(from: groupOut + m * groupWidth, count: groupWidth) }
            p += size
        }
        for q in p..<panels.upperBound {
            runPanel(w, q, kernels: kernels, integer: integer, x: x, first: first, count: count, out: y + first * ldo + q * width, ldo: ldo,
                     scratch: scratch)
        }
    }

    /// `scratch`: room for one panel's fp32 scales when they are held as fp16.
    private static func runPanel(_ w: PackedMatrix, _ p: Int, kernels: MatmulKernels, integer: Bool, x: Activations,
                                 first: Int, count: Int, out: UnsafeMutablePointer<Float>, ldo: Int, scratch: UnsafeMutablePointer<Float>?) {
        let codes = UnsafeRawPointer(w.codes(panel: p, block: 0))
        let scaleOffset = w.scaleIndex(panel: p, block: 0)
        let mins = w.mins.map { UnsafePointer($0 + scaleOffset) }
        let ldx = x.kPadded, ldb = x.blocks
        if integer, let xq = x.codes, let xs = x.scales, let sums = x.codeSums, let halves = w.halfScales {
            // The decode path: fp16 scales are read as they are stored.
            let kernel = kernels.intHalfPanel(w)
            kernel(codes, halves + scaleOffset, w.blocks, w.block, w.zero, xq + first * ldx, ldx, xs + first * ldb, sums + first * ldb, ldb,
                   count, out, ldo)
            return
        }
        let scales = w.floatScales(from: scaleOffset, count: w.blocks * PackedMatrix.panelWidth, scratch: scratch,
                                    widen: kernels.widenHalves)
        if integer, let xq = x.codes, let xs = x.scales, let sums = x.codeSums {
            let kernel = kernels.intPanel(w)
            kernel(codes, scales, mins, w.blocks, w.block, w.zero, xq + first * ldx, ldx, xs + first * ldb, sums + first * ldb, ldb,
                   count, out, ldo)
            return
        }
        guard let xf = x.x, let sums = x.floatSums else { return }
        let kernel: FloatPanelKernel
        switch w.codes {
        case .nibbles: kernel = kernels.floatNibbles
        case .bytes: kernel = kernels.floatBytes
        case .halves: kernel = kernels.floatHalves
        }
        kernel(codes, scales, mins, w.blocks, w.block, w.zero, w.lut, xf + first * ldx, ldx, sums + first * ldb, ldb,
               count, out, ldo)
    }
}
