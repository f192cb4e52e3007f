@testable import QuantKit
import Dispatch
import Glibc
import Synchronization
import XCTest

/// Parallel.forEachChunk over the spinning worker pool: every index exactly once, also when calls
/// nest (the pool is busy: Dispatch takes over) or come from several threads at once.
final class ParallelTests: XCTestCase {
    final class Counts: @unchecked Sendable {
        let values: UnsafeMutablePointer<Atomic<Int>>
        let count: Int
        init(_ count: Int) {
            self.count = count
            values = .allocate(capacity: count)
            for i in 0..<count { (values + i).initialize(to: Atomic<Int>(0)) }
        }
        func bump(_ i: Int) { values[i].add(1, ordering: .relaxed) }
        func all() -> [Int] { (0..<count).map { values[$0].load(ordering: .relaxed) } }
        deinit { values.deinitialize(count: count); values.deallocate() }
    }

    func testEveryIndexRunsOnceForAnyThreadCount() {
        for threads in [1, 2, 3, 8] {
            for round in 0..<50 {
                // Now and then long enough a pause for the workers to stop spinning and sleep.
                if round % 10 == 0 { usleep(1000) }
                let counts = Counts(97)
                Parallel.forEachChunk(count: 97, threads: threads) { range in for i in range { counts.bump(i) } }
                XCTAssertEqual(counts.all(), [Int](repeating: 1, count: 97), "threads \(threads) round \(round)")
            }
        }
    }

    func testNestedAndConcurrentCalls() {
        let counts = Counts(64 * 32)
        DispatchQueue.concurrentPerform(iterations: 4) { caller in
            Parallel.forEachChunk(count: 16, threads: 2) { outer in
                for o in outer {
                    Parallel.forEachChunk(count: 32, threads: 2) { inner in
                        for i in inner { counts.bump(((caller * 16) + o) * 32 + i) }
                    }
                }
            }
        }
        XCTAssertEqual(counts.all(), [Int](repeating: 1, count: 64 * 32))
    }
}
