import _Builtin_intrinsics.intel
import CQuantKit

// AVX2 panel kernels for the fused matmul (contracts: QuantKit/Matmul/MatmulKernels.swift; layout:
// QuantKit/Matmul/PackedMatrix.swift). A 16-row panel is done as two halves of 8 rows (one ymm
// lane per row), so every lane does exactly the AVX-512 kernel's arithmetic. This file is also
// compiled into QuantKitAVX2VNNI (a symlink) with AVXVNNI defined: there the integer dot products
// are vpdpbusd instead of vpmaddubsw + vpmaddwd, and only the integer kernels are built.
// Module rules (DESIGN.md): intrinsics, while loops and plain scalar code only.
// K offsets in the inner loops wrap (&+): they stay below K, which packing validated, and the
// checked form costs a move and a branch on overflow each; without them an M = 1 GEMV from L3
// ran 13-16% faster (int8 nibbles and float, AMD EPYC Zen 3, 1 thread).

/// Prefetch distances: see QuantKitVNNI512/MatmulKernels512.swift. The second half-panel pass
/// re-reads lines the first one fetched, so its hints are cheap no-ops.
private let codesAhead = 4096
#if AVXVNNI
private let nibbleCodesAhead = codesAhead
#else
/// The plain AVX2 int8 nibble kernels (decode) ask for codes half as far ahead: on an AMD EPYC
/// (Zen 3, 1 thread) INT4 decode from DRAM (16 layers of 4096 x 4096) read 2-14% more GB/s at
/// block 32 and 9-12% more at block 128 (medians of three sets of 4-6 interleaved rounds), and
/// the same at 2 threads. The byte kernels keep 4 KiB: W8A8 at M = 1 took 10-25% longer with
/// 2 KiB. Not measured on an AVX-VNNI machine, which keeps 4 KiB.
private let nibbleCodesAhead = 2048
#endif

@inline(__always) private func prefetchScales(_ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?, _ b: Int) {
    qk_prefetch(scales + (b + 16) * 16)
    if let mins { qk_prefetch(mins + (b + 16) * 16) }
}

@inline(__always) func broadcast4(_ x: UnsafePointer<Int8>, _ offset: Int) -> __m256i {
    _mm256_set1_epi32(UnsafeRawPointer(x).loadUnaligned(fromByteOffset: offset, as: Int32.self))
}

// Integer dot products of unsigned codes with signed int8 activations, 4 bytes per lane.
// Nibble products (`addNibbles`) go into partial sums of at most `nibbleProductsPerRun` products
// each, which `flushNibbles` adds to the int32 sums (.max: the partial sums are those sums); byte
// codes go in as the `byteOperands` of their loaded vector, and the finish then takes
// `zero - byteZeroShift` as their zero point.

/// A vector of byte codes as the byte dot products take it.
typealias ByteOperands = (codes: __m256i, magnitudes: __m256i)

#if AVXVNNI
/// vpdpbusd sums into int32 exactly: the partial sums are int32 and a run is a whole block.
let nibbleProductsPerRun = Int.max
@inline(__always) func addNibbles(_ p: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i { _mm256_dpbusd_avx_epi32(p, u, x) }
@inline(__always) func flushNibbles(_ d: __m256i, _ p: __m256i) -> __m256i { _mm256_add_epi32(d, p) }
@inline(__always) func byteOperands(_ v: __m256i) -> ByteOperands { (v, v) }
@inline(__always) func dotBytes(_ d: __m256i, _ v: ByteOperands, _ x: __m256i) -> __m256i {
    _mm256_dpbusd_avx_epi32(d, v.codes, x)
}
let byteZeroShift: Int32 = 0
#else
/// vpmaddubsw (unsigned x signed bytes to int16 pairs, saturating) is exact on nibble codes: a
/// pair is at most 2 * 15 * 127 = 3810 in magnitude, so 8 of them add up in int16 without
/// wrapping (30480 < 32767); one vpmaddwd per run widens them, keeping it (the same ports as
/// vpmaddubsw) out of the inner loop.
let nibbleProductsPerRun = 8
@inline(__always) func addNibbles(_ p: __m256i, _ u: __m256i, _ x: __m256i) -> __m256i {
    _mm256_add_epi16(p, _mm256_maddubs_epi16(u, x))
}
@inline(__always) func flushNibbles(_ d: __m256i, _ p: __m256i) -> __m256i { _mm256_add_epi32(d, _mm256_madd_epi16(p, _mm256_set1_epi16(1))) }
/// Byte codes (0...255) would saturate a pair (2 * 255 * 127), so they are taken as signed
/// s = code - 128: vpmaddubsw(|s|, x with the sign of s) is exact (pairs at most 2 * 128 * 127 =
/// 32512), and dot(code, x) - zero * sum(x) = dot(s, x) - (zero - 128) * sum(x) in the same
/// wrapping int32 arithmetic.
@inline(__always) func byteOperands(_ v: __m256i) -> ByteOperands {
    let s = _mm256_xor_si256(v, _mm256_set1_epi8(-128))
    return (s, _mm256_abs_epi8(s))
}
@inline(__always) func dotBytes(_ d: __m256i, _ v: ByteOperands, _ x: __m256i) -> __m256i {
    _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(v.magnitudes, _mm256_sign_epi8(x, v.codes)), _mm256_set1_epi16(1)))
}
let byteZeroShift: Int32 = 128
#endif

/// Byte codes of at most 128 (PackedMatrix.narrowBytes: 7-bit weights) go in as they are: a pair
/// of their products with int8 activations (at most 127 in magnitude: ActivationKernel) is at most
/// 2 * 128 * 127 = 32512, so vpmaddubsw is exact without the sign transfer, 3 instructions per 32
/// products instead of 4 (ONNX Runtime's u8 x s8 form, which saturates on full-range int8
/// weights). With VNNI, vpdpbusd takes any code.
@inline(__always) func byteOperands(_ v: __m256i, narrow: Bool) -> ByteOperands { narrow ? (v, v) : byteOperands(v) }
@inline(__always) func dotBytes(_ d: __m256i, _ v: ByteOperands, _ x: __m256i, narrow: Bool) -> __m256i {
#if AVXVNNI
    dotBytes(d, v, x)
#else
    narrow ? _mm256_add_epi32(d, _mm256_madd_epi16(_mm256_maddubs_epi16(v.codes, x), _mm256_set1_epi16(1))) : dotBytes(d, v, x)
#endif
}
/// The zero-point shift of byte codes as byteOperands(_:narrow:) takes them.
@inline(__always) func byteZeroShift(narrow: Bool) -> Int32 { narrow ? 0 : byteZeroShift }

/// Scales 8h..8h+7 of panel block b, held as fp32 or (`halfScales`) as fp16, and a prefetch of
/// those 16 blocks ahead (an fp16 line holds two blocks).
@inline(__always) private func panelScales(_ scales: UnsafeRawPointer, halfScales: Bool, _ mins: UnsafePointer<Float>?, _ b: Int,
                                           _ h: Int) -> __m256 {
    if halfScales {
        qk_prefetch(scales + (b + 16) * 32)
        return _mm256_cvtph_ps(_mm_loadu_si128((scales + b * 32 + 16 * h).assumingMemoryBound(to: __m128i_u.self)))
    }
    let floats = scales.assumingMemoryBound(to: Float.self)
    prefetchScales(floats, mins, b)
    return _mm256_loadu_ps(floats + b * 16 + 8 * h)
}

/// acc + float(dot - zero * sum) * (scale * sx)  (+ min * (sx * sum))
@inline(__always) func finishInt(_ acc: __m256, _ dot: __m256i, _ scale: __m256, _ mins: UnsafePointer<Float>?,
                                 _ zero: Int32, _ sx: Float, _ sum: Int32) -> __m256 {
    var d = dot
    if zero != 0 { d = _mm256_sub_epi32(d, _mm256_set1_epi32(zero &* sum)) }
    var a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(scale, _mm256_set1_ps(sx)), acc)
    if let mins { a = _mm256_fmadd_ps(_mm256_loadu_ps(mins), _mm256_set1_ps(sx * Float(Int(sum))), a) }
    return a
}

/// One activation row's int32 dot products with the two halves of a panel (the int8 tile kernels).
struct HalfDots {
    var d0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256()

    /// out[h] = finishInt(out[h], dots of half h): the reference's per-block step.
    @inline(__always) func finish(_ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?, _ zero: Int32, _ sx: Float, _ sum: Int32,
                                  _ out: UnsafeMutablePointer<Float>) {
        _mm256_storeu_ps(out, finishInt(_mm256_loadu_ps(out), d0, _mm256_loadu_ps(scales), mins, zero, sx, sum))
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + 8
        _mm256_storeu_ps(out + 8, finishInt(_mm256_loadu_ps(out + 8), d1, _mm256_loadu_ps(scales + 8), m, zero, sx, sum))
    }

    /// Adds a run's nibble partial sums (see flushNibbles).
    @inline(__always) mutating func flush(_ p: HalfDots) {
        d0 = flushNibbles(d0, p.d0)
        d1 = flushNibbles(d1, p.d1)
    }
}

// MARK: - int8 activations

/// One activation row's int32 sums with both halves of a panel: d (low nibbles, or the even steps
/// of byte codes) and e (high nibbles, or the odd steps), so that vpdpbusd runs four independent
/// chains per row. With int16 partial sums (plain AVX2) a partial takes both nibbles in d.
private struct RowSums {
    var d0 = _mm256_setzero_si256(), e0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256(), e1 = _mm256_setzero_si256()

    /// Adds a run's int16 partial sums (see flushNibbles).
    @inline(__always) mutating func flush(_ p: RowSums) {
        d0 = flushNibbles(d0, p.d0)
        d1 = flushNibbles(d1, p.d1)
    }
}

/// `rows` (1 or 2) activation rows over both halves of the panel in a single pass: each code line
/// is loaded once for every row, and each activation broadcast serves both halves (the decode
/// step: half passes took M = 1 at 1.5-1.65x the time). The float sums of a second row spill;
/// they are touched once per block.
@inline(__always)
private func intRows(_ rows: Int, nibbles: Bool, narrow: Bool, _ codes: UnsafeRawPointer, _ scales: UnsafeRawPointer, halfScales: Bool,
                     _ mins: UnsafePointer<Float>?, _ blocks: Int, _ block: Int, _ zero: Int32,
                     _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                     _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    let mask = _mm256_set1_epi8(0x0F)
    var a0 = _mm256_setzero_ps(), a1 = a0, c0 = a0, c1 = a0  // row 0's halves, row 1's halves
    let x0 = xq, x1 = xq + ldx
    var w = codes
    var b = 0
    while b < blocks {
        var r0 = RowSums(), r1 = RowSums()
        var o = b * block
        let end = o + block
        @inline(__always) func load(_ h: Int) -> __m256i { _mm256_loadu_si256((w + 32 * h).assumingMemoryBound(to: __m256i_u.self)) }
        if nibbles {
            @inline(__always) func add(_ s: inout RowSums, _ x: UnsafePointer<Int8>, _ lo0: __m256i, _ hi0: __m256i, _ lo1: __m256i,
                                       _ hi1: __m256i) {
                let bl = broadcast4(x, o), bh = broadcast4(x, o &+ 4)
                if nibbleProductsPerRun == .max {
                    s.d0 = addNibbles(s.d0, lo0, bl); s.e0 = addNibbles(s.e0, hi0, bh)
                    s.d1 = addNibbles(s.d1, lo1, bl); s.e1 = addNibbles(s.e1, hi1, bh)
                } else {
                    s.d0 = addNibbles(addNibbles(s.d0, lo0, bl), hi0, bh)
                    s.d1 = addNibbles(addNibbles(s.d1, lo1, bl), hi1, bh)
                }
            }
            /// Steps of 8 K positions up to `stop`.
            @inline(__always) func steps(_ s0: inout RowSums, _ s1: inout RowSums, until stop: Int) {
                while o < stop {
                    qk_prefetch(w + nibbleCodesAhead)
                    let v0 = load(0), v1 = load(1)
                    let lo0 = _mm256_and_si256(v0, mask), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), mask)
                    let lo1 = _mm256_and_si256(v1, mask), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), mask)
                    add(&s0, x0, lo0, hi0, lo1, hi1)
                    if rows > 1 { add(&s1, x1, lo0, hi0, lo1, hi1) }
                    w += 64
                    o &+= 8
                }
            }
            if nibbleProductsPerRun == .max {
                steps(&r0, &r1, until: end)
            } else {
                while o < end {
                    // A step adds two products to each partial sum.
                    var p0 = RowSums(), p1 = RowSums()
                    steps(&p0, &p1, until: min(end, o + nibbleProductsPerRun / 2 * 8))
                    r0.flush(p0)
                    if rows > 1 { r1.flush(p1) }
                }
            }
        } else {
            @inline(__always) func add(_ s: inout RowSums, _ x: UnsafePointer<Int8>, _ v0: ByteOperands, _ v1: ByteOperands,
                                       _ u0: ByteOperands, _ u1: ByteOperands) {
                let even = broadcast4(x, o), odd = broadcast4(x, o &+ 4)
                s.d0 = dotBytes(s.d0, v0, even, narrow: narrow); s.d1 = dotBytes(s.d1, v1, even, narrow: narrow)
                s.e0 = dotBytes(s.e0, u0, odd, narrow: narrow); s.e1 = dotBytes(s.e1, u1, odd, narrow: narrow)
            }
            // Blocks are multiples of 8 positions: two steps at a time. A step reads two lines, and
            // each gets its hint: with one, W8A8 at M = 1 streamed from DRAM at 8.4 GB/s on an AMD
            // EPYC (Zen 3) and at 11.4 with both, where the int4 kernels (one line a step) read 12-13.
            while o < end {
                qk_prefetch(w + codesAhead)
                qk_prefetch(w + codesAhead + 64)
                let v0 = byteOperands(load(0), narrow: narrow), v1 = byteOperands(load(1), narrow: narrow)
                w += 64
                let u0 = byteOperands(load(0), narrow: narrow), u1 = byteOperands(load(1), narrow: narrow)
                add(&r0, x0, v0, v1, u0, u1)
                if rows > 1 { add(&r1, x1, v0, v1, u0, u1) }
                w += 64
                o &+= 8
            }
        }
        let s0 = panelScales(scales, halfScales: halfScales, mins, b, 0), s1 = panelScales(scales, halfScales: halfScales, mins, b, 1)
        let m0: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16
        let m1: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16 + 8
        let z = nibbles ? zero : zero &- byteZeroShift(narrow: narrow)
        a0 = finishInt(a0, _mm256_add_epi32(r0.d0, r0.e0), s0, m0, z, xScale[b], xSum[b])
        a1 = finishInt(a1, _mm256_add_epi32(r0.d1, r0.e1), s1, m1, z, xScale[b], xSum[b])
        if rows > 1 {
            c0 = finishInt(c0, _mm256_add_epi32(r1.d0, r1.e0), s0, m0, z, xScale[ldb + b], xSum[ldb + b])
            c1 = finishInt(c1, _mm256_add_epi32(r1.d1, r1.e1), s1, m1, z, xScale[ldb + b], xSum[ldb + b])
        }
        b += 1
    }
    _mm256_storeu_ps(out, a0)
    _mm256_storeu_ps(out + 8, a1)
    if rows > 1 {
        _mm256_storeu_ps(out + ldo, c0)
        _mm256_storeu_ps(out + ldo + 8, c1)
    }
}

/// Activation rows two at a time, then a last single one.
@inline(__always)
private func intPanel(nibbles: Bool, narrow: Bool = false, _ codes: UnsafeRawPointer, _ scales: UnsafeRawPointer, halfScales: Bool, _ mins: UnsafePointer<Float>?,
                      _ blocks: Int, _ block: Int, _ zero: Int32,
                      _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                      _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    var m = 0
    while m < rows {
        let x = xq + m * ldx, s = xScale + m * ldb, q = xSum + m * ldb, o = out + m * ldo
        if rows - m == 1 {
            intRows(1, nibbles: nibbles, narrow: narrow, codes, scales, halfScales: halfScales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        } else {
            intRows(2, nibbles: nibbles, narrow: narrow, codes, scales, halfScales: halfScales, mins, blocks, block, zero, x, ldx, s, q, ldb, o, ldo)
        }
        m += 2
    }
}

#if AVXVNNI
public func avxvnniIntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                              _ blocks: Int, _ block: Int, _ zero: Int32,
                              _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                              _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, halfScales: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avxvnniIntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                            _ blocks: Int, _ block: Int, _ zero: Int32,
                            _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                            _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, halfScales: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avxvnniIntNibblesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                   _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                   _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, halfScales: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avxvnniIntBytesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                 _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                 _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, halfScales: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}
#else
public func avx2IntNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                           _ blocks: Int, _ block: Int, _ zero: Int32,
                           _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                           _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, halfScales: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avx2IntBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                         _ blocks: Int, _ block: Int, _ zero: Int32,
                         _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                         _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, halfScales: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avx2IntNibblesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                   _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                   _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: true, codes, scales, halfScales: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avx2IntBytesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int, _ zero: Int32,
                                 _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>,
                                 _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, codes, scales, halfScales: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows, out, ldo)
}

public func avx2IntNarrowBytes(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                               _ blocks: Int, _ block: Int, _ zero: Int32,
                               _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>, _ xSum: UnsafePointer<Int32>, _ ldb: Int,
                               _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, narrow: true, codes, scales, halfScales: false, mins, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows,
             out, ldo)
}

public func avx2IntNarrowBytesHalfScales(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<UInt16>, _ blocks: Int, _ block: Int,
                                         _ zero: Int32, _ xq: UnsafePointer<Int8>, _ ldx: Int, _ xScale: UnsafePointer<Float>,
                                         _ xSum: UnsafePointer<Int32>, _ ldb: Int, _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    intPanel(nibbles: false, narrow: true, codes, scales, halfScales: true, nil, blocks, block, zero, xq, ldx, xScale, xSum, ldb, rows,
             out, ldo)
}

// MARK: - float activations

/// How a kernel turns codes into values. `rampNibbles`: nibble codes whose table is u - zero (the
/// integer formats), converted instead of looked up: the same values without the two permutes
/// and the blend of `lookup` (the permutes share one port).
enum Decode {
    case nibbles, rampNibbles, bytes, halves

    /// .rampNibbles when lut[u] is exactly Float(u - zero) for every nibble u, else .nibbles.
    static func of(nibbleTable lut: UnsafePointer<Float>, zero: Int32) -> Decode {
        var u: Int32 = 0
        while u < 16 {
            if lut[Int(u)].bitPattern != Float(u &- zero).bitPattern { return .nibbles }
            u += 1
        }
        return .rampNibbles
    }
}

/// The value of a ramp nibble: the low 4 bits of each lane, minus zero, as a float.
@inline(__always) func rampValue(_ shifted: __m256i, _ zeros: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(shifted, _mm256_set1_epi32(15)), zeros))
}

/// Four fused-multiply-add chains per row: chain j takes the K positions j, j+4, j+8, ... of a
/// block (summed as (c0 + c1) + (c2 + c3)), as in the AVX-512 kernels and the reference.
private struct Chains {
    var c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps(), c2 = _mm256_setzero_ps(), c3 = _mm256_setzero_ps()

    @inline(__always) mutating func add(_ w: __m256, _ x: Float, chain: Int) {
        let xv = _mm256_set1_ps(x)
        switch chain {
        case 0: c0 = _mm256_fmadd_ps(w, xv, c0)
        case 1: c1 = _mm256_fmadd_ps(w, xv, c1)
        case 2: c2 = _mm256_fmadd_ps(w, xv, c2)
        default: c3 = _mm256_fmadd_ps(w, xv, c3)
        }
    }

    @inline(__always) var sum: __m256 { _mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)) }
}

@inline(__always) private func accumulate(_ rows: Int, _ w: __m256, _ k: Int, chain: Int, _ x0: UnsafePointer<Float>,
                                          _ x1: UnsafePointer<Float>, _ p0: inout Chains, _ p1: inout Chains) {
    p0.add(w, x0[k], chain: chain)
    if rows > 1 { p1.add(w, x1[k], chain: chain) }
}

/// lut[index & 15] per lane: two 8-entry permutes, picked by bit 3.
@inline(__always) func lookup(_ index: __m256i, _ low: __m256, _ high: __m256) -> __m256 {
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
    var a0 = _mm256_setzero_ps(), a1 = a0
    let x0 = x, x1 = x + ldx
    var w = codes
    var b = 0
    while b < blocks {
        var p0 = Chains(), p1 = Chains()
        var k = b * block
        let end = k + block
        switch decode {
        case .nibbles, .rampNibbles:
            @inline(__always) func value(_ shifted: __m256i) -> __m256 {
                decode == .rampNibbles ? rampValue(shifted, zeros) : lookup(shifted, low, high)
            }
            while k < end {
                qk_prefetch(w + codesAhead)
                let v = _mm256_loadu_si256((w + 32 * h).assumingMemoryBound(to: __m256i_u.self))
                accumulate(rows, value(v), k, chain: 0, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 8)), k &+ 1, chain: 1, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 16)), k &+ 2, chain: 2, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 24)), k &+ 3, chain: 3, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 4)), k &+ 4, chain: 0, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 12)), k &+ 5, chain: 1, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 20)), k &+ 6, chain: 2, x0, x1, &p0, &p1)
                accumulate(rows, value(_mm256_srli_epi32(v, 28)), k &+ 7, chain: 3, x0, x1, &p0, &p1)
                w += 64
                k &+= 8
            }
        case .bytes:
            while k < end {
                qk_prefetch(w + codesAhead)
                let v = _mm256_loadu_si256((w + 32 * h).assumingMemoryBound(to: __m256i_u.self))
                let c0 = _mm256_and_si256(v, byteMask), c1 = _mm256_and_si256(_mm256_srli_epi32(v, 8), byteMask)
                let c2 = _mm256_and_si256(_mm256_srli_epi32(v, 16), byteMask), c3 = _mm256_srli_epi32(v, 24)
                accumulate(rows, _mm256_cvtepi32_ps(_mm256_sub_epi32(c0, zeros)), k, chain: 0, x0, x1, &p0, &p1)
                accumulate(rows, _mm256_cvtepi32_ps(_mm256_sub_epi32(c1, zeros)), k &+ 1, chain: 1, x0, x1, &p0, &p1)
                accumulate(rows, _mm256_cvtepi32_ps(_mm256_sub_epi32(c2, zeros)), k &+ 2, chain: 2, x0, x1, &p0, &p1)
                accumulate(rows, _mm256_cvtepi32_ps(_mm256_sub_epi32(c3, zeros)), k &+ 3, chain: 3, x0, x1, &p0, &p1)
                w += 64
                k &+= 4
            }
        case .halves:
            while k < end {
                qk_prefetch(w + codesAhead)
                var j = 0
                while j < 4 {
                    let halves = _mm_loadu_si128((w + 32 * j + 16 * h).assumingMemoryBound(to: __m128i_u.self))
                    accumulate(rows, _mm256_cvtph_ps(halves), k &+ j, chain: j, x0, x1, &p0, &p1)
                    j &+= 1
                }
                w += 128
                k &+= 4
            }
        }
        prefetchScales(scales, mins, b)
        let s = _mm256_loadu_ps(scales + b * 16 + 8 * h)
        let m: UnsafePointer<Float>? = mins == nil ? nil : mins! + b * 16 + 8 * h
        a0 = finishFloat(a0, p0.sum, s, m, xSum[b])
        if rows > 1 { a1 = finishFloat(a1, p1.sum, s, m, xSum[ldb + b]) }
        b += 1
    }
    let o = out + 8 * h
    _mm256_storeu_ps(o, a0)
    if rows > 1 { _mm256_storeu_ps(o + ldo, a1) }
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
            if rows - m == 1 {
                floatRows(1, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            } else {
                floatRows(2, decode, half: h, codes, scales, mins, blocks, block, zero, lut, xm, ldx, s, ldb, o, ldo)
            }
            h += 1
        }
        m += 2
    }
}

public func avx2FloatNibbles(_ codes: UnsafeRawPointer, _ scales: UnsafePointer<Float>, _ mins: UnsafePointer<Float>?,
                             _ blocks: Int, _ block: Int, _ zero: Int32, _ lut: UnsafePointer<Float>,
                             _ x: UnsafePointer<Float>, _ ldx: Int, _ xSum: UnsafePointer<Float>, _ ldb: Int,
                             _ rows: Int, _ out: UnsafeMutablePointer<Float>, _ ldo: Int) {
    if Decode.of(nibbleTable: lut, zero: zero) == .rampNibbles {
        floatPanel(.rampNibbles, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
    } else {
        floatPanel(.nibbles, codes, scales, mins, blocks, block, zero, lut, x, ldx, xSum, ldb, rows, out, ldo)
    }
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
