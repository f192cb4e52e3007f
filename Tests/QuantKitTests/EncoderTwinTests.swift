@testable import QuantKit
import XCTest

/// The O(1) encoders (minifloat bit arithmetic, codebook grid) against their reference twins.
final class EncoderTwinTests: XCTestCase {
    /// Every representable value, every midpoint, and their float neighbours, both signs.
    func probes(_ levels: [Float]) -> [Float] {
        var values: [Float] = [0, -0.0, .leastNonzeroMagnitude, 1e-30, 1e30]
        for (a, b) in zip(levels, levels.dropFirst()) {
            for v in [a, (a + b) / 2] { values += [v, v.nextUp, v.nextDown] }
        }
        return values + values.map { -$0 }
    }

    func testMinifloatBitArithmeticMatchesSearch() {
        var rng = SplitMix(seed: 31)
        for mf in [Minifloat.e2m1, .e4m3fn, .e5m2] {
            var values = probes(mf.magnitudes) + [mf.maxFinite.nextUp, mf.maxFinite * 1.03]
            values += (0..<20000).map { _ in (rng.uniform() - 0.5) * mf.maxFinite * 2.2 }
            values += (0..<20000).map { _ in (rng.uniform() - 0.5) * mf.minNormal * 4 }
            for x in values {
                for away in [false, true] {
                    XCTAssertEqual(mf.encode(x, tiesAway: away), mf.encodeBySearch(x, tiesAway: away), "bits \(mf.bits) x=\(x) away=\(away)")
                }
            }
        }
    }

    func testCodebookGridMatchesThresholdCount() {
        var rng = SplitMix(seed: 32)
        for book in [Codebook.nf4, .fp4Bnb, .log4] {
            var values = probes(book.thresholds) + [1.5, -1.5, 2, 1, -1]
            values += (0..<50000).map { _ in (rng.uniform() - 0.5) * 2.4 }
            for x in values {
                let key = book.signMagnitude ? x.magnitude : x
                XCTAssertEqual(book.grid.rank(key), book.grid.slowRank(key), "x=\(x)")
            }
        }
    }
}
