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
