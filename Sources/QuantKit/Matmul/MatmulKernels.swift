import QuantKitAVX2
import QuantKitAVX2VNNI
import QuantKitAVX512
import QuantKitVNNI512

/// One panel (16 outputs) of `rows` activation rows with int8 activations:
/// out[r][0..<16] = sum over blocks b of  float(dot_b - zero * xSum[r][b]) * (scale_b * xScale[r][b])
///                                        (+ min_b * (xScale[r][b] * float(xSum[r][b])) when mins)
/// accumulated with fused multiply-adds in block order. dot_b is the exact int32 dot product of the
/// block's codes with the int8 activations. Codes start at the panel's first block.
typealias IntPanelKernel = (_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32,
                            _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) -> Void

/// IntPanelKernel for weights whose scales are held as fp16 (PackedMatrix.halfScales; never with
/// mins): the same arithmetic on the same scale values, so the same bits.
typealias IntHalfPanelKernel = (_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>,
                                _ blocks: Int, _ block: Int, _ zero: Int32,
                                _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) -> Void

/// out[0..<count] = the fp16 values at `halves` as fp32 (an exact conversion: every variant gives the same).
typealias WidenHalvesKernel = (_ halves: UnsafePointer<UInt16>, _ out: UnsafeMutablePointer<Float>, _ count: Int) -> Void

/// The int8-activation arithmetic above for 4 consecutive panels and any number of
/// rows over `blocks` consecutive blocks, continuing each output from its current value in `out`
/// (the driver zeroes it before the first block), so a product cut into block ranges gives the same
/// bits as one IntPanelKernel call. codes/scales/mins point at the first panel's first block; the
/// next panel starts panelBytes (panelScales floats) later. Outputs of panel p are out[16p..<16p+16].
/// Row m's codes for block b start at xq + m * ldx + b * xBlockStride (the driver passes them
/// block by block, each block's rows one after another). Panels that do not fill a group of 4 go
/// through the panel kernel.
/// Its scalar twin is ReferencePanels.intNibbles/intBytes through the panel path.
typealias IntTileKernel = (_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                           _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                           _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                           _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) -> Void

/// One panel with float activations: per block, four chains c_j = fused multiply-adds of value(code) * x
/// over the block's K positions j, j+4, j+8, ... in order (from 0), partial = (c0 + c1) + (c2 + c3),
/// then out = fma(partial, scale, out) and, with mins,
/// out = fma(min, xSum[r][b], out), where xSum is the block's sum of x.
typealias FloatPanelKernel = (_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                              _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) -> Void

/// The float arithmetic of FloatPanelKernel for 2 consecutive panels and any number of rows over
/// `blocks` consecutive blocks, continuing each output from its current value in `out` (zeroed by
/// the driver). Pointers and strides as in IntTileKernel; `buffer` is scratch for 32 * block floats.
/// Its scalar twin is ReferencePanels.float* through the panel path.
typealias FloatTileKernel = (_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                             _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                             _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                             _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) -> Void

/// The panel kernels of one ISA. Every variant computes exactly the arithmetic documented above, in
/// the same order, so all variants give bit-identical results (tests compare them with `.scalar`).
struct MatmulKernels {
    let intNibbles: IntPanelKernel
    let intBytes: IntPanelKernel
    let intNibblesHalfScales: IntHalfPanelKernel
    let intBytesHalfScales: IntHalfPanelKernel
    let floatNibbles: FloatPanelKernel
    let floatBytes: FloatPanelKernel
    let floatHalves: FloatPanelKernel
    let quantizeActivations: ActivationKernel
    /// fp16 scales for the kernels that take fp32 ones (F16C: every variant but scalar has it).
    var widenHalves: WidenHalvesKernel = avx2WidenHalves
    /// Tile kernels for many rows; nil where the ISA has none (the panel kernels then serve every M).
    var intTileNibbles: IntTileKernel? = nil
    var intTileBytes: IntTileKernel? = nil
    /// The byte kernels for matrices whose codes are all at most 128 (PackedMatrix.narrowBytes), same
    /// contracts; nil where the general ones are as fast (VNNI, scalar).
    var intNarrowBytes: IntPanelKernel? = nil
    var intNarrowBytesHalfScales: IntHalfPanelKernel? = nil
    var intTileNarrowBytes: IntTileKernel? = nil
    var floatTileNibbles: FloatTileKernel? = nil
    var floatTileBytes: FloatTileKernel? = nil
    var floatTileHalves: FloatTileKernel? = nil
    /// The int8 tiles serve slices of at least this many rows: below, the panel kernels (one panel
    /// and 2 rows per pass, accumulators in registers) were as fast or faster (K = N = 4096, 1 thread;
    /// on AVX-512 the tiles tie at 2-4 rows and win from 5; on AVX2 and AVX-VNNI, whose panel kernels
    /// take both halves of a panel in one pass, the two tie from 8 to 32 rows).
    var intTileMinRows = 5
    /// The float tiles serve slices of at least this many rows, for kernel blocks of at least this
    /// size: below, the panel kernels were faster (measured at K = N = 4096, 1 thread). They pay a
    /// decode per block and slice, and a transpose of the chains per block and row; on AVX-512 the
    /// panel kernels are fast enough to win below 32 rows and at blocks of 32, on AVX2 only at 1-2 rows.
    var floatTileMinRows = 32
    var floatTileMinBlock = 64

    func intPanel(_ w: PackedMatrix) -> IntPanelKernel {
        w.codes == .nibbles ? intNibbles : w.narrowBytes ? intNarrowBytes ?? intBytes : intBytes
    }

    func intHalfPanel(_ w: PackedMatrix) -> IntHalfPanelKernel {
        w.codes == .nibbles ? intNibblesHalfScales : w.narrowBytes ? intNarrowBytesHalfScales ?? intBytesHalfScales : intBytesHalfScales
    }

    func intTile(_ w: PackedMatrix) -> IntTileKernel? {
        w.codes == .nibbles ? intTileNibbles : w.narrowBytes ? intTileNarrowBytes ?? intTileBytes : intTileBytes
    }

    func floatTile(_ codes: PackedMatrix.Codes) -> FloatTileKernel? {
        switch codes {
        case .nibbles: return floatTileNibbles
        case .bytes: return floatTileBytes
        case .halves: return floatTileHalves
        }
    }

    static func of(_ variant: MatmulVariant) -> MatmulKernels {
        switch variant {
        case .scalar:
            return MatmulKernels(intNibbles: ReferencePanels.intNibbles, intBytes: ReferencePanels.intBytes,
                                 intNibblesHalfScales: ReferencePanels.intNibblesHalfScales,
                                 intBytesHalfScales: ReferencePanels.intBytesHalfScales,
                                 floatNibbles: ReferencePanels.floatNibbles, floatBytes: ReferencePanels.floatBytes,
                                 floatHalves: ReferencePanels.floatHalves, quantizeActivations: ReferenceActivations.quantize,
                                 widenHalves: ReferencePanels.widenHalves)
        case .avx2:
            return MatmulKernels(intNibbles: avx2IntNibbles, intBytes: avx2IntBytes, intNibblesHalfScales: avx2IntNibblesHalfScales,
                                 intBytesHalfScales: avx2IntBytesHalfScales, floatNibbles: avx2FloatNibbles,
                                 floatBytes: avx2FloatBytes, floatHalves: avx2FloatHalves, quantizeActivations: avx2QuantizeActivations,
                                 intTileNibbles: avx2IntTileNibbles, intTileBytes: avx2IntTileBytes,
                                 intNarrowBytes: avx2IntNarrowBytes, intNarrowBytesHalfScales: avx2IntNarrowBytesHalfScales,
                                 intTileNarrowBytes: avx2IntTileNarrowBytes,
                                 floatTileNibbles: avx2FloatTileNibbles, floatTileBytes: avx2FloatTileBytes,
                                 floatTileHalves: avx2FloatTileHalves, intTileMinRows: 8, floatTileMinRows: 3, floatTileMinBlock: 8)
        case .avx2Vnni:
            return MatmulKernels(intNibbles: avxvnniIntNibbles, intBytes: avxvnniIntBytes,
                                 intNibblesHalfScales: avxvnniIntNibblesHalfScales, intBytesHalfScales: avxvnniIntBytesHalfScales,
                                 floatNibbles: avx2FloatNibbles,
                                 floatBytes: avx2FloatBytes, floatHalves: avx2FloatHalves, quantizeActivations: avx2QuantizeActivations,
                                 intTileNibbles: avxvnniIntTileNibbles, intTileBytes: avxvnniIntTileBytes,
                                 floatTileNibbles: avx2FloatTileNibbles, floatTileBytes: avx2FloatTileBytes,
                                 floatTileHalves: avx2FloatTileHalves, intTileMinRows: 8, floatTileMinRows: 3, floatTileMinBlock: 8)
        case .avx512Vnni:
            return MatmulKernels(intNibbles: vnni512IntNibbles, intBytes: vnni512IntBytes,
                                 intNibblesHalfScales: vnni512IntNibblesHalfScales, intBytesHalfScales: vnni512IntBytesHalfScales,
                                 floatNibbles: vnni512FloatNibbles,
                                 floatBytes: vnni512FloatBytes, floatHalves: vnni512FloatHalves,
                                 quantizeActivations: avx512QuantizeActivations, intTileNibbles: vnni512IntTileNibbles, intTileBytes: vnni512IntTileBytes,
                                 floatTileNibbles: vnni512FloatTileNibbles, floatTileBytes: vnni512FloatTileBytes,
                                 floatTileHalves: vnni512FloatTileHalves)
        }
    }
}

/// Where a code sits in a panel block (see PackedMatrix): shared by the reference and the packer.
enum PanelLayout {
    @inline(__always) static func nibble(_ base: UnsafeRawPointer, row r: Int, col c: Int) -> Int32 {
        let j = c % 8
        let byte = base.load(fromByteOffset: (c / 8) * 64 + r * 4 + (j & 3), as: UInt8.self)
        return Int32(j < 4 ? byte & 0x0F : byte >> 4)
    }

    @inline(__always) static func byte(_ base: UnsafeRawPointer, row r: Int, col c: Int) -> Int32 {
        Int32(base.load(fromByteOffset: (c / 4) * 64 + r * 4 + c % 4, as: UInt8.self))
    }

    @inline(__always) static func half(_ base: UnsafeRawPointer, row r: Int, col c: Int) -> UInt16 {
        base.loadUnaligned(fromByteOffset: c * 32 + r * 2, as: UInt16.self)
    }
}

/// The scalar reference: the documented arithmetic, one output at a time.
enum ReferencePanels {
    static let width = PackedMatrix.panelWidth

    static func intPanel(_ codes: UnsafeRawPointer, _ scale: (Int) -> Float, _ mins: UnsafePointer<Float>?,
                         _ blocks: Int, _ block: Int, _ zero: Int32,
                         _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                         _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, blockBytes: Int,
                         code: (UnsafeRawPointer, Int, Int) -> Int32) {
        for m in 0..<rows {
            for r in 0..<width {
                var acc: Float = 0
                for b in 0..<blocks {
                    let base = codes + b * blockBytes
                    var dot: Int32 = 0
                    for c in 0..<block { dot &+= code(base, r, c) &* Int32(xq[m * ldx + b * block + c]) }
                    let sx = xScale[m * ldb + b], sum = xSum[m * ldb + b]
                    acc.addProduct(Float(dot &- zero &* sum), scale(b * width + r) * sx)
                    if let mins { acc.addProduct(mins[b * width + r], sx * Float(sum)) }
                }
                out[m * ldo + r] = acc
            }
        }
    }

    static func floatPanel(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                           _ blocks: Int, _ block: Int, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                           _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, blockBytes: Int,
                           value: (UnsafeRawPointer, Int, Int) -> Float) {
        for m in 0..<rows {
            for r in 0..<width {
                var acc: Float = 0
                for b in 0..<blocks {
                    let base = codes + b * blockBytes
                    var c0: Float = 0, c1: Float = 0, c2: Float = 0, c3: Float = 0
                    for c in 0..<block {
                        let term = (value(base, r, c), x[m * ldx + b * block + c])
                        switch c % 4 {
                        case 0: c0.addProduct(term.0, term.1)
                        case 1: c1.addProduct(term.0, term.1)
                        case 2: c2.addProduct(term.0, term.1)
                        default: c3.addProduct(term.0, term.1)
                        }
                    }
                    acc.addProduct((c0 + c1) + (c2 + c3), scales[b * width + r])
                    if let mins { acc.addProduct(mins[b * width + r], xSum[m * ldb + b]) }
                }
                out[m * ldo + r] = acc
            }
        }
    }

    static let intNibbles: IntPanelKernel = { codes, scales, mins, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo in
        intPanel(codes, { scales[$0] }, mins, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo, blockBytes: width * block / 2,
                 code: PanelLayout.nibble)
    }
    static let intBytes: IntPanelKernel = { codes, scales, mins, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo in
        intPanel(codes, { scales[$0] }, mins, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo, blockBytes: width * block,
                 code: PanelLayout.byte)
    }
    static let widenHalves: WidenHalvesKernel = { halves, out, count in
        for i in 0..<count { out[i] = Float16Codec.fromF16(halves[i]) }
    }
    static let intNibblesHalfScales: IntHalfPanelKernel = { codes, scales, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo in
        intPanel(codes, { Float16Codec.fromF16(scales[$0]) }, nil, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo,
                 blockBytes: width * block / 2, code: PanelLayout.nibble)
    }
    static let intBytesHalfScales: IntHalfPanelKernel = { codes, scales, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo in
        intPanel(codes, { Float16Codec.fromF16(scales[$0]) }, nil, blocks, block, zero, xq, ldx, xs, sums, ldb, rows, out, ldo,
                 blockBytes: width * block, code: PanelLayout.byte)
    }
    static let floatNibbles: FloatPanelKernel = { codes, scales, mins, blocks, block, _, lut, x, ldx, sums, ldb, rows, out, ldo in
        floatPanel(codes, scales, mins, blocks, block, x, ldx, sums, ldb, rows, out, ldo, blockBytes: width * block / 2) {
            lut[Int(PanelLayout.nibble($0, row: $1, col: $2))]
        }
    }
    static let floatBytes: FloatPanelKernel = { codes, scales, mins, blocks, block, zero, _, x, ldx, sums, ldb, rows, out, ldo in
        floatPanel(codes, scales, mins, blocks, block, x, ldx, sums, ldb, rows, out, ldo, blockBytes: width * block) {
            Float(PanelLayout.byte($0, row: $1, col: $2) &- zero)
        }
    }
    static let floatHalves: FloatPanelKernel = { codes, scales, mins, blocks, block, _, _, x, ldx, sums, ldb, rows, out, ldo in
        floatPanel(codes, scales, mins, blocks, block, x, ldx, sums, ldb, rows, out, ldo, blockBytes: width * block * 2) {
            Float16Codec.fromF16(PanelLayout.half($0, row: $1, col: $2))
        }
    }
}
