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
