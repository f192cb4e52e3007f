import _Builtin_intrinsics.intel

// AVX-512 + VNNI panel kernels for the fused matmul (contracts: QuantKit/Matmul/MatmulKernels.swift;
// layout: QuantKit/Matmul/PackedMatrix.swift). One zmm lane per output row of the 16-row panel.
// Rows of activations are processed up to 4 at a time: each wrapper calls an always-inlined body
// with a constant row count, so the unused rows compile away. Module rules (DESIGN.md): intrinsics,
// while loops and plain scalar code only, no generic stdlib calls.

@inline(__always) private func broadcast4(_ x: UnsafePointer<Int8>, _ offset: Int) -> __m512i {
    _mm512_set1_epi32(UnsafeRawPointer(x).loadUnaligned(fromByteOffset: offset, as: Int32.self))
}

/// acc + float(dot - zero * sum) * (scale * sx)  (+ min * (sx * sum))
@inline(__always) private func finishInt(_ acc: __m512, _ dot: __m512i, _ scale: __m512, _ mins: UnsafePointer<Float>?,
                                         _ zero: Int32, _ sx: Float, _ sum: Int32) -> __m512 {
    var d = dot
    if zero != 0 { d = _mm512_sub_epi32(d, _mm512_set1_epi32(zero &* sum)) }
    var a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(scale, _mm512_set1_ps(sx)), acc)
    if let mins { a = _mm512_fmadd_ps(_mm512_loadu_ps(mins), _mm512_set1_ps(sx * Float(Int(sum))), a) }
    return a
}

/// acc + partial * scale  (+ min * xSum)
@inline(__always) private func finishFloat(_ acc: __m512, _ partial: __m512, _ scale: __m512, _ mins: UnsafePointer<Float>?,
                                           _ sum: Float) -> __m512 {
    var a = _mm512_fmadd_ps(partial, scale, acc)
    if let mins { a = _mm512_fmadd_ps(_mm512_loadu_ps(mins), _mm512_set1_ps(sum), a) }
    return a
}

// MARK: - int8 activations

@inline(__always)
private func intRows(_ rows: Int, nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                     _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                     _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let mask = _mm512_set1_epi8(0x0F)
    var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    var w = codes
    var b = 0
    while b < blocks {
        var d0 = _mm512_setzero_si512(), d1 = d0, d2 = d0, d3 = d0
        var o = b * block
        let end = o + block
        if nibbles {
            while o < end {
                let v = _mm512_loadu_si512(w)
                let lo = _mm512_and_si512(v, mask)
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask)
                d0 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d0, lo, broadcast4(x0, o)), hi, broadcast4(x0, o + 4))
                if rows > 1 { d1 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d1, lo, broadcast4(x1, o)), hi, broadcast4(x1, o + 4)) }
                if rows > 2 { d2 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d2, lo, broadcast4(x2, o)), hi, broadcast4(x2, o + 4)) }
                if rows > 3 { d3 = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(d3, lo, broadcast4(x3, o)), hi, broadcast4(x3, o + 4)) }
                w += 64
                o += 8
            }
        } else {
            while o < end {
                let v = _mm512_loadu_si512(w)
                d0 = _mm512_dpbusd_epi32(d0, v, broadcast4(x0, o))
                if rows > 1 { d1 = _mm512_dpbusd_epi32(d1, v, broadcast4(x1, o)) }
                if rows > 2 { d2 = _mm512_dpbusd_epi32(d2, v, broadcast4(x2, o)) }
                if rows > 3 { d3 = _mm512_dpbusd_epi32(d3, v, broadcast4(x3, o)) }
                w += 64
                o += 4
            }
        }
        let s = _mm512_loadu_ps(scales + b * 16)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        a0 = finishInt(a0, d0, s, m, zero, xScale[b], xSum[b])
        if rows > 1 { a1 = finishInt(a1, d1, s, m, zero, xScale[ldb + b], xSum[ldb + b]) }
        if rows > 2 { a2 = finishInt(a2, d2, s, m, zero, xScale[2 * ldb + b], xSum[2 * ldb + b]) }
        if rows > 3 { a3 = finishInt(a3, d3, s, m, zero, xScale[3 * ldb + b], xSum[3 * ldb + b]) }
        b += 1
    }
    _mm512_storeu_ps(out, a0)
    if rows > 1 { _mm512_storeu_ps(out + ldo, a1) }
    if rows > 2 { _mm512_storeu_ps(out + 2 * ldo, a2) }
    if rows > 3 { _mm512_storeu_ps(out + 3 * ldo, a3) }
}

@inline(__always)
private func intPanel(nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                      _ blocks: Int, _ block: Int, _ zero: Int32,
                      _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                      _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let x = xq + m * ldx, s = xScale + m * ldb, q = xSum + m * ldb, o = out + m * ldo
        switch rows - m {
        case 1: intRows(1, nibbles: nibbles, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        case 2: intRows(2, nibbles: nibbles, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        case 3: intRows(3, nibbles: nibbles, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        default: intRows(4, nibbles: nibbles, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        }
        m += 4
    }
}

public func vnni512IntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32,
                              _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func vnni512IntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32,
                            _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

// MARK: - float activations

/// The three code widths of the float kernels.
private enum Decode { case nibbles, bytes, halves }

@inline(__always) private func accumulate(_ rows: Int, _ w: __m512, _ k: Int, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                                          _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>,
                                          _ p0: inout __m512, _ p1: inout __m512, _ p2: inout __m512, _ p3: inout __m512) {
    p0 = _mm512_fmadd_ps(w, _mm512_set1_ps(x0[k]), p0)
    if rows > 1 { p1 = _mm512_fmadd_ps(w, _mm512_set1_ps(x1[k]), p1) }
    if rows > 2 { p2 = _mm512_fmadd_ps(w, _mm512_set1_ps(x2[k]), p2) }
    if rows > 3 { p3 = _mm512_fmadd_ps(w, _mm512_set1_ps(x3[k]), p3) }
}

@inline(__always)
private func floatRows(_ rows: Int, _ decode: Decode, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                       _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                       _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let table = _mm512_loadu_ps(lut)
    let byteMask = _mm512_set1_epi32(0xFF)
    let zeros = _mm512_set1_epi32(zero)
    var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
    let x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx
    var w = codes
    var b = 0
    while b < blocks {
        var p0 = _mm512_setzero_ps(), p1 = p0, p2 = p0, p3 = p0
        var k = b * block
        let end = k + block
        switch decode {
        case .nibbles:
            while k < end {
                let v = _mm512_loadu_si512(w)
                // Byte j of a lane holds K+j (low nibble) and K+j+4 (high nibble); vpermps reads
                // the low 4 bits of each lane.
                accumulate(rows, _mm512_permutexvar_ps(v, table), k, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), table), k + 1, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), table), k + 2, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), table), k + 3, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table), k + 4, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), table), k + 5, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), table), k + 6, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), table), k + 7, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 64
                k += 8
            }
        case .bytes:
            while k < end {
                let v = _mm512_loadu_si512(w)
                var j = 0
                while j < 4 {
                    let code = _mm512_and_si512(_mm512_srli_epi32(v, UInt32(8 * j)), byteMask)
                    accumulate(rows, _mm512_cvtepi32_ps(_mm512_sub_epi32(code, zeros)), k + j, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                    j += 1
                }
                w += 64
                k += 4
            }
        case .halves:
            while k < end {
                let h = _mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self))
                accumulate(rows, _mm512_cvtph_ps(h), k, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 32
                k += 1
            }
        }
        let s = _mm512_loadu_ps(scales + b * 16)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        a0 = finishFloat(a0, p0, s, m, xSum[b])
        if rows > 1 { a1 = finishFloat(a1, p1, s, m, xSum[ldb + b]) }
        if rows > 2 { a2 = finishFloat(a2, p2, s, m, xSum[2 * ldb + b]) }
        if rows > 3 { a3 = finishFloat(a3, p3, s, m, xSum[3 * ldb + b]) }
        b += 1
    }
    _mm512_storeu_ps(out, a0)
    if rows > 1 { _mm512_storeu_ps(out + ldo, a1) }
    if rows > 2 { _mm512_storeu_ps(out + 2 * ldo, a2) }
    if rows > 3 { _mm512_storeu_ps(out + 3 * ldo, a3) }
}

@inline(__always)
private func floatPanel(_ decode: Decode, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                        _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                        _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                        _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let xm = x + m * ldx, s = xSum + m * ldb, o = out + m * ldo
        switch rows - m {
        case 1: floatRows(1, decode, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
        case 2: floatRows(2, decode, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
        case 3: floatRows(3, decode, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
        default: floatRows(4, decode, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
        }
        m += 4
    }
}

public func vnni512FloatNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                                _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                                _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                                _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.nibbles, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}

public func vnni512FloatBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                              _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.bytes, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}

public func vnni512FloatHalves(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                               _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                               _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                               _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.halves, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}
