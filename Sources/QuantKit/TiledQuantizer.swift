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
    /// 2-D, blocked along the last axis, in the MatMulNBits layout or the ONNX one at row-aligned bits.
    static func splitsIntoRows(_ plan: QuantPlan) -> Bool {
        guard plan.shape.count == 2, plan.shape[0] > 1, plan.params.granularity == .blocked, plan.inner == 1,
              plan.groupCount > 0 else { return false }
        let bits = plan.codeSpec.bits
        switch plan.params.layout {
        case .matMulNBits: return true
        case .onnx: return plan.dim * bits % 8 == 0 && (!plan.storesZeroPoints || plan.blocksPerDim * bits % 8 == 0)
        case .bnb4: return false
        }
    }

    /// Quantizes `source` (read as `plan.shape`: rows × paddedColumns) into `out`. Returns the
    /// error of the dequantized values against the source when `measureError` is set.
    public static func quantize(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers,
                                measureError: Bool) throws -> ErrorStats? {
        try quantize(plan, from: source, into: out, measureError: measureError, variant: Runtime.kernelVariant)
    }

    /// `bandElements`: tests make bands small to have many.
    static func quantize(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers, measureError: Bool,
                         variant: KernelVariant, bandElements: Int = bandElements) throws -> ErrorStats? {
        guard plan.shape.count == 2, source.rows == plan.shape[0], source.paddedColumns == plan.shape[1] else {
            throw QuantError(.shapeMismatch, "the source is \(source.rows)×\(source.paddedColumns), the plan's shape is \(plan.shape)")
        }
        try Quantizer.checkSizes(plan, inputCount: plan.count, data: out.data.count, scales: out.scales.count, zeroPoints: out.zeroPoints?.count)
        let (rows, columns) = (plan.shape[0], plan.shape[1])
        guard splitsIntoRows(plan), columns > 0 else {
            return try quantizeWhole(plan, from: source, into: out, measureError: measureError, variant: variant)
        }
        let bandRows = Self.bandRows(columns: columns, elements: bandElements)
        let bands = (rows + bandRows - 1) / bandRows
        var bandParams = plan.params
        bandParams.threads = 1  // the bands are the parallel work
        let fullPlan = try QuantPlan(params: bandParams, shape: [bandRows, columns])
        let lastRows = rows - (bands - 1) * bandRows
        let lastPlan = try QuantPlan(params: bandParams, shape: [lastRows, columns])
        let perRow = (data: plan.dataBytes / rows, scales: plan.scaleBytes / rows, zeroPoints: plan.zeroPointBytes / rows)
        guard fullPlan.dataBytes == bandRows * perRow.data, fullPlan.scaleBytes == bandRows * perRow.scales,
              fullPlan.zeroPointBytes == bandRows * perRow.zeroPoints else {
            return try quantizeWhole(plan, from: source, into: out, measureError: measureError, variant: variant)
        }

        let errors = UnsafeMutableBufferPointer<ErrorAccumulator>.allocate(capacity: bands)
        errors.initialize(repeating: ErrorAccumulator())
        var failures = [(any Error)?](repeating: nil, count: bands)
        defer { errors.deallocate() }
        failures.withUnsafeMutableBufferPointer { failed in
            Parallel.forEachChunk(count: bands, threads: plan.params.threads) { range in
                let rowQuantizer = BandRowQuantizer.supports(fullPlan, variant: variant) ? BandRowQuantizer(fullPlan, variant: variant) : nil
                let values = UnsafeMutablePointer<Float>.allocate(capacity: bandRows * columns)
                let restored = UnsafeMutablePointer<Float>.allocate(capacity: measureError && rowQuantizer == nil ? bandRows * columns : 1)
                defer { values.deallocate(); restored.deallocate() }
                for band in range {
                    let first = band * bandRows
                    let bandPlan = band == bands - 1 ? lastPlan : fullPlan
                    let count = bandPlan.count
                    source.read(rows: first..<(first + bandPlan.shape[0]), into: values, variant: variant)
                    func part(_ buffer: UnsafeMutableRawBufferPointer, _ bytesPerRow: Int, _ count: Int) -> UnsafeMutableRawBufferPointer {
                        UnsafeMutableRawBufferPointer(rebasing: buffer[(first * bytesPerRow)..<(first * bytesPerRow + count)])
                    }
                    let buffers = QuantizedBuffers(data: part(out.data, perRow.data, bandPlan.dataBytes),
                                                   scales: part(out.scales, perRow.scales, bandPlan.scaleBytes),
                                                   zeroPoints: out.zeroPoints.map { part($0, perRow.zeroPoints, bandPlan.zeroPointBytes) })
                    do {
                        if let rowQuantizer {
                            try rowQuantizer.quantize(values, bandPlan, into: buffers, error: measureError ? errors.baseAddress! + band : nil)
                            continue
                        }
                        try Quantizer.quantize(bandPlan, input: UnsafeBufferPointer(start: values, count: count), into: buffers, variant: variant)
                        if measureError {
                            try Quantizer.dequantize(bandPlan, buffers.readOnly, into: UnsafeMutableBufferPointer(start: restored, count: count), variant: variant)
                            errors[band].add(reference: values, actual: restored, count: count, variant: variant)
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
        for band in 0..<bands { total.merge(errors[band]) }
        return total.stats
    }

    /// Rows per band: about `elements` floats, in multiples of 16 rows when rows are short
    /// (a transposed read then takes whole cache lines from each stored row).
    static func bandRows(columns: Int, elements: Int) -> Int {
        let rows = max(1, elements / columns)
        return rows >= 16 ? rows / 16 * 16 : rows
    }

    /// The matrix read whole, quantized, and compared whole: plans that do not split into rows.
    private static func quantizeWhole(_ plan: QuantPlan, from source: MatrixSource, into out: QuantizedBuffers, measureError: Bool,
                                      variant: KernelVariant) throws -> ErrorStats? {
        var values = [Float](repeating: 0, count: plan.count)
        if plan.count > 0 { values.withUnsafeMutableBufferPointer { source.read(rows: 0..<plan.shape[0], into: $0.baseAddress!, variant: variant) } }
        try values.withUnsafeBufferPointer { try Quantizer.quantize(plan, input: $0, into: out, variant: variant) }
        guard measureError else { return nil }
        guard plan.count > 0 else { return ErrorAccumulator().stats }
        var restored = [Float](repeating: 0, count: plan.count)
        try restored.withUnsafeMutableBufferPointer { try Quantizer.dequantize(plan, out.readOnly, into: $0, variant: variant) }
        var total = ErrorAccumulator()
        values.withUnsafeBufferPointer { v in
            restored.withUnsafeBufferPointer { r in
                total.add(reference: v.baseAddress!, actual: r.baseAddress!, count: plan.count, variant: variant)
            }
        }
        return total.stats
    }
}
