import _Builtin_intrinsics.intel

// AVX-VNNI tile kernels for the fused matmul at larger M (contract: IntTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). Up to 4 activation rows over both 8-row halves of a panel
// per pass: each code load serves 4 rows and each activation broadcast both halves, where the
// panel kernels take 2 rows over one half. The float outputs stay in memory (L1) between blocks.
// Uses the helpers of MatmulKernels256.swift (shared with QuantKitAVX2 through a symlink). Plain
// AVX2 has no tile kernels: with vpmaddubsw + vpmaddwd instead of vpdpbusd the 16 ymm registers
// spill and such tiles were no faster than the AVX2 panel kernels (measured at M = 16 and 512).
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

/// One activation row's int32 dot products with the two halves of a panel.
private struct HalfDots {
    var d0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256()

    /// out[h] = finishInt(out[h], dots of half h): the reference's per-block step.
    @inline(__always) func finish(_ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?, _ zero: Int32, _ sx: Float, _ sum: Int32,
                                  _ out: UnsafeMutablePointer<Float>) {
        _mm256_storeu_ps(out, finishInt(_mm256_loadu_ps(out), d0, _mm256_loadu_ps(scales), mins, zero, sx, sum))
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + 8
        _mm256_storeu_ps(out + 8, finishInt(_mm256_loadu_ps(out + 8), d1, _mm256_loadu_ps(scales + 8), m, zero, sx, sum))
    }
}

/// `rows` (1...4) activation rows times one panel over one block.
@inline(__always)
private func tileBlock(_ rows: Int, nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                       _ block: Int, _ zero: Int32,
                       _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var r0 = HalfDots(), r1 = HalfDots(), r2 = HalfDots(), r3 = HalfDots()
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    var w = codes
    var o = 0
    @inline(__always) func load(_ half: Int) -> __m256i { _mm256_loadu_si256((w + 32 * half).assumingMemoryBound(to: __m256i_u.self)) }
    if nibbles {
        let mask = _mm256_set1_epi8(0x0F)
        @inline(__always) func add(_ r: inout HalfDots, _ x: UnsafePointer<Int8>, _ lo0: __m256i, _ hi0: __m256i, _ lo1: __m256i, _ hi1: __m256i) {
            let bl = broadcast4(x, o), bh = broadcast4(x, o + 4)
            r.d0 = dotNibbles(dotNibbles(r.d0, lo0, bl), hi0, bh)
            r.d1 = dotNibbles(dotNibbles(r.d1, lo1, bl), hi1, bh)
        }
        while o < block {
            let v0 = load(0), v1 = load(1)
            let lo0 = _mm256_and_si256(v0, mask), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), mask)
            let lo1 = _mm256_and_si256(v1, mask), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), mask)
            add(&r0, x0, lo0, hi0, lo1, hi1)
            if rows > 1 { add(&r1, x1, lo0, hi0, lo1, hi1) }
            if rows > 2 { add(&r2, x2, lo0, hi0, lo1, hi1) }
            if rows > 3 { add(&r3, x3, lo0, hi0, lo1, hi1) }
            w += 64
            o += 8
        }
    } else {
        @inline(__always) func add(_ r: inout HalfDots, _ x: UnsafePointer<Int8>, _ v0: __m256i, _ v1: __m256i) {
            let b = broadcast4(x, o)
            r.d0 = dotBytes(r.d0, v0, b)
            r.d1 = dotBytes(r.d1, v1, b)
        }
        while o < block {
            let v0 = load(0), v1 = load(1)
            add(&r0, x0, v0, v1)
            if rows > 1 { add(&r1, x1, v0, v1) }
            if rows > 2 { add(&r2, x2, v0, v1) }
            if rows > 3 { add(&r3, x3, v0, v1) }
            w += 64
            o += 4
        }
    }
    r0.finish(scales, mins, zero, xScale[0], xSum[0], out)
    if rows > 1 { r1.finish(scales, mins, zero, xScale[ldb], xSum[ldb], out + ldo) }
    if rows > 2 { r2.finish(scales, mins, zero, xScale[2 * ldb], xSum[2 * ldb], out + 2 * ldo) }
    if rows > 3 { r3.finish(scales, mins, zero, xScale[3 * ldb], xSum[3 * ldb], out + 3 * ldo) }
}

/// Block by block, and inside a block panel by panel; every group of 4 rows passes over the
/// block's codes of the 4 panels, which stay in L1.
@inline(__always)
private func intTile(nibbles: Bool, _ codes: UnsafeRawPointer, _ panelBytes: Int,
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
            var m = 0
            while m < rows {
                let x = xq + m * ldx + b * xBlockStride, xs = xScale + m * ldb + b, q = xSum + m * ldb + b, y = out + m * ldo + 16 * p
                switch rows - m {
                case 1: tileBlock(1, nibbles: nibbles, c, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                case 2: tileBlock(2, nibbles: nibbles, c, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                case 3: tileBlock(3, nibbles: nibbles, c, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                default: tileBlock(4, nibbles: nibbles, c, s, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
                }
                m += 4
            }
            p += 1
        }
        b += 1
    }
}

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
