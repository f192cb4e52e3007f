import _Builtin_intrinsics.intel

// AVX-512 VNNI tile kernels for the fused matmul at larger M (contract: IntTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). 4 panels x up to 4 activation rows (6 for byte codes) per
// pass: each 64-byte code load serves 4 (6) rows and each activation broadcast serves 4 panels, so
// 16 (24) independent integer accumulators keep both vpdpbusd ports busy. The float outputs stay
// in memory between blocks (the driver's buffer of the group's outputs, contiguous rows).
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

/// One tileBlock call: 4 panels' codes, scales and mins for one block, and the first of its
/// activation rows with their per-block scales and code sums and outputs.
private struct TileBlock {
    var codes: UnsafeRawPointer, panelBytes: Int, scales: UnsafePointer<Float>, panelScales: Int, mins: UnsafePointer<Float>?
    var block: Int, zero: Int32
    var xq: UnsafePointer<Int8>, ldx: Int, xScale: UnsafePointer<Float>, xSum: UnsafePointer<Int32>, ldb: Int
    var out: UnsafeMutablePointer<Float>, ldo: Int
}

/// `rows` activation rows times 4 panels over one block: 1...4 rows for nibbles (their low and high
/// codes take 8 registers), 1...6 for bytes (24 accumulators, 4 codes and a broadcast fill 29 of the
/// 32 registers; each code load then serves 6 rows). `rows` and `nibbles` must be constants where
/// it is inlined, so the inner loop has no row tests (see the callers below).
@inline(__always)
private func tileBlock(_ rows: Int, nibbles: Bool, _ t: TileBlock) {
    var r0 = RowDots(), r1 = RowDots(), r2 = RowDots(), r3 = RowDots(), r4 = RowDots(), r5 = RowDots()
    let ldx = t.ldx, panelBytes = t.panelBytes, block = t.block
    let x0 = t.xq, x1 = x0 + ldx, x2 = x0 + 2 * ldx, x3 = x0 + 3 * ldx, x4 = x0 + 4 * ldx, x5 = x0 + 5 * ldx
    var w = t.codes
    var o = 0
    if nibbles {
        let mask = _mm512_set1_epi8(0x0F)
        while o < block {
            let v = PanelCodes(w, panelBytes)
            let lo = v.low(mask), hi = v.high(mask)
            r0.add(lo, broadcast4(x0, o)); r0.add(hi, broadcast4(x0, o &+ 4))
            if rows > 1 { r1.add(lo, broadcast4(x1, o)); r1.add(hi, broadcast4(x1, o &+ 4)) }
            if rows > 2 { r2.add(lo, broadcast4(x2, o)); r2.add(hi, broadcast4(x2, o &+ 4)) }
            if rows > 3 { r3.add(lo, broadcast4(x3, o)); r3.add(hi, broadcast4(x3, o &+ 4)) }
            w += 64
            o &+= 8
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
            o &+= 4
        }
    }
    let s = t.scales, ps = t.panelScales, mins = t.mins, zero = t.zero, xs = t.xScale, q = t.xSum, ldb = t.ldb
    let out = t.out, ldo = t.ldo
    r0.finish(s, ps, mins, zero, xs[0], q[0], out)
    if rows > 1 { r1.finish(s, ps, mins, zero, xs[ldb], q[ldb], out + ldo) }
    if rows > 2 { r2.finish(s, ps, mins, zero, xs[2 * ldb], q[2 * ldb], out + 2 * ldo) }
    if rows > 3 { r3.finish(s, ps, mins, zero, xs[3 * ldb], q[3 * ldb], out + 3 * ldo) }
    if rows > 4 { r4.finish(s, ps, mins, zero, xs[4 * ldb], q[4 * ldb], out + 4 * ldo) }
    if rows > 5 { r5.finish(s, ps, mins, zero, xs[5 * ldb], q[5 * ldb], out + 5 * ldo) }
}

// One function per row count, each inlining tileBlock with its constants. With all ten cases
// inlined into one caller, the optimizer stopped inlining at the 5- and 6-row byte cases and ran
// them through one shared copy that tested the row count 5 times per step of the inner loop
// (branches compete with vpdpbusd for port 0).
@inline(never) private func nibbleRows1(_ t: TileBlock) { tileBlock(1, nibbles: true, t) }
@inline(never) private func nibbleRows2(_ t: TileBlock) { tileBlock(2, nibbles: true, t) }
@inline(never) private func nibbleRows3(_ t: TileBlock) { tileBlock(3, nibbles: true, t) }
@inline(never) private func nibbleRows4(_ t: TileBlock) { tileBlock(4, nibbles: true, t) }
@inline(never) private func byteRows1(_ t: TileBlock) { tileBlock(1, nibbles: false, t) }
@inline(never) private func byteRows2(_ t: TileBlock) { tileBlock(2, nibbles: false, t) }
@inline(never) private func byteRows3(_ t: TileBlock) { tileBlock(3, nibbles: false, t) }
@inline(never) private func byteRows4(_ t: TileBlock) { tileBlock(4, nibbles: false, t) }
@inline(never) private func byteRows5(_ t: TileBlock) { tileBlock(5, nibbles: false, t) }
@inline(never) private func byteRows6(_ t: TileBlock) { tileBlock(6, nibbles: false, t) }

/// Block by block; inside a block every group of 4 (nibbles) or 6 (bytes) rows passes over the
/// same codes, which stay in L1.
@inline(__always)
private func intTile(nibbles: Bool, _ codes: UnsafeRawPointer, _ panelBytes: Int,
                     _ scales: UnsafePointer<Float>, _ panelScales: Int, _ mins: UnsafePointer<Float>?,
                     _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                     _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let blockBytes = nibbles ? block * 8 : block * 16
    let step = nibbles ? 4 : 6
    var t = TileBlock(codes: codes, panelBytes: panelBytes, scales: scales, panelScales: panelScales, mins: mins, block: block,
                      zero: zero, xq: xq, ldx: ldx, xScale: xScale, xSum: xSum, ldb: ldb, out: out, ldo: ldo)
    var b = 0
    while b < blocks {
        t.codes = codes + b * blockBytes
        t.scales = scales + b * 16
        t.mins = mins == nil ? nil : mins! + b * 16
        var m = 0
        while m < rows {
            t.xq = xq + m * ldx + b * xBlockStride
            t.xScale = xScale + m * ldb + b
            t.xSum = xSum + m * ldb + b
            t.out = out + m * ldo
            let count = rows - m < step ? rows - m : step  // (no generic stdlib calls in ISA modules)
            if nibbles {
                switch count {
                case 1: nibbleRows1(t)
                case 2: nibbleRows2(t)
                case 3: nibbleRows3(t)
                default: nibbleRows4(t)
                }
            } else {
                switch count {
                case 1: byteRows1(t)
                case 2: byteRows2(t)
                case 3: byteRows3(t)
                case 4: byteRows4(t)
                case 5: byteRows5(t)
                default: byteRows6(t)
                }
            }
            m += step
        }
        b += 1
    }
}

public func vnni512IntTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                  _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                  _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                                  _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: true, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}

public func vnni512IntTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                                _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xBlockStride: Int, _ xScale: UnsafePointer<Float>,
                                _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intTile(nibbles: false, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, xq, ldx, xBlockStride, xScale, xSum, ldb,
            rows, out, ldo)
}
