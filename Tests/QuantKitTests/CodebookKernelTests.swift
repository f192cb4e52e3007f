@testable import QuantKit
import XCTest

/// The ISA codebook encoders (NF4, bitsandbytes FP4, log4) give the scalar coder's code for every
/// value tried: each threshold and level and their float neighbours, ±0, the range ends, random
/// values; one scale for all and one per element, zero scales included; both scalings.
final class CodebookKernelTests: XCTestCase {
    var variants: [KernelVariant] { [KernelVariant.avx2, .avx512].filter { $0 <= Runtime.kernelVariant } }
    let books: [(QuantFormat, Codebook)] = [(.nf4, .nf4), (.fp4Bnb, .fp4Bnb), (.log4, .log4)]

    func probes(_ book: Codebook, _ rng: inout SplitMix) -> [Float] {
        var values: [Float] = [0, -0.0, .leastNonzeroMagnitude, 1, 1.5, 2, 1e-30, 1e30]
        for v in book.thresholds + book.levels { values += [v, v.nextUp, v.nextDown] }
        values += (0..<4000).map { _ in (rng.uniform() - 0.5) * 2.4 }
        values += (0..<2000).map { _ in (rng.uniform() - 0.5) * 0.05 }
        return values + values.map { -$0 }
    }

    func testKernelsGiveTheScalarCodes() throws {
        XCTAssertFalse(variants.isEmpty, "this machine should have at least AVX2")
        var rng = SplitMix(seed: 51)
        for (format, book) in books {
            XCTAssertTrue(book.encoder.fitsKernels, "\(format)")
            let values = probes(book, &rng)
            for rounding in [Rounding.halfEven, .halfAway] {
                let coder = ElementCoder(spec: format.spec, rounding: rounding)
                let encoder = try XCTUnwrap(coder.codebook)
                for scales in kernelTestScales(count: values.count) {
                    let expected = values.indices.map { i in coder.encode(values[i], scale: scales.count == 1 ? scales[0] : scales[i], zeroPoint: 0) }
                    for variant in variants {
                        let kernels = try XCTUnwrap(BlockKernels.of(variant))
                        assertCodeKernel(values, scales: scales, expected: expected, "\(variant.name) \(format) \(rounding) scales \(scales.count)") {
                            kernels.encodeCodebook($0, $1, $2, $3, encoder, rounding == .halfAway, $4)
                        }
                    }
                }
            }
        }
    }

    /// 4-bit table formats dequantize through their 16 values on the ISA paths: random bytes (every
    /// code in both nibbles), scales with ±0 and negatives, both nibble orders, odd element counts,
    /// and groups the fast path declines (per-axis groups off whole bytes); bit for bit against the
    /// scalar path.
    func testTableFormatsDequantizeLikeTheReference() throws {
        var rng = SplitMix(seed: 53)
        for format in [QuantFormat.nf4, .fp4Bnb, .log4, .fp4E2M1] {
            for layout in [PackingLayout.onnx, .bnb4] where layout == .onnx || format == .nf4 || format == .fp4Bnb {
                for (granularity, axis, block, shape) in [(Granularity.blocked, -1, 64, [7, 128]), (.blocked, 1, 16, [5, 40]), (.blocked, 1, 32, [3, 33]),
                                                          (.perAxis, 1, 1, [33, 70]), (.perAxis, 0, 1, [7, 9]), (.perTensor, -1, 1, [9, 31])] {
                    var params = QuantParams(format: format)
                    (params.granularity, params.axis, params.blockSize, params.layout) = (granularity, axis, block, layout)
                    guard let plan = try? QuantPlan(params: params, shape: shape) else { continue }  // combinations a layout does not take
                    let data = (0..<plan.dataBytes).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                    var scaleValues = (0..<max(1, plan.scaleBytes / 4)).map { _ in Float(rng.uniform() * 4 - 2) }
                    scaleValues[0] = -0.0
                    if scaleValues.count > 2 { scaleValues[2] = 0 }
                    let scales = scaleValues.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) }
                    guard scales.count == plan.scaleBytes else { continue }  // fp32 scales only
                    func dequantized(_ variant: KernelVariant) throws -> [UInt32] {
                        var out = [Float](repeating: .nan, count: plan.count)
                        try data.withUnsafeBytes { d in
                            try scales.withUnsafeBytes { s in
                                try out.withUnsafeMutableBufferPointer {
                                    try Quantizer.dequantize(plan, QuantizedView(data: d, scales: s, zeroPoints: nil), into: $0, variant: variant)
                                }
                            }
                        }
                        return out.map(\.bitPattern)
                    }
                    let reference = try dequantized(.scalar)
                    for variant in variants {
                        XCTAssertEqual(try dequantized(variant), reference, "\(variant.name) \(format) \(layout) \(granularity) \(shape)")
                    }
                    if granularity == .blocked, shape[1] % 2 == 0, let variant = variants.last {
                        XCTAssertTrue(FastPaths.coversTableDecode(plan, variant: variant), "\(format) \(layout) \(shape) should take the table path")
                    }
                }
            }
        }
    }

    func testCodebookTensorsMatchTheReferenceInEveryVariant() throws {
        var rng = SplitMix(seed: 52)
        for (format, _) in books {
            for layout in [PackingLayout.onnx, .bnb4] where format != .log4 || layout == .onnx {
                for (granularity, axis, block, shape) in [(Granularity.blocked, -1, 64, [7, 128]), (.blocked, 1, 16, [5, 40]),
                                                          (.perAxis, 1, 1, [33, 70]), (.perTensor, -1, 1, [9, 31])] {
                    var params = QuantParams(format: format)
                    (params.granularity, params.axis, params.blockSize, params.layout) = (granularity, axis, block, layout)
                    guard let plan = try? QuantPlan(params: params, shape: shape) else { continue }  // combinations a layout does not take
                    var values = rng.normal(count: plan.count)
                    for i in stride(from: 0, to: values.count, by: 17) { values[i] = 0 }
                    for i in stride(from: 5, to: values.count, by: 23) { values[i] = -0.0 }
                    let reference = try quantizedBytes(plan, values, .scalar)
                    for variant in variants {
                        XCTAssertEqual(try quantizedBytes(plan, values, variant), reference, "\(variant.name) \(format) \(layout) \(granularity) \(shape)")
                    }
                }
            }
        }
    }
}
