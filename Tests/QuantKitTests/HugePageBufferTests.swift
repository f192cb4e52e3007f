@testable import QuantKit
import XCTest

/// Packed weights of 2 MiB and more live in 2 MiB-aligned buffers marked for transparent huge
/// pages; smaller ones in ordinary 64-byte-aligned ones. Whether the kernel backs them with huge
/// pages depends on the system (THP off, fragmentation), so these tests check what the library
/// controls: alignment and that every byte is usable (MatmulTests reads a matrix in such a buffer).
final class HugePageBufferTests: XCTestCase {
    func testLargeBuffersAreAlignedToHugePagesAndSmallOnesTo64Bytes() {
        for count in [1, 64, 4096, HugePageBuffer.pageBytes - 1, HugePageBuffer.pageBytes, 3 * HugePageBuffer.pageBytes + 12345] {
            let buffer = HugePageBuffer.allocate(byteCount: count)
            let address = Int(bitPattern: buffer)
            let alignment = count >= HugePageBuffer.pageBytes ? HugePageBuffer.pageBytes : 64
            XCTAssertEqual(address % alignment, 0, "\(count) bytes")
            // Every byte is ours: write a pattern over the whole range and read it back.
            let bytes = buffer.assumingMemoryBound(to: UInt8.self)
            for i in 0..<count { bytes[i] = UInt8(truncatingIfNeeded: i &* 31) }
            var mismatches = 0
            for i in 0..<count where bytes[i] != UInt8(truncatingIfNeeded: i &* 31) { mismatches += 1 }
            XCTAssertEqual(mismatches, 0, "\(count) bytes")
            buffer.deallocate()
        }
    }
}
