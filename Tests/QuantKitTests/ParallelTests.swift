@testable import QuantKit
import Dispatch
import Foundation
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

    func testChunksFinerThanThreadsCoverEveryIndexOnce() {
        for threads in [1, 2, 3, 8] {
            for count in [1, 5, 97, 1000] {
                let counts = Counts(count)
                Parallel.forEachChunk(count: count, threads: threads, chunksPerThread: 4) { range in for i in range { counts.bump(i) } }
                XCTAssertEqual(counts.all(), [Int](repeating: 1, count: count), "threads \(threads) count \(count)")
            }
        }
    }

    /// A job asking for fewer threads than the pool has started runs on at most that many, also
    /// when it has more chunks than threads (the workers past its count must leave it alone).
    func testAJobRunsOnNoMoreThreadsThanItAsksFor() {
        let pool = WorkerPool(maxWorkers: 7)
        let mutex = Mutex<Set<UInt>>([])
        func distinctThreads(threads: Int, chunks: Int) -> Int {
            mutex.withLock { $0.removeAll() }
            let ran = pool.run(chunks: chunks, threads: threads) { _ in
                mutex.withLock { _ = $0.insert(UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(bitPattern: pthread_self())))) }
                usleep(200)  // long enough for every spinning worker to try for a chunk
            }
            XCTAssertTrue(ran)
            return mutex.withLock { $0.count }
        }
        XCTAssertGreaterThan(distinctThreads(threads: 8, chunks: 64), 1, "the pool starts its workers")
        for round in 0..<20 {
            if round % 5 == 0 { usleep(1000) }  // now and then the workers sleep
            for threads in [1, 2, 3] {
                let used = distinctThreads(threads: threads, chunks: 32)
                XCTAssertLessThanOrEqual(used, threads, "threads \(threads) round \(round)")
            }
        }
        XCTAssertGreaterThan(distinctThreads(threads: 8, chunks: 64), 1, "sleeping workers wake for a larger job")
    }

    /// Jobs of different sizes back to back, with bodies of a few microseconds: a worker late
    /// from one job (slow between taking a chunk number and reading the chunk count) must never
    /// run a chunk of the next. It once did: chunks ran twice, and a job could end while a worker
    /// still held its body, which traps ("closure argument was escaped"); seen within seconds on
    /// 2 and on 16 cores through qk_matmul (an activation job of 2 chunks, then the product's).
    func testLateWorkersNeverRunChunksOfTheNextJob() {
        for workers in [1, 3] {
            let pool = WorkerPool(maxWorkers: workers)
            let end = Date().addingTimeInterval(1.5)
            var round = 0
            while Date() < end {
                let chunks = [2, 16, 3, 9][round % 4]
                let counts = Counts(chunks)
                let ran = pool.run(chunks: chunks, threads: 16) { chunk in
                    counts.bump(chunk)
                    let start = DispatchTime.now().uptimeNanoseconds
                    while DispatchTime.now().uptimeNanoseconds &- start < 2_000 {}
                }
                XCTAssertTrue(ran)
                guard counts.all() == [Int](repeating: 1, count: chunks) else {
                    return XCTFail("workers \(workers) round \(round): chunks ran \(counts.all()) times")
                }
                round += 1
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
