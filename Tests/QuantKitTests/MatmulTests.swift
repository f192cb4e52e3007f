@testable import QuantKit
import XCTest

/// The fused matmul: every kernel variant against the scalar reference (bit for bit), and the
/// reference against a float64 product with the dequantized weights (within the documented bounds).
final class MatmulTests: XCTestCase {
    struct Case: CustomStringConvertible {
        var format: QuantFormat
        var configure: (inout QuantParams) -> Void = { _ in }
        var orientation: WeightOrientation = .nk
        /// Weights rounded to bf16 values first, as a bf16 checkpoint's are; `halfScales` is then
        /// whether the packed matrix must hold its scales as fp16 (nil: not checked).
        var bf16Weights = false
        var halfScales: Bool? = nil
        /// Rewrites the quantized codes (bytes as stored) before packing: 7-bit weights.
        var recode: ((UInt8) -> UInt8)? = nil
        var label: String
        var description: String { "\(label) (\(format))" }
    }

    static let cases: [Case] = [
        Case(format: .int4, label: "int4 sym block 32"),
        Case(format: .uint4, configure: { $0.scheme = .asymmetric; $0.blockSize = 16 }, label: "uint4 asym block 16"),
        Case(format: .int4, configure: { $0.scheme = .asymmetric; $0.blockSize = 64 }, label: "int4 asym block 64"),
        Case(format: .int4, configure: { $0.blockSize = 48 }, label: "int4 block 48 (kernel block 16)"),
        Case(format: .int4, configure: { $0.blockSize = 512 }, label: "int4 block 512 (kernel block 256)"),
        Case(format: .int8, configure: { $0.granularity = .perAxis; $0.axis = 0 }, label: "int8 per channel"),
        Case(format: .uint8, configure: { $0.granularity = .perAxis; $0.axis = 0; $0.scheme = .asymmetric }, label: "uint8 asym per channel"),
        Case(format: .int8, configure: { $0.blockSize = 128 }, label: "int8 block 128"),
        Case(format: .int8, configure: { $0.granularity = .perTensor }, label: "int8 per tensor"),
        Case(format: .int3, label: "int3 block 32"),
        Case(format: .int2, configure: { $0.scheme = .asymmetric; $0.blockSize = 16 }, label: "int2 asym block 16"),
        Case(format: .nf4, configure: { $0.layout = .bnb4; $0.blockSize = 64 }, label: "nf4 bnb4 block 64"),
        Case(format: .fp4Bnb, configure: { $0.layout = .bnb4; $0.blockSize = 32 }, label: "fp4-bnb block 32"),
        Case(format: .fp4E2M1, label: "fp4 e2m1 block 32"),
        Case(format: .log4, configure: { $0.blockSize = 16 }, label: "log4 block 16"),
        Case(format: .fp8E4M3FN, label: "fp8 e4m3 per tensor"),
        Case(format: .fp8E5M2, configure: { $0.granularity = .perAxis; $0.axis = 0 }, label: "fp8 e5m2 per channel"),
        Case(format: .int4, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.rounding = .halfAway }, label: "MatMulNBits int4 block 32"),
        Case(format: .uint4, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.scheme = .asymmetric; $0.blockSize = 16 },
             label: "MatMulNBits uint4 asym block 16"),
        Case(format: .int8, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.blockSize = 64 }, label: "MatMulNBits int8 block 64"),
        Case(format: .int2, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.scheme = .asymmetric }, label: "MatMulNBits int2 asym"),
        Case(format: .int4, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.rounding = .halfAway }, bf16Weights: true, halfScales: true,
             label: "MatMulNBits int4 block 32, bf16 weights (scales absmax / -8: fp16 exactly)"),
        Case(format: .int8, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.blockSize = 64 }, bf16Weights: true, halfScales: true,
             label: "MatMulNBits int8 block 64, bf16 weights (scales absmax / -128: fp16 exactly)"),
        Case(format: .uint4, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.scheme = .asymmetric }, bf16Weights: true,
             halfScales: false, label: "MatMulNBits uint4 asym, bf16 weights (mins keep fp32 scales)"),
        Case(format: .int4, configure: { $0.axis = 0 }, orientation: .kn, label: "kn int4 blocked along axis 0"),
        Case(format: .int8, configure: { $0.granularity = .perAxis; $0.axis = 1 }, orientation: .kn, label: "kn int8 per channel"),
        Case(format: .uint4, configure: { $0.axis = 0; $0.scheme = .asymmetric; $0.blockSize = 16 }, orientation: .kn,
             label: "kn uint4 asym block 16 (mins)"),
        Case(format: .fp8E4M3FN, orientation: .kn, label: "kn fp8 e4m3 per tensor (codes through the table)"),
        // 7-bit codes (span at most 129 values: packed as narrowBytes, which AVX2 multiplies without the sign transfer).
        Case(format: .int8, configure: { $0.granularity = .perAxis; $0.axis = 0 }, recode: { UInt8(bitPattern: Int8(bitPattern: $0) >> 1) },
             label: "int8 per channel, 7-bit codes -64...63"),
        Case(format: .uint8, configure: { $0.granularity = .perAxis; $0.axis = 0; $0.scheme = .asymmetric }, recode: { $0 / 2 + 37 },
             label: "uint8 asym per channel, codes 37...164 (mins, shifted codes)"),
        Case(format: .int8, configure: { $0.layout = .matMulNBits; $0.axis = 1; $0.blockSize = 64 }, recode: { $0 / 2 + 100 },
             label: "MatMulNBits int8 block 64, codes 100...227"),
        Case(format: .int8, configure: { $0.granularity = .perAxis; $0.axis = 1 }, orientation: .kn,
             recode: { UInt8(bitPattern: Int8(bitPattern: $0) >> 1) }, label: "kn int8 per channel, 7-bit codes"),
    ]

    /// (m, n, k): M across 1..70, N and K odd and off the tile and block grids, K below one block;
    /// (9, 33, 700) gives per-channel weights two kernel blocks of 352 over a padded K.
    /// (35, 131, 160) takes the int8 tiles (groups of 4 panels, 1 and 2 threads) and the float tiles (pairs of panels, 6 rows a pass) through leftover panels and rows;
    /// with (8, 64, 40) and (10, 67, 96) every row count the int8 tiles take in one pass (1...4 for nibbles, 1...6 for bytes) is a tail somewhere,
    /// and with (37, 33, 192), (38, 17, 128), (33, 40, 72), (70, ...) and (35, ...) every one the float tiles take (1...5 after groups of 6).
    static let shapes: [(Int, Int, Int)] = [(1, 16, 64), (1, 17, 40), (2, 33, 100), (3, 5, 7), (4, 16, 256), (5, 31, 129),
                                            (17, 9, 64), (70, 21, 96), (35, 131, 160), (8, 64, 40), (10, 67, 96), (9, 33, 700), (1, 1, 1),
                                            (37, 33, 192), (38, 17, 128), (33, 40, 72)]

    func testEveryVariantMatchesTheReference() throws {
        var rng = SplitMix(seed: 7)
        for c in Self.cases {
            for (m, n, k) in Self.shapes {
                var params = QuantParams(format: c.format)
                c.configure(&params)
                if params.layout == .bnb4 && k % params.blockSize != 0 { continue }
                let shape = c.orientation == .nk ? [n, k] : [k, n]
                var values = rng.normal(count: n * k, scale: 0.05)
                if c.bf16Weights { values = values.map { Float16Codec.fromBF16(Float16Codec.bf16Bits($0)) } }
                var q = try QuantizedTensor(quantizing: values, shape: shape, params: params)
                if let recode = c.recode { q.data = q.data.map(recode) }
                let w = try pack(q, n: n, k: k, c.orientation)
                if c.recode != nil { XCTAssertTrue(w.narrowBytes, "\(c) n=\(n) k=\(k)") }
                // fp32-held scales of the same weights: the same values, so the same bits.
                let floatScales = try pack(q, n: n, k: k, c.orientation, halfScales: false)
                XCTAssertNil(floatScales.halfScales, "\(c)")
                if let expected = c.halfScales {
                    XCTAssertEqual(w.halfScales != nil, expected, "\(c) n=\(n) k=\(k)")
                    let saved = expected ? w.panels * w.blocks * PackedMatrix.panelWidth * 2 : 0
                    XCTAssertEqual(w.packedBytes, floatScales.packedBytes - saved, "\(c)")
                }
                let dequantized = try q.dequantized()
                let x = rng.normal(count: m * k)
                for compute in [MatmulCompute.float, .int8] {
                    let reference = try run(w, x, rows: m, compute: compute, threads: 1, variant: .scalar)
                    if w.halfScales != nil {
                        let y = try run(floatScales, x, rows: m, compute: compute, threads: 1, variant: .scalar)
                        XCTAssertEqual(y.map(\.bitPattern), reference.map(\.bitPattern), "\(c) m=\(m) n=\(n) k=\(k) \(compute): fp32 scales")
                    }
                    for variant in Runtime.supportedMatmulVariants {
                        for threads in [1, 2, 3] {
                            let y = try run(w, x, rows: m, compute: compute, threads: threads, variant: variant)
                            XCTAssertEqual(y.map(\.bitPattern), reference.map(\.bitPattern),
                                           "\(c) m=\(m) n=\(n) k=\(k) \(compute) \(variant.name) threads=\(threads)")
                        }
                    }
                    let bound = errorBound(x: x, w: dequantized, m: m, n: n, k: k, c.orientation, block: w.block,
                                           int8: compute == .int8 && w.integerCodes)
                    let exact = product(x: x, w: dequantized, m: m, n: n, k: k, c.orientation)
                    for i in 0..<(m * n) where !(abs(Double(reference[i]) - exact[i]) <= bound[i]) {
                        XCTFail("\(c) m=\(m) n=\(n) k=\(k) \(compute): y[\(i)] = \(reference[i]), float64 \(exact[i]), bound \(bound[i])")
                        break
                    }
                }
            }
        }
    }

    /// The int8 tiles take rows in slices of 256, reading the activations block by block: 270 rows
    /// run a second slice (14 rows from row 256) over two blocks of K, for nibble and byte codes.
    func testInt8TilesAcrossRowSlices() throws {
        var rng = SplitMix(seed: 13)
        let (m, n, k) = (270, 65, 48)
        let x = rng.normal(count: m * k)
        let perChannel = Self.int8PerChannel
        for params in [QuantParams(format: .int4), perChannel] {
            let q = try QuantizedTensor(quantizing: rng.normal(count: n * k, scale: 0.05), shape: [n, k], params: params)
            let w = try pack(q, n: n, k: k, .nk)
            let reference = try run(w, x, rows: m, compute: .int8, threads: 1, variant: .scalar)
            for variant in Runtime.supportedMatmulVariants {
                for threads in [1, 2] {
                    let y = try run(w, x, rows: m, compute: .int8, threads: threads, variant: variant)
                    XCTAssertTrue(y.map(\.bitPattern) == reference.map(\.bitPattern), "\(params.format) \(variant.name) threads=\(threads)")
                }
            }
        }
    }

    /// A matrix whose codes take 2.2 MB (packed weights of 2 MiB and more go in buffers aligned and
    /// marked for huge pages, here with a tail past the last whole 2 MiB) gives the scalar
    /// reference's bits in every variant, at decode and tile row counts. Byte codes per channel:
    /// half the products of nibble codes of the same size.
    func testAMatrixInAHugePageBufferMatchesTheReference() throws {
        var rng = SplitMix(seed: 29)
        let (n, k) = (528, 4100)  // 33 panels x 9 kernel blocks of 456 x 16 rows = 2,166,912 bytes
        let q = try QuantizedTensor(quantizing: rng.normal(count: n * k, scale: 0.05), shape: [n, k], params: Self.int8PerChannel)
        let w = try pack(q, n: n, k: k, .nk)
        XCTAssertGreaterThan(w.panels * w.blocks * w.blockBytes, HugePageBuffer.pageBytes)
        XCTAssertEqual(Int(bitPattern: w.data) % HugePageBuffer.pageBytes, 0)
        for m in [1, 9] {
            let x = rng.normal(count: m * k)
            for compute in [MatmulCompute.float, .int8] {
                let reference = try run(w, x, rows: m, compute: compute, threads: 1, variant: .scalar)
                for variant in Runtime.supportedMatmulVariants {
                    let y = try run(w, x, rows: m, compute: compute, threads: 2, variant: variant)
                    XCTAssertTrue(y.map(\.bitPattern) == reference.map(\.bitPattern), "m=\(m) \(compute) \(variant.name)")
                }
            }
        }
    }

    /// The largest integer dot products the int8 kernels meet: every code at an end of its range
    /// and every activation at +-127 (constant rows quantize to that), with products of one sign
    /// over whole blocks. AVX2 adds nibble products in int16 for a while, takes full-range byte
    /// codes as signed, and 7-bit byte codes (narrowBytes) as they are; an int16 sum held one step
    /// too long, or a saturating pair, changes these bits.
    func testInt8ComputeAtTheExtremeCodes() throws {
        let perChannel = Self.int8PerChannel
        var asymmetric = QuantParams(format: .uint4)
        asymmetric.scheme = .asymmetric
        asymmetric.blockSize = 64
        var wide = QuantParams(format: .int4)
        wide.blockSize = 256
        // (params, the byte every code byte of an even and of an odd weight row is set to, the code the
        // packed matrix then holds for each, whether it holds them as narrowBytes)
        let cases: [(QuantParams, (UInt8, UInt8), (Int32, Int32), Bool)] = [
            (QuantParams(format: .int4), (0x77, 0x77), (15, 15), false), (wide, (0x77, 0x77), (15, 15), false),
            (asymmetric, (0xFF, 0xFF), (15, 15), false),
            (perChannel, (0x7F, 0x80), (255, 0), false),   // 127 and -128: the full range, signed on AVX2
            (perChannel, (0x40, 0xC0), (128, 0), true),    // 64 and -64: the widest span taken as it is
            (perChannel, (0x7F, 0x7F), (0, 0), true),      // one code, shifted to 0
        ]
        let (n, k) = (64, 512)
        for (params, fill, packedCode, narrow) in cases {
            var rng = SplitMix(seed: 17)
            var q = try QuantizedTensor(quantizing: rng.normal(count: n * k, scale: 0.05), shape: [n, k], params: params)
            let rowBytes = q.data.count / n
            q.data = (0..<q.data.count).map { (($0 / rowBytes) % 2 == 0) ? fill.0 : fill.1 }
            let w = try pack(q, n: n, k: k, .nk)
            XCTAssertEqual(w.narrowBytes, narrow, "\(params.format) fill \(fill)")
            for row in 0..<n {
                let expected = row % 2 == 0 ? packedCode.0 : packedCode.1
                XCTAssertTrue((0..<k).allSatisfy { w.code(row: row, col: $0) == expected }, "\(params.format) fill \(fill): row \(row)")
            }
            if narrow {
                let codes = UnsafeRawBufferPointer(start: w.data, count: w.panels * w.blocks * w.blockBytes)
                XCTAssertTrue(codes.allSatisfy { $0 <= 128 }, "\(params.format) fill \(fill): a code byte above 128")
            }
            for m in [3, 12] {
                // Rows of +1, of -1, and of signs alternating along K.
                let x = (0..<(m * k)).map { i -> Float in
                    switch (i / k) % 3 {
                    case 0: return 1
                    case 1: return -1
                    default: return i % 2 == 0 ? 1 : -1
                    }
                }
                let reference = try run(w, x, rows: m, compute: .int8, threads: 1, variant: .scalar)
                for variant in Runtime.supportedMatmulVariants {
                    let y = try run(w, x, rows: m, compute: .int8, threads: 1, variant: variant)
                    XCTAssertTrue(y.map(\.bitPattern) == reference.map(\.bitPattern), "\(params.format) fill \(fill) m=\(m) \(variant.name)")
                }
            }
        }
    }

    /// Byte codes go in as narrowBytes exactly when they span at most 129 values, wherever that
    /// span lies; either way every variant gives the reference's bits, with fp32 scales (int8 per
    /// channel) and with fp16-held ones (MatMulNBits int8 of bf16 weights: scales max|w| / -128).
    func testNarrowBytesExactlyWhereTheCodesSpanAtMost129Values() throws {
        let perChannel = Self.int8PerChannel
        var matMulNBits = QuantParams(format: .int8)
        matMulNBits.layout = .matMulNBits
        matMulNBits.axis = 1
        let (n, k) = (40, 96)
        var rng = SplitMix(seed: 31)
        for params in [perChannel, matMulNBits] {
            let halves = params.layout == .matMulNBits
            // The stored byte of level v: int8 in the ONNX layout, v + 128 in MatMulNBits'.
            let stored: (Int) -> UInt8 = halves ? { UInt8($0 + 128) } : { UInt8(bitPattern: Int8($0)) }
            for (low, high, narrow) in [(-64, 64, true), (-64, 65, false), (-128, 0, true), (-1, 127, true), (-2, 127, false),
                                        (-128, 127, false)] {
                let values = rng.normal(count: n * k).map { Float16Codec.fromBF16(Float16Codec.bf16Bits($0)) }
                var q = try QuantizedTensor(quantizing: values, shape: [n, k], params: params)
                // Both ends in every row, and levels between them.
                let levels = (0..<(n * k)).map { i in i % 3 == 0 ? low : i % 3 == 1 ? high : low + (i * 7919) % (high - low + 1) }
                q.data = levels.map(stored)
                let w = try pack(q, n: n, k: k, .nk)
                let label = "\(params.layout) levels \(low)...\(high)"
                XCTAssertEqual(w.narrowBytes, narrow, label)
                XCTAssertEqual(w.halfScales != nil, halves, label)
                for row in 0..<n {
                    for col in 0..<k where w.value(ofCode: w.code(row: row, col: col)) != Float(levels[row * k + col]) {
                        return XCTFail("\(label): element (\(row), \(col)) packs as \(w.value(ofCode: w.code(row: row, col: col)))")
                    }
                }
                for m in [3, 9] {
                    let x = rng.normal(count: m * k)
                    let reference = try run(w, x, rows: m, compute: .int8, threads: 1, variant: .scalar)
                    for variant in Runtime.supportedMatmulVariants {
                        let y = try run(w, x, rows: m, compute: .int8, threads: 2, variant: variant)
                        XCTAssertTrue(y.map(\.bitPattern) == reference.map(\.bitPattern), "\(label) m=\(m) \(variant.name)")
                    }
                }
            }
        }
    }

    func testBiasIsAddedAndEveryOutputWritten() throws {
        var rng = SplitMix(seed: 11)
        let (m, n, k) = (3, 19, 70)
        let q = try QuantizedTensor(quantizing: rng.normal(count: n * k), shape: [n, k], params: QuantParams(format: .int4))
        let w = try pack(q, n: n, k: k, .nk)
        let x = rng.normal(count: m * k)
        let bias = rng.normal(count: n)
        let plain = try run(w, x, rows: m, compute: .float, threads: 0, variant: Runtime.matmulVariant)
        let biased = try bias.withUnsafeBufferPointer { b in
            try run(w, x, rows: m, compute: .float, threads: 0, variant: Runtime.matmulVariant, bias: b.baseAddress)
        }
        for i in 0..<(m * n) { XCTAssertEqual(biased[i], plain[i] + bias[i % n]) }
    }

    func testInt8ComputeRejectsNonFiniteActivations() throws {
        let q = try QuantizedTensor(quantizing: [Float](repeating: 0.5, count: 64), shape: [2, 32], params: QuantParams(format: .int4))
        let w = try pack(q, n: 2, k: 32, .nk)
        var x = [Float](repeating: 1, count: 64)
        for bad in [Float.infinity, -.infinity, .nan] {
            x[40] = bad
            for variant in Runtime.supportedMatmulVariants {
                XCTAssertThrowsStatus(.nonFinite, try self.run(w, x, rows: 2, compute: .int8, threads: 1, variant: variant))
            }
        }
        let y = try run(w, x, rows: 2, compute: .float, threads: 1, variant: .scalar)
        XCTAssertTrue(y[0].isFinite && y[2].isNaN, "float compute propagates NaN like IEEE arithmetic")
    }

    /// Ties at .5 (round half to even), all-zero blocks, blocks of 8 (a partial AVX-512 vector),
    /// subnormals and the +-127 clamp, on every variant's activation quantizer.
    func testActivationQuantizersMatchTheReference() throws {
        var rng = SplitMix(seed: 5)
        for block in [8, 16, 24, 128] {
            let blocks = 6
            var x = rng.normal(count: blocks * block)
            for c in 0..<block {
                x[c] = c == 0 ? 127 : Float(c % 9) - 4.5  // block 0: scale 1, codes are x rounded half to even
                x[block + c] = 0                          // block 1: all zero
                x[2 * block + c] = Float.leastNonzeroMagnitude * Float(c)  // block 2: subnormals
            }
            let reference = quantizeActivations(x, blocks, block, ReferenceActivations.quantize)
            XCTAssertEqual(reference.codes[1], -4, "-3.5 rounds half to even")
            XCTAssertEqual(reference.codes[2], -2, "-2.5 rounds half to even")
            XCTAssertEqual(reference.scales[1], 0)
            XCTAssertEqual(reference.codes[(2 * block)..<(3 * block)], [Int8](repeating: 0, count: block)[...],
                           "127 / max|x| overflows: the block quantizes to zero")
            for variant in Runtime.supportedMatmulVariants {
                let got = quantizeActivations(x, blocks, block, MatmulKernels.of(variant).quantizeActivations)
                XCTAssertEqual(got.codes, reference.codes, "block \(block) \(variant.name)")
                XCTAssertEqual(got.scales.map(\.bitPattern), reference.scales.map(\.bitPattern), "block \(block) \(variant.name)")
                XCTAssertEqual(got.sums, reference.sums, "block \(block) \(variant.name)")
                XCTAssertTrue(got.finite)
                var bad = x
                bad[3 * block + block - 1] = .infinity
                XCTAssertFalse(quantizeActivations(bad, blocks, block, MatmulKernels.of(variant).quantizeActivations).finite, variant.name)
            }
        }
    }

    /// Every fp16 value that is not a NaN (scales never are), widened by each variant, in a count
    /// that leaves a tail past the last whole vector.
    func testWidenHalvesMatchesTheReference() {
        let halves = (0...UInt16.max).filter { !Float16(bitPattern: $0).isNaN }
        XCTAssertNotEqual(halves.count % 8, 0)
        let expected = halves.map { Float(Float16(bitPattern: $0)).bitPattern }
        for variant in Runtime.supportedMatmulVariants {
            var out = [Float](repeating: .nan, count: halves.count)
            halves.withUnsafeBufferPointer { h in
                out.withUnsafeMutableBufferPointer { MatmulKernels.of(variant).widenHalves(h.baseAddress!, $0.baseAddress!, h.count) }
            }
            XCTAssertEqual(out.map(\.bitPattern), expected, variant.name)
        }
    }

    func testPackingRejectsWhatTheKernelsCannotServe() throws {
        let values = [Float](repeating: 0.25, count: 12 * 20)
        let blocked12 = try quantized(values, [12, 20], { $0.blockSize = 12 }, format: .int4)
        XCTAssertThrowsStatus(.unsupported, try self.pack(blocked12, n: 12, k: 20, .nk))
        let alongN = try quantized(values, [12, 20], { $0.axis = 0 }, format: .int4)
        XCTAssertThrowsStatus(.unsupported, try self.pack(alongN, n: 12, k: 20, .nk))
        let fp16 = try quantized(values, [12, 20], { _ in }, format: .fp16)
        XCTAssertThrowsStatus(.unsupported, try self.pack(fp16, n: 12, k: 20, .nk))
        let bnbRagged = try quantized(values, [12, 20], { $0.layout = .bnb4; $0.blockSize = 64 }, format: .nf4)
        XCTAssertThrowsStatus(.unsupported, try self.pack(bnbRagged, n: 12, k: 20, .nk))
        var nanScale = try quantized(values, [12, 20], { $0.blockSize = 16 }, format: .int4)
        nanScale.scales.withUnsafeMutableBytes { $0.storeBytes(of: Float.nan, toByteOffset: 4, as: Float.self) }
        XCTAssertThrowsStatus(.nonFinite, try self.pack(nanScale, n: 12, k: 20, .nk))
        var nanCode = try quantized(values, [12, 20], { $0.granularity = .perTensor }, format: .fp8E4M3FN)
        nanCode.data[7] = 0x7F
        XCTAssertThrowsStatus(.nonFinite, try self.pack(nanCode, n: 12, k: 20, .nk))
        XCTAssertThrowsStatus(.bufferTooSmall, try PackedMatrix.pack(params: blocked12.plan.params, n: 12, k: 21, orientation: .nk,
                                                                    weights: view(blocked12)))
    }

    /// Scales are read on the packer's threads, in chunks of at least 65536 groups: every chunk's
    /// scales and zero points must land (the same bits on 1 and 3 threads, both halves of a
    /// doubled matrix alike, and symmetric weights keep their constant zero point), and the error
    /// names the first non-finite scale whichever chunk finds one first.
    func testPackingReadsScalesOnThreadsAsOnOne() throws {
        let half = 192, k = 8192  // 2 * 192 rows x 512 blocks of 16 = 3 chunks of 65536 groups
        var rng = SystemRandomNumberGenerator()
        let values = (0..<half * k).map { _ in Float.random(in: -1...1, using: &rng) }
        let x = (0..<2 * k).map { _ in Float.random(in: -1...1, using: &rng) }
        // Implied zero points 0 and 8, and stored ones.
        for (format, scheme) in [(QuantFormat.int4, QuantScheme.symmetric), (.uint4, .symmetric), (.uint4, .asymmetric)] {
            let label = "\(format) \(scheme)"
            let q = try quantized(values + values, [2 * half, k], { $0.blockSize = 16; $0.scheme = scheme }, format: format)
            XCTAssertEqual(q.plan.groupCount, 3 * 65536)
            var outputs: [[Float]] = []
            for threads in [1, 3] {
                let w = try PackedMatrix.pack(params: q.plan.params, n: 2 * half, k: k, orientation: .nk, weights: view(q), threads: threads)
                XCTAssertEqual(w.mins == nil, scheme == .symmetric, "\(label): mins only where zero points vary")
                outputs.append(try run(w, x, rows: 2, compute: .int8, threads: 1, variant: .scalar))
            }
            XCTAssertEqual(outputs[0].map(\.bitPattern), outputs[1].map(\.bitPattern), label)
            for row in 0..<2 {
                let y = outputs[1][row * 2 * half..<(row + 1) * 2 * half]
                XCTAssertEqual(Array(y.prefix(half)), Array(y.suffix(half)), "\(label): both halves hold the same weights")
            }
        }
        var bad = try quantized(values + values, [2 * half, k], { $0.blockSize = 16 }, format: .int4)
        bad.scales.withUnsafeMutableBytes {
            $0.storeBytes(of: -Float.infinity, toByteOffset: 4 * 30_000, as: Float.self)
            $0.storeBytes(of: Float.nan, toByteOffset: 4 * 70_000, as: Float.self)
            $0.storeBytes(of: Float.nan, toByteOffset: 4 * 140_000, as: Float.self)
        }
        for threads in [1, 2, 3] {
            XCTAssertThrowsError(try PackedMatrix.pack(params: bad.plan.params, n: 2 * half, k: k, orientation: .nk, weights: view(bad),
                                                       threads: threads)) { error in
                XCTAssertEqual((error as? QuantError)?.status, .nonFinite)
                XCTAssertEqual((error as? QuantError)?.message, "scale 30000 is -inf: scales must be finite", "\(threads) threads")
            }
        }
    }

    // MARK: - helpers

    /// int8 weights [N, K] with one scale per output channel (W8A8).
    static var int8PerChannel: QuantParams {
        var params = QuantParams(format: .int8)
        params.granularity = .perAxis
        params.axis = 0
        return params
    }

    func quantizeActivations(_ x: [Float], _ blocks: Int, _ block: Int, _ kernel: ActivationKernel)
        -> (codes: [Int8], scales: [Float], sums: [Int32], finite: Bool) {
        var codes = [Int8](repeating: 99, count: blocks * block)
        var scales = [Float](repeating: .nan, count: blocks)
        var sums = [Int32](repeating: 99, count: blocks)
        let finite = x.withUnsafeBufferPointer { xp in
            codes.withUnsafeMutableBufferPointer { c in
                scales.withUnsafeMutableBufferPointer { s in
                    sums.withUnsafeMutableBufferPointer { q in kernel(xp.baseAddress!, blocks, block, c.baseAddress!, s.baseAddress!, q.baseAddress!) }
                }
            }
        }
        return (codes, scales, sums, finite)
    }

    func view(_ q: QuantizedTensor) -> QuantizedView {
        q.data.withUnsafeBytes { d in q.scales.withUnsafeBytes { s in q.zeroPoints.withUnsafeBytes { z in
            QuantizedView(data: d, scales: s, zeroPoints: q.plan.storesZeroPoints ? z : nil)
        } } }
    }

    func pack(_ q: QuantizedTensor, n: Int, k: Int, _ orientation: WeightOrientation, halfScales: Bool = true) throws -> PackedMatrix {
        try q.data.withUnsafeBytes { d in
            try q.scales.withUnsafeBytes { s in
                try q.zeroPoints.withUnsafeBytes { z in
                    try PackedMatrix.pack(params: q.plan.params, n: n, k: k, orientation: orientation,
                                          weights: QuantizedView(data: d, scales: s, zeroPoints: q.plan.storesZeroPoints ? z : nil),
                                          halfScales: halfScales)
                }
            }
        }
    }

    /// Output rows land in a NaN-poisoned buffer; a row the matmul never stores stays NaN.
    /// Runs through the row callbacks and again with X and Y as dense rows in place; both must
    /// give the same bits, and every row must come out.
    func run(_ w: PackedMatrix, _ x: [Float], rows: Int, compute: MatmulCompute, threads: Int, variant: MatmulVariant,
             bias: UnsafePointer<Float>? = nil) throws -> [Float] {
        var y = [Float](repeating: .nan, count: rows * w.n)
        var dense = [Float](repeating: .nan, count: rows * w.n)
        var stored = [Bool](repeating: false, count: rows)
        try x.withUnsafeBufferPointer { xs in
            try y.withUnsafeMutableBufferPointer { ys in
                try Matmul.run(w, rows: rows, compute: compute, bias: bias, threads: threads, variant: variant,
                               load: { m, dst in dst.update(from: xs.baseAddress! + m * w.k, count: w.k) },
                               store: { m, src in
                                   (ys.baseAddress! + m * w.n).update(from: src, count: w.n)
                                   stored[m] = true
                               })
            }
            try dense.withUnsafeMutableBufferPointer { ds in
                try Matmul.run(w, rows: rows, compute: compute, bias: bias, threads: threads, variant: variant,
                               denseX: xs.baseAddress!, denseY: ds.baseAddress!,
                               load: { m, dst in dst.update(from: xs.baseAddress! + m * w.k, count: w.k) },
                               store: { m, src in (ds.baseAddress! + m * w.n).update(from: src, count: w.n) })
            }
        }
        XCTAssertEqual(stored, [Bool](repeating: true, count: rows))
        XCTAssertEqual(dense.map(\.bitPattern), y.map(\.bitPattern), "dense X and Y in place")
        return y
    }

    func weight(_ w: [Float], _ row: Int, _ col: Int, n: Int, k: Int, _ o: WeightOrientation) -> Double {
        Double(o == .nk ? w[row * k + col] : w[col * n + row])
    }

    func product(x: [Float], w: [Float], m: Int, n: Int, k: Int, _ o: WeightOrientation) -> [Double] {
        var y = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { for c in 0..<k { y[i * n + j] += Double(x[i * k + c]) * weight(w, j, c, n: n, k: k, o) } } }
        return y
    }

    /// Float rounding: (terms per block + blocks + 2) ulps of sum |x w|. Int8 compute adds the
    /// header's bound: sum over blocks of (max|x_block| / 127 / 2) * sum |w_block|.
    func errorBound(x: [Float], w: [Float], m: Int, n: Int, k: Int, _ o: WeightOrientation, block: Int, int8: Bool) -> [Double] {
        let blocks = (k + block - 1) / block
        let ulps = Double(block + blocks + 2) * Double(Float.ulpOfOne)
        var bound = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var magnitude = 0.0, quantization = 0.0
                for b in 0..<blocks {
                    var maxAbs = 0.0, sumW = 0.0
                    for c in (b * block)..<min(k, (b + 1) * block) {
                        let wv = abs(weight(w, j, c, n: n, k: k, o)), xv = abs(Double(x[i * k + c]))
                        magnitude += wv * xv
                        maxAbs = max(maxAbs, xv)
                        sumW += wv
                    }
                    quantization += maxAbs / 127 / 2 * sumW
                }
                bound[i * n + j] = ulps * magnitude * 2 + (int8 ? quantization * 1.0001 : 0) + 1e-30
            }
        }
        return bound
    }
}
