import _Builtin_intrinsics.intel

// AVX-512 tile kernels for the fused matmul's FLOAT mode at larger M (contract: FloatTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). A block of 2 panels is decoded once into an L1 buffer of
// unscaled weight values; then groups of up to 6 activation rows run over each panel.
//
// The contract's four chains per output (chain t takes the K positions t, t+4, t+8, ...) live in
// the lanes of one register instead of four: a register holds 4 outputs, one per 128-bit lane,
// and a lane's 4 floats are that output's 4 chains. A step of 4 K positions multiplies the
// decoded weights w[n][k..k+3] by x[k..k+3] broadcast to every 128-bit lane, so each lane still
// adds its chain's terms in K order. A panel's 16 outputs then take 4 accumulators per row instead
// of 16, and a tile of 6 rows x 16 outputs needs 24: per step, 4 weight loads and 6 broadcasts
// feed 24 fused multiply-adds (the 4-register layout, 3 rows x 2 panels, needed 20 loads for 24).
// At the end of a block a 4x4 transpose per 128-bit lane lines the chains up for the contract's
// (c0 + c1) + (c2 + c3), so the bits are those of the panel kernels.
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

/// Rows of activations a tile runs at once: 6 x 4 accumulators leave room for 4 weight vectors
/// and a broadcast in the 32 zmm registers.
private let tileRowsMax = 6

/// Buffer layout of one decoded panel block: step s (K positions 4s..4s+3) holds 4 vectors; in
/// vector q, 128-bit lane i holds output row 4i+q and element t of the lane is K position 4s+t.
/// Vector q takes rows q, 4+q, 8+q, 12+q so that the transpose at the end of a block gives the
/// outputs in their natural order.
@inline(__always)
private func rowsOfVector(_ q: Int32) -> __m512i {
    _mm512_set_epi32(12 + q, 12 + q, 12 + q, 12 + q, 8 + q, 8 + q, 8 + q, 8 + q,
                     4 + q, 4 + q, 4 + q, 4 + q, q, q, q, q)
}

/// Within each 128-bit lane, element t of result j is element j of input t (a 4x4 transpose).
@inline(__always)
private func transposeLanes(_ a: __m512, _ b: __m512, _ c: __m512, _ d: __m512) -> (__m512, __m512, __m512, __m512) {
    let t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a, b)), t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a, b))
    let t2 = _mm512_castps_pd(_mm512_unpacklo_ps(c, d)), t3 = _mm512_castps_pd(_mm512_unpackhi_ps(c, d))
    return (_mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)), _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)),
            _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)), _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)))
}

/// Unscaled values of one block of one panel, in the buffer layout above.
@inline(__always)
private func decodeBlock(_ decode: Decode, _ codes: UnsafeRawPointer, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                         into buffer: UnsafeMutablePointer<Float>) {
    // Row r's 4 bytes are dword r of a 64-byte group; byte t of each lane's dword goes to element t.
    let v0 = rowsOfVector(0), v1 = rowsOfVector(1), v2 = rowsOfVector(2), v3 = rowsOfVector(3)
    let byteShifts = _mm512_set_epi32(24, 16, 8, 0, 24, 16, 8, 0, 24, 16, 8, 0, 24, 16, 8, 0)
    var w = codes
    var out = buffer
    var c = 0
    switch decode {
    case .nibbles:
        // Byte t of a row holds K+t (low nibble) and K+t+4 (high nibble): two steps per group.
        // permutexvar_ps reads only the low 4 bits of each index, so no mask is needed.
        let table = _mm512_loadu_ps(lut)
        let nibbleShifts = _mm512_add_epi32(byteShifts, _mm512_set1_epi32(4))
        @inline(__always) func emit(_ dwords: __m512i, _ q: Int) {
            _mm512_storeu_ps(out + 16 * q, _mm512_permutexvar_ps(_mm512_srlv_epi32(dwords, byteShifts), table))
            _mm512_storeu_ps(out + 64 + 16 * q, _mm512_permutexvar_ps(_mm512_srlv_epi32(dwords, nibbleShifts), table))
        }
        while c < block {
            let v = _mm512_loadu_si512(w)
            emit(_mm512_permutexvar_epi32(v0, v), 0)
            emit(_mm512_permutexvar_epi32(v1, v), 1)
            emit(_mm512_permutexvar_epi32(v2, v), 2)
            emit(_mm512_permutexvar_epi32(v3, v), 3)
            w += 64
            out += 128
            c += 8
        }
    case .bytes:
        let byteMask = _mm512_set1_epi32(0xFF), zeros = _mm512_set1_epi32(zero)
        @inline(__always) func emit(_ dwords: __m512i, _ q: Int) {
            let codes = _mm512_and_si512(_mm512_srlv_epi32(dwords, byteShifts), byteMask)
            _mm512_storeu_ps(out + 16 * q, _mm512_cvtepi32_ps(_mm512_sub_epi32(codes, zeros)))
        }
        while c < block {
            let v = _mm512_loadu_si512(w)
            emit(_mm512_permutexvar_epi32(v0, v), 0)
            emit(_mm512_permutexvar_epi32(v1, v), 1)
            emit(_mm512_permutexvar_epi32(v2, v), 2)
            emit(_mm512_permutexvar_epi32(v3, v), 3)
            w += 64
            out += 64
            c += 4
        }
    case .halves:
        // 32 bytes per K position (row r at 2r): 4 positions widened, then transposed per lane.
        @inline(__always) func widen(_ t: Int) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256((w + 32 * t).assumingMemoryBound(to: __m256i_u.self)))
        }
        while c < block {
            let (q0, q1, q2, q3) = transposeLanes(widen(0), widen(1), widen(2), widen(3))
            _mm512_storeu_ps(out, q0)
            _mm512_storeu_ps(out + 16, q1)
            _mm512_storeu_ps(out + 32, q2)
            _mm512_storeu_ps(out + 48, q3)
            w += 128
            out += 64
            c += 4
        }
    }
}

/// One row's 16 outputs as 4 chains each (vector q as in the buffer layout).
private struct RowChains {
    var q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps(), q2 = _mm512_setzero_ps(), q3 = _mm512_setzero_ps()

    @inline(__always) mutating func add(_ w0: __m512, _ w1: __m512, _ w2: __m512, _ w3: __m512, _ x: UnsafePointer<Float>) {
        let xs = _mm512_broadcast_f32x4(_mm_loadu_ps(x))
        q0 = _mm512_fmadd_ps(w0, xs, q0)
        q1 = _mm512_fmadd_ps(w1, xs, q1)
        q2 = _mm512_fmadd_ps(w2, xs, q2)
        q3 = _mm512_fmadd_ps(w3, xs, q3)
    }

    /// The 16 partial sums (c0 + c1) + (c2 + c3), output n in lane n.
    @inline(__always) var partials: __m512 {
        let (c0, c1, c2, c3) = transposeLanes(q0, q1, q2, q3)
        return _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3))
    }
}

/// `rows` (1...6) activation rows times one decoded panel over one block, finished into out.
@inline(__always)
private func tileRows(_ rows: Int, _ values: UnsafePointer<Float>, _ block: Int, _ scales: UnsafePointer<Float>,
                      _ mins: UnsafePointer<Float>?, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                      _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var r0 = RowChains(), r1 = RowChains(), r2 = RowChains(), r3 = RowChains(), r4 = RowChains(), r5 = RowChains()
    // One pointer per row, so the loop's loads need no address arithmetic (unused rows point at row 0).
    let x0 = x, x1 = rows > 1 ? x + ldx : x, x2 = rows > 2 ? x + 2 * ldx : x
    let x3 = rows > 3 ? x + 3 * ldx : x, x4 = rows > 4 ? x + 4 * ldx : x, x5 = rows > 5 ? x + 5 * ldx : x
    var w = values
    var k = 0
    while k < block {
        let w0 = _mm512_loadu_ps(w), w1 = _mm512_loadu_ps(w + 16), w2 = _mm512_loadu_ps(w + 32), w3 = _mm512_loadu_ps(w + 48)
        r0.add(w0, w1, w2, w3, x0 + k)
        if rows > 1 { r1.add(w0, w1, w2, w3, x1 + k) }
        if rows > 2 { r2.add(w0, w1, w2, w3, x2 + k) }
        if rows > 3 { r3.add(w0, w1, w2, w3, x3 + k) }
        if rows > 4 { r4.add(w0, w1, w2, w3, x4 + k) }
        if rows > 5 { r5.add(w0, w1, w2, w3, x5 + k) }
        w += 64
        k &+= 4
    }
    let s = _mm512_loadu_ps(scales)
    @inline(__always) func finish(_ chains: RowChains, _ row: Int) {
        let o = out + row * ldo
        _mm512_storeu_ps(o, finishFloat(_mm512_loadu_ps(o), chains.partials, s, mins, xSum[row * ldb]))
    }
    finish(r0, 0)
    if rows > 1 { finish(r1, 1) }
    if rows > 2 { finish(r2, 2) }
    if rows > 3 { finish(r3, 3) }
    if rows > 4 { finish(r4, 4) }
    if rows > 5 { finish(r5, 5) }
}

/// All rows over one decoded panel block, in groups of tileRowsMax.
@inline(__always)
private func panelRows(_ rows: Int, _ values: UnsafePointer<Float>, _ block: Int, _ scales: UnsafePointer<Float>,
                       _ mins: UnsafePointer<Float>?, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let xm = x + m * ldx, sums = xSum + m * ldb, o = out + m * ldo
        switch rows - m {
        case 1: tileRows(1, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        case 2: tileRows(2, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        case 3: tileRows(3, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        case 4: tileRows(4, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        case 5: tileRows(5, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        default: tileRows(6, values, block, scales, mins, xm, ldx, sums, ldb, o, ldo)
        }
        m += tileRowsMax
    }
}

@inline(__always)
private func floatTile(_ decode: Decode, _ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                       _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                       _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                       _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    let blockBytes: Int
    switch decode {
    case .nibbles: blockBytes = block * 8
    case .bytes: blockBytes = block * 16
    case .halves: blockBytes = block * 32
    }
    let second = buffer + 16 * block
    var b = 0
    while b < blocks {
        decodeBlock(decode, codes + b * blockBytes, block, zero, lut, into: buffer)
        decodeBlock(decode, codes + panelBytes + b * blockBytes, block, zero, lut, into: second)
        let s = scales + b * 16, xb = x + b * block, sums = xSum + b
        let m0: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        let m1: UnsafePointer<Float>? = mins == nil ? nil : mins! + panelScales + b * 16
        panelRows(rows, buffer, block, s, m0, xb, ldx, sums, ldb, out, ldo)
        panelRows(rows, second, block, s + panelScales, m1, xb, ldx, sums, ldb, out + 16, ldo)
        b += 1
    }
}

public func vnni512FloatTileNibbles(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                    _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                    _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                    _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    floatTile(.nibbles, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
}

public func vnni512FloatTileBytes(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                  _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                  _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                  _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    floatTile(.bytes, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
}

public func vnni512FloatTileHalves(_ codes: UnsafeRawPointer, _ panelBytes: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                                   _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                   _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                   _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int, _ buffer: UnsafeMutablePointer<Float>) {
    floatTile(.halves, codes, panelBytes, scales, panelScales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo, buffer)
}
