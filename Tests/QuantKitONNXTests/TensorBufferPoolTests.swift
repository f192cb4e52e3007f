import FoundationEssentials
@testable import QuantKitONNX
import XCTest

final class TensorBufferPoolTests: XCTestCase {
    private func address(_ data: Data) -> UnsafeRawPointer? { data.withUnsafeBytes { $0.baseAddress } }

    func testReleasedBuffersAreReusedForSimilarSizes() {
        let pool = TensorBufferPool()
        var first: Data? = pool.data(count: 1000)
        first!.withUnsafeMutableBytes { $0.initializeMemory(as: UInt8.self, repeating: 7) }
        let firstAddress = address(first!)
        var copy = first  // a second reference keeps the buffer out of the pool
        first = nil
        XCTAssertEqual(pool.idleBytes, 0)
        XCTAssertEqual(copy?.allSatisfy { $0 == 7 }, true)
        copy = nil
        XCTAssertEqual(pool.idleBytes, 1000)

        // Too small for it (under half its size): a new buffer, the idle one stays.
        let small = pool.data(count: 400)
        XCTAssertNotEqual(address(small), firstAddress)
        XCTAssertEqual(pool.idleBytes, 1000)
        // Fits: the same memory, now taken.
        let reused = pool.data(count: 900)
        XCTAssertEqual(reused.count, 900)
        XCTAssertEqual(address(reused), firstAddress)
        XCTAssertEqual(pool.idleBytes, 0)
        XCTAssertEqual(pool.data(count: 0).count, 0)
    }

    func testIdleBytesStayUnderTheLimit() {
        let pool = TensorBufferPool(idleLimit: 1500)
        var buffers: [Data]? = [pool.data(count: 1000), pool.data(count: 1000), pool.data(count: 300)]
        buffers = nil
        XCTAssertNil(buffers)
        XCTAssertEqual(pool.idleBytes, 1300, "one 1000-byte buffer is freed, not kept")
    }
}
