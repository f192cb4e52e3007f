import _Builtin_intrinsics.intel
import CQuantKit

// AVX-512 + VNNI panel kernels for the fused matmul (contracts: QuantKit/Matmul/MatmulKernels.swift;
// layout: QuantKit/Matmul/PackedMatrix.swift). One zmm lane per output row of the 16-row panel.
// Rows of activations are processed up to 4 at a time: each wrapper calls an always-inlined body
// with a constant row count, so the unused rows compile away. Module rules (DESIGN.md): intrinsics,
// while loops and plain scalar code only, no generic stdlib calls.
// K offsets in the inner loops wrap (&+), as in QuantKitAVX2/MatmulKernels256.swift: they stay below
// K, which packing validated; the checked form's add, compare and branch per offset had cost the AVX2
// GEMV 13-16% from L3. Not measured on AVX-512 hardware.

@inline(__always) func broadcast4(_ x: UnsafePointer<Int8>, _ offset: Int) -> __m512i {
    _mm512_set1_epi32(UnsafeRawPointer(x).loadUnaligned(fromByteOffset: offset, as: Int32.self))
}

/// How far ahead of the codes being read the kernels ask for the next ones. Without the hint a
/// single core streamed weights from DRAM at about 63% of a plain read loop; with it at 4 KiB, 90+%.
let codesAhead = 4096

/// Scales (and mins) are a second stream, one 64-byte line per panel and block: asked for 16 blocks ahead.
@inline(__always) func prefetchScales(_ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?, _ b: Int) {
    qk_prefetch(scales + (b + 16) * 16)
    if let mins { qk_prefetch(mins + (b + 16) * 16) }
}

/// The 16 scales of panel block b, held as fp32 or (`half`) as fp16, and a prefetch of those 16
/// blocks ahead (an fp16 line holds two blocks).
@inline(__always) func panelScales(_ scales: UnsafeRawPointer, half: Bool, _ mins: UnsafePointer<Float>?, _ b: Int) -> __m512 {
    if half {
        qk_prefetch(scales + (b + 16) * 32)
        return _mm512_cvtph_ps(_mm256_loadu_si256((scales + b * 32).assumingMemoryBound(to: __m256i_u.self)))
    }
    let floats = scales.assumingMemoryBound(to: Float.self)
    prefetchScales(floats, mins, b)
    return _mm512_loadu_ps(floats + b * 16)
}

/// acc + float(dot - zero * sum) * (scale * sx)  (+ min * (sx * sum))
@inline(__always) func finishInt(_ acc: __m512, _ dot: __m512i, _ scale: __m512, _ mins: UnsafePointer<Float>?,
                                 _ zero: Int32, _ sx: Float, _ sum: Int32) -> __m512 {
    var d = dot
    if zero != 0 { d = _mm512_sub_epi32(d, _mm512_set1_epi32(zero &* sum)) }
    var a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_mul_ps(scale, _mm512_set1_ps(sx)), acc)
    if let mins { a = _mm512_fmadd_ps(_mm512_loadu_ps(mins), _mm512_set1_ps(sx * Float(Int(sum))), a) }
    return a
}

/// acc + partial * scale  (+ min * xSum)
@inline(__always) func finishFloat(_ acc: __m512, _ partial: __m512, _ scale: __m512, _ mins: UnsafePointer<Float>?,
                                   _ sum: Float) -> __m512 {
    var a = _mm512_fmadd_ps(partial, scale, acc)
    if let mins { a = _mm512_fmadd_ps(_mm512_loadu_ps(mins), _mm512_set1_ps(sum), a) }
    return a
}

// MARK: - int8 activations

@inline(__always)
private func intRows(_ rows: Int, nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafeRawPointer, half: Bool, _ mins: UnsafePointer<Float>?,
                     _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                     _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let mask = _mm512_set1_epi8(0x0F)
    var a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0
    let x0 = xq, x1 = xq + ldx, x2 = xq + 2 * ldx, x3 = xq + 3 * ldx
    var w = codes
    var b = 0
    while b < blocks {
        // Two accumulators per row (low and high nibbles) keep the vpdpbusd latency chains short;
        // a single row also splits even and odd groups. Integer sums: the order does not matter.
        let zero512 = _mm512_setzero_si512()
        var d0 = zero512, d1 = zero512, d2 = zero512, d3 = zero512
        var e0 = zero512, e1 = zero512, e2 = zero512, e3 = zero512
        var f0 = zero512, g0 = zero512
        var o = b * block
        let end = o + block
        if nibbles {
            if rows == 1 {
                while o &+ 16 <= end {
                    qk_prefetch(w + codesAhead)
                    qk_prefetch(w + codesAhead + 64)
                    let v = _mm512_loadu_si512(w), u = _mm512_loadu_si512(w + 64)
                    d0 = _mm512_dpbusd_epi32(d0, _mm512_and_si512(v, mask), broadcast4(x0, o))
                    e0 = _mm512_dpbusd_epi32(e0, _mm512_and_si512(_mm512_srli_epi16(v, 4), mask), broadcast4(x0, o &+ 4))
                    f0 = _mm512_dpbusd_epi32(f0, _mm512_and_si512(u, mask), broadcast4(x0, o &+ 8))
                    g0 = _mm512_dpbusd_epi32(g0, _mm512_and_si512(_mm512_srli_epi16(u, 4), mask), broadcast4(x0, o &+ 12))
                    w += 128
                    o &+= 16
                }
            }
            while o < end {
                qk_prefetch(w + codesAhead)
                let v = _mm512_loadu_si512(w)
                let lo = _mm512_and_si512(v, mask)
                let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask)
                d0 = _mm512_dpbusd_epi32(d0, lo, broadcast4(x0, o))
                e0 = _mm512_dpbusd_epi32(e0, hi, broadcast4(x0, o &+ 4))
                if rows > 1 { d1 = _mm512_dpbusd_epi32(d1, lo, broadcast4(x1, o)); e1 = _mm512_dpbusd_epi32(e1, hi, broadcast4(x1, o &+ 4)) }
                if rows > 2 { d2 = _mm512_dpbusd_epi32(d2, lo, broadcast4(x2, o)); e2 = _mm512_dpbusd_epi32(e2, hi, broadcast4(x2, o &+ 4)) }
                if rows > 3 { d3 = _mm512_dpbusd_epi32(d3, lo, broadcast4(x3, o)); e3 = _mm512_dpbusd_epi32(e3, hi, broadcast4(x3, o &+ 4)) }
                w += 64
                o &+= 8
            }
        } else {
            if rows == 1 {
                while o &+ 8 <= end {
                    qk_prefetch(w + codesAhead)
                    qk_prefetch(w + codesAhead + 64)
                    d0 = _mm512_dpbusd_epi32(d0, _mm512_loadu_si512(w), broadcast4(x0, o))
                    e0 = _mm512_dpbusd_epi32(e0, _mm512_loadu_si512(w + 64), broadcast4(x0, o &+ 4))
                    w += 128
                    o &+= 8
                }
            }
            while o < end {
                qk_prefetch(w + codesAhead)
                let v = _mm512_loadu_si512(w)
                d0 = _mm512_dpbusd_epi32(d0, v, broadcast4(x0, o))
                if rows > 1 { d1 = _mm512_dpbusd_epi32(d1, v, broadcast4(x1, o)) }
                if rows > 2 { d2 = _mm512_dpbusd_epi32(d2, v, broadcast4(x2, o)) }
                if rows > 3 { d3 = _mm512_dpbusd_epi32(d3, v, broadcast4(x3, o)) }
                w += 64
                o &+= 4
            }
        }
        d0 = _mm512_add_epi32(_mm512_add_epi32(d0, e0), _mm512_add_epi32(f0, g0))
        d1 = _mm512_add_epi32(d1, e1)
        d2 = _mm512_add_epi32(d2, e2)
        d3 = _mm512_add_epi32(d3, e3)
        let s = panelScales(scales, half: half, mins, b)
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
private func intPanel(nibbles: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafeRawPointer, half: Bool, _ mins: UnsafePointer<Float>?,
                      _ blocks: Int, _ block: Int, _ zero: Int32,
                      _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                      _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let x = xq + m * ldx, s = xScale + m * ldb, q = xSum + m * ldb, o = out + m * ldo
        switch rows - m {
        case 1: intRows(1, nibbles: nibbles, codes, scales, half: half, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        case 2: intRows(2, nibbles: nibbles, codes, scales, half: half, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        case 3: intRows(3, nibbles: nibbles, codes, scales, half: half, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        default: intRows(4, nibbles: nibbles, codes, scales, half: half, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        }
        m += 4
    }
}

public func vnni512IntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32,
                              _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, half: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func vnni512IntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32,
                            _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, half: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func vnni512IntNibblesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                        _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                        _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, half: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func vnni512IntBytesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                      _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                      _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, half: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

// MARK: - float activations

/// The three code widths of the float kernels.
enum Decode { case nibbles, bytes, halves }

/// Four fused-multiply-add chains per row: chain j takes the K positions j, j+4, j+8, ... of a
/// block (the reference sums them as (c0 + c1) + (c2 + c3)).
struct Chains {
    var c0 = _mm512_setzero_ps(), c1 = _mm512_setzero_ps(), c2 = _mm512_setzero_ps(), c3 = _mm512_setzero_ps()

    @inline(__always) mutating func add(_ w: __m512, _ x: Float, chain: Int) {
        let xv = _mm512_set1_ps(x)
        switch chain {
        case 0: c0 = _mm512_fmadd_ps(w, xv, c0)
        case 1: c1 = _mm512_fmadd_ps(w, xv, c1)
        case 2: c2 = _mm512_fmadd_ps(w, xv, c2)
        default: c3 = _mm512_fmadd_ps(w, xv, c3)
        }
    }

    @inline(__always) var sum: __m512 { _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)) }
}

@inline(__always) private func accumulate(_ rows: Int, _ w: __m512, _ k: Int, chain: Int, _ x0: UnsafePointer<Float>,
                                          _ x1: UnsafePointer<Float>, _ x2: UnsafePointer<Float>, _ x3: UnsafePointer<Float>,
                                          _ p0: inout Chains, _ p1: inout Chains, _ p2: inout Chains, _ p3: inout Chains) {
    p0.add(w, x0[k], chain: chain)
    if rows > 1 { p1.add(w, x1[k], chain: chain) }
    if rows > 2 { p2.add(w, x2[k], chain: chain) }
    if rows > 3 { p3.add(w, x3[k], chain: chain) }
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
        var p0 = Chains(), p1 = Chains(), p2 = Chains(), p3 = Chains()
        var k = b * block
        let end = k + block
        switch decode {
        case .nibbles:
            while k < end {
                qk_prefetch(w + codesAhead)
                let v = _mm512_loadu_si512(w)
                // Byte j of a lane holds K+j (low nibble) and K+j+4 (high nibble); vpermps reads
                // the low 4 bits of each lane.
                accumulate(rows, _mm512_permutexvar_ps(v, table), k, chain: 0, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 8), table), k &+ 1, chain: 1, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 16), table), k &+ 2, chain: 2, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 24), table), k &+ 3, chain: 3, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table), k &+ 4, chain: 0, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 12), table), k &+ 5, chain: 1, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 20), table), k &+ 6, chain: 2, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 28), table), k &+ 7, chain: 3, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 64
                k &+= 8
            }
        case .bytes:
            while k < end {
                qk_prefetch(w + codesAhead)
                let v = _mm512_loadu_si512(w)
                let c0 = _mm512_and_si512(v, byteMask), c1 = _mm512_and_si512(_mm512_srli_epi32(v, 8), byteMask)
                let c2 = _mm512_and_si512(_mm512_srli_epi32(v, 16), byteMask), c3 = _mm512_srli_epi32(v, 24)
                accumulate(rows, _mm512_cvtepi32_ps(_mm512_sub_epi32(c0, zeros)), k, chain: 0, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_cvtepi32_ps(_mm512_sub_epi32(c1, zeros)), k &+ 1, chain: 1, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_cvtepi32_ps(_mm512_sub_epi32(c2, zeros)), k &+ 2, chain: 2, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                accumulate(rows, _mm512_cvtepi32_ps(_mm512_sub_epi32(c3, zeros)), k &+ 3, chain: 3, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                w += 64
                k &+= 4
            }
        case .halves:
            while k < end {
                qk_prefetch(w + codesAhead)
                qk_prefetch(w + codesAhead + 64)
                var j = 0
                while j < 4 {
                    let h = _mm256_loadu_si256((w + 32 * j).assumingMemoryBound(to: __m256i_u.self))
                    accumulate(rows, _mm512_cvtph_ps(h), k &+ j, chain: j, x0, x1, x2, x3, &p0, &p1, &p2, &p3)
                    j &+= 1
                }
                w += 128
                k += 4
            }
        }
        prefetchScales(scales, mins, b)
        let s = _mm512_loadu_ps(scales + b * 16)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        a0 = finishFloat(a0, p0.sum, s, m, xSum[b])
        if rows > 1 { a1 = finishFloat(a1, p1.sum, s, m, xSum[ldb + b]) }
        if rows > 2 { a2 = finishFloat(a2, p2.sum, s, m, xSum[2 * ldb + b]) }
        if rows > 3 { a3 = finishFloat(a3, p3.sum, s, m, xSum[3 * ldb + b]) }
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
