/// Activation rows copied into K padded to whole kernel blocks (zeros past K), with what the
/// kernels need per block: the float sums (float compute with mins), or int8 codes, scales and code
/// sums (int8 compute).
final class Activations {
    let rows: Int
    let kPadded: Int
    let blocks: Int
    let block: Int
    let x: UnsafeMutablePointer<Float>
    let floatSums: UnsafeMutablePointer<Float>
    let codes: UnsafeMutablePointer<Int8>?
    let scales: UnsafeMutablePointer<Float>?
    let codeSums: UnsafeMutablePointer<Int32>?

    /// `load(row, destination)` writes row `row`'s K floats.
    init(rows: Int, matrix w: PackedMatrix, quantize: Bool, threads: Int,
         load: (Int, UnsafeMutablePointer<Float>) -> Void) throws {
        self.rows = rows
        kPadded = w.kPadded
        blocks = w.blocks
        block = w.block
        let count = try checkedProduct([max(rows, 1), kPadded])
        x = .allocate(capacity: count)
        floatSums = .allocate(capacity: max(rows, 1) * blocks)
        if quantize {
            codes = .allocate(capacity: count)
            scales = .allocate(capacity: max(rows, 1) * blocks)
            codeSums = .allocate(capacity: max(rows, 1) * blocks)
        } else {
            codes = nil
            scales = nil
            codeSums = nil
        }
        for m in 0..<rows {
            let row = x + m * kPadded
            load(m, row)
            (row + w.k).initialize(repeating: 0, count: kPadded - w.k)
        }
        let needsFloatSums = w.mins != nil && !quantize
        let badRow = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        badRow.initialize(to: -1)
        defer { badRow.deallocate() }
        Parallel.forEachChunk(count: rows, threads: threads, minChunk: 8) { range in
            for m in range {
                if needsFloatSums { self.sumBlocks(row: m) }
                if quantize && !self.quantizeRow(m) { badRow.pointee = m }
            }
        }
        if badRow.pointee >= 0 {
            let m = badRow.pointee
            let column = (0..<w.k).first { !x[m * kPadded + $0].isFinite } ?? 0
            throw QuantError(.nonFinite, "x[\(m), \(column)] is \(x[m * kPadded + column]): int8 compute needs finite activations")
        }
    }

    private func sumBlocks(row m: Int) {
        for b in 0..<blocks {
            var sum: Float = 0
            for c in 0..<block { sum += x[m * kPadded + b * block + c] }
            floatSums[m * blocks + b] = sum
        }
    }

    /// Symmetric int8 per block: scale = max|x| / 127, code = round-half-even(x * (127 / max|x|)).
    /// Returns false when the row holds NaN or Inf.
    private func quantizeRow(_ m: Int) -> Bool {
        guard let codes, let scales, let codeSums else { return true }
        for b in 0..<blocks {
            let start = m * kPadded + b * block
            var maxAbs: Float = 0
            for c in 0..<block {
                let v = x[start + c]
                guard v.isFinite else { return false }
                maxAbs = max(maxAbs, v.magnitude)
            }
            let inverse: Float = maxAbs == 0 ? 0 : 127 / maxAbs
            var sum: Int32 = 0
            for c in 0..<block {
                let q = Int8(max(-127, min(127, (x[start + c] * inverse).rounded(.toNearestOrEven))))
                codes[start + c] = q
                sum += Int32(q)
            }
            scales[m * blocks + b] = maxAbs / 127
            codeSums[m * blocks + b] = sum
        }
        return true
    }

    deinit {
        x.deallocate()
        floatSums.deallocate()
        codes?.deallocate()
        scales?.deallocate()
        codeSums?.deallocate()
    }
}
