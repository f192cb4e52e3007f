@testable import QuantKit
import XCTest

/// Deterministic pseudo-random floats (no Foundation needed, same values on every run).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func uniform() -> Float { Float(next() >> 40) / Float(1 << 24) }

    /// Roughly normal (sum of uniforms), like trained weights.
    mutating func normal(count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in ((0..<4).reduce(Float(0)) { acc, _ in acc + uniform() } - 2) * scale }
    }
}

func quantized(_ values: [Float], _ shape: [Int], _ configure: (inout QuantParams) -> Void, format: QuantFormat) throws -> QuantizedTensor {
    var params = QuantParams(format: format)
    configure(&params)
    return try QuantizedTensor(quantizing: values, shape: shape, params: params)
}

/// Largest distance between neighbouring levels of a format, in level units (before scaling).
func largestLevelGap(_ spec: FormatSpec) -> Float {
    let coder = ElementCoder(spec: spec, rounding: .halfEven)
    let levels = coder.decodeTable.filter { $0.isFinite }.sorted()
    return zip(levels.dropFirst(), levels).map { $0 - $1 }.max() ?? 1
}

func XCTAssertThrowsStatus(_ status: QuantStatus, _ body: @autoclosure () throws -> some Any, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try body(), file: file, line: line) { error in
        XCTAssertEqual((error as? QuantError)?.status, status, "\(error)", file: file, line: line)
    }
}

/// Codes then scales of `values` quantized with one kernel variant (formats without zero points),
/// output buffers poisoned beforehand.
func quantizedBytes(_ plan: QuantPlan, _ values: [Float], _ variant: KernelVariant) throws -> [UInt8] {
    var data = [UInt8](repeating: 0xA5, count: plan.dataBytes)
    var scales = [UInt8](repeating: 0xA5, count: plan.scaleBytes)
    try values.withUnsafeBufferPointer { input in
        try data.withUnsafeMutableBytes { d in
            try scales.withUnsafeMutableBytes { s in
                try Quantizer.quantize(plan, input: input, into: QuantizedBuffers(data: d, scales: s, zeroPoints: nil), variant: variant)
            }
        }
    }
    return data + scales
}

/// Scale sets for code-kernel tests: exactly 1 (the values are the scaled values), a value that
/// rounds in x / scale, zero, and one per element: varied, with +0 and -0 (those code as +0).
func kernelTestScales(count: Int) -> [[Float]] {
    var perElement = [Float](repeating: 0, count: count)
    for i in 0..<count where i % 11 != 0 {
        perElement[i] = i % 7 == 0 ? -0.0 : 0.25 + Float(i % 13) * 0.37
    }
    if count > 1 { perElement[1] = 3 }
    return [[1], [0.37], [0], perElement]
}

/// Checks a code kernel `encode(x, n, scales, perElement, out)` against `expected` (the scalar
/// coder's codes of every value) on runs at every offset and length around the vector widths,
/// and that it writes nothing past a run. `scales`: one for all, or one per value.
func assertCodeKernel(_ values: [Float], scales: [Float], expected: [UInt8], _ what: String,
                      _ encode: (UnsafePointer<Float>, Int, UnsafePointer<Float>, Bool, UnsafeMutablePointer<UInt8>) -> Void,
                      file: StaticString = #filePath, line: UInt = #line) {
    let perElement = scales.count > 1
    for (start, count) in [(0, values.count), (3, 1), (5, 15), (16, 17), (1, 9), (7, 31)] {
        var codes = [UInt8](repeating: 0xA5, count: count + 1)
        values.withUnsafeBufferPointer { x in
            scales.withUnsafeBufferPointer { s in
                encode(x.baseAddress! + start, count, s.baseAddress! + (perElement ? start : 0), perElement, &codes)
            }
        }
        XCTAssertEqual(Array(codes[0..<count]), Array(expected[start..<(start + count)]), "\(what) start \(start)", file: file, line: line)
        XCTAssertEqual(codes[count], 0xA5, "\(what): nothing written past the run", file: file, line: line)
    }
}
