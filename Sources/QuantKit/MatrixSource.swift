import CQuantKit

/// A row-major matrix of f32, f16 or bf16 values in raw little-endian bytes (for example a
/// weight in a memory-mapped model file, at any alignment), read a band of rows at a time as
/// floats: either as stored or transposed, times a factor, each row padded with zeros.
/// `TiledQuantizer` reads its input this way, so no float copy of the whole matrix is ever made.
public struct MatrixSource: @unchecked Sendable {
    public let bytes: UnsafeRawBufferPointer
    public let type: FloatType
    /// The matrix as stored.
    public let storedRows: Int, storedColumns: Int
    /// Read the transpose ([storedColumns, storedRows]).
    public let transposed: Bool
    /// Every value is multiplied by this (1: left as it is).
    public let factor: Float
    /// Length of each row read; columns past the matrix's are zeros.
    public let paddedColumns: Int

    /// Throws `.invalidArgument` when `bytes` does not hold exactly the matrix.
    public init(bytes: UnsafeRawBufferPointer, type: FloatType, rows: Int, columns: Int, transposed: Bool = false,
                factor: Float = 1, paddedColumns: Int? = nil) throws {
        let (count, overflow) = rows.multipliedReportingOverflow(by: columns)
        guard rows >= 0, columns >= 0, !overflow, count <= Int.max / 4, bytes.count == count * type.byteCount else {
            throw QuantError(.invalidArgument, "a \(rows)×\(columns) matrix of \(type) needs \(rows &* columns &* type.byteCount) bytes, got \(bytes.count)")
        }
        let readColumns = transposed ? rows : columns
        guard (paddedColumns ?? readColumns) >= readColumns else {
            throw QuantError(.invalidArgument, "padded row length \(paddedColumns ?? 0) is shorter than the \(readColumns) columns")
        }
        self.bytes = bytes
        self.type = type
        (storedRows, storedColumns) = (rows, columns)
        self.transposed = transposed
        self.factor = factor
        self.paddedColumns = paddedColumns ?? readColumns
    }

    /// Rows and columns as read (before padding).
    public var rows: Int { transposed ? storedColumns : storedRows }
    public var columns: Int { transposed ? storedRows : storedColumns }

    /// Rows `band` where they are stored, when reading them would only copy them (float32, not
    /// transposed, no factor or padding, aligned); nil otherwise.
    func storedRows(_ band: Range<Int>) -> UnsafePointer<Float>? {
        guard !transposed, type == .f32, factor == 1, paddedColumns == storedColumns, let base = bytes.baseAddress,
              Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0 else { return nil }
        return (base + band.lowerBound * storedColumns * 4).assumingMemoryBound(to: Float.self)
    }

    /// Writes rows `band` as read, `paddedColumns` floats each, to `out`.
    public func read(rows band: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        read(rows: band, into: out, variant: Runtime.kernelVariant)
    }

    /// Also fills `ranges` when it can gather them while reading (a transposed float32 matrix, no
    /// factor, blocks of a multiple of 16 columns, an ISA kernel that does it); returns whether it did.
    @discardableResult
    func read(rows band: Range<Int>, into out: UnsafeMutablePointer<Float>, variant: KernelVariant, ranges: GroupRanges? = nil) -> Bool {
        guard let base = bytes.baseAddress else {
            out.update(repeating: 0, count: band.count * paddedColumns)
            return false
        }
        let width = type.byteCount
        var rangesRead = false
        if transposed && type == .f32, factor == 1, let ranges, ranges.block % 16 == 0,
           let transpose = BlockKernels.of(variant)?.transposeBlockRanges {
            ranges.reset(rows: band.count, columns: paddedColumns)
            for c0 in stride(from: 0, to: storedRows, by: 16) {
                let group = c0 / ranges.block * ranges.stride
                for j0 in stride(from: 0, to: band.count, by: 16) {
                    let source = base + (c0 * storedColumns + band.lowerBound + j0) * 4
                    prefetchNextBlock(source, rowBytes: storedColumns * 4, storedRow: c0)
                    transpose(source, storedColumns * 4, min(16, storedRows - c0),
                              min(16, band.count - j0), out + j0 * paddedColumns + c0, paddedColumns,
                              ranges.lo + group + j0, ranges.hi + group + j0, ranges.poison)
                }
            }
            rangesRead = true
        } else if transposed && type == .f32 {
            // 16 × 16 blocks: stored rows c0..<c0+16 become columns of the band's rows.
            let transpose = BlockKernels.of(variant)?.transposeBlock ?? Self.transposeBlock
            for c0 in stride(from: 0, to: storedRows, by: 16) {
                for j0 in stride(from: 0, to: band.count, by: 16) {
                    let source = base + (c0 * storedColumns + band.lowerBound + j0) * 4
                    prefetchNextBlock(source, rowBytes: storedColumns * 4, storedRow: c0)
                    transpose(source, storedColumns * 4, min(16, storedRows - c0),
                              min(16, band.count - j0), out + j0 * paddedColumns + c0, paddedColumns)
                }
            }
        } else if transposed {
            // Row r of the transpose is column r of the stored matrix: walk the stored rows, each
            // contributing one contiguous run of `band.count` values.
            for c in 0..<storedRows {
                let source = base + (c * storedColumns + band.lowerBound) * width
                var target = out + c
                for j in 0..<band.count {
                    target.pointee = load(source, j)
                    target += paddedColumns
                }
            }
        } else {
            for (j, r) in band.enumerated() {
                let source = base + r * storedColumns * width
                let target = out + j * paddedColumns
                if type == .f32 {
                    UnsafeMutableRawPointer(target).copyMemory(from: source, byteCount: storedColumns * 4)
                } else {
                    for c in 0..<storedColumns { target[c] = load(source, c) }
                }
            }
        }
        for j in 0..<band.count {
            let row = out + j * paddedColumns
            if factor != 1 { for c in 0..<columns { row[c] *= factor } }
            (row + columns).update(repeating: 0, count: paddedColumns - columns)
        }
        if rangesRead, let ranges { ranges.includePadding(rows: band.count, from: columns, to: paddedColumns) }
        return rangesRead
    }

    /// Asks for the 16 stored rows after the 16 at `source` (same columns), which the transposed
    /// read reaches after the rest of the band's columns. Each stored row is read in runs of one
    /// band's width (a few hundred bytes), too short for the hardware prefetcher to follow: a C
    /// loop reading SmolLM2's mapped weights in this order took 5-11 GB/s without the prefetch and
    /// 12-13 GB/s with it (pages already mapped; see ExternalDataReader.populate).
    @inline(__always) private func prefetchNextBlock(_ source: UnsafeRawPointer, rowBytes: Int, storedRow: Int) {
        var i = 16
        while i < 32 && storedRow + i < storedRows {
            qk_prefetch(source + i * rowBytes)
            i += 1
        }
    }

    /// The scalar twin of transposeBlockRanges (avx512TransposeBlockRanges): transposeBlock, and
    /// lo[j], hi[j] lowered and raised to target row j's values (j < columns), and x * 0 of
    /// every value added into poison[j % 16].
    static func transposeBlockRanges(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                                     _ target: UnsafeMutablePointer<Float>, _ targetStride: Int, _ lo: UnsafeMutablePointer<Float>,
                                     _ hi: UnsafeMutablePointer<Float>, _ poison: UnsafeMutablePointer<Float>) {
        transposeBlock(source, sourceStride, rows, columns, target, targetStride)
        for i in 0..<rows {
            for j in 0..<columns {
                let x = source.loadUnaligned(fromByteOffset: i * sourceStride + j * 4, as: Float.self)
                lo[j] = Swift.min(lo[j], x)
                hi[j] = Swift.max(hi[j], x)
                poison[j % 16] += x * 0
            }
        }
    }

    /// The scalar twin of the transpose kernels (avx512TransposeBlock, avx2TransposeBlock): the
    /// transpose of a rows × columns block (at most 16 × 16) of floats at any alignment, source
    /// rows `sourceStride` bytes apart, target rows `targetStride` floats apart.
    static func transposeBlock(_ source: UnsafeRawPointer, _ sourceStride: Int, _ rows: Int, _ columns: Int,
                               _ target: UnsafeMutablePointer<Float>, _ targetStride: Int) {
        for i in 0..<rows {
            for j in 0..<columns {
                target[j * targetStride + i] = source.loadUnaligned(fromByteOffset: i * sourceStride + j * 4, as: Float.self)
            }
        }
    }

    @inline(__always) private func load(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        switch type {
        case .f32: return p.loadUnaligned(fromByteOffset: i * 4, as: Float.self)
        case .f16: return Float16Codec.fromF16(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        case .bf16: return Float16Codec.fromBF16(p.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))
        }
    }
}

/// Where a transposed read puts the range of every group of `block` columns of each row it
/// reads: row j's group g at lo[g * stride + j], hi[g * stride + j] (group-major, so one vector
/// updates 16 rows' ranges); finiteness of every value goes into the 16 floats at `poison` (see
/// BlockKernels.poisonIsClean), which the caller zeroes.
struct GroupRanges {
    let block: Int
    /// At least the rows of one read.
    let stride: Int
    let lo: UnsafeMutablePointer<Float>, hi: UnsafeMutablePointer<Float>, poison: UnsafeMutablePointer<Float>

    func groups(columns: Int) -> Int { (columns + block - 1) / block }

    /// Empty ranges for `rows` rows of `columns`.
    func reset(rows: Int, columns: Int) {
        for g in 0..<groups(columns: columns) {
            (lo + g * stride).update(repeating: .greatestFiniteMagnitude, count: rows)
            (hi + g * stride).update(repeating: -.greatestFiniteMagnitude, count: rows)
        }
    }

    /// Folds the zeros of columns `start..<end` (a read's padding) into their groups' ranges.
    func includePadding(rows: Int, from start: Int, to end: Int) {
        guard start < end else { return }
        for g in (start / block)..<groups(columns: end) {
            for j in 0..<rows {
                lo[g * stride + j] = Swift.min(lo[g * stride + j], 0)
                hi[g * stride + j] = Swift.max(hi[g * stride + j], 0)
            }
        }
    }
}
