/// Quantizes a 2-D matrix a band of rows at a time, read from a `MatrixSource` (e.g. transposed
/// straight out of a memory-mapped model), and measures each band's error while it is in cache.
/// Versus materializing the matrix, quantizing it, and dequantizing it whole to compare, this
/// never writes a full float copy, reads the source once, and splits the bands over threads.
///
/// The bytes written are those `Quantizer.quantize` writes for the whole matrix: bands are whole
/// rows, groups never cross rows, and each band goes through the same kernels. Plans whose rows
/// do not own whole bytes of every buffer are quantized as one band.
public enum TiledQuantizer {
    /// Floats per band (512 KB: stays in L2). Wide bands also make a transposed read take long
    /// runs of each stored row, which the hardware prefetchers follow (measured: 32K floats cost
    /// ~40% more time in the transpose on SmolLM2).
    static let bandElements = 131072

    /// True when every row of `plan`'s output owns whole bytes of codes, scales and zero points:
    /// 2-D, blocked along the last axis, in the MatMulNBits layout or the ONNX one at row-aligned bits,
    /// or bnb4 when its flat blocks never cross a row (then they are blocks along the last axis).
    static func splitsIntoRows(_ plan: QuantPlan) -> Bool {
        guard plan.shape.count == 2, plan.shape[0] > 1, plan.params.granularity == .blocked, plan.inner == 1,
              plan.groupCount > 0 else { return false }
        let bits = plan.codeSpec.bits
        switch plan.params.layout {
        case .matMulNBits: return true
        case .onnx: return plan.dim * bits % 8 == 0 && (!plan.storesZeroPoints || plan.blocksPerDim * bits % 8 == 0)
        case .bnb4: return plan.shape[1] % plan.block == 0 && plan.shape[1] * bits % 8 == 0
        }
    }

    /// Quantizes `source` (read as `plan.shape`: rows × paddedColumns) into `out`. Returns the
    /// error of the dequantized values against the source when `measureError` is set.
    /// `workspace` keeps the band buffers for the next call (nil: freed when this call returns).
    /// `sourceRead` is called when a plan that does not split into bands has copied the whole
    /// source, which is not read again: a caller can release mapped pages before the quantizer's
    /// own full-size buffers fill up.
    public static func quantize(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers,
                                measureError: Bool, workspace: BandWorkspace? = nil, sourceRead: () -> Void = {}) throws -> ErrorStats? {
        try quantize(plan, from: source, into: out, measureError: measureError, variant: Runtime.kernelVariant, workspace: workspace,
                     sourceRead: sourceRead)
    }

    /// `bandElements`: tests make bands small to have many.
    static func quantize(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers, measureError: Bool,
                         variant: KernelVariant, bandElements: Int = bandElements, workspace: BandWorkspace? = nil,
                         sourceRead: () -> Void = {}) throws -> ErrorStats? {
        guard plan.shape.count == 2, source.rows == plan.shape[0], source.paddedColumns == plan.shape[1] else {
            throw QuantError(.shapeMismatch, "the source is \(source.rows)×\(source.paddedColumns), the plan's shape is \(plan.shape)")
        }
        try Quantizer.checkSizes(plan, inputCount: plan.count, data: out.data.count, scales: out.scales.count, zeroPoints: out.zeroPoints?.count)
        let (rows, columns) = (plan.shape[0], plan.shape[1])
        guard splitsIntoRows(plan), columns > 0 else {
            return try quantizeWhole(plan, from: source, into: out, measureError: measureError, variant: variant, workspace: workspace,
                                     sourceRead: sourceRead)
        }
        let threads = plan.params.threads > 0 ? plan.params.threads : Runtime.defaultThreadCount
        let foldRows = Self.foldRows(columns: columns)
        let bandRows = Self.bandRows(rows: rows, columns: columns, elements: bandElements, threads: threads, alignment: foldRows)
        let bands = (rows + bandRows - 1) / bandRows
        var bandParams = plan.params
        bandParams.threads = 1  // the bands are the parallel work
        let fullPlan = try QuantPlan(params: bandParams, shape: [bandRows, columns])
        let lastRows = rows - (bands - 1) * bandRows
        let lastPlan = try QuantPlan(params: bandParams, shape: [lastRows, columns])
        let perRow = (data: plan.dataBytes / rows, scales: plan.scaleBytes / rows, zeroPoints: plan.zeroPointBytes / rows)
        guard fullPlan.dataBytes == bandRows * perRow.data, fullPlan.scaleBytes == bandRows * perRow.scales,
              fullPlan.zeroPointBytes == bandRows * perRow.zeroPoints else {
            return try quantizeWhole(plan, from: source, into: out, measureError: measureError, variant: variant, workspace: workspace)
        }

        let workspace = workspace ?? BandWorkspace()
        // Error sums per fold of `foldRows` rows, added in order at the end: the statistics do not
        // depend on how the rows were cut into bands (which follows the thread count).
        let folds = (rows + foldRows - 1) / foldRows
        let errors = UnsafeMutableBufferPointer<ErrorAccumulator>.allocate(capacity: folds)
        errors.initialize(repeating: ErrorAccumulator())
        var failures = [(any Error)?](repeating: nil, count: bands)
        defer { errors.deallocate() }
        failures.withUnsafeMutableBufferPointer { failed in
            Parallel.forEachDynamic(count: bands, threads: threads) { next in
                let rowQuantizer = BandRowQuantizer.supports(fullPlan, variant: variant) ? BandRowQuantizer(fullPlan, variant: variant) : nil
                let valuesBuffer = workspace.take(bandRows * columns)
                let restoredBuffer = workspace.take(measureError && rowQuantizer == nil ? bandRows * columns : 1)
                defer { workspace.give(valuesBuffer); workspace.give(restoredBuffer) }
                let restored = restoredBuffer.pointer
                while let band = next() {
                    let first = band * bandRows
                    let bandPlan = band == bands - 1 ? lastPlan : fullPlan
                    let count = bandPlan.count
                    let rows = first..<(first + bandPlan.shape[0])
                    var rangesRead = false
                    let values: UnsafePointer<Float>
                    if let stored = source.storedRows(rows) {
                        values = stored  // nothing to convert: no copy
                    } else {
                        rangesRead = source.read(rows: rows, into: valuesBuffer.pointer, variant: variant, ranges: rowQuantizer?.rangesToRead())
                        values = UnsafePointer(valuesBuffer.pointer)
                    }
                    func part(_ buffer: UnsafeMutableRawBufferPointer, _ bytesPerRow: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
                        UnsafeMutableRawBufferPointer(rebasing: buffer[(first * bytesPerRow)..<(first * bytesPerRow + count)])
                    }
                    let buffers = QuantizedBuffers(data: part(out.data, perRow.data, bandPlan.dataBytes),
                                                   scales: part(out.scales, perRow.scales, bandPlan.scaleBytes),
                                                   zeroPoints: out.zeroPoints.map { part($0, perRow.zeroPoints, bandPlan.zeroPointBytes) })
                    let bandErrors = measureError ? errors.baseAddress! + first / foldRows : nil
                    do {
                        if let rowQuantizer {
                            try rowQuantizer.quantize(values, bandPlan, into: buffers, errors: bandErrors, foldRows: foldRows, rangesRead: rangesRead)
                            continue
                        }
                        try Quantizer.quantize(bandPlan, input: UnsafeBufferPointer(start: values, count: count), into: buffers, variant: variant)
                        guard let bandErrors else { continue }
                        try Quantizer.dequantize(bandPlan, buffers.readOnly, into: UnsafeMutableBufferPointer(start: restored, count: count), variant: variant)
                        for r in stride(from: 0, to: bandPlan.shape[0], by: foldRows) {
                            let n = min(foldRows, bandPlan.shape[0] - r) * columns
                            bandErrors[r / foldRows].add(reference: values + r * columns, actual: restored + r * columns, count: n, variant: variant)
                        }
                    } catch {
                        failed[band] = error
                        return
                    }
                }
            }
        }
        if let failure = failures.first(where: { $0 != nil }) {
            // Report what quantizing the whole matrix reports (element and group numbers of the
            // whole matrix, not of a band).
            _ = try quantizeWhole(plan, from: source, into: out, measureError: false, variant: variant)
            throw failure!
        }
        guard measureError else { return nil }
        var total = ErrorAccumulator()
        for fold in 0..<folds { total.merge(errors[fold]) }
        return total.stats
    }

    /// Rows whose error sums are folded together: a power of two, about one kernel piece.
    static func foldRows(columns: Int) -> Int {
        var rows = 1
        while rows * 2 * columns <= ErrorAccumulator.pieceLength { rows *= 2 }
        return rows
    }

    /// Rows per band: at most about `elements` floats (L2), and small enough for 4 bands per
    /// thread (dynamic hand-out then evens out uneven cores); a multiple of 16 rows (a transposed
    /// read takes whole cache lines of each stored row) and of `alignment` (a power of two).
    static func bandRows(rows: Int, columns: Int, elements: Int, threads: Int, alignment: Int) -> Int {
        let unit = max(16, alignment)
        let byCache = max(1, elements / max(columns, 1))
        let byThreads = (rows + 4 * threads - 1) / (4 * threads)
        let wanted = min(byCache, byThreads)
        return max(unit, wanted / unit * unit)
    }

    /// The matrix read whole, quantized, and compared whole: plans that do not split into rows.
    /// Its two full-size buffers come from `workspace` when given: a converter then reuses them
    /// layer after layer instead of taking fresh pages (and their faults) for every weight.
    private static func quantizeWhole(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers, measureError: Bool,
                                      variant: KernelVariant, workspace: BandWorkspace? = nil,
                                      sourceRead: () -> Void = {}) throws -> ErrorStats? {
        let pool = workspace ?? BandWorkspace()
        let valuesBuffer = pool.take(plan.count)
        defer { pool.give(valuesBuffer) }
        let values = UnsafeMutableBufferPointer(start: valuesBuffer.pointer, count: plan.count)
        if plan.count > 0 { _ = source.read(rows: 0..<plan.shape[0], into: values.baseAddress!, variant: variant) }  // every element
        sourceRead()
        try Quantizer.quantize(plan, input: UnsafeBufferPointer(values), into: out, variant: variant)
        guard measureError else { return nil }
        guard plan.count > 0 else { return ErrorAccumulator().stats }
        let restoredBuffer = pool.take(plan.count)
        defer { pool.give(restoredBuffer) }
        let restored = UnsafeMutableBufferPointer(start: restoredBuffer.pointer, count: plan.count)
        try Quantizer.dequantize(plan, out.readOnly, into: restored, variant: variant)  // every element
        var total = ErrorAccumulator()
        total.add(reference: values.baseAddress!, actual: restored.baseAddress!, count: plan.count, variant: variant)
        return total.stats
    }
}
