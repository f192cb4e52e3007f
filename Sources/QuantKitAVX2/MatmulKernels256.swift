import _Builtin_intrinsics.intel

// AVX2 panel kernels for the fused matmul (contracts: QuantKit/Matmul/MatmulKernels.swift; layout:
// QuantKit/Matmul/PackedMatrix.swift). A 16-row panel is done as two halves of 8 rows (one ymm
// lane per row), so every lane does exactly the AVX-512 kernel's arithmetic. This file is also
// compiled into QuantKitAVX2VNNI (a symlink) with AVXVNNI defined: there the integer dot products
// are vpdpbusd instead of vpmaddubsw + vpmaddwd, and only the integer kernels are built.
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.

@inline(__always) private func broadcast4(_ x: UnsafePointer<Int8>, _ offset: Int) -> __m256i {
    _mm256_set1_epi32(UnsafeRawPointer(x).loadUnaligned(fromByteOffset: offset, as: Int32.self))
}

#if AVXVNNI
/// d + the dot products of 4 unsigned code bytes with 4 signed activation bytes, per lane.
@inline(__always) private func dotNibbles(_ d: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i { _mm256_dpbusd_avx_epi32(d, u, x) }
@inline(__always) private func dotBytes(_ d: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i { _mm256_dpbusd_avx_epi32(d, u, x) }
#else
/// vpmaddubsw saturates at 16 bits: exact for codes up to 15 (15 * 127 * 2 < 32767).
@inline(__always) private func dotNibbles(_ d: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i {
    _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1)))
}
/// Byte codes go through their two nibbles (u = low + 16 * high) so that no pair saturates.
@inline(__always) private func dotBytes(_ d: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i {
    let mask = _mm256_set1_epi8(0x0F)
    let lo = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(u, mask), x), _mm256_set1_epi16(1))
    let hi = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(u, 4), mask), x), _mm256_set1_epi16(16))
    return _mm256_add_epi32(d, _mm256_add_epi32(lo, hi))
}
#endif

/// acc + float(dot - zero * sum) * (scale * sx)  (+ min * (sx * sum))
@inline(__always) private func finishInt(_ acc: __m256, _ dot: __m256i, _ scale: __m256, _ mins: UnsafePointer<Float>?,
                                         _ zero: Int32, _ sx: Float, _ sum: Int32) -> __m256 {
    var d = dot
    if zero != 0 { d = _mm256_sub_epi32(d, _mm256_set1_epi32(zero &* sum)) }
    var a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(scale, _mm256_set1_ps(sx)), acc)
    if let mins { a = _mm256_fmadd_ps(_mm256_loadu_ps(mins), _mm256_set1_ps(sx * Float(Int(sum))), a) }
    return a
}

// MARK: - int8 activations

/// Rows 8h..8h+7 of the panel for up to 4 activation rows.
@inline(__always)
private func intRows(_ rows: Int, nibbles: Bool, half h: Int, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>,
                     _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                     _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let mask = _mm256_set1_epi8(0x0F)
    var a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    var w = codes + 32 * h
    var b = 0
    while b < blocks {
        var d0 = _mm256_setzero_si256(), d1 = d0, d2 = d0, d3 = d0
        var o = b * block
        let end = o + block
        if nibbles {
            while o < end {
                let v = _mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self))
                let lo = _mm256_and_si256(v, mask)
                let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask)
                d0 = dotNibbles(dotNibbles(d0, lo, broadcast4(x0, o)), hi, broadcast4(x0, o + 4))
                if rows > 1 { d1 = dotNibbles(dotNibbles(d1, lo, broadcast4(x1, o)), hi, broadcast4(x1, o + 4)) }
                if rows > 2 { d2 = dotNibbles(dotNibbles(d2, lo, broadcast4(x2, o)), hi, broadcast4(x2, o + 4)) }
                if rows > 3 { d3 = dotNibbles(dotNibbles(d3, lo, broadcast4(x3, o)), hi, broadcast4(x3, o + 4)) }
                w += 64
                o += 8
            }
        } else {
            while o < end {
                let v = _mm256_loadu_si256(w.assumingMemoryBound(to: __m256i_u.self))
                d0 = dotBytes(d0, v, broadcast4(x0, o))
                if rows > 1 { d1 = dotBytes(d1, v, broadcast4(x1, o)) }
                if rows > 2 { d2 = dotBytes(d2, v, broadcast4(x2, o)) }
                if rows > 3 { d3 = dotBytes(d3, v, broadcast4(x3, o)) }
                w += 64
                o += 4
            }
        }
        let s = _mm256_loadu_ps(scales + b * 16 + 8 * h)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16 + 8 * h
        a0 = finishInt(a0, d0, s, m, zero, xScale[b], xSum[b])
        if rows > 1 { a1 = finishInt(a1, d1, s, m, zero, xScale[ldb + b], xSum[ldb + b]) }
        if rows > 2 { a2 = finishInt(a2, d2, s, m, zero, xScale[2 * ldb + b], xSum[2 * ldb + b]) }
        if rows > 3 { a3 = finishInt(a3, d3, s, m, zero, xScale[3 * ldb + b], xSum[3 * ldb + b]) }
        b += 1
    }
    let o = out + 8 * h
    _mm256_storeu_ps(o, a0)
    if rows > 1 { _mm256_storeu_ps(o + ldo, a1) }
    if rows > 2 { _mm256_storeu_ps(o + 2 * ldo, a2) }
    if rows > 3 { _mm256_storeu_ps(o + 3 * ldo, a3) }
}

@inline(__always)
private func intPanel(nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                      _ blocks: Int, _ block: Int, _ zero: Int32,
                      _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                      _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let x = xq + m * ldx, s = xScale + m * ldb, q = xSum + m * ldb, o = out + m * ldo
        var h = 0
        while h < 2 {
            switch rows - m {
            case 1: intRows(1, nibbles: nibbles, half: h, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
            case 2: intRows(2, nibbles: nibbles, half: h, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
            case 3: intRows(3, nibbles: nibbles, half: h, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
            default: intRows(4, nibbles: nibbles, half: h, codes, scales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
            }
            h += 1
        }
        m += 4
    }
}

#if AVXVNNI
public func avxvnniIntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32,
                              _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avxvnniIntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32,
                            _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}
#else
public func avx2IntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                           _ blocks: Int, _ block: Int, _ zero: Int32,
                           _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                           _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avx2IntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                         _ blocks: Int, _ block: Int, _ zero: Int32,
                         _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                         _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

// MARK: - float activations

private enum Decode { case nibbles, bytes, halves }

@inline(__always) private func accumulate(_ rows: Int, _ w: __m256, _ k: Int, _ x0: UnsafePointer<Float>, _ x1: UnsafePointer<Float>,
                                          _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>,
                                          _ p0: inout __m256, _ p1: inout __m256, _ p2: inout __m256, _ p3: inout __m256) {
    p0 = _mm256_fmadd_ps(w, _mm256_set1_ps(x0[k]), p0)
    if rows > 1 { p1 = _mm256_fmadd_ps(w, _mm256_set1_ps(x1[k]), p1) }
    if rows > 2 { p2 = _mm256_fmadd_ps(w, _mm256_set1_ps(x2[k]), p2) }
    if rows > 3 { p3 = _mm256_fmadd_ps(w, _mm256_set1_ps(x3[k]), p3) }
}

/// lut[index & 15] per lane: two 8-entry permutes, picked by bit 3.
@inline(__always) private func lookup(_ index: __m256i, _ low: __m256, _ high: __m256) -> __m256 {
    let pick = _mm256_castsi256_ps(_mm256_slli_epi32(index, 28))
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, index), _mm256_permutevar8x32_ps(high, index), pick)
}

@inline(__always)
private func floatRows(_ rows: Int, _ decode: Decode, half h: Int, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>,
                       _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                       _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                       _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let low = _mm256_loadu_ps(lut), high = _mm256_loadu_ps(lut + 8)
    let byteMask = _mm256_set1_epi32(0xFF)
    let zeros = _mm256_set1_epi32(zero)
    var a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
    let x0 = x, x1 = x + ldx, x2 = x + 2 * ldx, x3 = x + 3 * ldx
    var w = codes
    var b = 0
    while b < blocks {
        var p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0
        var k = b * block
        let end = k + block
        switch decode {
        case .nibbles:
            while k < end {
                let v = _mm256_loadu_si256((w + 32 * h).assumingMemoryBound(to: __m256i_u.self))
                accumulate(rows, lookup(v, low, high), k, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 8), low, high), k + 1, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 16), low, high), k + 2, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 24), low, high), k + 3, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 4), low, high), k + 4, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 12), low, high), k + 5, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 20), low, high), k + 6, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, lookup(_mm256_srli_epi32(v, 28), low, high), k + 7, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 64
                k += 8
            }
        case .bytes:
            while k < end {
                let v = _mm256_loadu_si256((w + 32 * h).assumingMemoryBound(to: __m256i_u.self))
                var j = 0
                while j < 4 {
                    let code = _mm256_and_si256(_mm256_srli_epi32(v, Int32(8 * j)), byteMask)
                    accumulate(rows, _mm256_cvtepi32_ps(_mm256_sub_epi32(code, zeros)), k + j, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                    j += 1
                }
                w += 64
                k += 4
            }
        case .halves:
            while k < end {
                let halves = _mm_loadu_si128((w + 16 * h).assumingMemoryBound(to: __m128i_u.self))
                accumulate(rows, _mm256_cvtph_ps(halves), k, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 32
                k += 1
            }
        }
        let s = _mm256_loadu_ps(scales + b * 16 + 8 * h)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16 + 8 * h
        a0 = finishFloat(a0, p0, s, m, xSum[b])
        if rows > 1 { a1 = finishFloat(a1, p1, s, m, xSum[ldb + b]) }
        if rows > 2 { a2 = finishFloat(a2, p2, s, m, xSum[2 * ldb + b]) }
        if rows > 3 { a3 = finishFloat(a3, p3, s, m, xSum[3 * ldb + b]) }
        b += 1
    }
    let o = out + 8 * h
    _mm256_storeu_ps(o, a0)
    if rows > 1 { _mm256_storeu_ps(o + ldo, a1) }
    if rows > 2 { _mm256_storeu_ps(o + 2 * ldo, a2) }
    if rows > 3 { _mm256_storeu_ps(o + 3 * ldo, a3) }
}

/// acc + partial * scale  (+ min * xSum)
@inline(__always) private func finishFloat(_ acc: __m256, _ partial: __m256, _ scale: __m256, _ mins: UnsafePointer<Float>?,
                                           _ sum: Float) -> __m256 {
    var a = _mm256_fmadd_ps(partial, scale, acc)
    if let mins { a = _mm256_fmadd_ps(_mm256_loadu_ps(mins), _mm256_set1_ps(sum), a) }
    return a
}

@inline(__always)
private func floatPanel(_ decode: Decode, _ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                        _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                        _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                        _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let xm = x + m * ldx, s = xSum + m * ldb, o = out + m * ldo
        var h = 0
        while h < 2 {
            switch rows - m {
            case 1: floatRows(1, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            case 2: floatRows(2, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            case 3: floatRows(3, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            default: floatRows(4, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            }
            h += 1
        }
        m += 4
    }
}

public func avx2FloatNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                             _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                             _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                             _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.nibbles, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}

public func avx2FloatBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                           _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                           _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                           _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.bytes, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}

public func avx2FloatHalves(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                            _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    floatPanel(.halves, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
}
#endif
