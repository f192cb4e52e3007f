/// A weight matrix W[N, K] repacked for the matmul kernels (the `qk_packed_matrix` handle).
///
/// Layout. Rows of W are grouped in panels of 16 (one output per 32-bit lane of an AVX-512
/// register); K is cut into kernel blocks of `block` elements, each with one scale (and min) per
/// row. A panel's blocks follow each other, and inside a block the codes are interleaved so that
/// one 64-byte load holds the same K positions of all 16 rows:
///   nibbles: groups of 8 K positions; row r's 4 bytes at 4r hold K+j in the low nibble of byte j
///            and K+j+4 in its high nibble (j = 0..3): a VNNI dot product of the low nibbles with
///            x[K..K+3] and of the high nibbles with x[K+4..K+7] covers the group.
///   bytes:   groups of 4 K positions; row r's 4 bytes at 4r are K+0..K+3.
///   halves:  one K position per 32 bytes: row r's fp16 bit pattern at 2r.
/// Rows past N have scale 0; K is padded to a whole block with codes of value 0.
/// Scales sit in their own buffer, 16 per panel and block, as fp32 or, when every one of them is
/// exactly an fp16 value and there are no mins, as fp16 (`halfScales`): weights from bf16 or fp16
/// checkpoints with power-of-two scale divisors (MatMulNBits, ONNX int8), and fp16 MatMulNBits
/// scales, lose nothing and a decode step reads 10% fewer bytes at block 32.
///
/// Values. Element (n, k) in block b is  scale[b][n] * value(code) + (mins?[b][n] ?? 0), where
/// value is lut[code] for nibbles, code - zero for bytes, and the fp16 value for halves.
/// Byte codes that span at most 129 values (weights quantized to 7 bits, as ONNX Runtime's
/// reduce_range does: -64...64) are stored shifted down into 0...128, with `zero` shifted alike
/// (`narrowBytes`): the values are the same, and AVX2 multiplies such codes with one instruction
/// fewer (see QuantKitAVX2/MatmulKernels256.swift).
/// Immutable after packing: one matrix can serve any number of threads.
public final class PackedMatrix: @unchecked Sendable {
    public enum Codes: Sendable { case nibbles, bytes, halves }

    public static let panelWidth = 16

    public let format: QuantFormat
    public let n: Int
    public let k: Int
    public let block: Int
    public let blocks: Int
    public let panels: Int
    public let codes: Codes
    /// Codes are integers (code - zero is the integer level): int8 compute runs integer dot products.
    public let integerCodes: Bool
    /// Code of the value 0 for integer codes without `mins` (symmetric formats); 0 otherwise. Byte
    /// codes subtract it (value = code - zero), also with mins: there it is minus the codes' shift.
    public let zero: Int32
    /// Every stored code, padding included, is a byte of at most 128 (see Values above).
    public let narrowBytes: Bool
    /// Present when zero points vary per block (asymmetric): min = -scale * zero point.
    let mins: UnsafeMutablePointer<Float>?
    /// Exactly one of the two holds the scales (see the layout above); the packer writes fp32
    /// scales and then calls holdScalesAsHalvesIfExact.
    private(set) var scales: UnsafeMutablePointer<Float>?
    private(set) var halfScales: UnsafeMutablePointer<UInt16>?
    let data: UnsafeMutableRawPointer
    /// Value of each nibble code before scaling (16 entries).
    let lut: UnsafeMutablePointer<Float>

    public var kPadded: Int { blocks * block }
    public var nPadded: Int { panels * Self.panelWidth }

    /// Bytes of codes per panel and block.
    public var blockBytes: Int {
        switch codes {
        case .nibbles: return Self.panelWidth * block / 2
        case .bytes: return Self.panelWidth * block
        case .halves: return Self.panelWidth * block * 2
        }
    }

    /// Bytes per stored scale: 2 when they are held as fp16, else 4.
    var scaleBytes: Int { halfScales == nil ? 4 : 2 }

    public var packedBytes: Int {
        panels * blocks * (blockBytes + Self.panelWidth * (scaleBytes + (mins == nil ? 0 : 4))) + 64
    }

    init(format: QuantFormat, n: Int, k: Int, block: Int, codes: Codes, integerCodes: Bool, zero: Int32, hasMins: Bool,
         narrowBytes: Bool = false, threads: Int = 1) throws {
        self.format = format
        self.n = n
        self.k = k
        self.block = block
        self.blocks = max(1, (k + block - 1) / block)
        self.panels = max(1, (n + Self.panelWidth - 1) / Self.panelWidth)
        self.codes = codes
        self.integerCodes = integerCodes
        self.zero = zero
        self.narrowBytes = narrowBytes && codes == .bytes
        let perBlock: Int
        switch codes {
        case .nibbles: perBlock = Self.panelWidth * block / 2
        case .bytes: perBlock = Self.panelWidth * block
        case .halves: perBlock = Self.panelWidth * block * 2
        }
        let dataBytes = try checkedProduct([panels, blocks, perBlock])
        let scaleCount = try checkedProduct([panels, blocks, Self.panelWidth])
        let byteCount = max(dataBytes, 64)
        data = HugePageBuffer.allocate(byteCount: byteCount)
        // Zeroed on the packer's threads, as this is the first touch of every page: an 11008 x 4096
        // int8 weight packed in 15-16 ms with two threads zeroing, 17-18 ms with one.
        let codeBytes = data
        Parallel.forEachChunk(count: byteCount, threads: threads, minChunk: 1 << 20) { range in
            (codeBytes + range.lowerBound).initializeMemory(as: UInt8.self, repeating: 0, count: range.count)
        }
        // The scales too (5.6 MB at 11008 x 4096, block 32).
        let floats = UnsafeMutablePointer<Float>.allocate(capacity: scaleCount)
        let minFloats = hasMins ? UnsafeMutablePointer<Float>.allocate(capacity: scaleCount) : nil
        Parallel.forEachChunk(count: scaleCount, threads: threads, minChunk: 1 << 18) { range in
            (floats + range.lowerBound).initialize(repeating: 0, count: range.count)
            if let minFloats { (minFloats + range.lowerBound).initialize(repeating: 0, count: range.count) }
        }
        scales = floats
        mins = minFloats
        lut = .allocate(capacity: 16)
        lut.initialize(repeating: 0, count: 16)
    }

    deinit {
        data.deallocate()
        scales?.deallocate()
        halfScales?.deallocate()
        mins?.deallocate()
        lut.deallocate()
    }

    /// Start of panel p, block b in each buffer.
    @inline(__always) func codes(panel p: Int, block b: Int) -> UnsafeMutableRawPointer { data + (p * blocks + b) * blockBytes }
    @inline(__always) func scaleIndex(panel p: Int, block b: Int) -> Int { (p * blocks + b) * Self.panelWidth }

    /// The stored code of element (row, col) of the padded matrix (the scalar kernels and tests read
    /// codes through this; the fast kernels read the interleaved bytes directly).
    @inline(__always) func code(row: Int, col: Int) -> Int32 {
        let p = row / Self.panelWidth, r = row % Self.panelWidth
        let b = col / block, c = col % block
        let base = UnsafeRawPointer(codes(panel: p, block: b))
        switch codes {
        case .nibbles: return PanelLayout.nibble(base, row: r, col: c)
        case .bytes: return PanelLayout.byte(base, row: r, col: c)
        case .halves: return Int32(PanelLayout.half(base, row: r, col: c))
        }
    }

    /// Writes the stored code of element (row, col); only the packer calls this.
    @inline(__always) func setCode(row: Int, col: Int, _ value: Int32) {
        let p = row / Self.panelWidth, r = row % Self.panelWidth
        let b = col / block, c = col % block
        let base = codes(panel: p, block: b)
        switch codes {
        case .nibbles:
            let g = c / 8, j = c % 8
            let offset = g * 64 + r * 4 + (j & 3)
            let old = base.load(fromByteOffset: offset, as: UInt8.self)
            let v = UInt8(truncatingIfNeeded: value & 0x0F)
            base.storeBytes(of: j < 4 ? (old & 0xF0) | v : (old & 0x0F) | (v << 4), toByteOffset: offset, as: UInt8.self)
        case .bytes:
            base.storeBytes(of: UInt8(truncatingIfNeeded: value), toByteOffset: (c / 4) * 64 + r * 4 + c % 4, as: UInt8.self)
        case .halves:
            base.storeBytes(of: UInt16(truncatingIfNeeded: value), toByteOffset: c * 32 + r * 2, as: UInt16.self)
        }
    }

    /// Writes `count` (at most one block) consecutive codes of one row, starting at column
    /// block * b, each mapped by `mapping`: groups of 8 (nibbles) or 4 (bytes) K positions go as
    /// one 32-bit word when the mapping is a rotation, the rest through setCode. Only the packer
    /// calls this.
    func fillBlock(row: Int, block b: Int, codes source: UnsafePointer<UInt8>, count: Int, mapping: CodeMapping) {
        let p = row / Self.panelWidth, r = row % Self.panelWidth
        let base = codes(panel: p, block: b)
        var c = 0
        if case .rotation(let rotation) = mapping {
            switch codes {
            case .nibbles:
                while c + 8 <= count {
                    let s = UnsafeRawPointer(source + c)
                    let low = CodeMapping.rotateNibbles(s.loadUnaligned(as: UInt32.self), by: rotation)
                    let high = CodeMapping.rotateNibbles(s.loadUnaligned(fromByteOffset: 4, as: UInt32.self), by: rotation)
                    base.storeBytes(of: low | high << 4, toByteOffset: (c / 8) * 64 + r * 4, as: UInt32.self)
                    c += 8
                }
            case .bytes:
                while c + 4 <= count {
                    let word = CodeMapping.rotateBytes(UnsafeRawPointer(source + c).loadUnaligned(as: UInt32.self), by: rotation)
                    base.storeBytes(of: word, toByteOffset: (c / 4) * 64 + r * 4, as: UInt32.self)
                    c += 4
                }
            case .halves:
                break
            }
        }
        while c < count {
            setCode(row: row, col: b * block + c, mapping.packed(source[c]))
            c += 1
        }
    }

    /// fillBlock for nibble codes still two to a byte, low nibble first (MatMulNBits' blob), each
    /// plus `rotation` mod 16.
    func fillBlock(row: Int, block b: Int, nibblePairs source: UnsafePointer<UInt8>, count: Int, rotation: UInt8) {
        let p = row / Self.panelWidth, r = row % Self.panelWidth
        let base = codes(panel: p, block: b)
        var c = 0
        while c + 8 <= count {
            let codes = Packing.nibblesToBytes(UnsafeRawPointer(source + c / 2).loadUnaligned(as: UInt32.self))
            let low = CodeMapping.rotateNibbles(UInt32(truncatingIfNeeded: codes), by: rotation)
            let high = CodeMapping.rotateNibbles(UInt32(truncatingIfNeeded: codes >> 32), by: rotation)
            base.storeBytes(of: low | high << 4, toByteOffset: (c / 8) * 64 + r * 4, as: UInt32.self)
            c += 8
        }
        while c < count {
            let code = (source[c / 2] >> UInt8(4 * (c % 2))) & 0xF
            setCode(row: row, col: b * block + c, Int32(code &+ rotation))
            c += 1
        }
    }

    /// fillBlock for codes stored [K, N]: `source` holds the panel's first row at K position
    /// block * b, the next K position `stride` bytes on, and `rows` (at most 16) rows side by side.
    /// With a rotation, each row's group of 8 (nibbles) or 4 (bytes) K positions goes as one word,
    /// its codes gathered across the group's K positions (lines that stay in L1 over the rows).
    func fillBlock(panel p: Int, block b: Int, columns source: UnsafePointer<UInt8>, stride: Int, rows: Int, count: Int,
                   mapping: CodeMapping) {
        let base = codes(panel: p, block: b)
        let firstRow = p * Self.panelWidth
        var c = 0
        if case .rotation(let rotation) = mapping {
            @inline(__always) func gather4(_ c: Int, _ r: Int) -> UInt32 {
                let s = source + c * stride + r
                return UInt32(s[0]) | UInt32(s[stride]) << 8 | UInt32(s[2 * stride]) << 16 | UInt32(s[3 * stride]) << 24
            }
            switch codes {
            case .nibbles:
                while c + 8 <= count {
                    for r in 0..<rows {
                        let low = CodeMapping.rotateNibbles(gather4(c, r), by: rotation)
                        let high = CodeMapping.rotateNibbles(gather4(c + 4, r), by: rotation)
                        base.storeBytes(of: low | high << 4, toByteOffset: (c / 8) * 64 + r * 4, as: UInt32.self)
                    }
                    c += 8
                }
            case .bytes:
                while c + 4 <= count {
                    for r in 0..<rows {
                        base.storeBytes(of: CodeMapping.rotateBytes(gather4(c, r), by: rotation), toByteOffset: (c / 4) * 64 + r * 4,
                                        as: UInt32.self)
                    }
                    c += 4
                }
            case .halves:
                break
            }
        }
        while c < count {
            for r in 0..<rows { setCode(row: firstRow + r, col: b * block + c, mapping.packed(source[c * stride + r])) }
            c += 1
        }
    }

    /// Swaps the fp32 scales for fp16 ones when that loses nothing (no mins, every scale exactly an
    /// fp16 value); `allowed` false keeps fp32 (tests compare both storages). Only the packer calls this.
    func holdScalesAsHalvesIfExact(allowed: Bool = true) {
        guard allowed, mins == nil, let scales else { return }
        let count = panels * blocks * Self.panelWidth
        for i in 0..<count where Float16Codec.fromF16(Float16Codec.f16Bits(scales[i])).bitPattern != scales[i].bitPattern { return }
        let halves = UnsafeMutablePointer<UInt16>.allocate(capacity: count)
        for i in 0..<count { halves[i] = Float16Codec.f16Bits(scales[i]) }
        scales.deallocate()
        self.scales = nil
        halfScales = halves
    }

    /// Scale number `index` (scaleIndex + row in panel).
    @inline(__always) func scale(_ index: Int) -> Float {
        if let scales { return scales[index] }
        return Float16Codec.fromF16(halfScales![index])
    }

    /// `count` scales from `index` as fp32: in place when they are stored so, else converted by
    /// `widen` into `scratch` (which must hold `count` floats).
    func floatScales(from index: Int, count: Int, scratch: UnsafeMutablePointer<Float>?,
                     widen: (UnsafePointer<UInt16>, UnsafeMutablePointer<Float>, Int) -> Void) -> UnsafePointer<Float> {
        if let scales { return UnsafePointer(scales + index) }
        widen(halfScales! + index, scratch!, count)
        return UnsafePointer(scratch!)
    }

    /// Value of a stored code before scaling.
    @inline(__always) func value(ofCode code: Int32) -> Float {
        switch codes {
        case .nibbles: return lut[Int(code)]
        case .bytes: return Float(code &- zero)
        case .halves: return Float16Codec.fromF16(UInt16(truncatingIfNeeded: code))
        }
    }

    /// Dequantized element (row < n, col < k): what every kernel multiplies with, up to rounding.
    public func weight(row: Int, col: Int) -> Float {
        let i = scaleIndex(panel: row / Self.panelWidth, block: col / block) + row % Self.panelWidth
        let v = scale(i) * value(ofCode: code(row: row, col: col))
        return v + (mins?[i] ?? 0)
    }
}
