@testable import QuantKit
import XCTest

/// Exact codes and bytes for hand-computed cases: rounding rules, packing orders, float codes.
final class KnownValueTests: XCTestCase {
    func testInt8SymmetricCodesRoundHalfToEven() throws {
        // scale = 127/127 = 1: 2.5 -> 2 and 3.5 -> 4 (ties to even), -2.5 -> -2.
        let q = try quantized([127, 2.5, 3.5, -2.5, 0, -127], [6], { $0.granularity = .perTensor }, format: .int8)
        XCTAssertEqual(q.scaleValues, [1])
        XCTAssertEqual(q.data.map { Int8(bitPattern: $0) }, [127, 2, 4, -2, 0, -127])
    }

    func testHalfAwayRoundsTiesAwayFromZeroAfterAddingTheZeroPoint() throws {
        var params = QuantParams(format: .uint4)
        params.granularity = .perTensor
        params.rounding = .halfAway
        // uint4 symmetric: zp 8, scale = 7/7 = 1. 2.5 + 8 = 10.5 -> 11; -2.5 + 8 = 5.5 -> 6.
        let q = try QuantizedTensor(quantizing: [7, 2.5, -2.5, 0], shape: [4], params: params)
        XCTAssertEqual(q.data, [0xBF, 0x86])  // codes 15, 11 | 6, 8
    }

    func testInt4PacksFirstElementInTheLowNibble() throws {
        let q = try quantized([7, -8, 1, 0, 3], [5], { $0.granularity = .perTensor }, format: .int4)
        // scale = 8/7: codes round(7*7/8)=6, -7, 1, 0, 3 (two's complement nibbles).
        XCTAssertEqual(q.data, [0x96, 0x01, 0x03])
    }

    func testBnbLayoutPacksFirstElementInTheHighNibble() throws {
        var params = QuantParams(format: .nf4)
        params.layout = .bnb4
        params.blockSize = 4
        let q = try QuantizedTensor(quantizing: [1, -1, 0, 0.5, 2, 0], shape: [6], params: params)
        XCTAssertEqual(q.scaleValues, [1, 2])
        // NF4 codes: 1 -> 15, -1 -> 0, 0 -> 7, 0.5 -> 12 (0.4407 < 0.5 < 0.5017); 2/2 -> 15, 0 -> 7.
        XCTAssertEqual(q.data, [0xF0, 0x7C, 0xF7])
    }

    func testThreeBitCodesFormOneLSBFirstBitStream() throws {
        // uint3 asymmetric per tensor over 0...7: scale 1, zp 0, codes equal the values.
        let values: [Float] = [1, 2, 3, 4, 5, 6, 7, 0]
        let q = try quantized(values, [8], { $0.granularity = .perTensor; $0.scheme = .asymmetric }, format: .uint3)
        var expected = [UInt8](repeating: 0, count: 3)
        for (i, v) in values.enumerated() {
            let bit = i * 3
            let code = UInt32(v)
            expected[bit / 8] |= UInt8(truncatingIfNeeded: code << UInt32(bit % 8))
            if bit % 8 > 5 { expected[bit / 8 + 1] |= UInt8(truncatingIfNeeded: code >> UInt32(8 - bit % 8)) }
        }
        XCTAssertEqual(q.data, expected)
        XCTAssertEqual(try q.dequantized(), values)
    }

    func testMinifloatCodes() {
        let e4m3 = Minifloat.e4m3fn, e5m2 = Minifloat.e5m2, e2m1 = Minifloat.e2m1
        XCTAssertEqual(e4m3.maxFinite, 448)
        XCTAssertEqual(e5m2.maxFinite, 57344)
        XCTAssertEqual(e2m1.magnitudes, [0, 0.5, 1, 1.5, 2, 3, 4, 6])
        XCTAssertEqual(e4m3.encode(1, tiesAway: false), 0x38)
        XCTAssertEqual(e4m3.encode(-448, tiesAway: false), 0xFE)
        XCTAssertEqual(e4m3.encode(1e9, tiesAway: false), 0x7E)  // saturates
        XCTAssertEqual(e4m3.encode(Float.pow2(-9), tiesAway: false), 0x01)  // smallest subnormal
        XCTAssertEqual(e4m3.encode(Float.pow2(-11), tiesAway: false), 0x00)  // below half of it
        XCTAssertEqual(e5m2.encode(1, tiesAway: false), 0x3C)
        // 1.25 lies halfway between 1 (code 2) and 1.5 (code 3) in E2M1: ties to even -> 1.
        XCTAssertEqual(e2m1.encode(1.25, tiesAway: false), 2)
        XCTAssertEqual(e2m1.encode(1.25, tiesAway: true), 3)
        XCTAssertEqual(e2m1.encode(5, tiesAway: false), 6)  // 4 and 6 tie: even code 6 (value 4)
        XCTAssertTrue(e4m3.decode(0x7F).isNaN)
        XCTAssertEqual(e5m2.decode(0x7C), .infinity)
    }

    func testCodebookLevels() {
        XCTAssertEqual(Codebook.nf4.encode(0), 7)
        XCTAssertEqual(Codebook.nf4.encode(1), 15)
        XCTAssertEqual(Codebook.nf4.encode(-1), 0)
        XCTAssertEqual(Codebook.fp4Bnb.encode(1), 3)
        XCTAssertEqual(Codebook.fp4Bnb.encode(-0.25), 15)
        XCTAssertEqual(Codebook.log4.levels[7], 1)
        XCTAssertEqual(Codebook.log4.levels[1], 1.0 / 64)
        XCTAssertEqual(Codebook.log4.encode(0.3), 5)  // 0.25 (code 5) is nearer than 0.5 (code 6)
    }

    func testHalfFloatFormats() throws {
        let values: [Float] = [1, -2.5, 65504, 1e-3, 3.14159]
        let f16 = try quantized(values, [5], { _ in }, format: .fp16)
        XCTAssertEqual(try f16.dequantized(), values.map { Float(Float16($0)) })
        let bf16 = try quantized(values, [5], { _ in }, format: .bf16)
        XCTAssertEqual(Array(bf16.data[0..<2]), [0x80, 0x3F])
        XCTAssertEqual(try bf16.dequantized()[4], 3.140625)
    }

    func testMatMulNBitsLayoutPadsBlocksWithCodeZero() throws {
        var params = QuantParams(format: .int4)
        params.layout = .matMulNBits
        params.blockSize = 16
        params.rounding = .halfAway
        params.scheme = .asymmetric
        let k = 20  // two blocks, the second holding 4 values
        let values = (0..<k).map { Float($0) }
        let q = try QuantizedTensor(quantizing: values, shape: [1, k], params: params)
        XCTAssertEqual(q.data.count, 2 * 8)
        XCTAssertEqual(Array(q.data[10...]), [0, 0, 0, 0, 0, 0], "past K the block holds code 0")
        // Zero points: two 4-bit codes, then the unused high... none here: one byte holds both.
        XCTAssertEqual(q.zeroPoints.count, 1)
        let restored = try q.dequantized()
        for i in 0..<k { XCTAssertEqual(restored[i], values[i], accuracy: q.scaleValues[i / 16] / 2 + 1e-6) }
    }

    func testMatMulNBitsSymmetricScaleUsesTheSignedExtreme() throws {
        var params = QuantParams(format: .int4)
        params.layout = .matMulNBits
        params.blockSize = 16
        let values: [Float] = [8] + [Float](repeating: 1, count: 15)
        let q = try QuantizedTensor(quantizing: values, shape: [1, 16], params: params)
        XCTAssertEqual(q.scaleValues, [-1], "8 / -8")
        XCTAssertEqual(q.data[0] & 0xF, 0, "the extreme maps to code 0")
    }
    /// reduce_range (ONNX Runtime's 7-bit weights): symmetric int8 and uint8 take levels -64...64,
    /// scale max|x| / 64; other formats, schemes, methods and layouts are refused.
    func testReduceRangeTakesLevelsWithin64() throws {
        let values: [Float] = [64, 31.5, 32.5, -64, -0.5, 12, -40, 3]
        var params = QuantParams(format: .int8)
        params.granularity = .perTensor
        params.reduceRange = true
        let q = try QuantizedTensor(quantizing: values, shape: [8], params: params)
        XCTAssertEqual(q.scaleValues, [1], "64 / 64")
        XCTAssertEqual(q.data.map { Int8(bitPattern: $0) }, [64, 32, 32, -64, 0, 12, -40, 3])
        params.format = .uint8
        let u = try QuantizedTensor(quantizing: values.map { $0 * 2 }, shape: [8], params: params)
        XCTAssertEqual(u.scaleValues, [2], "128 / 64")
        XCTAssertEqual(u.data, [192, 160, 160, 64, 128, 140, 88, 131], "zero point 128")

        var refused = [QuantParams]()
        for change in [{ (p: inout QuantParams) in p.format = .int4 }, { $0.scheme = .asymmetric }, { $0.method = .mse },
                       { $0.layout = .matMulNBits; $0.granularity = .blocked; $0.axis = 1; $0.blockSize = 16 }] {
            var p = QuantParams(format: .int8)
            p.granularity = .perTensor
            p.reduceRange = true
            change(&p)
            refused.append(p)
        }
        for p in refused {
            XCTAssertThrowsStatus(.unsupported, try QuantizedTensor(quantizing: [Float](repeating: 1, count: 16), shape: [1, 16], params: p))
        }
    }
}
