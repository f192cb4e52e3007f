@testable import QuantKit
import XCTest

/// Every ISA variant the CPU has must give the reference's bytes and floats exactly, on shapes that
/// exercise tails: odd K, K smaller than a block, K not a multiple of the block, odd element counts.
final class KernelVariantTests: XCTestCase {
    var variants: [KernelVariant] { [KernelVariant.avx2, .avx512].filter { $0 <= Runtime.kernelVariant } }

    struct Case {
        let format: QuantFormat
        let layout: PackingLayout
        let scheme: QuantScheme
        let rounding: Rounding
        let granularity: Granularity
        let block: Int
        let shape: [Int]
    }

    var cases: [Case] {
        var all: [Case] = []
        for format in [QuantFormat.int4, .uint4, .int8, .uint8] {
            for scheme in [QuantScheme.symmetric, .asymmetric] {
                for rounding in [Rounding.halfEven, .halfAway] {
                    for (block, shape) in [(32, [5, 96]), (16, [3, 40]), (128, [2, 300]), (64, [7, 20]), (32, [1, 33]), (2, [4, 6])] {
                        all.append(Case(format: format, layout: .onnx, scheme: scheme, rounding: rounding, granularity: .blocked, block: block, shape: shape))
                    }
                    for shape in [[9, 14], [1, 17], [4, 1]] {
                        all.append(Case(format: format, layout: .onnx, scheme: scheme, rounding: rounding, granularity: .perAxis, block: 1, shape: shape))
                        all.append(Case(format: format, layout: .onnx, scheme: scheme, rounding: rounding, granularity: .perTensor, block: 1, shape: shape))
                    }
                    do {
                        for (block, shape) in [(16, [3, 40]), (32, [5, 100]), (128, [2, 64]), (64, [4, 128])] {
                            all.append(Case(format: format, layout: .matMulNBits, scheme: scheme, rounding: rounding, granularity: .blocked, block: block, shape: shape))
                        }
                    }
                }
            }
        }
        return all
    }

    func testVariantsMatchTheReferenceBitForBit() throws {
        var rng = SplitMix(seed: 21)
        XCTAssertFalse(variants.isEmpty || cases.isEmpty, "this machine should have at least AVX2")
        for c in cases {
            var params = QuantParams(format: c.format)
            (params.layout, params.scheme, params.rounding, params.granularity, params.blockSize, params.axis) =
                (c.layout, c.scheme, c.rounding, c.granularity, c.block, c.granularity == .perAxis ? 0 : -1)
            let plan = try QuantPlan(params: params, shape: c.shape)
            var values = rng.normal(count: plan.count, scale: 0.1)
            if values.count > 3 { values[1] = 0.35; values[2] = -0.35 }  // likely ties after scaling
            let reference = try run(plan, values, .scalar)
            for variant in variants {
                XCTAssertTrue(FastPaths.covers(plan, variant: variant) || c.layout == .onnx, "\(c) should take the fast path")
                let fast = try run(plan, values, variant)
                XCTAssertEqual(fast.data, reference.data, "\(variant.name) \(c)")
                XCTAssertEqual(fast.scales, reference.scales, "\(variant.name) \(c)")
                XCTAssertEqual(fast.zeroPoints, reference.zeroPoints, "\(variant.name) \(c)")
                XCTAssertEqual(fast.restored.map(\.bitPattern), reference.restored.map(\.bitPattern), "\(variant.name) \(c)")
            }
        }
    }

    func testStridedGroupsMatchTheReference() throws {
        // Per-channel on the last axis of [K, N] and blocks along axis 0: groups advance with
        // every element of a row, which the per-lane kernels handle.
        var rng = SplitMix(seed: 25)
        let cases: [(Granularity, Int, Int, [Int])] = [
            (.perAxis, -1, 1, [9, 14]), (.perAxis, 1, 1, [37, 3]), (.perAxis, -1, 1, [70, 1000]),
            (.blocked, 0, 16, [40, 18]), (.blocked, 0, 32, [33, 5]), (.blocked, 0, 128, [300, 70]), (.blocked, 1, 4, [3, 10, 21]),
        ]
        for format in [QuantFormat.int8, .uint8, .int4, .uint4, .int3, .int2] {
            for scheme in [QuantScheme.symmetric, .asymmetric] {
                for rounding in [Rounding.halfEven, .halfAway] {
                    for (granularity, axis, block, shape) in cases {
                        var params = QuantParams(format: format)
                        (params.granularity, params.axis, params.blockSize, params.scheme, params.rounding) = (granularity, axis, block, scheme, rounding)
                        let plan = try QuantPlan(params: params, shape: shape)
                        XCTAssertTrue(plan.runsAdvanceOneGroupPerElement, "\(shape) \(granularity) \(axis)")
                        var values = rng.normal(count: plan.count)
                        if values.count > 40 { for i in 0..<5 { values[i * 7] = 0 } }
                        let reference = try run(plan, values, .scalar)
                        for variant in variants {
                            let fast = try run(plan, values, variant)
                            XCTAssertEqual(fast.data, reference.data, "\(variant.name) \(format) \(scheme) \(rounding) \(shape)")
                            XCTAssertEqual(fast.scales + fast.zeroPoints, reference.scales + reference.zeroPoints)
                            XCTAssertEqual(fast.restored.map(\.bitPattern), reference.restored.map(\.bitPattern),
                                           "\(variant.name) \(format) \(scheme) \(rounding) \(shape): dequantized")
                            if (format.spec.bits == 4 || format.spec.bits == 8) && (shape == [70, 1000] || shape == [300, 70]) {
                                XCTAssertTrue(try takesPerLaneDequantize(plan, variant), "\(variant.name) \(format) \(shape)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testExactTiesRoundAlikeInEveryVariant() throws {
        // Scale 1 exactly (max 7 -> 7/7 for ONNX int4; extreme 8 -> 8/-8 for MatMulNBits), so every
        // k + 0.5 value is an exact tie for both rounding rules.
        var ties: [Float] = [7, 8]
        for k in -7...6 { ties.append(Float(k) + 0.5) }
        ties += [Float](repeating: 0.5, count: 16)
        for (layout, rounding) in [(PackingLayout.onnx, Rounding.halfEven), (.onnx, .halfAway), (.matMulNBits, .halfAway), (.matMulNBits, .halfEven)] {
            var params = QuantParams(format: .int4)
            params.layout = layout
            params.rounding = rounding
            params.blockSize = 32
            let values = layout == .onnx ? [Float(7)] + ties.dropFirst(2) + [0.5, 0.5] : Array(ties)
            let plan = try QuantPlan(params: params, shape: [1, values.count])
            let reference = try run(plan, values, .scalar)
            for variant in variants {
                XCTAssertEqual(try run(plan, values, variant).data, reference.data, "\(variant.name) \(layout) \(rounding)")
            }
        }
    }

    func testManyBatchesPerThreadMatchTheReference() throws {
        // 64 x 4100 with block 32: ~8300 groups, ~8 batches of 1024 per call, so the pipelined
        // hand-off between batches (and between threads) runs many times.
        var rng = SplitMix(seed: 23)
        let values = rng.normal(count: 64 * 4100)
        for (format, layout, block) in [(QuantFormat.int4, PackingLayout.onnx, 32), (.uint8, .onnx, 128), (.int4, .matMulNBits, 16)] {
            for threads in [1, 2] {
                var params = QuantParams(format: format)
                (params.layout, params.blockSize, params.threads, params.scheme) = (layout, block, threads, format == .uint8 ? .asymmetric : .symmetric)
                let plan = try QuantPlan(params: params, shape: [64, 4100])
                let reference = try run(plan, values, .scalar)
                for variant in variants {
                    let fast = try run(plan, values, variant)
                    XCTAssertEqual(fast.data, reference.data, "\(variant.name) \(format) \(layout) threads \(threads)")
                    XCTAssertEqual(fast.scales, reference.scales)
                }
            }
        }
    }

    func testPerTensorGroupSplitsIntoChunksExactly() throws {
        // 3 x 65537 elements: four chunks, the last one short and odd (a padding nibble).
        var rng = SplitMix(seed: 24)
        let values = rng.normal(count: 3 * 65537)
        for format in [QuantFormat.int4, .uint4, .int8, .uint8] {
            for threads in [1, 2] {
                var params = QuantParams(format: format)
                (params.granularity, params.threads) = (.perTensor, threads)
                let plan = try QuantPlan(params: params, shape: [3, 65537])
                let reference = try run(plan, values, .scalar)
                for variant in variants {
                    let fast = try run(plan, values, variant)
                    XCTAssertEqual(fast.data, reference.data, "\(variant.name) \(format) threads \(threads)")
                    XCTAssertEqual(fast.scales + fast.zeroPoints, reference.scales + reference.zeroPoints)
                }
            }
        }
        var poisoned = values
        poisoned[2 * 65537 + 5] = .infinity
        var params = QuantParams(format: .int8)
        params.granularity = .perTensor
        let plan = try QuantPlan(params: params, shape: [3, 65537])
        for variant in variants { XCTAssertThrowsStatus(.nonFinite, try run(plan, poisoned, variant)) }
    }

    func testNaNInALateBatchFailsAndLeavesScalesUntouched() throws {
        var values = [Float](repeating: 0.5, count: 64 * 4096)
        values[values.count - 7] = .nan
        var params = QuantParams(format: .int4)
        params.threads = 1
        let plan = try QuantPlan(params: params, shape: [64, 4096])
        for variant in variants {
            var data = [UInt8](repeating: 0xA5, count: plan.dataBytes), scales = [UInt8](repeating: 0xA5, count: plan.scaleBytes)
            XCTAssertThrowsStatus(.nonFinite, try values.withUnsafeBufferPointer { input in
                try data.withUnsafeMutableBytes { d in
                    try scales.withUnsafeMutableBytes { s in
                        try Quantizer.quantize(plan, input: input, into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil), variant: variant)
                    }
                }
            })
            XCTAssertTrue(scales.allSatisfy { $0 == 0xA5 }, "\(variant.name): scales must stay untouched")
        }
    }

    func testFiniteCheckFindsNaNInEveryLanePosition() {
        for variant in variants + [.scalar] {
            for n in [1, 7, 8, 15, 16, 17, 33] {
                for position in 0..<n {
                    var values = [Float](repeating: 1, count: n)
                    values[position] = position % 2 == 0 ? .nan : -.infinity
                    XCTAssertFalse(values.withUnsafeBufferPointer { FastPaths.allFinite($0.baseAddress!, count: n, variant: variant) }, "\(variant.name) n=\(n) at \(position)")
                }
                let clean = [Float](repeating: 3e38, count: n)
                XCTAssertTrue(clean.withUnsafeBufferPointer { FastPaths.allFinite($0.baseAddress!, count: n, variant: variant) })
            }
        }
    }

    struct Outcome { var data: [UInt8]; var scales: [UInt8]; var zeroPoints: [UInt8]; var restored: [Float] }

    /// Whether dequantizing `plan` takes the per-lane ISA path (on zero codes and scales).
    func takesPerLaneDequantize(_ plan: QuantPlan, _ variant: KernelVariant) throws -> Bool {
        let data = [UInt8](repeating: 0, count: plan.dataBytes), scales = [UInt8](repeating: 0, count: plan.scaleBytes)
        let zeroPoints = [UInt8](repeating: 0, count: plan.zeroPointBytes)
        var out = [Float](repeating: 0, count: plan.count)
        return try data.withUnsafeBytes { d in
            try scales.withUnsafeBytes { s in
                try zeroPoints.withUnsafeBytes { z in
                    try out.withUnsafeMutableBufferPointer {
                        try FastPaths.dequantizePerLane(plan, QuantizedView(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil),
                                                        into: $0, variant: variant)
                    }
                }
            }
        }
    }

    /// Quantize and dequantize with one variant, output buffers poisoned beforehand.
    func run(_ plan: QuantPlan, _ values: [Float], _ variant: KernelVariant) throws -> Outcome {
        var o = Outcome(data: .init(repeating: 0xA5, count: plan.dataBytes), scales: .init(repeating: 0xA5, count: plan.scaleBytes),
                        zeroPoints: .init(repeating: 0xA5, count: plan.zeroPointBytes), restored: .init(repeating: .nan, count: plan.count))
        try values.withUnsafeBufferPointer { input in
            try o.data.withUnsafeMutableBytes { d in
                try o.scales.withUnsafeMutableBytes { s in
                    try o.zeroPoints.withUnsafeMutableBytes { z in
                        let buffers = QuantizedBuffers(data: d, scales: s, zeroPoints: plan.storesZeroPoints ? z : nil)
                        try Quantizer.quantize(plan, input: input, into: buffers, variant: variant)
                        try o.restored.withUnsafeMutableBufferPointer { try Quantizer.dequantize(plan, buffers.readOnly, into: $0, variant: variant) }
                    }
                }
            }
        }
        return o
    }
}
