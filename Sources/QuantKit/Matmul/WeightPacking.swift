/// Which way round a weight tensor is stored (the C `QK_WEIGHT_*` values).
public enum WeightOrientation: Int32, Sendable {
    /// [N, K]: one row per output (MatMulNBits, Gemm transB = 1, PyTorch Linear).
    case nk = 0
    /// [K, N]: ONNX MatMul's B.
    case kn = 1
}

extension PackedMatrix {
    /// Repacks a quantized weight of logical shape [n, k] whose buffers follow `params` (any layout).
    /// The buffers are read, never kept. `halfScales` false keeps fp32 scales even where fp16 ones
    /// would be exact (for tests).
    public static func pack(params: QuantParams, n: Int, k: Int, orientation: WeightOrientation,
                            weights: QuantizedView, threads: Int = 0, halfScales: Bool = true) throws -> PackedMatrix {
        guard n >= 0, k >= 0 else { throw QuantError.invalid("n = \(n) and k = \(k) must not be negative") }
        let shape = orientation == .nk ? [n, k] : [k, n]
        let plan = try QuantPlan(params: params, shape: shape)
        try Quantizer.checkSizes(plan, inputCount: plan.count, data: weights.data.count, scales: weights.scales.count,
                                 zeroPoints: weights.zeroPoints?.count)
        let geometry = try PackGeometry(plan: plan, n: n, k: k, orientation: orientation)
        let spec = plan.codeSpec

        // Where the codes are read. MatMulNBits nibbles go into the panels straight from the blob,
        // and ONNX-layout bytes are one code per byte already. The rest are unpacked into scratch,
        // which unpackCodes writes whole, so it is not zeroed first (a single-threaded first touch
        // of every page). With narrowShift's and fillBlock's word paths, packing 11008 x 4096 on two
        // threads took 19 ms instead of 53 (MatMulNBits INT4 b32) and 15 ms instead of 80 (int8).
        let data = weights.data.baseAddress?.assumingMemoryBound(to: UInt8.self)
        let nibblesFromBlob = params.layout == .matMulNBits && spec.isInteger && spec.bits == 4 && orientation == .nk
            && plan.block % 8 == 0 && plan.count > 0
        let bytesInPlace = params.layout == .onnx && spec.bits == 8 && plan.count > 0
        let scratch = GroupScratch(plan, withCodes: !(nibblesFromBlob || bytesInPlace), zeroCodes: false, zeroGroups: false)
        defer { scratch.deallocate() }
        try Quantizer.readScales(plan, weights, into: scratch, requireFinite: true, threads: threads)
        // One code per byte (not read when nibblesFromBlob).
        let codes = bytesInPlace ? data! : UnsafePointer(scratch.codes)
        if !(nibblesFromBlob || bytesInPlace) { Quantizer.unpackCodes(plan, weights.data, into: scratch.codes) }
        let blobRowBytes = (k + plan.block - 1) / max(plan.block, 1) * plan.block / 2
        let coder = ElementCoder(spec: spec, rounding: params.rounding)
        let levels = coder.decodeTable

        // How codes are held, and the constant zero point when there is one.
        let matrix: PackedMatrix
        let codeMin = spec.codeRange.min
        var codeShift: Int32 = 0
        switch spec.kind {
        case .integer:
            let zeroPoints = UnsafeBufferPointer(start: scratch.zeroPoints, count: plan.groupCount)
            let constant = zeroPoints.allSatisfy { $0 == zeroPoints.first } ? zeroPoints.first ?? spec.symmetricZeroPoint : nil
            let hasMins = constant == nil
            let bytes = spec.bits > 4
            let shift = bytes ? narrowShift(codes, count: plan.count) { Int32(levels[$0]) - codeMin } : nil
            codeShift = shift ?? 0
            let zero = (constant.map { $0 - codeMin } ?? 0) - codeShift
            matrix = try PackedMatrix(format: params.format, n: n, k: k, block: geometry.block,
                                      codes: bytes ? .bytes : .nibbles, integerCodes: true, zero: zero, hasMins: hasMins,
                                      narrowBytes: shift != nil, threads: threads)
            for u in 0..<16 { matrix.lut[u] = Float(Int32(u) - zero) }
        case .minifloat, .codebook:
            guard spec.bits == 4 || spec.bits == 8 else { throw QuantError.unsupported("\(spec.name) weights are not served by the matmul kernels") }
            matrix = try PackedMatrix(format: params.format, n: n, k: k, block: geometry.block,
                                      codes: spec.bits == 4 ? .nibbles : .halves, integerCodes: false, zero: 0, hasMins: false,
                                      threads: threads)
            if spec.bits == 4 { for u in 0..<16 { matrix.lut[u] = levels[u] } }
            if levels.contains(where: { !$0.isFinite }),
               let element = (0..<plan.count).first(where: { !levels[Int(codes[$0])].isFinite }) {
                let code = codes[element]
                throw QuantError(.nonFinite, "element \(element) holds code \(code), which is \(levels[Int(code)]) in \(spec.name)")
            }
        case .float16:
            throw QuantError.unsupported("\(spec.name) weights are not served by the matmul kernels: multiply them as float")
        }

        guard let packedScales = matrix.scales else { throw QuantError(.internalError, "a new packed matrix has no fp32 scales") }

        // Stored code -> packed code, for every value a stored code can take.
        var map = [UInt32](repeating: 0, count: 256)
        for c in 0..<min(256, levels.count) {
            switch (spec.kind, matrix.codes) {
            case (.integer, _): map[c] = UInt32(truncatingIfNeeded: Int32(levels[c]) - codeMin - codeShift)
            case (_, .halves): map[c] = UInt32(Float16Codec.f16Bits(levels[c]))
            default: map[c] = UInt32(c)
            }
        }

        // Fill panel by panel; padding keeps the zero-initialised codes, scales and mins (value 0 *
        // scale 0). For nibble codes the padding code 0 is harmless: padded x and rows are zero.
        let bits = matrix.codes == .nibbles ? 4 : matrix.codes == .bytes ? 8 : 16
        let rotation = map.withUnsafeBufferPointer { CodeMapping.rotation(of: $0.baseAddress!, bits: bits) }
        if nibblesFromBlob && rotation == nil {
            throw QuantError(.internalError, "integer nibble codes of \(spec.name) do not map to packed codes by a rotation")
        }
        map.withUnsafeBufferPointer { table in
            let mapping = rotation.map { CodeMapping.rotation($0) } ?? .table(table.baseAddress!)
            // The matrix's and scratch's fields, read once: the loop body runs once per row and block.
            let blocks = matrix.blocks, block = matrix.block, mins = matrix.mins
            let groupScales = scratch.scales, zeroPoints = scratch.zeroPoints
            let colGroups = (0..<blocks).map { geometry.colGroup($0 * block) }
            /// Scale (and min) of row r of panel p in block b, whose row part of the group is rowGroup.
            @inline(__always) func storeScale(_ p: Int, _ b: Int, _ r: Int, rowGroup: Int) {
                let group = rowGroup + colGroups[b]
                let s = groupScales[group]
                let si = (p * blocks + b) * PackedMatrix.panelWidth + r
                packedScales[si] = s
                if let mins { mins[si] = -s * Float(zeroPoints[group] - codeMin) }
            }
            /// [N, K]: each row's codes are contiguous, so rows go one by one, scales as they come.
            func fillRows(panel p: Int) {
                for r in 0..<min(PackedMatrix.panelWidth, n - p * PackedMatrix.panelWidth) {
                    let row = p * PackedMatrix.panelWidth + r
                    let rowGroup = geometry.rowGroup(row)
                    for b in 0..<blocks {
                        storeScale(p, b, r, rowGroup: rowGroup)
                        let firstCol = b * block, count = min(k, firstCol + block) - firstCol
                        if nibblesFromBlob {
                            matrix.fillBlock(row: row, block: b, nibblePairs: data! + row * blobRowBytes + firstCol / 2,
                                             count: count, rotation: rotation!)
                        } else {
                            // Whole groups go a word at a time.
                            matrix.fillBlock(row: row, block: b, codes: codes + geometry.element(row: row, col: firstCol),
                                             count: count, mapping: mapping)
                        }
                    }
                }
            }
            /// [K, N]: a panel's rows lie side by side along N, so everything goes K position by K
            /// position, rows inner; row by row, every code and scale was a cache miss. Codes go 4
            /// panels per block: the 64 source bytes of a K position are one line, read once for all 4.
            func fillColumns(panels: Range<Int>) {
                var first = panels.lowerBound
                while first < panels.upperBound {
                    let group = first..<min(first + 4, panels.upperBound)
                    for b in 0..<blocks {
                        let firstCol = b * block, count = min(k, firstCol + block) - firstCol
                        for p in group {
                            let firstRow = p * PackedMatrix.panelWidth, rows = min(PackedMatrix.panelWidth, n - firstRow)
                            for r in 0..<rows { storeScale(p, b, r, rowGroup: geometry.rowGroup(firstRow + r)) }
                            matrix.fillBlock(panel: p, block: b, columns: codes + geometry.element(row: firstRow, col: firstCol), stride: n,
                                             rows: rows, count: count, mapping: mapping)
                        }
                    }
                    first = group.upperBound
                }
            }
            Parallel.forEachChunk(count: matrix.panels, threads: threads) { panels in
                if orientation == .nk {
                    for p in panels { fillRows(panel: p) }
                } else {
                    fillColumns(panels: panels)
                }
            }
        }
        matrix.holdScalesAsHalvesIfExact(allowed: halfScales)
        return matrix
    }
}

/// Where element (row, col) of W[N, K] and its scale group live in the caller's tensor, and the
/// kernel block: the largest multiple of 8 (at most 256) inside which the scale cannot change.
struct PackGeometry {
    let n: Int
    let k: Int
    let orientation: WeightOrientation
    let layout: PackingLayout
    let granularity: Granularity
    let weightBlock: Int
    let blocksAlongK: Int
    let block: Int

    init(plan: QuantPlan, n: Int, k: Int, orientation: WeightOrientation) throws {
        let p = plan.params
        self.n = n
        self.k = k
        self.orientation = orientation
        layout = p.layout
        granularity = plan.groupCount <= 1 && p.layout != .bnb4 ? .perTensor : p.granularity
        let kAxis = orientation == .nk ? 1 : 0
        let axis = p.axis < 0 ? p.axis + 2 : p.axis
        if layout == .matMulNBits && orientation != .nk {
            throw QuantError.unsupported("MatMulNBits weights are [N, K]: pack them with orientation nk")
        }
        switch (layout, granularity) {
        case (.bnb4, _):
            guard orientation == .nk else { throw QuantError.unsupported("bnb4 weights are packed from [N, K] (orientation nk)") }
            guard k == 0 || k % p.blockSize == 0 else {
                throw QuantError.unsupported("bnb4 blocks run over the flattened weight: k = \(k) must be a multiple of block_size \(p.blockSize)")
            }
            weightBlock = p.blockSize
        case (_, .perTensor):
            weightBlock = 0
        case (_, .perAxis):
            guard axis != kAxis else {
                throw QuantError.unsupported("per-axis scales along K (one per input) are not served: use per-channel scales along N")
            }
            weightBlock = 0
        case (_, .blocked):
            guard axis == kAxis else {
                throw QuantError.unsupported("blocks must run along K (axis \(kAxis) for orientation \(orientation == .nk ? "nk" : "kn")), not axis \(axis)")
            }
            weightBlock = p.blockSize
        }
        blocksAlongK = weightBlock == 0 ? 1 : (k + weightBlock - 1) / max(weightBlock, 1)
        if weightBlock == 0 {
            // One scale per row: any block works. About 512 keeps activation scales far finer than
            // ONNX Runtime's per-tensor W8A8 while the per-block int8 work stays small: measured
            // against 256 on 4096 x 4096, W8A8 took 0.84-0.98 of the time for M = 1-512. The
            // fewest blocks of at most 512, evened out, pad K by less than 8 per block (11008:
            // 22 blocks of 504 pad 80 columns, 0.7% more bytes to read; blocks of 512 padded 256).
            let count = max(1, (k + 511) / 512)
            block = max(8, ((k + count - 1) / count + 7) / 8 * 8)
        } else if let b = Self.kernelBlock(dividing: weightBlock) {
            block = b
        } else {
            throw QuantError.unsupported("block_size \(weightBlock) is not a multiple of 8: the matmul kernels need blocks of 8k elements")
        }
    }

    /// Largest multiple of 8, at most 256, that divides a weight block.
    static func kernelBlock(dividing weightBlock: Int) -> Int? {
        stride(from: 256, through: 8, by: -8).first { weightBlock % $0 == 0 }
    }

    /// Index of element (row, col) in the caller's tensor.
    @inline(__always) func element(row: Int, col: Int) -> Int {
        orientation == .nk ? row * k + col : col * n + row
    }

    /// Scale group of element (row, col): rowGroup(row) + colGroup(col) in every layout, so that
    /// the packer looks up the column part once per block instead of dividing per row and block.
    @inline(__always) func group(row: Int, col: Int) -> Int { rowGroup(row) + colGroup(col) }

    /// The row's part of group(row:col:).
    @inline(__always) func rowGroup(_ row: Int) -> Int {
        switch (layout, granularity) {
        case (.bnb4, _): return row * (k / weightBlock)  // k is a multiple of the block (init)
        case (_, .perTensor): return 0
        case (_, .perAxis): return row
        default: return orientation == .nk ? row * blocksAlongK : row
        }
    }

    /// The column's part of group(row:col:).
    func colGroup(_ col: Int) -> Int {
        switch (layout, granularity) {
        case (.bnb4, _): return col / weightBlock
        case (_, .perTensor), (_, .perAxis): return 0
        default: return orientation == .nk ? col / weightBlock : (col / weightBlock) * n
        }
    }
}
