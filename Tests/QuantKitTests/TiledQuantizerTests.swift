@testable import QuantKit
import XCTest

/// The band-by-band quantizer and its kernels: the transpose and error-sum kernels of every ISA
/// variant give the scalar twin's bits, and `TiledQuantizer` writes the bytes that quantizing the
/// materialized matrix writes, for every variant and thread count.
final class TiledQuantizerTests: XCTestCase {
    var variants: [KernelVariant] { [KernelVariant.avx2, .avx512].filter { $0 <= Runtime.kernelVariant } }

    func testTransposeBlocksMatchTheScalarTwin() {
        var rng = SplitMix(seed: 31)
        let stride = 21  // floats per source row, plus a byte offset: unaligned rows
        let source = rng.normal(count: 17 * stride + 1)
        for offset in [0, 1, 3] {
            let bytes = source.withUnsafeBytes { [UInt8]($0) }
            for rows in [1, 2, 7, 8, 9, 15, 16] {
                for columns in [1, 3, 8, 13, 16] {
                    let targetStride = 19
                    func run(_ kernel: (UnsafeRawPointer, Int, Int, Int, UnsafeMutablePointer<Float>, Int) -> Void) -> [UInt32] {
                        var target = [Float](repeating: .nan, count: 16 * targetStride)
                        bytes.withUnsafeBytes { raw in
                            target.withUnsafeMutableBufferPointer { kernel(raw.baseAddress! + offset, stride * 4, rows, columns, $0.baseAddress!, targetStride) }
                        }
                        return target.map(\.bitPattern)
                    }
                    let reference = run(MatrixSource.transposeBlock)
                    let corner = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset + (rows - 1) * stride * 4 + (columns - 1) * 4, as: Float.self) }
                    XCTAssertEqual(reference[(columns - 1) * targetStride + rows - 1], corner.bitPattern)
                    for variant in variants {
                        XCTAssertEqual(run(BlockKernels.of(variant)!.transposeBlock), reference, "\(variant.name) \(rows)x\(columns) offset \(offset)")
                    }
                }
            }
        }
    }

    func testTransposeRangeBlocksMatchTheScalarTwin() {
        var rng = SplitMix(seed: 37)
        let stride = 21, targetStride = 19
        var source = rng.normal(count: 17 * stride + 1)
        XCTAssertTrue(variants.allSatisfy { BlockKernels.of($0)!.transposeBlockRanges != nil }, "every ISA gathers ranges")
        typealias Kernel = (UnsafeRawPointer, Int, Int, Int, UnsafeMutablePointer<Float>, Int, UnsafeMutablePointer<Float>,
                            UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>) -> Void
        for poisoned in [Float.nan, .infinity, -.infinity, 7] {
            source[4 * stride + 8] = poisoned  // in the block when rows > 4 and columns > 8
            let bytes = source.withUnsafeBytes { [UInt8]($0) }
            for rows in [1, 5, 16] {
                for columns in [1, 9, 16] {
                    func value(_ i: Int, _ j: Int) -> Float { source[i * stride + j] }
                    // Earlier blocks' ranges: the kernel only lowers and raises them.
                    let (lo0, hi0) = ((0..<16).map { Float($0) * 0.1 - 0.5 }, (0..<16).map { Float($0) * 0.1 - 1.5 })
                    func run(_ kernel: Kernel) -> (target: [UInt32], lo: [Float], hi: [Float], clean: Bool) {
                        var target = [Float](repeating: .nan, count: 16 * targetStride)
                        var (lo, hi, poison) = (lo0, hi0, [Float](repeating: 0, count: 16))
                        bytes.withUnsafeBytes { kernel($0.baseAddress!, stride * 4, rows, columns, &target, targetStride, &lo, &hi, &poison) }
                        return (target.map(\.bitPattern), lo, hi, poison.allSatisfy { $0 == 0 })
                    }
                    let reference = run(MatrixSource.transposeBlockRanges)
                    var transposed = [Float](repeating: .nan, count: 16 * targetStride)
                    bytes.withUnsafeBytes { MatrixSource.transposeBlock($0.baseAddress!, stride * 4, rows, columns, &transposed, targetStride) }
                    XCTAssertEqual(reference.target, transposed.map(\.bitPattern))
                    let poisonInBlock = rows > 4 && columns > 8 && !poisoned.isFinite
                    XCTAssertEqual(reference.clean, !poisonInBlock, "\(poisoned) \(rows)x\(columns)")
                    if reference.clean {
                        for j in 0..<16 {
                            let values = (0..<rows).map { value($0, j) }
                            XCTAssertEqual(reference.lo[j], j < columns ? min(lo0[j], values.min()!) : lo0[j])
                            XCTAssertEqual(reference.hi[j], j < columns ? max(hi0[j], values.max()!) : hi0[j])
                        }
                    }
                    for variant in variants {
                        let got = run(BlockKernels.of(variant)!.transposeBlockRanges!)
                        let label = "\(variant.name) \(rows)x\(columns) \(poisoned)"
                        XCTAssertEqual(got.target, reference.target, label)
                        XCTAssertEqual(got.clean, reference.clean, label)
                        guard reference.clean else { continue }
                        XCTAssertEqual(got.lo, reference.lo, label)
                        XCTAssertEqual(got.hi, reference.hi, label)
                    }
                }
            }
        }
    }

    func testErrorSumsMatchTheScalarTwinAndCompare() {
        var rng = SplitMix(seed: 32)
        for n in [0, 1, 15, 16, 17, 100, 4095, 4096, 4097, 10_000] {
            let reference = rng.normal(count: n)
            let actual = reference.map { $0 + (rng.uniform() - 0.5) * 0.01 }
            func stats(_ variant: KernelVariant) -> ErrorStats {
                var total = ErrorAccumulator()
                reference.withUnsafeBufferPointer { r in
                    actual.withUnsafeBufferPointer { a in
                        if n > 0 { total.add(reference: r.baseAddress!, actual: a.baseAddress!, count: n, variant: variant) }
                    }
                }
                return total.stats
            }
            let scalar = stats(.scalar)
            for variant in variants { XCTAssertEqual(stats(variant), scalar, "\(variant.name) n=\(n)") }
            let exact = reference.withUnsafeBufferPointer { r in actual.withUnsafeBufferPointer { ErrorStats.compare(reference: r, actual: $0) } }
            XCTAssertEqual(scalar.count, exact.count)
            XCTAssertEqual(scalar.maxAbsError, exact.maxAbsError)
            guard n > 0 else { continue }
            XCTAssertEqual(scalar.sqnrDB, exact.sqnrDB, accuracy: 1e-4, "n=\(n)")
            XCTAssertEqual(scalar.rmse, exact.rmse, accuracy: exact.rmse * 1e-5)
        }
    }

    struct Case {
        var format: QuantFormat
        var layout: PackingLayout
        var scheme: QuantScheme = .symmetric
        var block = 32
        var rows: Int
        var columns: Int
        var padded: Int? = nil
        var transposed = false
        var factor: Float = 1
        var type = FloatType.f32
    }

    func testBandsWriteTheBytesOfTheWholeMatrix() throws {
        var rng = SplitMix(seed: 33)
        let cases = [
            // Several bands (32768 floats each), a short last one; read transposed, padded to blocks.
            Case(format: .int4, layout: .matMulNBits, rows: 300, columns: 200, padded: 320, transposed: true),
            Case(format: .int4, layout: .matMulNBits, scheme: .asymmetric, block: 16, rows: 100, columns: 700, padded: 112, transposed: true, factor: 0.5),
            Case(format: .int8, layout: .matMulNBits, rows: 40, columns: 2000, transposed: true),
            // Ranges gathered while reading (float32, no factor): block 16, a group of 6 values and 10 padding zeros.
            Case(format: .int4, layout: .matMulNBits, scheme: .asymmetric, block: 16, rows: 70, columns: 90, padded: 80, transposed: true),
            Case(format: .int2, layout: .matMulNBits, scheme: .asymmetric, block: 64, rows: 50, columns: 1500, padded: 1536),
            Case(format: .int8, layout: .onnx, rows: 1000, columns: 96),
            Case(format: .uint4, layout: .onnx, scheme: .asymmetric, rows: 700, columns: 128, type: .f16),
            Case(format: .int4, layout: .matMulNBits, rows: 33, columns: 1100, padded: 64, transposed: true, type: .bf16),
            Case(format: .fp8E4M3FN, layout: .onnx, rows: 200, columns: 300),
            // bnb4: flat blocks that never cross a row split into rows (the reference path per band);
            // blocks that do cross rows (100 % 64 != 0) go as one band.
            Case(format: .nf4, layout: .bnb4, block: 64, rows: 200, columns: 300, padded: 256, transposed: true),
            Case(format: .fp4Bnb, layout: .bnb4, block: 16, rows: 96, columns: 700, transposed: true, type: .f16),
            Case(format: .nf4, layout: .bnb4, block: 64, rows: 100, columns: 70, transposed: true),
            // Not split into rows: odd 4-bit rows in the ONNX layout, one band.
            Case(format: .int4, layout: .onnx, rows: 301, columns: 45),
        ]
        for c in cases {
            var stored = rng.normal(count: c.rows * c.columns, scale: 0.05)
            // Zero-scale groups: two stored rows, and the first stored columns (rows when transposed).
            for i in 0..<(2 * c.columns) { stored[i] = 0 }
            for r in 0..<c.rows { for col in 0..<min(c.columns, 40) { stored[r * c.columns + col] = 0 } }
            let bytes: [UInt8]
            switch c.type {
            case .f32: bytes = stored.withUnsafeBytes { [UInt8]($0) }
            case .f16: bytes = stored.map { Float16Codec.f16Bits($0) }.withUnsafeBytes { [UInt8]($0) }
            case .bf16: bytes = stored.map { Float16Codec.bf16Bits($0) }.withUnsafeBytes { [UInt8]($0) }
            }
            let (readRows, readColumns) = c.transposed ? (c.columns, c.rows) : (c.rows, c.columns)
            let padded = c.padded ?? readColumns
            // The matrix as the passes used to build it: decoded, transposed, scaled, padded.
            var matrix = [Float](repeating: 0, count: readRows * padded)
            for r in 0..<readRows {
                for col in 0..<readColumns {
                    let i = c.transposed ? col * c.columns + r : r * c.columns + col
                    let value = Float16Codec.load(bytes, index: i, type: c.type)
                    matrix[r * padded + col] = value * c.factor
                }
            }
            var params = QuantParams(format: c.format)
            (params.layout, params.scheme, params.blockSize, params.rounding) = (c.layout, c.scheme, c.block, c.layout == .matMulNBits ? .halfAway : .halfEven)
            if c.format == .fp8E4M3FN || c.layout == .bnb4 { params.granularity = .blocked }
            let whole = try QuantizedTensor(quantizing: matrix, shape: [readRows, padded], params: params)
            let expectedError = try whole.error(against: matrix)
            var scalarError: ErrorStats?
            for variant in [KernelVariant.scalar] + variants {
                var firstError: ErrorStats?
                for (threads, bandElements) in [(1, 4096), (2, 4096), (3, 20000), (2, TiledQuantizer.bandElements)] {
                    params.threads = threads
                    let plan = try QuantPlan(params: params, shape: [readRows, padded])
                    var data = [UInt8](repeating: 0xA5, count: plan.dataBytes), scales = [UInt8](repeating: 0xA5, count: plan.scaleBytes)
                    var zeroPoints = [UInt8](repeating: 0xA5, count: plan.zeroPointBytes)
                    let error = try bytes.withUnsafeBytes { raw in
                        let source = try MatrixSource(bytes: raw, type: c.type, rows: c.rows, columns: c.columns, transposed: c.transposed,
                                                      factor: c.factor, paddedColumns: padded)
                        return try data.withUnsafeMutableBytes { d in
                            try scales.withUnsafeMutableBytes { s in
                                try zeroPoints.withUnsafeMutableBytes { z in
                                    try TiledQuantizer.quantize(plan, from: source, into: QuantizedBuffers(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil),
                                                                measureError: true, variant: variant, bandElements: bandElements)
                                }
                            }
                        }
                    }
                    let label = "\(c) \(variant.name) threads \(threads) band \(bandElements)"
                    XCTAssertEqual(data, whole.data, label)
                    XCTAssertEqual(scales, whole.scales, label)
                    XCTAssertEqual(zeroPoints, whole.zeroPoints, label)
                    XCTAssertEqual(error?.count, expectedError.count, label)
                    XCTAssertEqual(error?.maxAbsError, expectedError.maxAbsError, label)
                    XCTAssertEqual(error?.sqnrDB ?? 0, expectedError.sqnrDB, accuracy: 1e-4, label)
                    // Sums are folded per fixed group of rows: the same bits however rows were banded.
                    if let firstError { XCTAssertEqual(error, firstError, label) } else { firstError = error }
                    // ... and whatever the kernels when rows and blocks are whole 16-lane runs (the ISA row
                    // kernels sum the error while encoding, lane = position in the group mod 16; the scalar
                    // path from a dequantized copy, lane = position in the fold mod 16).
                    guard padded % 16 == 0, c.block % 16 == 0 else { continue }
                    if let scalarError { XCTAssertEqual(error, scalarError, label) } else { scalarError = error }
                }
            }
        }
    }

    func testErrorsNameTheWholeMatrixPosition() throws {
        // A NaN in a late band fails the call with the message quantizing the whole matrix gives.
        var values = [Float](repeating: 0.25, count: 300 * 256)
        values[250 * 256 + 7] = .nan
        var params = QuantParams(format: .int4)
        params.layout = .matMulNBits
        let plan = try QuantPlan(params: params, shape: [300, 256])
        var whole: QuantError?
        XCTAssertThrowsError(try QuantizedTensor(quantizing: values, shape: [300, 256], params: params)) { whole = $0 as? QuantError }
        var data = [UInt8](repeating: 0, count: plan.dataBytes), scales = [UInt8](repeating: 0, count: plan.scaleBytes)
        XCTAssertThrowsError(try values.withUnsafeBytes { raw in
            try data.withUnsafeMutableBytes { d in
                try scales.withUnsafeMutableBytes { s in
                    try TiledQuantizer.quantize(plan, from: try MatrixSource(bytes: raw, type: .f32, rows: 300, columns: 256),
                                                into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil), measureError: true,
                                                variant: Runtime.kernelVariant, bandElements: 4096)
                }
            }
        }) { error in
            XCTAssertEqual((error as? QuantError)?.status, .nonFinite)
            XCTAssertEqual((error as? QuantError)?.message, whole?.message)
        }
    }

    func testNonFiniteValuesInATransposedReadAreRejected() throws {
        // The ranges a transposed float32 read gathers carry finiteness too: Inf and NaN in a
        // late band fail with the message quantizing the materialized matrix gives.
        var params = QuantParams(format: .int4)
        params.layout = .matMulNBits
        params.rounding = .halfAway
        let plan = try QuantPlan(params: params, shape: [300, 256])
        for bad in [Float.infinity, -.infinity, .nan] {
            var stored = [Float](repeating: 0.25, count: 256 * 300)  // W [K = 256, N = 300], read as Wᵀ
            stored[100 * 300 + 290] = bad
            var matrix = [Float](repeating: 0, count: 300 * 256)
            for k in 0..<256 { for n in 0..<300 { matrix[n * 256 + k] = stored[k * 300 + n] } }
            var whole: QuantError?
            XCTAssertThrowsError(try QuantizedTensor(quantizing: matrix, shape: [300, 256], params: params)) { whole = $0 as? QuantError }
            for variant in [KernelVariant.scalar] + variants {
                var data = [UInt8](repeating: 0, count: plan.dataBytes), scales = [UInt8](repeating: 0, count: plan.scaleBytes)
                XCTAssertThrowsError(try stored.withUnsafeBytes { raw in
                    try data.withUnsafeMutableBytes { d in
                        try scales.withUnsafeMutableBytes { s in
                            try TiledQuantizer.quantize(plan, from: try MatrixSource(bytes: raw, type: .f32, rows: 256, columns: 300, transposed: true),
                                                        into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil), measureError: false,
                                                        variant: variant, bandElements: 4096)
                        }
                    }
                }, "\(bad) \(variant.name)") { error in
                    XCTAssertEqual((error as? QuantError)?.status, .nonFinite, "\(bad) \(variant.name)")
                    XCTAssertEqual((error as? QuantError)?.message, whole?.message, "\(bad) \(variant.name)")
                }
            }
        }
    }

    func testSourceSizeIsChecked() {
        let bytes = [UInt8](repeating: 0, count: 10)
        XCTAssertThrowsStatus(.invalidArgument, try bytes.withUnsafeBytes { try MatrixSource(bytes: $0, type: .f32, rows: 2, columns: 2) })
        XCTAssertThrowsStatus(.invalidArgument, try bytes.withUnsafeBytes { try MatrixSource(bytes: $0, type: .f16, rows: 1, columns: 5, paddedColumns: 4) })
    }
}
