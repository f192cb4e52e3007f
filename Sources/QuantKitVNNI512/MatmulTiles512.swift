import _Builtin_intrinsics.intel

// AVX-512 VNNI tile kernels for the fused matmul at larger M (contract: IntTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). 4 panels x up to 4 activation rows (6 for byte codes) per
// pass: each 64-byte code load serves 4 (6) rows and each activation broadcast serves 4 panels, so
// 16 (24) independent integer accumulators keep both vpdpbusd ports busy. The float outputs stay
// in memory (L1) between blocks.
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

/// The same 64-byte slot of 4 consecutive panels.
private struct PanelCodes {
    var c0: __m512i, c1: __m512i, c2: __m512i, c3: __m512i

    @inline(__always) init(_ w: UnsafeRawPointer, _ stride: Int) {
        c0 = _mm512_loadu_si512(w)
        c1 = _mm512_loadu_si512(w + stride)
        c2 = _mm512_loadu_si512(w + 2 * stride)
        c3 = _mm512_loadu_si512(w + 3 * stride)
    }

    @inline(__always) init(c0: __m512i, c1: __m512i, c2: __m512i, c3: __m512i) {
        self.c0 = c0; self.c1 = c1; self.c2 = c2; self.c3 = c3
    }

    /// Low nibbles (K+0..3 of each lane) and high nibbles (K+4..7) as bytes.
    @inline(__always) func low(_ mask: __m512i) -> PanelCodes {
        PanelCodes(c0: _mm512_and_si512(c0, mask), c1: _mm512_and_si512(c1, mask),
                   c2: _mm512_and_si512(c2, mask), c3: _mm512_and_si512(c3, mask))
    }

    @inline(__always) func high(_ mask: __m512i) -> PanelCodes {
        PanelCodes(c0: _mm512_and_si512(_mm512_srli_epi16(c0, 4), mask), c1: _mm512_and_si512(_mm512_srli_epi16(c1, 4), mask),
                   c2: _mm512_and_si512(_mm512_srli_epi16(c2, 4), mask), c3: _mm512_and_si512(_mm512_srli_epi16(c3, 4), mask))
    }
}

/// One activation row's int32 dot products with 4 panels.
private struct RowDots {
    var d0 = _mm512_setzero_si512(), d1 = _mm512_setzero_si512(), d2 = _mm512_setzero_si512(), d3 = _mm512_setzero_si512()

    @inline(__always) mutating func add(_ c: PanelCodes, _ x: __m512i) {
        d0 = _mm512_dpbusd_epi32(d0, c.c0, x)
        d1 = _mm512_dpbusd_epi32(d1, c.c1, x)
        d2 = _mm512_dpbusd_epi32(d2, c.c2, x)
        d3 = _mm512_dpbusd_epi32(d3, c.c3, x)
    }

    /// out[p] = finishInt(out[p], dots of panel p) for each panel: the reference's per-block step.
    @inline(__always) func finish(_ scales: UnsafePointer<Float>, _ panelScales: Int, _ mins: UnsafePointer<Float>?,
                                  _ zero: Int32, _ sx: Float, _ sum: Int32, _ out: UnsafeMutablePointer<Float>) {
        @inline(__always) func one(_ p: Int, _ d: __m512i) {
            let o = out + 16 * p
            let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + p * panelScales
            _mm512_storeu_ps(o, finishInt(_mm512_loadu_ps(o), d, _mm512_loadu_ps(scales + p * panelScales), m, zero, sx, sum))
        }
        one(0, d0)
        one(1, d1)
        one(2, d2)
        one(3, d3)
    }
}

/// `rows` activation rows times 4 panels over one block: 1...4 rows for nibbles (their low and high
/// codes take 8 registers), 1...6 for bytes (24 accumulators, 4 codes and a broadcast fill 29 of the
/// 32 registers; each code load then serves 6 rows).
@inline(__always)
private func tileBlock(_ rows: Int, nibbles: Bool, _ codes: UnsafeRawPointer, _ panelBytes: Int,
                       _ scales: UnsafePointer<Float>, _ panelScales: Int, _ mins: UnsafePointer<Float>?, _ block: Int, _ zero: Int32,
                       _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var r0 = RowDots(), r1 = RowDots(), r2 = RowDots(), r3 = RowDots(), r4 = RowDots(), r5 = RowDots()
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx, x4 = xq + 4 * ldx, x5 = xq + 5 * ldx
    var w = codes
    var o = 0
    if nibbles {
        let mask = _mm512_set1_epi8(0x0F)
        while o < block {
            let v = PanelCodes(w, panelBytes)
            let lo = v.low(mask), hi = v.high(mask)
            r0.add(lo, broadcast4(x0, o)); r0.add(hi, broadcast4(x0, o + 4))
            if rows > 1 { r1.add(lo, broadcast4(x1, o)); r1.add(hi, broadcast4(x1, o + 4)) }
            if rows > 2 { r2.add(lo, broadcast4(x2, o)); r2.add(hi, broadcast4(x2, o + 4)) }
            if rows > 3 { r3.add(lo, broadcast4(x3, o)); r3.add(hi, broadcast4(x3, o + 4)) }
            w += 64
            o += 8
        }
    } else {
        while o < block {
            let v = PanelCodes(w, panelBytes)
            r0.add(v, broadcast4(x0, o))
            if rows > 1 { r1.add(v, broadcast4(x1, o)) }
            if rows > 2 { r2.add(v, broadcast4(x2, o)) }
            if rows > 3 { r3.add(v, broadcast4(x3, o)) }
            if rows > 4 { r4.add(v, broadcast4(x4, o)) }
            if rows > 5 { r5.add(v, broadcast4(x5, o)) }
            w += 64
            o += 4
        }
    }
    r0.finish(scales, panelScales, mins, zero, xScale[0], xSum[0], out)
    if rows > 1 { r1.finish(scales, panelScales, mins, zero, xScale[ldb], xSum[ldb], out + ldo) }
    if rows > 2 { r2.finish(scales, panelScales, mins, zero, xScale[2 * ldb], xSum[2 * ldb], out + 2 * ldo) }
    if rows > 3 { r3.finish(scales, panelScales, mins, zero, xScale[3 * ldb], xSum[3 * ldb], out + 3 * ldo) }
    if rows > 4 { r4.finish(scales, panelScales, mins, zero, xScale[4 * ldb], xSum[4 * ldb], out + 4 * ldo) }
    if rows > 5 { r5.finish(scales, panelScales, mins, zero, xScale[5 * ldb], xSum[5 * ldb], out + 5 * ldo) }
}

/// Block by block; inside a block every group of 4 rows passes over the same codes, which stay in L1.
@inline(__always)
private func intTile(nibbles: Bool, _ codes: UnsafeRawPointer, _ panelBytes: Int,
                     _ scales: UnsafePointer<Float>, _ panelScales: Int, _ mins: UnsafePointer<Float>?,
                     _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                     _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let blockBytes = nibbles ? block * 8 : block * 16
    var b = 0
    while b < blocks {
        let c = codes + b * blockBytes, s = scales + b * 16
        let mb: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        let step = nibbles ? 4 : 6
        var m = 0
        while m < rows {
            let x = xq + m * ldx + b * block, xs = xScale + m * ldb + b, q = xSum + m * ldb + b, y = out + m * ldo
            switch rows - m < step ? rows - m : step {  // (no generic stdlib calls in ISA modules)
            case 1: tileBlock(1, nibbles: nibbles, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            case 2: tileBlock(2, nibbles: nibbles, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            case 3: tileBlock(3, nibbles: nibbles, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            case 4: tileBlock(4, nibbles: nibbles, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            case 5: tileBlock(5, nibbles: false, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            default: tileBlock(6, nibbles: false, c, panelBytes, s, panelScales, mb, block, zero, x, ldx, xs, q, ldb, y, ldo)
            }
            m += step
        }
        b += 1
    }
}

public func vnni512IntTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                  _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                  _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                                  _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: true, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func vnni512IntTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                                _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: false, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}
