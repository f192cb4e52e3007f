import _Builtin_intrinsics.intel
import CQuantKit

// Int8 tile kernels for the fused matmul at larger M (contract: IntTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). Up to 4 activation rows over both 8-row halves of a panel
// per pass: each code load serves 4 rows and each activation broadcast both halves (the panel
// kernels take 1 or 2 rows). The float outputs stay in memory between blocks (the driver's
// buffer of the group's outputs, contiguous rows).
// This file is also compiled into QuantKitAVX2VNNI (a symlink) with AVXVNNI defined, like
// MatmulKernels256.swift, whose dot-product helpers it uses: vpdpbusd there; here vpmaddubsw, with
// int16 partial sums for nibble codes and signed byte codes, which keeps vpmaddwd out of the inner
// loop. Integer sums are exact in any order, so every variant gives the reference's bits.
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

/// `rows` (1...4) activation rows times one panel of nibble codes over one block.
@inline(__always)
private func nibbleTileBlock(_ rows: Int, _ codes: UnsafeRawPointer, _ ahead: UnsafeRawPointer?, _ scales: UnsafePointer<Float>,
                             _ mins: UnsafePointer<Float>?, _ block: Int, _ zero: Int32,
                             _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                             _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var r0 = HalfDots(), r1 = HalfDots(), r2 = HalfDots(), r3 = HalfDots()
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    let mask = _mm256_set1_epi8(0x0F)
    var w = codes
    var o = 0
    /// Steps of 8 K positions up to `end`, each adding two products to every sum.
    @inline(__always) func steps(_ p0: inout HalfDots, _ p1: inout HalfDots, _ p2: inout HalfDots, _ p3: inout HalfDots, until end: Int) {
        @inline(__always) func add(_ p: inout HalfDots, _ x: UnsafePointer<Int8>, _ lo0: __m256i, _ hi0: __m256i, _ lo1: __m256i,
                                   _ hi1: __m256i) {
            let bl = broadcast4(x, o), bh = broadcast4(x, o &+ 4)
            p.d0 = addNibbles(addNibbles(p.d0, lo0, bl), hi0, bh)
            p.d1 = addNibbles(addNibbles(p.d1, lo1, bl), hi1, bh)
        }
        while o < end {
            if let ahead { qk_prefetch(ahead + (w - codes)) }
            let v0 = _mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self))
            let v1 = _mm256_loadu_si256((w + 32).assumingMemoryBound(to: __m256i_u.self))
            let lo0 = _mm256_and_si256(v0, mask), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), mask)
            let lo1 = _mm256_and_si256(v1, mask), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), mask)
            add(&p0, x0, lo0, hi0, lo1, hi1)
            if rows > 1 { add(&p1, x1, lo0, hi0, lo1, hi1) }
            if rows > 2 { add(&p2, x2, lo0, hi0, lo1, hi1) }
            if rows > 3 { add(&p3, x3, lo0, hi0, lo1, hi1) }
            w += 64
            o &+= 8
        }
    }
    if nibbleProductsPerRun == .max {
        // Products go straight into the int32 sums (a second set of sums would spill here).
        steps(&r0, &r1, &r2, &r3, until: block)
    } else {
        while o < block {
            var p0 = HalfDots(), p1 = HalfDots(), p2 = HalfDots(), p3 = HalfDots()
            steps(&p0, &p1, &p2, &p3, until: min(block, o + nibbleProductsPerRun / 2 * 8))
            r0.flush(p0)
            if rows > 1 { r1.flush(p1) }
            if rows > 2 { r2.flush(p2) }
            if rows > 3 { r3.flush(p3) }
        }
    }
    r0.finish(scales, mins, zero, xScale[0], xSum[0], out)
    if rows > 1 { r1.finish(scales, mins, zero, xScale[ldb], xSum[ldb], out + ldo) }
    if rows > 2 { r2.finish(scales, mins, zero, xScale[2 * ldb], xSum[2 * ldb], out + 2 * ldo) }
    if rows > 3 { r3.finish(scales, mins, zero, xScale[3 * ldb], xSum[3 * ldb], out + 3 * ldo) }
}

/// `rows` (1...4) activation rows times one panel of byte codes over one block.
@inline(__always)
private func byteTileBlock(_ rows: Int, narrow: Bool, _ codes: UnsafeRawPointer, _ ahead: UnsafeRawPointer?, _ scales: UnsafePointer<Float>,
                           _ mins: UnsafePointer<Float>?, _ block: Int, _ zero: Int32,
                           _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                           _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var r0 = HalfDots(), r1 = HalfDots(), r2 = HalfDots(), r3 = HalfDots()
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    var w = codes
    var o = 0
    @inline(__always) func add(_ r: inout HalfDots, _ x: UnsafePointer<Int8>, _ v0: ByteOperands, _ v1: ByteOperands) {
        let b = broadcast4(x, o)
        r.d0 = dotBytes(r.d0, v0, b, narrow: narrow)
        r.d1 = dotBytes(r.d1, v1, b, narrow: narrow)
    }
    while o < block {
        if let ahead { qk_prefetch(ahead + (w - codes)) }
        let v0 = byteOperands(_mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self)), narrow: narrow)
        let v1 = byteOperands(_mm256_loadu_si256((w + 32).assumingMemoryBound(to: __m256i_u.self)), narrow: narrow)
        add(&r0, x0, v0, v1)
        if rows > 1 { add(&r1, x1, v0, v1) }
        if rows > 2 { add(&r2, x2, v0, v1) }
        if rows > 3 { add(&r3, x3, v0, v1) }
        w += 64
        o += 4
    }
    let z = zero &- byteZeroShift(narrow: narrow)
    r0.finish(scales, mins, z, xScale[0], xSum[0], out)
    if rows > 1 { r1.finish(scales, mins, z, xScale[ldb], xSum[ldb], out + ldo) }
    if rows > 2 { r2.finish(scales, mins, z, xScale[2 * ldb], xSum[2 * ldb], out + 2 * ldo) }
    if rows > 3 { r3.finish(scales, mins, z, xScale[3 * ldb], xSum[3 * ldb], out + 3 * ldo) }
}

/// Block by block, and inside a block panel by panel; every group of 4 rows passes over the
/// block's codes of the 4 panels, which stay in L1.
@inline(__always)
private func intTile(nibbles: Bool, narrow: Bool = false, _ codes: UnsafeRawPointer, _ panelBytes: Int,
                     _ scales: UnsafePointer<Float>, _ panelScales: Int, _ mins: UnsafePointer<Float>?,
                     _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                     _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let blockBytes = nibbles ? block * 8 : block * 16
    var b = 0
    while b < blocks {
        var p = 0
        while p < 4 {
            let c = codes + p * panelBytes + b * blockBytes, s = scales + p * panelScales + b * 16
            let mb: UnsafePointer<Float>? = mins == nil ? nil : mins! + p * panelScales + b * 16
            // The first row group asks for the codes of the chunk taken next, a line per step: with
            // few rows they came from DRAM between the groups' work, as chunks too short for the
            // hardware prefetcher to learn (W8A8 and block 128 at M = 16 on AMD Zen 3: 10-20% less
            // time). The last chunk asks for the next group's first; past the matrix's end, a hint
            // does not fault. Hints further ahead in the same panel were slower at block 32.
            let ahead = p < 3 ? codes + (p + 1) * panelBytes + b * blockBytes
                : codes + (b + 1 < blocks ? (b + 1) * blockBytes : 4 * panelBytes)
            var m = 0
            while m < rows {
                let first: UnsafeRawPointer? = m == 0 ? ahead : nil
                let x = xq + m * ldx + b * xBlockStride, xs = xScale + m * ldb + b, q = xSum + m * ldb + b, y = out + m * ldo + 16 * p
                if nibbles {
                    switch rows - m {
                    case 1: nibbleTileBlock(1, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    case 2: nibbleTileBlock(2, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    case 3: nibbleTileBlock(3, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    default: nibbleTileBlock(4, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    }
                } else {
                    switch rows - m {
                    case 1: byteTileBlock(1, narrow: narrow, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    case 2: byteTileBlock(2, narrow: narrow, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    case 3: byteTileBlock(3, narrow: narrow, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    default: byteTileBlock(4, narrow: narrow, c, first, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                    }
                }
                m += 4
            }
            p += 1
        }
        b += 1
    }
}

#if AVXVNNI
public func avxvnniIntTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                  _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                  _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                                  _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: true, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}

public func avxvnniIntTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                                _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: false, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}
#else
public func avx2IntTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                               _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                               _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                               _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: true, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}

public func avx2IntTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                             _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                             _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                             _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: false, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}

public func avx2IntTileNarrowBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                   _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                   _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                                   _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: false, narrow: true, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale,
            xSum, ldb, rows, out, ldo)
}
#endif
