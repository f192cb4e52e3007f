@testable import QuantKit
import XCTest

/// The code unpackers against the element-by-element definition of their byte layouts.
final class PackingTests: XCTestCase {
    /// 4-bit LSB-first: element e is the low (even e) or high (odd e) nibble of byte e / 2. Every
    /// sub-range, so that odd starts and ends (where parallel chunks may cut) are covered.
    func testUnpackLSBNibblesOverEverySubrange() {
        let bytes: [UInt8] = [0x21, 0x43, 0x65, 0x87, 0xA9, 0xCB, 0xED, 0x0F]
        let count = 2 * bytes.count
        let expected = (0..<count).map { e in (bytes[e / 2] >> UInt8(4 * (e % 2))) & 0xF }
        XCTAssertEqual(expected.prefix(4), [1, 2, 3, 4])
        for start in 0...count {
            for end in start...count {
                var codes = [UInt8](repeating: 0xEE, count: count)
                bytes.withUnsafeBufferPointer { b in
                    codes.withUnsafeMutableBufferPointer { c in
                        Packing.unpackLSB(b.baseAddress!, bits: 4, into: c.baseAddress!, elements: start..<end)
                    }
                }
                for e in 0..<count {
                    XCTAssertEqual(codes[e], (start..<end).contains(e) ? expected[e] : 0xEE, "elements \(start)..<\(end), element \(e)")
                }
            }
        }
    }
}

/// The packer's word-at-a-time helpers against their element-by-element definitions.
final class PackerWordPathTests: XCTestCase {
    func testNibblesToBytesEqualsUnpackLSB() {
        var rng = SystemRandomNumberGenerator()
        for word in [UInt32(0), 0xFFFF_FFFF, 0x8765_4321, 0x0F0F_F0F0] + (0..<1000).map({ _ in UInt32.random(in: .min ... .max, using: &rng) }) {
            let bytes = withUnsafeBytes(of: word.littleEndian) { Array($0) }
            var expected = [UInt8](repeating: 0, count: 8)
            Packing.unpackLSB(bytes, bits: 4, into: &expected, elements: 0..<8)
            let got = withUnsafeBytes(of: Packing.nibblesToBytes(word).littleEndian) { Array($0) }
            XCTAssertEqual(got, expected, String(word, radix: 16))
        }
    }

    func testRotationsAddInEachLaneWithoutCarries() {
        for r in 0..<256 {
            for v in 0..<256 {
                // v in each lane, with lanes around it that would show a carry crossing over.
                for lanes in [[v, 0xFF, 0x80, 0x7F], [0x7F, v, 0xFF, 0x00], [0x80, 0x01, v, 0xFF], [0xFF, 0xFF, 0xFF, v]] {
                    let word = UInt32(lanes[0]) | UInt32(lanes[1]) << 8 | UInt32(lanes[2]) << 16 | UInt32(lanes[3]) << 24
                    let bytes = CodeMapping.rotateBytes(word, by: UInt8(r))
                    let nibbles = CodeMapping.rotateNibbles(word & 0x0F0F_0F0F, by: UInt8(r))
                    for lane in 0..<4 {
                        let shift = UInt32(8 * lane)
                        XCTAssertEqual(UInt8(truncatingIfNeeded: bytes >> shift), UInt8(lanes[lane]) &+ UInt8(r), "r \(r) lanes \(lanes)")
                        XCTAssertEqual(UInt8(truncatingIfNeeded: nibbles >> shift), (UInt8(lanes[lane] & 15) &+ UInt8(r)) & 15,
                                       "r \(r) lanes \(lanes)")
                    }
                }
            }
        }
    }

    func testRotationIsFoundExactlyForRotations() {
        for bits in [4, 8] {
            let size = 1 << bits
            for r in 0..<size {
                var table = (0..<256).map { UInt32(($0 + r) % size) }
                XCTAssertEqual(CodeMapping.rotation(of: table, bits: bits), UInt8(r), "bits \(bits) r \(r)")
                // Entries outside the code width are ignored: 7-bit bytes shifted below zero.
                if bits == 8 { table[0] |= 0xFFFF_FF00 }
                XCTAssertEqual(CodeMapping.rotation(of: table, bits: bits), UInt8(r), "bits \(bits) r \(r), wide entry")
                table.swapAt(1, size - 1)
                XCTAssertNil(CodeMapping.rotation(of: table, bits: bits), "bits \(bits) r \(r), two codes swapped")
            }
        }
        XCTAssertNil(CodeMapping.rotation(of: (0..<256).map { UInt32($0) }, bits: 16), "fp16 halves take the table")
    }

    /// The vectorised range (tables monotonic in the unsigned or the signed reading of a byte)
    /// against the set of codes present, which is also the fallback for other tables.
    func testPackedRangeEqualsTheRangeOfTheCodesPresent() {
        var rng = SystemRandomNumberGenerator()
        let unsigned = (0..<256).map { Int32($0) }
        let signed = (0..<256).map { Int32(Int8(truncatingIfNeeded: $0)) + 128 }
        let shuffled = unsigned.shuffled(using: &rng)
        for (name, table) in [("unsigned", unsigned), ("signed", signed), ("shuffled", shuffled)] {
            for _ in 0..<200 {
                let low = Int.random(in: 0..<256, using: &rng), span = Int.random(in: 0..<256, using: &rng)
                let count = Int.random(in: 1...300, using: &rng)
                let codes = (0..<count).map { _ in UInt8(truncatingIfNeeded: low + Int.random(in: 0...span, using: &rng)) }
                let present = Set(codes).map { table[Int($0)] }
                let got = packedRange(codes, count: count, table: table)
                XCTAssertEqual(got?.low, present.min(), "\(name) \(codes)")
                XCTAssertEqual(got?.high, present.max(), "\(name) \(codes)")
                let shift = narrowShift(codes, count: count) { table[$0] }
                XCTAssertEqual(shift, present.max()! - present.min()! <= 128 ? present.min() : nil, "\(name) \(codes)")
            }
            XCTAssertNil(packedRange(unsigned.map { UInt8($0) }, count: 0, table: table))
        }
    }
}
