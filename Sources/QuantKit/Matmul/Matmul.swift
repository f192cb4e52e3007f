/// How activations meet the weights (the C `QK_COMPUTE_*` values).
public enum MatmulCompute: Int32, Sendable {
    case float = 0
    case int8 = 1
}

/// Y[M, N] = X[M, K] . dequant(W)^T + bias on a packed matrix.
public enum Matmul {
    /// Rows of X arrive through `load(row, destination)` (K floats) and rows of Y leave through
    /// `store(row, values)` (N floats, bias added), so callers handle dtypes and strides.
    /// Results do not depend on `threads` or `variant`.
    public static func run(_ w: PackedMatrix, rows: Int, compute: MatmulCompute, bias: UnsafePointer<Float>?, threads: Int = 0,
                           variant: MatmulVariant = Runtime.matmulVariant,
                           load: (Int, UnsafeMutablePointer<Float>) -> Void,
                           store: (Int, UnsafePointer<Float>) -> Void) throws {
        guard rows > 0, w.n > 0 else { return }
        let integer = compute == .int8 && w.integerCodes
        let x = try Activations(rows: rows, matrix: w, quantize: integer, threads: threads, load: load)
        let ldo = w.nPadded
        let y = UnsafeMutablePointer<Float>.allocate(capacity: try checkedProduct([rows, ldo]))
        defer { y.deallocate() }
        let kernels = MatmulKernels.of(variant)
        // Rows in slices whose activations stay in L2 while every panel of a thread streams past.
        let rowsPerSlice = integer ? 256 : 64
        Parallel.forEachChunk(count: w.panels, threads: threads) { panels in
            var first = 0
            while first < rows {
                let count = min(rowsPerSlice, rows - first)
                for p in panels {
                    runPanel(w, p, kernels: kernels, integer: integer, x: x, first: first, count: count, out: y + first * ldo + p * PackedMatrix.panelWidth, ldo: ldo)
                }
                first += count
            }
        }
        for m in 0..<rows {
            let row = y + m * ldo
            if let bias { for j in 0..<w.n { row[j] += bias[j] } }
            store(m, row)
        }
    }

    private static func runPanel(_ w: PackedMatrix, _ p: Int, kernels: MatmulKernels, integer: Bool, x: Activations,
                                 first: Int, count: Int, out: UnsafeMutablePointer<Float>, ldo: Int) {
        let codes = UnsafeRawPointer(w.codes(panel: p, block: 0))
        let scaleOffset = w.scaleIndex(panel: p, block: 0)
        let scales = UnsafePointer(w.scales + scaleOffset)
        let mins = w.mins.map { UnsafePointer($0 + scaleOffset) }
        let ldx = x.kPadded, ldb = x.blocks
        if integer, let xq = x.codes, let xs = x.scales, let sums = x.codeSums {
            let kernel = w.codes == .nibbles ? kernels.intNibbles : kernels.intBytes
            kernel(codes, scales, mins, w.blocks, w.block, w.zero, xq + first * ldx, ldx, xs + first * ldb, sums + first * ldb, ldb,
                   count, out, ldo)
            return
        }
        let kernel: FloatPanelKernel
        switch w.codes {
        case .nibbles: kernel = kernels.floatNibbles
        case .bytes: kernel = kernels.floatBytes
        case .halves: kernel = kernels.floatHalves
        }
        kernel(codes, scales, mins, w.blocks, w.block, w.zero, w.lut, x.x + first * ldx, ldx, x.floatSums + first * ldb, ldb,
               count, out, ldo)
    }
}
