// The cost of an exact int8 x int8 dot product on AVX2 without VNNI, form against form.
//
//   Benchmarks/run_int8_dot_forms.sh            (needs clang and an AVX2 CPU, no QuantKit build)
//
// W8A8 from M = 16 is compute-bound, and on AVX2 without VNNI the inner loop is the whole story.
// This probe computes the same products (12 activation rows x 16 weight columns, K = 512, all in
// L1) in five instruction forms, checks each against a plain C dot product, and prints the time
// per 256 products and the ratio to the saturating form. The first four run tiles of 4 rows x 16
// columns, as QuantKit's AVX2 int8 tile does:
//
//   saturating   ONNX Runtime's AVX2 u8 x s8 kernel form: vpmaddubsw(activation + 128 as u8,
//                signed weights), vpmaddwd by 1, vpaddd: 3 vector ops per 32 products. A pair of
//                products can reach 2 * 255 * 127, past int16, and vpmaddubsw saturates it, so
//                the results are wrong where that happens (the "wrong" column).
//   sign         QuantKit's AVX2 form: codes stored as u8 (code = weight + 128); per vector
//                vpxor + vpabsb, then per row vpsignb(activation, weight) + vpmaddubsw(|weight|,
//                that) + vpmaddwd + vpaddd: 4 ops per 32 products, exact because activations are
//                within [-127, 127] (pairs at most 2 * 128 * 127 = 32512).
//   int16        vpmaddwd + vpaddd per 16 products on int16 operands, the multiply of ONNX
//                Runtime's exact u8 x u8 kernel (which widens A when packing it and B's bytes as
//                it loads them). Here both are widened beforehand: the form's best case.
//   sign-mag     weights stored as sign bit | 7-bit magnitude (symmetric codes only): one vpand
//                per vector replaces vpxor + vpabsb.
//   widen6       tiles of 6 rows x 8 columns: u8 codes zero-extended to int16 as they are loaded,
//                int16 activations, vpmaddwd + vpaddd (the shape of ONNX Runtime's u8 x u8 kernel).
//
// The data are uniform over [-127, 127], the worst case for saturation: every output of the
// saturating form is wrong here; real activations saturate less often (Benchmarks/matmul.py prints
// ONNX Runtime's max|err|). Times are the best of many interleaved rounds (shared VMs are noisy). The exact forms need one
// more vector op per 32 products than the saturating one, or twice the multiplies' operand bytes;
// the ratio column is what that costs on the CPU at hand.
#define _POSIX_C_SOURCE 199309L
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// 12 rows: three groups for the 4-row forms, two for the 6-row one.
enum { K = 512, ROWS = 12, COLS = 16, STEPS = K / 4, ROUNDS = 25, CALLS = 1500 };

// Weights: per step of 4 K positions, 16 columns x 4 bytes (two vectors of 8 columns); each
// 32-bit lane holds one column's 4 consecutive K positions, as QuantKit's byte panels do.
static int8_t weights[STEPS][COLS][4] __attribute__((aligned(64)));
static uint8_t codes[STEPS][COLS][4] __attribute__((aligned(64)));      // weight + 128
static uint8_t signMagnitude[STEPS][COLS][4] __attribute__((aligned(64)));
// int16 weights, per step: K positions (0, 1) of the 16 columns, then positions (2, 3).
static int16_t wide[STEPS][2][COLS][2] __attribute__((aligned(64)));
static int8_t x[ROWS][K] __attribute__((aligned(64)));
static uint8_t xUnsigned[ROWS][K] __attribute__((aligned(64)));        // x + 128
static int16_t xWide[ROWS][K] __attribute__((aligned(64)));

typedef void (*TileForm)(int32_t out[ROWS][COLS]);

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static __m256i broadcast4(const void *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// Eight named accumulators (4 rows x 2 vectors of 8 columns): held in an array, they get spilled.
#define ACCUMULATORS __m256i a0l = _mm256_setzero_si256(), a0h = a0l, a1l = a0l, a1h = a0l, a2l = a0l, \
    a2h = a0l, a3l = a0l, a3h = a0l
#define FOR_EACH_ROW(ROW) ROW(0) ROW(1) ROW(2) ROW(3)
#define STORE_ROW(r) _mm256_storeu_si256((__m256i *)out[g + r], a##r##l); \
    _mm256_storeu_si256((__m256i *)(out[g + r] + 8), a##r##h);

// The 4-row forms: rows g..g+3 against the 16 columns, for each group g.
__attribute__((noinline)) static void saturatingForm(int32_t out[ROWS][COLS]) {
    const __m256i one = _mm256_set1_epi16(1);
    for (int g = 0; g < ROWS; g += 4) {
        ACCUMULATORS;
        for (int s = 0; s < STEPS; s++) {
            __m256i w0 = _mm256_load_si256((const __m256i *)weights[s][0]);
            __m256i w1 = _mm256_load_si256((const __m256i *)weights[s][8]);
#define ROW(r) { __m256i a = broadcast4(&xUnsigned[g + r][4 * s]); \
            a##r##l = _mm256_add_epi32(a##r##l, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w0), one)); \
            a##r##h = _mm256_add_epi32(a##r##h, _mm256_madd_epi16(_mm256_maddubs_epi16(a, w1), one)); }
            FOR_EACH_ROW(ROW)
#undef ROW
        }
        FOR_EACH_ROW(STORE_ROW)
    }
}

__attribute__((noinline)) static void signForm(int32_t out[ROWS][COLS]) {
    const __m256i one = _mm256_set1_epi16(1), bias = _mm256_set1_epi8(-128);
    for (int g = 0; g < ROWS; g += 4) {
        ACCUMULATORS;
        for (int s = 0; s < STEPS; s++) {
            __m256i s0 = _mm256_xor_si256(_mm256_load_si256((const __m256i *)codes[s][0]), bias);
            __m256i s1 = _mm256_xor_si256(_mm256_load_si256((const __m256i *)codes[s][8]), bias);
            __m256i m0 = _mm256_abs_epi8(s0), m1 = _mm256_abs_epi8(s1);
#define ROW(r) { __m256i a = broadcast4(&x[g + r][4 * s]); \
            a##r##l = _mm256_add_epi32(a##r##l, _mm256_madd_epi16(_mm256_maddubs_epi16(m0, _mm256_sign_epi8(a, s0)), one)); \
            a##r##h = _mm256_add_epi32(a##r##h, _mm256_madd_epi16(_mm256_maddubs_epi16(m1, _mm256_sign_epi8(a, s1)), one)); }
            FOR_EACH_ROW(ROW)
#undef ROW
        }
        FOR_EACH_ROW(STORE_ROW)
    }
}

__attribute__((noinline)) static void int16Form(int32_t out[ROWS][COLS]) {
    for (int g = 0; g < ROWS; g += 4) {
        ACCUMULATORS;
        for (int s = 0; s < STEPS; s++) {
            __m256i e0 = _mm256_load_si256((const __m256i *)wide[s][0][0]);
            __m256i e1 = _mm256_load_si256((const __m256i *)wide[s][0][8]);
            __m256i o0 = _mm256_load_si256((const __m256i *)wide[s][1][0]);
            __m256i o1 = _mm256_load_si256((const __m256i *)wide[s][1][8]);
#define ROW(r) { __m256i a01 = broadcast4(&xWide[g + r][4 * s]), a23 = broadcast4(&xWide[g + r][4 * s + 2]); \
            a##r##l = _mm256_add_epi32(a##r##l, _mm256_madd_epi16(e0, a01)); \
            a##r##h = _mm256_add_epi32(a##r##h, _mm256_madd_epi16(e1, a01)); \
            a##r##l = _mm256_add_epi32(a##r##l, _mm256_madd_epi16(o0, a23)); \
            a##r##h = _mm256_add_epi32(a##r##h, _mm256_madd_epi16(o1, a23)); }
            FOR_EACH_ROW(ROW)
#undef ROW
        }
        FOR_EACH_ROW(STORE_ROW)
    }
}

__attribute__((noinline)) static void signMagnitudeForm(int32_t out[ROWS][COLS]) {
    const __m256i one = _mm256_set1_epi16(1), magnitude = _mm256_set1_epi8(0x7f);
    for (int g = 0; g < ROWS; g += 4) {
        ACCUMULATORS;
        for (int s = 0; s < STEPS; s++) {
            __m256i v0 = _mm256_load_si256((const __m256i *)signMagnitude[s][0]);
            __m256i v1 = _mm256_load_si256((const __m256i *)signMagnitude[s][8]);
            __m256i m0 = _mm256_and_si256(v0, magnitude), m1 = _mm256_and_si256(v1, magnitude);
#define ROW(r) { __m256i a = broadcast4(&x[g + r][4 * s]); \
            a##r##l = _mm256_add_epi32(a##r##l, _mm256_madd_epi16(_mm256_maddubs_epi16(m0, _mm256_sign_epi8(a, v0)), one)); \
            a##r##h = _mm256_add_epi32(a##r##h, _mm256_madd_epi16(_mm256_maddubs_epi16(m1, _mm256_sign_epi8(a, v1)), one)); }
            FOR_EACH_ROW(ROW)
#undef ROW
        }
        FOR_EACH_ROW(STORE_ROW)
    }
}

// 6 rows x 8 columns (half of the 16), the u8 codes zero-extended to int16 as they are loaded
// (vpmovzxbw), int16 activations broadcast 4 at a time. A step's 4 positions of a column fall in
// two int32 lanes (positions 0-1 and 2-3), so each accumulator holds 4 columns' halves; vphaddd
// joins them at the end. 12 accumulators, 2 code vectors, 1 broadcast: 15 registers. The sum is
// dot(code, x) = dot(w, x) + 128 * sum(x): the zero point comes off after, as QuantKit's finish does.
__attribute__((noinline)) static void widen6Form(int32_t out[ROWS][COLS]) {
    for (int g = 0; g < ROWS; g += 6)
        for (int half = 0; half < 2; half++) {
            __m256i p0a = _mm256_setzero_si256(), p0b = p0a, p1a = p0a, p1b = p0a, p2a = p0a, p2b = p0a,
                    p3a = p0a, p3b = p0a, p4a = p0a, p4b = p0a, p5a = p0a, p5b = p0a;
            for (int s = 0; s < STEPS; s++) {
                const uint8_t *c = codes[s][8 * half];
                __m256i w0 = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)c));         // columns 0-3
                __m256i w1 = _mm256_cvtepu8_epi16(_mm_load_si128((const __m128i *)(c + 16)));  // columns 4-7
#define ROW(r) { int64_t v; memcpy(&v, &xWide[g + r][4 * s], 8); __m256i a = _mm256_set1_epi64x(v); \
                p##r##a = _mm256_add_epi32(p##r##a, _mm256_madd_epi16(w0, a)); \
                p##r##b = _mm256_add_epi32(p##r##b, _mm256_madd_epi16(w1, a)); }
                ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
            }
            // Lanes (c0 01, c0 23, c1 01, c1 23 | c2, c3) and (c4 .. c7): vphaddd gives c0 c1 c4 c5 |
            // c2 c3 c6 c7, and vpermq puts the middle pairs in order.
#define JOIN(r) _mm256_storeu_si256((__m256i *)(out[g + r] + 8 * half), \
                _mm256_permute4x64_epi64(_mm256_hadd_epi32(p##r##a, p##r##b), 0xD8));
            JOIN(0) JOIN(1) JOIN(2) JOIN(3) JOIN(4) JOIN(5)
#undef JOIN
        }
}

static void fillInputs(void) {
    srand(7);
    for (int s = 0; s < STEPS; s++)
        for (int c = 0; c < COLS; c++)
            for (int j = 0; j < 4; j++) {
                int w = rand() % 255 - 127;  // symmetric int8 weights, as per-channel W8A8 has
                weights[s][c][j] = (int8_t)w;
                codes[s][c][j] = (uint8_t)(w + 128);
                signMagnitude[s][c][j] = (uint8_t)(w < 0 ? 0x80 | -w : w);
                wide[s][j / 2][c][j % 2] = (int16_t)w;
            }
    for (int r = 0; r < ROWS; r++)
        for (int s = 0; s < STEPS; s++) {
            for (int j = 0; j < 4; j++) {
                int v = rand() % 255 - 127;  // QuantKit's activations: symmetric, [-127, 127]
                x[r][4 * s + j] = (int8_t)v;
                xUnsigned[r][4 * s + j] = (uint8_t)(v + 128);
            }
            for (int j = 0; j < 4; j++) xWide[r][4 * s + j] = x[r][4 * s + j];
        }
}

static void exactDots(int32_t out[ROWS][COLS]) {
    for (int r = 0; r < ROWS; r++)
        for (int c = 0; c < COLS; c++) {
            int32_t sum = 0;
            for (int k = 0; k < K; k++) sum += x[r][k] * weights[k / 4][c][k % 4];
            out[r][c] = sum;
        }
}

int main(void) {
    if (!__builtin_cpu_supports("avx2")) {
        fprintf(stderr, "int8_dot_forms: this CPU lacks AVX2\n");
        return 2;
    }
    fillInputs();
    int32_t exact[ROWS][COLS];
    exactDots(exact);
    int32_t columnSums[COLS] = {0}, rowSums[ROWS] = {0};
    for (int c = 0; c < COLS; c++)
        for (int k = 0; k < K; k++) columnSums[c] += weights[k / 4][c][k % 4];
    for (int r = 0; r < ROWS; r++)
        for (int k = 0; k < K; k++) rowSums[r] += x[r][k];

    // What each form's sums exceed the exact ones by: nothing, 128 * sum(w) (activations offset to
    // u8), or 128 * sum(x) (codes taken as u8).
    enum { NONE, COLUMN_SUMS, ROW_SUMS };
    const struct { const char *name; TileForm run; int offset; } forms[] = {
        {"saturating", saturatingForm, COLUMN_SUMS}, {"sign", signForm, NONE},
        {"int16", int16Form, NONE}, {"sign-mag", signMagnitudeForm, NONE},
        {"widen6", widen6Form, ROW_SUMS},
    };
    enum { FORMS = sizeof forms / sizeof forms[0] };
    int wrong[FORMS];
    double best[FORMS];
    for (int f = 0; f < FORMS; f++) {
        int32_t out[ROWS][COLS];
        forms[f].run(out);
        wrong[f] = 0;
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++) {
                int32_t excess = forms[f].offset == COLUMN_SUMS ? 128 * columnSums[c]
                                 : forms[f].offset == ROW_SUMS  ? 128 * rowSums[r]
                                                                : 0;
                wrong[f] += out[r][c] - excess != exact[r][c];
            }
        best[f] = 1e30;
    }
    for (int round = 0; round < ROUNDS; round++)
        for (int f = 0; f < FORMS; f++) {
            int32_t out[ROWS][COLS];
            double t = seconds();
            for (int i = 0; i < CALLS; i++) {
                forms[f].run(out);
                __asm__ volatile("" : : "r"(out) : "memory");
            }
            double perCall = (seconds() - t) / CALLS;
            if (perCall < best[f]) best[f] = perCall;
        }
    const double productsPerCall = (double)ROWS * COLS * K;
    printf("%d rows x %d columns x K = %d, best of %d rounds\n", ROWS, COLS, K, ROUNDS);
    printf("%-12s %14s %15s %16s\n", "form", "ns/256 prods", "vs saturating", "wrong (of 192)");
    for (int f = 0; f < FORMS; f++)
        printf("%-12s %14.3f %15.2f %16d\n", forms[f].name, best[f] * 1e9 * 256 / productsPerCall,
               best[f] / best[0], wrong[f]);
    for (int f = 1; f < FORMS; f++)
        if (wrong[f] != 0) {
            fprintf(stderr, "int8_dot_forms: the %s form is not exact\n", forms[f].name);
            return 1;
        }
    return 0;
}
