import _Builtin_intrinsics.intel

// AVX2 tile kernels for the fused matmul's FLOAT mode at larger M (contract: FloatTileKernel in
// QuantKit/Matmul/MatmulKernels.swift), the AVX-512 ones' design (QuantKitVNNI512/
// MatmulFloatTiles512.swift) on 16 ymm registers: a block of 2 panels is decoded once into an L1
// buffer of unscaled weight values, then each group of up to 3 activation rows runs over its 4
// half panels (8 outputs each). An output's four chains (chain t takes the K positions t, t+4,
// ...) are the four floats of one 128-bit lane, so a ymm holds 2 outputs and a half panel 4
// registers per row: 12 accumulators, a weight vector and 3 broadcasts of x[k..k+3] fill the 16 registers, and
// each step of 4 K positions is 4 weight loads and 3 broadcasts for 12 fused multiply-adds. At
// the end of a block a 4x4 transpose per lane lines the chains up for (c0 + c1) + (c2 + c3).
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

private let tileRowsMax = 3

/// Within each 128-bit lane, element t of result j is element j of input t (a 4x4 transpose).
@inline(__always)
private func transposeLanes(_ a: __m256, _ b: __m256, _ c: __m256, _ d: __m256) -> (__m256, __m256, __m256, __m256) {
    let t0 = _mm256_castps_pd(_mm256_unpacklo_ps(a, b)), t1 = _mm256_castps_pd(_mm256_unpackhi_ps(a, b))
    let t2 = _mm256_castps_pd(_mm256_unpacklo_ps(c, d)), t3 = _mm256_castps_pd(_mm256_unpackhi_ps(c, d))
    return (_mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)), _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)),
            _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)), _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)))
}

/// Buffer layout of one decoded panel block: step s (K positions 4s..4s+3) holds 8 vectors; in
/// vector 4g+j, 128-bit lane i holds output row 8g+4i+j and element t of the lane is K position
/// 4s+t, so that the transpose at the end of a block gives outputs 8g..8g+7 in order.
/// rowsOfVector(j): within a 32-byte half of a code group (dwords = rows 8g..8g+7), dword j in
/// lane 0 and dword 4+j in lane 1, each repeated 4 times.
@inline(__always) private func rowsOfVector(_ j: Int32) -> __m256i {
    _mm256_set_epi32(4 + j, 4 + j, 4 + j, 4 + j, j, j, j, j)
}

@inline(__always)
private func decodeBlock(_ decode: Decode, _ codes: UnsafeRawPointer, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                         into buffer: UnsafeMutablePointer<Float>) {
    let r0 = rowsOfVector(0), r1 = rowsOfVector(1), r2 = rowsOfVector(2), r3 = rowsOfVector(3)
    let byteShifts = _mm256_set_epi32(24, 16, 8, 0, 24, 16, 8, 0)
    var w = codes
    var out = buffer
    var c = 0
    /// emit(the dwords of buffer vector v, v) for the 8 vectors of one 64-byte step of codes.
    @inline(__always) func spread(_ emit: (__m256i, Int) -> Void) {
        var g = 0
        while g < 2 {
            let v = _mm256_loadu_si256((w + 32 * g).assumingMemoryBound(to: __m256i_u.self))
            emit(_mm256_permutevar8x32_epi32(v, r0), 4 * g)
            emit(_mm256_permutevar8x32_epi32(v, r1), 4 * g + 1)
            emit(_mm256_permutevar8x32_epi32(v, r2), 4 * g + 2)
            emit(_mm256_permutevar8x32_epi32(v, r3), 4 * g + 3)
            g += 1
        }
    }
    switch decode {
    case .nibbles, .rampNibbles:
        // Byte t of a row holds K+t (low nibble) and K+t+4 (high nibble): two steps per group.
        let low = _mm256_loadu_ps(lut), high = _mm256_loadu_ps(lut + 8), zeros = _mm256_set1_epi32(zero)
        let nibbleShifts = _mm256_add_epi32(byteShifts, _mm256_set1_epi32(4))
        @inline(__always) func value(_ shifted: __m256i) -> __m256 {
            decode == .rampNibbles ? rampValue(shifted, zeros) : lookup(shifted, low, high)
        }
        @inline(__always) func emit(_ dwords: __m256i, _ v: Int) {
            _mm256_storeu_ps(out + 8 * v, value(_mm256_srlv_epi32(dwords, byteShifts)))
            _mm256_storeu_ps(out + 64 + 8 * v, value(_mm256_srlv_epi32(dwords, nibbleShifts)))
        }
        while c < block {
            spread(emit)
            w += 64
            out += 128
            c += 8
        }
    case .bytes:
        let byteMask = _mm256_set1_epi32(0xFF), zeros = _mm256_set1_epi32(zero)
        @inline(__always) func emit(_ dwords: __m256i, _ v: Int) {
            let codes = _mm256_and_si256(_mm256_srlv_epi32(dwords, byteShifts), byteMask)
            _mm256_storeu_ps(out + 8 * v, _mm256_cvtepi32_ps(_mm256_sub_epi32(codes, zeros)))
        }
        while c < block {
            spread(emit)
            w += 64
            out += 64
            c += 4
        }
    case .halves:
        // 32 bytes per K position (row r at 2r): rows 8g..8g+7 of 4 positions, transposed per lane.
        @inline(__always) func widen(_ t: Int, _ g: Int) -> __m256 {
            _mm256_cvtph_ps(_mm_loadu_si128((w + 32 * t + 16 * g).assumingMemoryBound(to: __m128i_u.self)))
        }
        while c < block {
            var g = 0
            while g < 2 {
                let (q0, q1, q2, q3) = transposeLanes(widen(0, g), widen(1, g), widen(2, g), widen(3, g))
                _mm256_storeu_ps(out + 32 * g, q0)
                _mm256_storeu_ps(out + 32 * g + 8, q1)
                _mm256_storeu_ps(out + 32 * g + 16, q2)
                _mm256_storeu_ps(out + 32 * g + 24, q3)
                g += 1
            }
            w += 128
            out += 64
            c += 4
        }
    }
}

/// One row's 8 outputs of a half panel as 4 chains each (vector j as in the buffer layout).
private struct RowChains {
    var q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps(), q2 = _mm256_setzero_ps(), q3 = _mm256_setzero_ps()

    /// The 8 partial sums (c0 + c1) + (c2 + c3), in output order.
    @inline(__always) var partials: __m256 {
        let (c0, c1, c2, c3) = transposeLanes(q0, q1, q2, q3)
        return _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3))
    }
}

/// x[0..<4] in both 128-bit lanes (vbroadcastf128, which reads unaligned memory).
@inline(__always) private func broadcast4(_ x: UnsafePointer<Float>) -> __m256 {
    _mm256_broadcast_ps(UnsafeRawPointer(x).assumingMemoryBound(to: __m128.self))
}

/// `rows` (1...3) activation rows times one decoded half panel (values at its step 0) over one
/// block, finished into out (8 outputs per row).
@inline(__always)
private func tileRows(_ rows: Int, _ values: UnsafePointer<Float>, _ block: Int, _ scales: UnsafePointer<Float>,
                      _ mins: UnsafePointer<Float>?, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                      _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var a = RowChains(), b = RowChains(), c = RowChains()
    let x0 = x, x1 = rows > 1 ? x + ldx : x, x2 = rows > 2 ? x + 2 * ldx : x
    var w = values
    var k = 0
    while k < block {
        let xa = broadcast4(x0 + k), xb = broadcast4(x1 + k), xc = broadcast4(x2 + k)
        @inline(__always) func add(_ wj: __m256, _ j: Int) {
            switch j {
            case 0:
                a.q0 = _mm256_fmadd_ps(wj, xa, a.q0)
                if rows > 1 { b.q0 = _mm256_fmadd_ps(wj, xb, b.q0) }
                if rows > 2 { c.q0 = _mm256_fmadd_ps(wj, xc, c.q0) }
            case 1:
                a.q1 = _mm256_fmadd_ps(wj, xa, a.q1)
                if rows > 1 { b.q1 = _mm256_fmadd_ps(wj, xb, b.q1) }
                if rows > 2 { c.q1 = _mm256_fmadd_ps(wj, xc, c.q1) }
            case 2:
                a.q2 = _mm256_fmadd_ps(wj, xa, a.q2)
                if rows > 1 { b.q2 = _mm256_fmadd_ps(wj, xb, b.q2) }
                if rows > 2 { c.q2 = _mm256_fmadd_ps(wj, xc, c.q2) }
            default:
                a.q3 = _mm256_fmadd_ps(wj, xa, a.q3)
                if rows > 1 { b.q3 = _mm256_fmadd_ps(wj, xb, b.q3) }
                if rows > 2 { c.q3 = _mm256_fmadd_ps(wj, xc, c.q3) }
            }
        }
        add(_mm256_loadu_ps(w), 0)
        add(_mm256_loadu_ps(w + 8), 1)
        add(_mm256_loadu_ps(w + 16), 2)
        add(_mm256_loadu_ps(w + 24), 3)
        w += 64
        k &+= 4
    }
    let s = _mm256_loadu_ps(scales)
    @inline(__always) func finish(_ chains: RowChains, _ row: Int) {
        let o = out + row * ldo
        var acc = _mm256_fmadd_ps(chains.partials, s, _mm256_loadu_ps(o))
        if let mins { acc = _mm256_fmadd_ps(_mm256_loadu_ps(mins), _mm256_set1_ps(xSum[row * ldb]), acc) }
        _mm256_storeu_ps(o, acc)
    }
    finish(a, 0)
    if rows > 1 { finish(b, 1) }
    if rows > 2 { finish(c, 2) }
}

/// `rows` (1...3) activation rows over the 4 decoded half panels of a block (values at the
/// buffer's start): the rows' activations stay in L1 across the half panels, and the buffer
/// across row groups (half panel by half panel over all rows, a slice's block of activations,
/// 32 KiB at 64 rows and block 128, pushed the buffer out of L1).
@inline(__always)
private func rowGroup(_ rows: Int, _ buffer: UnsafePointer<Float>, _ block: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                      _ mins: UnsafePointer<Float>?, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                      _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var h = 0
    while h < 4 {  // half panels: panel h / 2, outputs 8 * (h % 2) ..< 8 * (h % 2) + 8
        let p = h / 2, g = h % 2
        let s = scales + p * panelScales + 8 * g
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + p * panelScales + 8 * g
        tileRows(rows, buffer + p * 16 * block + 32 * g, block, s, m, x, ldx, xSum, ldb, out + 8 * h, ldo)
        h += 1
    }
}

@inline(__always)
private func floatTile(_ decode: Decode, _ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                       _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                       _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                       _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    let blockBytes: Int
    switch decode {
    case .nibbles, .rampNibbles: blockBytes = block * 8
    case .bytes: blockBytes = block * 16
    case .halves: blockBytes = block * 32
    }
    var b = 0
    while b < blocks {
        decodeBlock(decode, codes + b * blockBytes, block, zero, lut, into: buffer)
        decodeBlock(decode, codes + panelBytes + b * blockBytes, block, zero, lut, into: buffer + 16 * block)
        let s = scales + b * 16, mb: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        var m = 0
        while m < rows {
            let xm = x + m * ldx + b * block, sums = xSum + m * ldb + b, o = out + m * ldo
            switch rows - m {
            case 1: rowGroup(1, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            case 2: rowGroup(2, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            default: rowGroup(3, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            }
            m += tileRowsMax
        }
        b += 1
    }
}

public func avx2FloatTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                 _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                 _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                 _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    if Decode.of(nibbleTable: lut, zero: zero) == .rampNibbles {
        floatTile(.rampNibbles, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo,
                  buffer)
    } else {
        floatTile(.nibbles, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
    }
}

public func avx2FloatTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                               _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                               _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                               _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    floatTile(.bytes, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
}

public func avx2FloatTileHalves(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    floatTile(.halves, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
}
