import _Builtin_intrinsics.intel

// AVX-512 tile kernels for the fused matmul's FLOAT mode at larger M (contract: FloatTileKernel in
// QuantKit/Matmul/MatmulKernels.swift). A block of 2 panels is decoded once into an L1 buffer of
// unscaled weight values (16 floats per K position and panel); then every group of 3 activation
// rows runs over it with 24 accumulators (4 chains x 3 rows x 2 panels): per K position 2 weight
// loads and 3 broadcasts feed 6 fused multiply-adds, instead of decoding the codes again for
// every 4 rows. Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

/// Unscaled values of one block of one panel: buffer[16 * c ..< 16 * c + 16] is K position c.
@inline(__always)
private func decodeBlock(_ decode: Decode, _ codes: UnsafeRawPointer, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                         into buffer: UnsafeMutablePointer<Float>) {
    var w = codes
    var c = 0
    switch decode {
    case .nibbles:
        let table = _mm512_loadu_ps(lut)
        while c < block {
            let v = _mm512_loadu_si512(w)
            // Byte j of a lane holds K+j (low nibble) and K+j+4 (high nibble).
            _mm512_storeu_ps(buffer + 16 * c, _mm512_permutexvar_ps(v, table))
            _mm512_storeu_ps(buffer + 16 * (c + 1), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), table))
            _mm512_storeu_ps(buffer + 16 * (c + 2), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), table))
            _mm512_storeu_ps(buffer + 16 * (c + 3), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), table))
            _mm512_storeu_ps(buffer + 16 * (c + 4), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table))
            _mm512_storeu_ps(buffer + 16 * (c + 5), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), table))
            _mm512_storeu_ps(buffer + 16 * (c + 6), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), table))
            _mm512_storeu_ps(buffer + 16 * (c + 7), _mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), table))
            w += 64
            c += 8
        }
    case .bytes:
        let byteMask = _mm512_set1_epi32(0xFF), zeros = _mm512_set1_epi32(zero)
        while c < block {
            let v = _mm512_loadu_si512(w)
            _mm512_storeu_ps(buffer + 16 * c, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(v, byteMask), zeros)))
            _mm512_storeu_ps(buffer + 16 * (c + 1),
                             _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 8), byteMask), zeros)))
            _mm512_storeu_ps(buffer + 16 * (c + 2),
                             _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(v, 16), byteMask), zeros)))
            _mm512_storeu_ps(buffer + 16 * (c + 3), _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(v, 24), zeros)))
            w += 64
            c += 4
        }
    case .halves:
        while c < block {
            _mm512_storeu_ps(buffer + 16 * c, _mm512_cvtph_ps(_mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self))))
            w += 32
            c += 1
        }
    }
}

/// `rows` (1...3) activation rows times 2 decoded panels over one block, finished into out.
@inline(__always)
private func tileRows(_ rows: Int, _ values: UnsafePointer<Float>, _ block: Int, _ scales: UnsafePointer<Float>, _ panelScales: Int,
                      _ mins: UnsafePointer<Float>?, _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                      _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var a0 = Chains(), a1 = Chains(), b0 = Chains(), b1 = Chains(), c0 = Chains(), c1 = Chains()  // row a/b/c, panel 0/1
    let x0 = x, x1 = x + ldx, x2 = x + 2 * ldx
    let second = values + 16 * block
    var k = 0
    while k < block {
        var j = 0
        while j < 4 {
            let w0 = _mm512_loadu_ps(values + 16 * (k + j)), w1 = _mm512_loadu_ps(second + 16 * (k + j))
            a0.add(w0, x0[k + j], chain: j); a1.add(w1, x0[k + j], chain: j)
            if rows > 1 { b0.add(w0, x1[k + j], chain: j); b1.add(w1, x1[k + j], chain: j) }
            if rows > 2 { c0.add(w0, x2[k + j], chain: j); c1.add(w1, x2[k + j], chain: j) }
            j += 1
        }
        k += 4
    }
    @inline(__always) func finish(_ p0: Chains, _ p1: Chains, _ row: Int) {
        let o = out + row * ldo, sum = xSum[row * ldb]
        let m1: UnsafePointer<Float>? = mins == nil ? nil : mins! + panelScales
        _mm512_storeu_ps(o, finishFloat(_mm512_loadu_ps(o), p0.sum, _mm512_loadu_ps(scales), mins, sum))
        _mm512_storeu_ps(o + 16, finishFloat(_mm512_loadu_ps(o + 16), p1.sum, _mm512_loadu_ps(scales + panelScales), m1, sum))
    }
    finish(a0, a1, 0)
    if rows > 1 { finish(b0, b1, 1) }
    if rows > 2 { finish(c0, c1, 2) }
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
    var b = 0
    while b < blocks {
        decodeBlock(decode, codes + b * blockBytes, block, zero, lut, into: buffer)
        decodeBlock(decode, codes + panelBytes + b * blockBytes, block, zero, lut, into: buffer + 16 * block)
        let s = scales + b * 16
        let mb: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        var m = 0
        while m < rows {
            let xm = x + m * ldx + b * block, sums = xSum + m * ldb + b, o = out + m * ldo
            switch rows - m {
            case 1: tileRows(1, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            case 2: tileRows(2, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            default: tileRows(3, buffer, block, s, panelScales, mb, xm, ldx, sums, ldb, o, ldo)
            }
            m += 3
        }
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
