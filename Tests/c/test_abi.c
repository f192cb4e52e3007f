/*
 * test_abi.c: checks libquantkit.so against the contract in Include/quantkit.h, from plain C.
 *
 * - Layout: every public struct's size and field offsets, every qk_api slot, every pinned enum
 *   value, as compile-time asserts (x86-64 LP64).
 * - Valid input: every function is called and its results are compared with values computed by
 *   hand from the header's formulas.
 * - Bad input: every fallible function gets NULL pointers, bad struct sizes, unknown enum values,
 *   bad ranks and shapes, overflowing sizes, short buffers and non-finite values. Each call must
 *   return the expected status, set qk_last_error(), and leave every buffer untouched.
 * - struct_size: smaller than sizeof or above 4096 is QK_ERROR_VERSION; a larger one (a newer
 *   caller) is accepted for input structs when the unknown bytes are zero (else QK_ERROR_VERSION),
 *   and output structs get those bytes zeroed (group struct_size; bad_input for input structs).
 *
 * Each group of checks (and each bad-input case) runs in a forked child, so a trap inside the
 * library counts as one failure, names the call that crashed, and the run goes on.
 *
 *   test_abi                    all groups
 *   test_abi --group NAME       one group;  --case TEXT  only bad-input cases whose name has TEXT
 *   test_abi --checksums        digests of quantized outputs (run.sh compares kernel variants)
 *   QK_TEST_NO_FORK=1 test_abi  everything in one process (for a debugger)
 *
 * The last line is "N passed, M failed"; the exit status is 1 when anything failed.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include "quantkit.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* ============================================================================================ */
/* Compile-time layout pins (C99: a negative array size is a compile error).                     */
/* ============================================================================================ */

#define STATIC_ASSERT(name, cond) typedef char static_assert_##name[(cond) ? 1 : -1]
#define PIN_SIZE(type, size) STATIC_ASSERT(size_of_##type, sizeof(type) == (size))
#define PIN_FIELD(type, field, off) STATIC_ASSERT(type##__##field, offsetof(type, field) == (off))
#define PIN_VALUE(name, value) STATIC_ASSERT(value_of_##name, (name) == (value))

STATIC_ASSERT(lp64, sizeof(void *) == 8 && sizeof(size_t) == 8 && sizeof(long) == 8);
/* qk_status is a typedef of int32_t, not an enum: 4 bytes and signed. */
STATIC_ASSERT(status_is_int32, sizeof(qk_status) == 4 && (qk_status)-1 < 0);
STATIC_ASSERT(version_number_formula,
              QK_VERSION_NUMBER == QK_VERSION_MAJOR * 10000 + QK_VERSION_MINOR * 100 + QK_VERSION_PATCH);

PIN_VALUE(QK_ABI_VERSION, 2);
PIN_VALUE(QK_MAX_DIMS, 8);

PIN_VALUE(QK_OK, 0);
PIN_VALUE(QK_ERROR_INVALID_ARGUMENT, 1);
PIN_VALUE(QK_ERROR_NULL_POINTER, 2);
PIN_VALUE(QK_ERROR_UNSUPPORTED, 3);
PIN_VALUE(QK_ERROR_BUFFER_TOO_SMALL, 4);
PIN_VALUE(QK_ERROR_SHAPE_MISMATCH, 5);
PIN_VALUE(QK_ERROR_NON_FINITE, 6);
PIN_VALUE(QK_ERROR_OUT_OF_MEMORY, 7);
PIN_VALUE(QK_ERROR_OVERFLOW, 8);
PIN_VALUE(QK_ERROR_IO, 9);
PIN_VALUE(QK_ERROR_INVALID_MODEL, 10);
PIN_VALUE(QK_ERROR_INTERNAL, 11);
PIN_VALUE(QK_ERROR_VERSION, 12);

PIN_VALUE(QK_DTYPE_INVALID, 0);
PIN_VALUE(QK_DTYPE_F32, 1);
PIN_VALUE(QK_DTYPE_F16, 2);
PIN_VALUE(QK_DTYPE_BF16, 3);
PIN_VALUE(QK_DTYPE_F64, 4);
PIN_VALUE(QK_DTYPE_I8, 5);
PIN_VALUE(QK_DTYPE_U8, 6);
PIN_VALUE(QK_DTYPE_I32, 7);

PIN_VALUE(QK_FORMAT_INVALID, 0);
PIN_VALUE(QK_FORMAT_INT8, 1);
PIN_VALUE(QK_FORMAT_UINT8, 2);
PIN_VALUE(QK_FORMAT_INT4, 3);
PIN_VALUE(QK_FORMAT_UINT4, 4);
PIN_VALUE(QK_FORMAT_INT3, 5);
PIN_VALUE(QK_FORMAT_UINT3, 6);
PIN_VALUE(QK_FORMAT_INT2, 7);
PIN_VALUE(QK_FORMAT_UINT2, 8);
PIN_VALUE(QK_FORMAT_NF4, 9);
PIN_VALUE(QK_FORMAT_FP4_E2M1, 10);
PIN_VALUE(QK_FORMAT_FP8_E4M3FN, 11);
PIN_VALUE(QK_FORMAT_FP8_E5M2, 12);
PIN_VALUE(QK_FORMAT_FP16, 13);
PIN_VALUE(QK_FORMAT_BF16, 14);
PIN_VALUE(QK_FORMAT_LOG4, 15);
PIN_VALUE(QK_FORMAT_FP4_BNB, 16);

PIN_VALUE(QK_FORMAT_FLAG_SIGNED, 1);
PIN_VALUE(QK_FORMAT_FLAG_FLOAT, 2);
PIN_VALUE(QK_FORMAT_FLAG_CODEBOOK, 4);
PIN_VALUE(QK_FORMAT_FLAG_SCALED, 8);
PIN_VALUE(QK_FORMAT_FLAG_ZERO_POINT, 16);

PIN_VALUE(QK_SCHEME_SYMMETRIC, 0);
PIN_VALUE(QK_SCHEME_ASYMMETRIC, 1);
PIN_VALUE(QK_GRANULARITY_PER_TENSOR, 0);
PIN_VALUE(QK_GRANULARITY_PER_AXIS, 1);
PIN_VALUE(QK_GRANULARITY_BLOCKED, 2);
PIN_VALUE(QK_METHOD_MINMAX, 0);
PIN_VALUE(QK_METHOD_MSE, 1);
PIN_VALUE(QK_METHOD_PERCENTILE, 2);
PIN_VALUE(QK_ROUND_HALF_EVEN, 0);
PIN_VALUE(QK_ROUND_HALF_AWAY, 1);
PIN_VALUE(QK_LAYOUT_ONNX, 0);
PIN_VALUE(QK_LAYOUT_MATMULNBITS, 1);
PIN_VALUE(QK_LAYOUT_BNB4, 2);

PIN_SIZE(qk_tensor, 32);
PIN_FIELD(qk_tensor, data, 0);
PIN_FIELD(qk_tensor, dtype, 8);
PIN_FIELD(qk_tensor, ndim, 12);
PIN_FIELD(qk_tensor, shape, 16);
PIN_FIELD(qk_tensor, strides, 24);

PIN_SIZE(qk_format_info, 48);
PIN_FIELD(qk_format_info, struct_size, 0);
PIN_FIELD(qk_format_info, format, 4);
PIN_FIELD(qk_format_info, name, 8);
PIN_FIELD(qk_format_info, description, 16);
PIN_FIELD(qk_format_info, bits, 24);
PIN_FIELD(qk_format_info, flags, 28);
PIN_FIELD(qk_format_info, code_min, 32);
PIN_FIELD(qk_format_info, code_max, 36);
PIN_FIELD(qk_format_info, level_max, 40);
PIN_FIELD(qk_format_info, reserved, 44);

PIN_SIZE(qk_quant_params, 56);
PIN_FIELD(qk_quant_params, struct_size, 0);
PIN_FIELD(qk_quant_params, format, 4);
PIN_FIELD(qk_quant_params, scheme, 8);
PIN_FIELD(qk_quant_params, granularity, 12);
PIN_FIELD(qk_quant_params, axis, 16);
PIN_FIELD(qk_quant_params, block_size, 20);
PIN_FIELD(qk_quant_params, method, 24);
PIN_FIELD(qk_quant_params, rounding, 28);
PIN_FIELD(qk_quant_params, layout, 32);
PIN_FIELD(qk_quant_params, scale_dtype, 36);
PIN_FIELD(qk_quant_params, num_threads, 40);
PIN_FIELD(qk_quant_params, percentile, 44);
PIN_FIELD(qk_quant_params, search_steps, 48);
PIN_FIELD(qk_quant_params, min_clip_ratio, 52);

PIN_SIZE(qk_quantized_layout, 104);
PIN_FIELD(qk_quantized_layout, struct_size, 0);
PIN_FIELD(qk_quantized_layout, scales_ndim, 4);
PIN_FIELD(qk_quantized_layout, data_bytes, 8);
PIN_FIELD(qk_quantized_layout, scales_bytes, 16);
PIN_FIELD(qk_quantized_layout, zero_points_bytes, 24);
PIN_FIELD(qk_quantized_layout, scales_count, 32);
PIN_FIELD(qk_quantized_layout, scales_shape, 40);

PIN_SIZE(qk_quantized, 56);
PIN_FIELD(qk_quantized, struct_size, 0);
PIN_FIELD(qk_quantized, reserved, 4);
PIN_FIELD(qk_quantized, data, 8);
PIN_FIELD(qk_quantized, data_bytes, 16);
PIN_FIELD(qk_quantized, scales, 24);
PIN_FIELD(qk_quantized, scales_bytes, 32);
PIN_FIELD(qk_quantized, zero_points, 40);
PIN_FIELD(qk_quantized, zero_points_bytes, 48);

PIN_SIZE(qk_error_stats, 56);
PIN_FIELD(qk_error_stats, struct_size, 0);
PIN_FIELD(qk_error_stats, reserved, 4);
PIN_FIELD(qk_error_stats, count, 8);
PIN_FIELD(qk_error_stats, max_abs_error, 16);
PIN_FIELD(qk_error_stats, mean_abs_error, 24);
PIN_FIELD(qk_error_stats, rmse, 32);
PIN_FIELD(qk_error_stats, sqnr_db, 40);
PIN_FIELD(qk_error_stats, signal_rms, 48);

/* qk_api: two uint32 fields, then one 8-byte slot per function, append-only. */
PIN_SIZE(qk_api, 208); /* 160 in ABI 1; ABI 2 appended six slots */
PIN_FIELD(qk_api, struct_size, 0);
PIN_FIELD(qk_api, abi_version, 4);
PIN_FIELD(qk_api, version_number, 8);
PIN_FIELD(qk_api, version_string, 16);
PIN_FIELD(qk_api, last_error, 24);
PIN_FIELD(qk_api, status_string, 32);
PIN_FIELD(qk_api, format_count, 40);
PIN_FIELD(qk_api, format_info_at, 48);
PIN_FIELD(qk_api, format_info_get, 56);
PIN_FIELD(qk_api, format_from_name, 64);
PIN_FIELD(qk_api, quant_params_init, 72);
PIN_FIELD(qk_api, quantized_layout_get, 80);
PIN_FIELD(qk_api, quantize, 88);
PIN_FIELD(qk_api, quantize_with_scales, 96);
PIN_FIELD(qk_api, dequantize, 104);
PIN_FIELD(qk_api, quantization_error, 112);
PIN_FIELD(qk_api, compare, 120);
PIN_FIELD(qk_api, kernel_variant, 128);
PIN_FIELD(qk_api, set_num_threads, 136);
PIN_FIELD(qk_api, get_num_threads, 144);
PIN_FIELD(qk_api, get_extension, 152);
/* since ABI 2 */
PIN_FIELD(qk_api, pack_weights, 160);
PIN_FIELD(qk_api, packed_matrix_release, 168);
PIN_FIELD(qk_api, packed_matrix_get_info, 176);
PIN_FIELD(qk_api, matmul, 184);
PIN_FIELD(qk_api, matmul_integer, 192);
PIN_FIELD(qk_api, matmul_kernel_variant, 200);
PIN_VALUE(QK_COMPUTE_FLOAT, 0);
PIN_VALUE(QK_COMPUTE_INT8, 1);
PIN_VALUE(QK_WEIGHT_NK, 0);
PIN_VALUE(QK_WEIGHT_KN, 1);
PIN_SIZE(qk_pack_options, 16);
PIN_FIELD(qk_pack_options, orientation, 4);
PIN_FIELD(qk_pack_options, num_threads, 8);
PIN_FIELD(qk_pack_options, reserved, 12);
PIN_SIZE(qk_matmul_options, 12);
PIN_FIELD(qk_matmul_options, compute, 4);
PIN_FIELD(qk_matmul_options, num_threads, 8);
PIN_SIZE(qk_packed_matrix_info, 40);
PIN_FIELD(qk_packed_matrix_info, format, 4);
PIN_FIELD(qk_packed_matrix_info, n, 8);
PIN_FIELD(qk_packed_matrix_info, k, 16);
PIN_FIELD(qk_packed_matrix_info, block_size, 24);
PIN_FIELD(qk_packed_matrix_info, int8_compute, 28);
PIN_FIELD(qk_packed_matrix_info, packed_bytes, 32);

/* ============================================================================================ */
/* Check bookkeeping                                                                             */
/* ============================================================================================ */

/* [0] passed, [1] failed. Shared memory, so counts made by forked children (even ones that
 * crash later) reach the parent. */
static int *g_counts;
static const char *g_group = "";
static const char *g_case_filter = NULL;
/* The call in flight, printed by the crash handler. */
static const char *volatile g_current = "";

#define S(code) (1u << (unsigned)(code))

static const char *status_name(int status) {
    static const char *const names[] = {
        "QK_OK", "QK_ERROR_INVALID_ARGUMENT", "QK_ERROR_NULL_POINTER", "QK_ERROR_UNSUPPORTED",
        "QK_ERROR_BUFFER_TOO_SMALL", "QK_ERROR_SHAPE_MISMATCH", "QK_ERROR_NON_FINITE",
        "QK_ERROR_OUT_OF_MEMORY", "QK_ERROR_OVERFLOW", "QK_ERROR_IO", "QK_ERROR_INVALID_MODEL",
        "QK_ERROR_INTERNAL", "QK_ERROR_VERSION"};
    return (status >= 0 && status <= 12) ? names[status] : "unknown status";
}

/* "A|B" for a bit set of statuses, for messages. */
static const char *mask_names(unsigned mask) {
    static char buf[512];
    int s;
    buf[0] = '\0';
    for (s = 0; s <= 12; s++) {
        if (!(mask & S(s))) continue;
        if (buf[0]) strcat(buf, "|");
        strcat(buf, status_name(s));
    }
    return buf;
}

static void check_at(int ok, int line, const char *fmt, ...) {
    va_list ap;
    if (ok) {
        g_counts[0]++;
        return;
    }
    g_counts[1]++;
    printf("FAIL [%s] test_abi.c:%d: ", g_group, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

#define CHECK(cond, ...) check_at((cond) ? 1 : 0, __LINE__, __VA_ARGS__)

static void note(const char *fmt, ...) {
    va_list ap;
    printf("note [%s]: ", g_group);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Case-insensitive: does `text` contain one of the '|'-separated words? */
static int mentions_any(const char *text, const char *words) {
    char lower[1024], word[64];
    size_t i, n;
    const char *w = words;
    for (i = 0; text[i] && i + 1 < sizeof lower; i++) lower[i] = (char)tolower((unsigned char)text[i]);
    lower[i] = '\0';
    while (*w) {
        for (n = 0; w[n] && w[n] != '|' && n + 1 < sizeof word; n++) word[n] = (char)tolower((unsigned char)w[n]);
        word[n] = '\0';
        if (n && strstr(lower, word)) return 1;
        w += n;
        if (*w == '|') w++;
    }
    return 0;
}

/* The message of the last failure, copied at once: the pointer is valid only until the next call. */
static char g_msg[1024];

static void copy_last_error(void) {
    const char *m = qk_last_error();
    if (!m) {
        strcpy(g_msg, "<NULL>");
        return;
    }
    strncpy(g_msg, m, sizeof g_msg - 1);
    g_msg[sizeof g_msg - 1] = '\0';
}

/* A call that must fail with one of `allowed`, with a message naming one of `words` (if given). */
static void expect_fail_at(qk_status st, unsigned allowed, const char *words, const char *call, int line) {
    copy_last_error();
    check_at(st != QK_OK && (allowed & S(st)) != 0, line, "%s returned %s, expected %s (message: \"%s\")", call,
             status_name(st), mask_names(allowed), g_msg);
    if (st == QK_OK) return;
    check_at(g_msg[0] != '\0' && strcmp(g_msg, "<NULL>") != 0, line, "%s: qk_last_error() is empty after %s", call,
             status_name(st));
    if (words && g_msg[0])
        check_at(mentions_any(g_msg, words), line, "%s: message \"%s\" mentions none of \"%s\"", call, g_msg, words);
}

static int expect_ok_at(qk_status st, const char *call, int line) {
    if (st != QK_OK) copy_last_error();
    check_at(st == QK_OK, line, "%s returned %s (message: \"%s\")", call, status_name(st), st == QK_OK ? "" : g_msg);
    return st == QK_OK;
}

#define EXPECT_FAIL(allowed, words, call)                                                                 \
    do {                                                                                                  \
        g_current = #call;                                                                                \
        expect_fail_at((call), (allowed), (words), #call, __LINE__);                                      \
    } while (0)
#define EXPECT_OK(call) (g_current = #call, expect_ok_at((call), #call, __LINE__))

/* ============================================================================================ */
/* Numeric helpers                                                                               */
/* ============================================================================================ */

/* float -> IEEE half, round to nearest even (the reference for F16 inputs and outputs). */
static uint16_t f32_to_f16(float f) {
    uint32_t x, sign, absx;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000u;
    absx = x & 0x7FFFFFFFu;
    if (absx > 0x7F800000u) return (uint16_t)(sign | 0x7E00u);
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* rounds to infinity */
    if (absx < 0x38800000u) {                                   /* half subnormal or zero */
        float a;
        memcpy(&a, &absx, 4);
        return (uint16_t)(sign | (uint32_t)lrintf(a * 16777216.0f));
    }
    return (uint16_t)(sign | ((absx + 0xFFFu + ((absx >> 13) & 1u) - 0x38000000u) >> 13));
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, bits;
    float f;
    if (e == 0) return (sign ? -1.0f : 1.0f) * ldexpf((float)m, -24);
    bits = e == 31 ? (sign | 0x7F800000u | (m << 13)) : (sign | ((e + 112u) << 23) | (m << 13));
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return 0x7FC0;
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

static float bf16_to_f32(uint16_t h) {
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Deterministic data: xorshift64* and Box-Muller. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static double rnd_unit(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return (double)((g_rng * 2685821657736338717ull) >> 11) * (1.0 / 9007199254740992.0);
}

static float rnd_normal(void) {
    double u = rnd_unit(), v = rnd_unit();
    if (u < 1e-300) u = 1e-300;
    return (float)(sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
}

static void fill_normal(float *x, size_t n, float sigma) {
    size_t i;
    for (i = 0; i < n; i++) x[i] = sigma * rnd_normal();
}

/* Two 4-bit codes per byte: ONNX puts the first in the low nibble, bitsandbytes in the high one. */
static void pack4(const int *codes, size_t n, unsigned char *out, int high_first) {
    size_t i;
    memset(out, 0, (n + 1) / 2);
    for (i = 0; i < n; i++) {
        unsigned c = (unsigned)codes[i] & 0xFu;
        int high = (i & 1) ? !high_first : high_first;
        out[i / 2] |= (unsigned char)(high ? c << 4 : c);
    }
}

static float max_abs(const float *x, size_t n) {
    float m = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (fabsf(x[i]) > m) m = fabsf(x[i]);
    return m;
}

static int close_rel(double a, double b, double rel) {
    return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-30;
}

/* Index of the first byte that differs, or -1. */
static long first_diff(const void *a, const void *b, size_t n) {
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t i;
    for (i = 0; i < n; i++)
        if (x[i] != y[i]) return (long)i;
    return -1;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* bitsandbytes NF4 levels (QLoRA), ascending: code i is level i. */
static const float NF4_LEVELS[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
    -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
    0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f,
    0.7229568362236023f, 1.0f};

/* ============================================================================================ */
/* Small wrappers used by the valid-input groups                                                 */
/* ============================================================================================ */

/* Words a message about each kind of failure should contain (any one, case-insensitive). */
#define NULLS "null|nil"
#define SIZES "struct_size|size|version"
#define NONFINITE_WORDS "nan|finite|inf"

#define GUARD 64 /* poisoned bytes after each output buffer: nothing may be written there */
#define POISON 0xA5

static qk_tensor tensor_of(void *data, int32_t dtype, int32_t ndim, const int64_t *shape) {
    qk_tensor t;
    t.data = data;
    t.dtype = dtype;
    t.ndim = ndim;
    t.shape = shape;
    t.strides = NULL;
    return t;
}

static int64_t element_count(int32_t ndim, const int64_t *shape) {
    int64_t n = 1;
    int32_t i;
    for (i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

/* qk_quant_params_init as a caller must use it: struct_size set first (the header's rule). */
static qk_status init_params(qk_quant_params *p, int32_t format) {
    p->struct_size = sizeof *p;
    return qk_quant_params_init(p, format);
}

/* Defaults for `format` from qk_quant_params_init. */
static qk_quant_params params_for(int32_t format) {
    qk_quant_params p;
    memset(&p, 0, sizeof p);
    EXPECT_OK(init_params(&p, format));
    return p;
}

static int layout_for(const qk_quant_params *p, int32_t ndim, const int64_t *shape, qk_quantized_layout *l) {
    qk_status st;
    memset(l, 0, sizeof *l);
    l->struct_size = sizeof *l;
    st = qk_quantized_layout_get(p, ndim, shape, l);
    if (st != QK_OK) copy_last_error();
    return st == QK_OK;
}

/* One quantized tensor with poisoned, guarded buffers of exactly the layout's sizes. */
typedef struct qtensor {
    qk_quantized_layout layout;
    qk_quantized q;
} qtensor;

static void *guarded_alloc(size_t n) {
    unsigned char *p = (unsigned char *)malloc(n + GUARD);
    if (p) memset(p, POISON, n + GUARD);
    return p;
}

static int guard_intact(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < GUARD; i++)
        if (b[n + i] != POISON) return 0;
    return 1;
}

static void qt_free(qtensor *t) {
    free(t->q.data);
    free(t->q.scales);
    free(t->q.zero_points);
    memset(t, 0, sizeof *t);
}

static int qt_alloc(qtensor *t, const qk_quant_params *p, int32_t ndim, const int64_t *shape, int line) {
    memset(t, 0, sizeof *t);
    if (!layout_for(p, ndim, shape, &t->layout)) {
        check_at(0, line, "qk_quantized_layout_get failed: %s", g_msg);
        return 0;
    }
    t->q.struct_size = sizeof t->q;
    t->q.data = guarded_alloc(t->layout.data_bytes);
    t->q.data_bytes = t->layout.data_bytes;
    t->q.scales = guarded_alloc(t->layout.scales_bytes);
    t->q.scales_bytes = t->layout.scales_bytes;
    if (t->layout.zero_points_bytes) {
        t->q.zero_points = guarded_alloc(t->layout.zero_points_bytes);
        t->q.zero_points_bytes = t->layout.zero_points_bytes;
    }
    return 1;
}

static void qt_check_guards(const qtensor *t, int line) {
    check_at(guard_intact(t->q.data, t->q.data_bytes), line, "bytes written past data_bytes (%zu)", t->q.data_bytes);
    check_at(guard_intact(t->q.scales, t->q.scales_bytes), line, "bytes written past scales_bytes (%zu)",
             t->q.scales_bytes);
    if (t->q.zero_points)
        check_at(guard_intact(t->q.zero_points, t->q.zero_points_bytes), line,
                 "bytes written past zero_points_bytes (%zu)", t->q.zero_points_bytes);
}

/* Layout, guarded buffers and qk_quantize in one step; 0 (and a failed check) on error. */
static int qt_quantize_at(qtensor *t, const qk_quant_params *p, const qk_tensor *in, int line) {
    qk_status st;
    if (!qt_alloc(t, p, in->ndim, in->shape, line)) return 0;
    g_current = "qk_quantize (qt_quantize)";
    st = qk_quantize(p, in, &t->q);
    if (st != QK_OK) {
        copy_last_error();
        check_at(0, line, "qk_quantize returned %s: %s", status_name(st), g_msg);
        qt_free(t);
        return 0;
    }
    qt_check_guards(t, line);
    return 1;
}
#define QT_QUANTIZE(t, p, in) qt_quantize_at((t), (p), (in), __LINE__)

/* qk_dequantize into a fresh f32 buffer (caller frees); NULL (and a failed check) on error. */
static float *qt_dequantize_at(const qtensor *t, const qk_quant_params *p, int32_t ndim, const int64_t *shape,
                               int line) {
    size_t n = (size_t)element_count(ndim, shape);
    float *y = (float *)guarded_alloc(n * sizeof(float));
    qk_tensor out = tensor_of(y, QK_DTYPE_F32, ndim, shape);
    qk_status st;
    g_current = "qk_dequantize (qt_dequantize)";
    st = qk_dequantize(p, &t->q, &out);
    if (st != QK_OK) {
        copy_last_error();
        check_at(0, line, "qk_dequantize returned %s: %s", status_name(st), g_msg);
        free(y);
        return NULL;
    }
    check_at(guard_intact(y, n * sizeof(float)), line, "qk_dequantize wrote past the output tensor");
    return y;
}
#define QT_DEQUANTIZE(t, p, ndim, shape) qt_dequantize_at((t), (p), (ndim), (shape), __LINE__)

/* Two quantizations (params and input each) must give identical bytes. */
static void check_same_at(const qk_quant_params *pa, const qk_tensor *a, const qk_quant_params *pb,
                          const qk_tensor *b, const char *what, int line) {
    qtensor ta, tb;
    if (!qt_quantize_at(&ta, pa, a, line)) return;
    if (qt_quantize_at(&tb, pb, b, line)) {
        check_at(ta.q.data_bytes == tb.q.data_bytes && first_diff(ta.q.data, tb.q.data, ta.q.data_bytes) < 0, line,
                 "%s: codes differ", what);
        check_at(first_diff(ta.q.scales, tb.q.scales, ta.q.scales_bytes) < 0, line, "%s: scales differ", what);
        if (ta.q.zero_points)
            check_at(first_diff(ta.q.zero_points, tb.q.zero_points, ta.q.zero_points_bytes) < 0, line,
                     "%s: zero points differ", what);
        qt_free(&tb);
    }
    qt_free(&ta);
}
#define CHECK_SAME_INPUTS(p, a, b, what) check_same_at((p), (a), (p), (b), (what), __LINE__)

static float scale_at(const qtensor *t, int64_t i) {
    float s;
    memcpy(&s, (const char *)t->q.scales + i * 4, 4);
    return s;
}

/* Compares bytes with the expected ones and names the first difference. */
static void check_bytes_at(const void *got, const void *want, size_t n, const char *what, int line) {
    long d = first_diff(got, want, n);
    check_at(d < 0, line, "%s: byte %ld is 0x%02x, expected 0x%02x", what, d,
             d < 0 ? 0 : ((const unsigned char *)got)[d], d < 0 ? 0 : ((const unsigned char *)want)[d]);
}
#define CHECK_BYTES(got, want, n, what) check_bytes_at((got), (want), (n), (what), __LINE__)

static void check_floats_at(const float *got, const float *want, size_t n, float tol, const char *what, int line) {
    size_t i;
    for (i = 0; i < n; i++) {
        if (!(fabsf(got[i] - want[i]) <= tol)) {
            check_at(0, line, "%s: element %zu is %.9g, expected %.9g", what, i, got[i], want[i]);
            return;
        }
    }
    check_at(1, line, "");
}
#define CHECK_FLOATS(got, want, n, tol, what) check_floats_at((got), (want), (n), (tol), (what), __LINE__)

/* ============================================================================================ */
/* Group: versions, the function table, extensions, status names                                 */
/* ============================================================================================ */

#define CHECK_SLOT(api, slot, fn) CHECK((api)->slot == (fn), "qk_api." #slot " does not point at " #fn)

static void check_slots(const qk_api *api) {
    CHECK_SLOT(api, version_number, qk_version_number);
    CHECK_SLOT(api, version_string, qk_version_string);
    CHECK_SLOT(api, last_error, qk_last_error);
    CHECK_SLOT(api, status_string, qk_status_string);
    CHECK_SLOT(api, format_count, qk_format_count);
    CHECK_SLOT(api, format_info_at, qk_format_info_at);
    CHECK_SLOT(api, format_info_get, qk_format_info_get);
    CHECK_SLOT(api, format_from_name, qk_format_from_name);
    CHECK_SLOT(api, quant_params_init, qk_quant_params_init);
    CHECK_SLOT(api, quantized_layout_get, qk_quantized_layout_get);
    CHECK_SLOT(api, quantize, qk_quantize);
    CHECK_SLOT(api, quantize_with_scales, qk_quantize_with_scales);
    CHECK_SLOT(api, dequantize, qk_dequantize);
    CHECK_SLOT(api, quantization_error, qk_quantization_error);
    CHECK_SLOT(api, compare, qk_compare);
    CHECK_SLOT(api, kernel_variant, qk_kernel_variant);
    CHECK_SLOT(api, set_num_threads, qk_set_num_threads);
    CHECK_SLOT(api, get_num_threads, qk_get_num_threads);
    CHECK_SLOT(api, get_extension, qk_get_extension);
    CHECK_SLOT(api, pack_weights, qk_pack_weights);
    CHECK_SLOT(api, packed_matrix_release, qk_packed_matrix_release);
    CHECK_SLOT(api, packed_matrix_get_info, qk_packed_matrix_get_info);
    CHECK_SLOT(api, matmul, qk_matmul);
    CHECK_SLOT(api, matmul_integer, qk_matmul_integer);
    CHECK_SLOT(api, matmul_kernel_variant, qk_matmul_kernel_variant);
}

static void group_abi(void) {
    const char *vs = qk_version_string();
    const qk_api *api;
    char expect[32];

    sprintf(expect, "%d.%d.%d", QK_VERSION_MAJOR, QK_VERSION_MINOR, QK_VERSION_PATCH);
    CHECK(strcmp(QK_VERSION_STRING, expect) == 0, "QK_VERSION_STRING \"%s\" != \"%s\"", QK_VERSION_STRING, expect);
    CHECK(qk_version_number() == QK_VERSION_NUMBER, "qk_version_number() = %u, header says %d",
          qk_version_number(), QK_VERSION_NUMBER);
    CHECK(vs != NULL && strcmp(vs, QK_VERSION_STRING) == 0, "qk_version_string() = \"%s\", header says \"%s\"",
          vs ? vs : "(null)", QK_VERSION_STRING);

    api = qk_get_api(QK_ABI_VERSION);
    CHECK(api != NULL, "qk_get_api(QK_ABI_VERSION) is NULL");
    if (api) {
        CHECK(api->struct_size == sizeof(qk_api), "qk_api.struct_size = %u, expected %zu", api->struct_size,
              sizeof(qk_api));
        CHECK(api->abi_version == QK_ABI_VERSION, "qk_api.abi_version = %u", api->abi_version);
        CHECK(qk_get_api(QK_ABI_VERSION) == api, "qk_get_api returns a different table each call");
        check_slots(api);
        /* A call through the table reaches the same function. */
        CHECK(api->version_number() == QK_VERSION_NUMBER, "api->version_number() differs");
        CHECK(api->format_count() == qk_format_count(), "api->format_count() differs");
    }
    CHECK(qk_get_api(0) == NULL, "qk_get_api(0) is not NULL");
    CHECK(qk_get_api(QK_ABI_VERSION + 1) == NULL, "qk_get_api(QK_ABI_VERSION + 1) is not NULL");
    CHECK(qk_get_api(999) == NULL, "qk_get_api(999) is not NULL");
    CHECK(qk_get_api(UINT32_MAX) == NULL, "qk_get_api(UINT32_MAX) is not NULL");

    CHECK(qk_get_extension(NULL) == NULL, "qk_get_extension(NULL) is not NULL");
    CHECK(qk_get_extension("") == NULL, "qk_get_extension(\"\") is not NULL");
    CHECK(qk_get_extension("org.quantkit.no-such-extension.v1") == NULL, "unknown extension id is not NULL");
    CHECK(qk_get_extension("org.quantkit.onnxruntime-ops") == NULL, "extension id without version is not NULL");
    if (api) CHECK(api->get_extension("org.quantkit.no-such-extension.v1") == NULL, "unknown id via the table");
    note("extension \"org.quantkit.onnxruntime-ops.v1\" is %s",
         qk_get_extension("org.quantkit.onnxruntime-ops.v1") ? "present" : "absent");
}

static int no_fork(void);

static void group_status_strings(void) {
    int s;
    const int32_t unknown[] = {13, 100, -1, INT32_MIN, INT32_MAX};
    size_t i;
    for (s = 0; s <= 12; s++) {
        const char *name = qk_status_string(s);
        CHECK(name != NULL && strcmp(name, status_name(s)) == 0, "qk_status_string(%d) = \"%s\", expected \"%s\"", s,
              name ? name : "(null)", status_name(s));
    }
    for (i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *name = qk_status_string(unknown[i]);
        CHECK(name != NULL && strcmp(name, "unknown status") == 0, "qk_status_string(%d) = \"%s\"", unknown[i],
              name ? name : "(null)");
    }
    /* This group's process (forked fresh) has made no failing call yet. */
    if (!no_fork())
        CHECK(strcmp(qk_last_error(), "") == 0, "qk_last_error() before any failure is \"%s\"", qk_last_error());
}

/* ============================================================================================ */
/* Group: format table                                                                           */
/* ============================================================================================ */

typedef struct format_expect {
    int32_t format, bits, must_flags, must_not_flags, code_min, code_max;
    float level_max; /* the largest positive level: 2^(bits-1) - 1 for every integer format, signed or not */
} format_expect;

#define F_SIG QK_FORMAT_FLAG_SIGNED
#define F_FLT QK_FORMAT_FLAG_FLOAT
#define F_CB QK_FORMAT_FLAG_CODEBOOK
#define F_SC QK_FORMAT_FLAG_SCALED
#define F_ZP QK_FORMAT_FLAG_ZERO_POINT

/* Symmetric min-max maps max|x| onto level_max (header): unsigned integers, whose symmetric zero point
 * is 2^(bits-1), reach 2^(bits-1) - 1 above it, like the signed ones (scale max|x|/127 for uint8).
 * NF4's levels are normal quantiles, not a float type's: no FLOAT flag (bitsandbytes FP4 has it). */
static const format_expect FORMAT_EXPECT[] = {
    {QK_FORMAT_INT8, 8, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -128, 127, 127.0f},
    {QK_FORMAT_UINT8, 8, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 255, 127.0f},
    {QK_FORMAT_INT4, 4, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -8, 7, 7.0f},
    {QK_FORMAT_UINT4, 4, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 15, 7.0f},
    {QK_FORMAT_INT3, 3, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -4, 3, 3.0f},
    {QK_FORMAT_UINT3, 3, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 7, 3.0f},
    {QK_FORMAT_INT2, 2, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -2, 1, 1.0f},
    {QK_FORMAT_UINT2, 2, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 3, 1.0f},
    {QK_FORMAT_NF4, 4, F_CB | F_SC, F_ZP | F_FLT, 0, 15, 1.0f},
    {QK_FORMAT_FP4_E2M1, 4, F_FLT | F_SC, F_ZP, 0, 15, 6.0f},
    {QK_FORMAT_FP8_E4M3FN, 8, F_FLT | F_SC, F_ZP | F_CB, 0, 255, 448.0f},
    {QK_FORMAT_FP8_E5M2, 8, F_FLT | F_SC, F_ZP | F_CB, 0, 255, 57344.0f},
    {QK_FORMAT_FP16, 16, F_FLT, F_SC | F_ZP | F_CB, 0, 65535, 65504.0f},
    {QK_FORMAT_BF16, 16, F_FLT, F_SC | F_ZP | F_CB, 0, 65535, 3.38953139e38f},
    {QK_FORMAT_LOG4, 4, F_CB | F_SC, F_ZP | F_FLT, 0, 15, 1.0f},
    {QK_FORMAT_FP4_BNB, 4, F_FLT | F_CB | F_SC, F_ZP, 0, 15, 1.0f},
};

static void check_format_expect(const qk_format_info *info, const format_expect *e) {
    CHECK(info->bits == e->bits, "%s: bits %d, expected %d", info->name, info->bits, e->bits);
    CHECK((info->flags & e->must_flags) == e->must_flags, "%s: flags 0x%x lack 0x%x", info->name, info->flags,
          e->must_flags);
    CHECK((info->flags & e->must_not_flags) == 0, "%s: flags 0x%x have some of 0x%x", info->name, info->flags,
          e->must_not_flags);
    /* code_min/code_max are integer-code facts; for float/codebook formats only code_max is pinned. */
    if (!(e->must_flags & (F_FLT | F_CB)))
        CHECK(info->code_min == e->code_min, "%s: code_min %d, expected %d", info->name, info->code_min, e->code_min);
    CHECK(info->code_max == e->code_max, "%s: code_max %d, expected %d", info->name, info->code_max, e->code_max);
    CHECK(close_rel(info->level_max, e->level_max, 1e-6), "%s: level_max %g, expected %g", info->name,
          info->level_max, e->level_max);
}

static void check_format_entry(int32_t index, int *seen) {
    qk_format_info info, again;
    int32_t back = -1;
    char upper[64];
    size_t i;
    memset(&info, POISON, sizeof info);
    info.struct_size = sizeof info;
    if (!EXPECT_OK(qk_format_info_at(index, &info))) return;
    CHECK(info.struct_size == sizeof info, "format_info_at changed struct_size to %u", info.struct_size);
    CHECK(info.reserved == 0, "format_info_at(%d).reserved is 0x%x, expected 0", index, info.reserved);
    CHECK(info.format >= 1 && info.format <= 16, "format_info_at(%d).format = %d", index, info.format);
    CHECK(info.name && info.name[0], "format %d has no name", info.format);
    CHECK(info.description && info.description[0], "format %d has no description", info.format);
    if (!info.name || info.format < 1 || info.format > 16) return;
    CHECK(!seen[info.format], "format %d listed twice", info.format);
    seen[info.format] = 1;

    memset(&again, 0, sizeof again);
    again.struct_size = sizeof again;
    if (EXPECT_OK(qk_format_info_get(info.format, &again)))
        CHECK(again.format == info.format && strcmp(again.name, info.name) == 0 && again.bits == info.bits &&
                  again.flags == info.flags && again.code_min == info.code_min && again.code_max == info.code_max &&
                  again.level_max == info.level_max,
              "format_info_get(%d) disagrees with format_info_at(%d)", info.format, index);
    if (EXPECT_OK(qk_format_from_name(info.name, &back)))
        CHECK(back == info.format, "qk_format_from_name(\"%s\") = %d, expected %d", info.name, back, info.format);
    for (i = 0; info.name[i] && i + 1 < sizeof upper; i++) upper[i] = (char)toupper((unsigned char)info.name[i]);
    upper[i] = '\0';
    back = -1;
    if (EXPECT_OK(qk_format_from_name(upper, &back)))
        CHECK(back == info.format, "qk_format_from_name(\"%s\") = %d (case-insensitive)", upper, back);
    for (i = 0; i < sizeof FORMAT_EXPECT / sizeof FORMAT_EXPECT[0]; i++)
        if (FORMAT_EXPECT[i].format == info.format) check_format_expect(&info, &FORMAT_EXPECT[i]);
}

static void check_alias(const char *name, int32_t want) {
    int32_t got = -1;
    if (EXPECT_OK(qk_format_from_name(name, &got)))
        CHECK(got == want, "qk_format_from_name(\"%s\") = %d, expected %d", name, got, want);
}

static void group_formats(void) {
    int seen[17] = {0};
    int32_t n = qk_format_count(), i;
    CHECK(n == 16, "qk_format_count() = %d, the header lists 16", n);
    for (i = 0; i < n && i < 64; i++) check_format_entry(i, seen);
    for (i = 1; i <= 16; i++) CHECK(seen[i], "format %d is missing from the table", i);

    check_alias("int4", QK_FORMAT_INT4);
    check_alias("INT4", QK_FORMAT_INT4);
    check_alias("Int8", QK_FORMAT_INT8);
    check_alias("uint4", QK_FORMAT_UINT4);
    check_alias("nf4", QK_FORMAT_NF4);
    check_alias("NF4", QK_FORMAT_NF4);
    check_alias("fp8", QK_FORMAT_FP8_E4M3FN);
    check_alias("FP8", QK_FORMAT_FP8_E4M3FN);
    check_alias("fp4", QK_FORMAT_FP4_E2M1);
    check_alias("fp16", QK_FORMAT_FP16);
    check_alias("bf16", QK_FORMAT_BF16);
}

/* ============================================================================================ */
/* Group: parameter defaults                                                                     */
/* ============================================================================================ */

/* The params struct followed by poisoned bytes: init must write sizeof(qk_quant_params) at most. */
typedef struct guarded_params {
    qk_quant_params p;
    unsigned char guard[64];
} guarded_params;

static void check_defaults(int32_t format, int32_t granularity) {
    guarded_params g;
    size_t i;
    int intact = 1;
    memset(&g, POISON, sizeof g);
    if (!EXPECT_OK(init_params(&g.p, format))) return;
    for (i = 0; i < sizeof g.guard; i++) intact &= g.guard[i] == POISON;
    CHECK(intact, "qk_quant_params_init(%d) wrote past the struct", format);
    CHECK(g.p.struct_size == sizeof(qk_quant_params), "struct_size %u", g.p.struct_size);
    CHECK(g.p.format == format, "format %d, expected %d", g.p.format, format);
    CHECK(g.p.scheme == QK_SCHEME_SYMMETRIC, "format %d: scheme %d", format, g.p.scheme);
    if (granularity >= 0)
        CHECK(g.p.granularity == granularity, "format %d: granularity %d, expected %d", format, g.p.granularity,
              granularity);
    if (granularity == QK_GRANULARITY_BLOCKED) {
        CHECK(g.p.axis == -1, "format %d: axis %d, expected -1 (last)", format, g.p.axis);
        CHECK(g.p.block_size == 32, "format %d: block_size %d, expected 32", format, g.p.block_size);
    }
    CHECK(g.p.method == QK_METHOD_MINMAX, "format %d: method %d", format, g.p.method);
    CHECK(g.p.rounding == QK_ROUND_HALF_EVEN, "format %d: rounding %d", format, g.p.rounding);
    CHECK(g.p.layout == QK_LAYOUT_ONNX, "format %d: layout %d", format, g.p.layout);
    CHECK(g.p.scale_dtype == QK_DTYPE_F32, "format %d: scale_dtype %d", format, g.p.scale_dtype);
    CHECK(g.p.num_threads == 0, "format %d: num_threads %d", format, g.p.num_threads);
    CHECK(close_rel(g.p.percentile, 99.99, 1e-6), "format %d: percentile %g", format, g.p.percentile);
    CHECK(g.p.search_steps == 20, "format %d: search_steps %d", format, g.p.search_steps);
    CHECK(g.p.min_clip_ratio == 0.5f, "format %d: min_clip_ratio %g", format, g.p.min_clip_ratio);
}

static void group_params(void) {
    int32_t f;
    for (f = QK_FORMAT_INT8; f <= QK_FORMAT_UINT2; f++) check_defaults(f, QK_GRANULARITY_BLOCKED);
    check_defaults(QK_FORMAT_NF4, QK_GRANULARITY_BLOCKED);
    check_defaults(QK_FORMAT_FP4_E2M1, QK_GRANULARITY_BLOCKED);
    check_defaults(QK_FORMAT_LOG4, QK_GRANULARITY_BLOCKED);
    check_defaults(QK_FORMAT_FP4_BNB, QK_GRANULARITY_BLOCKED);
    check_defaults(QK_FORMAT_FP8_E4M3FN, QK_GRANULARITY_PER_TENSOR);
    check_defaults(QK_FORMAT_FP8_E5M2, QK_GRANULARITY_PER_TENSOR);
    check_defaults(QK_FORMAT_FP16, -1); /* "none": the header names no granularity value for it */
    check_defaults(QK_FORMAT_BF16, -1);
    /* struct_size other than sizeof: group struct_size. */
}

/* ============================================================================================ */
/* Group: buffer sizes from qk_quantized_layout_get                                              */
/* ============================================================================================ */

typedef struct layout_expect {
    size_t data_bytes, scales_bytes, zero_points_bytes;
    int64_t scales_count;
    int32_t scales_ndim; /* < 0: shape not checked */
    int64_t scales_shape[4];
} layout_expect;

static void check_layout_at(const qk_quant_params *p, int32_t ndim, const int64_t *shape, layout_expect e,
                            const char *what, int line) {
    qk_quantized_layout l;
    int32_t i;
    g_current = what;
    if (!layout_for(p, ndim, shape, &l)) {
        check_at(0, line, "%s: qk_quantized_layout_get failed: %s", what, g_msg);
        return;
    }
    check_at(l.data_bytes == e.data_bytes, line, "%s: data_bytes %zu, expected %zu", what, l.data_bytes,
             e.data_bytes);
    check_at(l.scales_bytes == e.scales_bytes, line, "%s: scales_bytes %zu, expected %zu", what, l.scales_bytes,
             e.scales_bytes);
    check_at(l.zero_points_bytes == e.zero_points_bytes, line, "%s: zero_points_bytes %zu, expected %zu", what,
             l.zero_points_bytes, e.zero_points_bytes);
    check_at(l.scales_count == e.scales_count, line, "%s: scales_count %lld, expected %lld", what,
             (long long)l.scales_count, (long long)e.scales_count);
    if (e.scales_ndim < 0) return;
    check_at(l.scales_ndim == e.scales_ndim, line, "%s: scales_ndim %d, expected %d", what, l.scales_ndim,
             e.scales_ndim);
    for (i = 0; i < e.scales_ndim && i < l.scales_ndim; i++)
        check_at(l.scales_shape[i] == e.scales_shape[i], line, "%s: scales_shape[%d] %lld, expected %lld", what, i,
                 (long long)l.scales_shape[i], (long long)e.scales_shape[i]);
}
#define CHECK_LAYOUT(p, ndim, shape, ...)                                                                 \
    do {                                                                                                  \
        layout_expect e_ = {__VA_ARGS__};                                                                 \
        check_layout_at((p), (ndim), (shape), e_, #p " " #shape, __LINE__);                               \
    } while (0)

/* MatMulNBits codes are unsigned; the header does not say which format value selects them.
 * This finds the one the library takes for `bits` (signed first), once. */
static int32_t mnb_format(int bits) {
    const int32_t pairs[3][2] = {{QK_FORMAT_INT2, QK_FORMAT_UINT2}, {QK_FORMAT_INT4, QK_FORMAT_UINT4},
                                 {QK_FORMAT_INT8, QK_FORMAT_UINT8}};
    const int32_t *pair = pairs[bits == 2 ? 0 : bits == 4 ? 1 : 2];
    const int64_t shape[2] = {2, 32};
    qk_quantized_layout l;
    int k;
    for (k = 0; k < 2; k++) {
        qk_quant_params p = params_for(pair[k]);
        p.layout = QK_LAYOUT_MATMULNBITS;
        p.block_size = 16;
        if (layout_for(&p, 2, shape, &l)) return pair[k];
    }
    check_at(0, __LINE__, "MatMulNBits %d-bit: neither the signed nor the unsigned format is accepted (%s)", bits,
             g_msg);
    return pair[1];
}

static qk_quant_params mnb_params(int bits, int block) {
    qk_quant_params p = params_for(mnb_format(bits));
    p.layout = QK_LAYOUT_MATMULNBITS;
    p.block_size = block;
    return p;
}

static void layout_integer_cases(void) {
    const int64_t s3x40[2] = {3, 40}, s40x3[2] = {40, 3}, s3x5[2] = {3, 5}, s2x3x40[3] = {2, 3, 40};
    const int64_t s1x64[2] = {1, 64}, big[2] = {4096, 11008};
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    p.block_size = 16;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 36, 0, 9, 2, {3, 3});
    CHECK_LAYOUT(&p, 3, s2x3x40, 120, 72, 0, 18, 3, {2, 3, 3});
    p.scale_dtype = QK_DTYPE_F16;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 18, 0, 9, 2, {3, 3});
    p.scale_dtype = QK_DTYPE_BF16;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 18, 0, 9, 2, {3, 3});
    p.scale_dtype = QK_DTYPE_F32;
    p.axis = 0;
    CHECK_LAYOUT(&p, 2, s40x3, 60, 36, 0, 9, 2, {3, 3});
    p.axis = -1;
    p.block_size = 128;
    CHECK_LAYOUT(&p, 2, big, 22544384, 4096 * 86 * 4, 0, 4096 * 86, 2, {4096, 86});
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    CHECK_LAYOUT(&p, 2, s3x5, 8, 4, 0, 1, 0, {0}); /* 15 nibbles: the last byte is half padding */

    p = params_for(QK_FORMAT_UINT4);
    p.block_size = 16;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 36, 5, 9, 2, {3, 3}); /* symmetric unsigned: zero points 8 stored */
    p.scheme = QK_SCHEME_ASYMMETRIC;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 36, 5, 9, 2, {3, 3}); /* 9 packed uint4 zero points */

    p = params_for(QK_FORMAT_INT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 4, 0, 1, 0, {0});
    CHECK_LAYOUT(&p, 0, s3x40, 1, 4, 0, 1, 0, {0}); /* a scalar */
    p.granularity = QK_GRANULARITY_PER_AXIS;
    p.axis = 0;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 12, 0, 3, 1, {3});
    p.axis = 1;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 160, 0, 40, 1, {40});
    p.axis = -1;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 160, 0, 40, 1, {40});
    p.scheme = QK_SCHEME_ASYMMETRIC;
    p.axis = 0;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 12, 3, 3, 1, {3}); /* int8 zero points, one per row */
    p.granularity = QK_GRANULARITY_BLOCKED;
    p.axis = -1;
    p.block_size = 16;
    CHECK_LAYOUT(&p, 2, s3x40, 120, 36, 9, 9, 2, {3, 3});

    p = params_for(QK_FORMAT_INT2);
    CHECK_LAYOUT(&p, 2, s1x64, 16, 8, 0, 2, 2, {1, 2});
    p = params_for(QK_FORMAT_INT3);
    CHECK_LAYOUT(&p, 2, s1x64, 24, 8, 0, 2, 2, {1, 2}); /* 3-bit codes packed back to back */
}

static void layout_other_cases(void) {
    const int64_t s3x40[2] = {3, 40}, empty[2] = {0, 40}, empty_k[2] = {3, 0};
    const int64_t eight[QK_MAX_DIMS] = {1, 1, 1, 1, 1, 1, 3, 40};
    qk_quant_params p = mnb_params(4, 16);
    CHECK_LAYOUT(&p, 2, s3x40, 72, 36, 0, 9, 2, {3, 3}); /* [3, 3, 8] bytes */
    p.scheme = QK_SCHEME_ASYMMETRIC;
    CHECK_LAYOUT(&p, 2, s3x40, 72, 36, 6, 9, 2, {3, 3}); /* zero points [3, ceil(3*4/8)] */
    p = mnb_params(8, 16);
    CHECK_LAYOUT(&p, 2, s3x40, 144, 36, 0, 9, 2, {3, 3});
    p = mnb_params(2, 16);
    CHECK_LAYOUT(&p, 2, s3x40, 36, 36, 0, 9, 2, {3, 3});

    p = params_for(QK_FORMAT_NF4);
    p.layout = QK_LAYOUT_BNB4;
    p.block_size = 64;
    CHECK_LAYOUT(&p, 2, s3x40, 60, 8, 0, 2, -1, {0}); /* 120 elements flattened: 2 blocks */
    p = params_for(QK_FORMAT_NF4);
    CHECK_LAYOUT(&p, 2, s3x40, 60, 24, 0, 6, 2, {3, 2});

    p = params_for(QK_FORMAT_FP8_E4M3FN);
    CHECK_LAYOUT(&p, 2, s3x40, 120, 4, 0, 1, 0, {0});
    p = params_for(QK_FORMAT_FP16);
    {
        qk_quantized_layout l;
        if (layout_for(&p, 2, s3x40, &l))
            CHECK(l.data_bytes == 240 && l.scales_bytes == 0 && l.scales_count == 0 && l.zero_points_bytes == 0,
                  "fp16 [3,40]: data %zu scales %zu (%lld) zero points %zu, expected 240/0 (0)/0", l.data_bytes,
                  l.scales_bytes, (long long)l.scales_count, l.zero_points_bytes);
        else
            CHECK(0, "fp16 layout failed: %s", g_msg);
    }

    p = params_for(QK_FORMAT_INT4);
    p.block_size = 16;
    CHECK_LAYOUT(&p, 2, empty, 0, 0, 0, 0, 2, {0, 3});
    CHECK_LAYOUT(&p, 2, empty_k, 0, 0, 0, 0, 2, {3, 0});
    CHECK_LAYOUT(&p, QK_MAX_DIMS, eight, 60, 36, 0, 9, -1, {0}); /* the largest rank is accepted */
}

static void group_layout(void) {
    layout_integer_cases();
    layout_other_cases();
}

/* ============================================================================================ */
/* Group: integer formats, ONNX layout, values computed by hand                                  */
/* ============================================================================================ */

/* Quantizes x[n] (shape [1,n] or `shape`) and compares codes, scales and zero points with the
 * expected bytes; then checks that dequantize gives `deq`. Any `want_*` may be NULL. */
typedef struct expect_q {
    const unsigned char *data;
    size_t data_bytes;
    const float *scales;
    size_t scales_count;
    const unsigned char *zero_points;
    size_t zero_points_bytes;
    const float *deq;
} expect_q;

static void quantize_and_compare_at(const qk_quant_params *p, int32_t ndim, const int64_t *shape, const float *x,
                                    expect_q e, const char *what, int line) {
    qtensor t;
    qk_tensor in = tensor_of((void *)x, QK_DTYPE_F32, ndim, shape);
    size_t n = (size_t)element_count(ndim, shape), i;
    float *y;
    if (!qt_quantize_at(&t, p, &in, line)) return;
    if (e.data) {
        check_at(t.q.data_bytes == e.data_bytes, line, "%s: data_bytes %zu, expected %zu", what, t.q.data_bytes,
                 e.data_bytes);
        if (t.q.data_bytes == e.data_bytes) check_bytes_at(t.q.data, e.data, e.data_bytes, what, line);
    }
    for (i = 0; e.scales && i < e.scales_count; i++)
        check_at(close_rel(scale_at(&t, (int64_t)i), e.scales[i], 1e-6), line, "%s: scale[%zu] %.9g, expected %.9g",
                 what, i, scale_at(&t, (int64_t)i), e.scales[i]);
    if (e.zero_points) {
        check_at(t.q.zero_points_bytes == e.zero_points_bytes, line, "%s: zero_points_bytes %zu, expected %zu", what,
                 t.q.zero_points_bytes, e.zero_points_bytes);
        if (t.q.zero_points && t.q.zero_points_bytes == e.zero_points_bytes)
            check_bytes_at(t.q.zero_points, e.zero_points, e.zero_points_bytes, what, line);
    }
    y = qt_dequantize_at(&t, p, ndim, shape, line);
    if (y && e.deq) check_floats_at(y, e.deq, n, 0.0f, what, line);
    free(y);
    qt_free(&t);
}
#define QUANTIZE_AND_COMPARE(p, ndim, shape, x, ...)                                                      \
    do {                                                                                                  \
        expect_q e_ = {__VA_ARGS__};                                                                      \
        quantize_and_compare_at((p), (ndim), (shape), (x), e_, #p " " #x, __LINE__);                      \
    } while (0)

/* int8 per-tensor: max|x| = 127 makes the scale exactly 1, so codes are the rounded values. */
static void int8_per_tensor_cases(void) {
    static const float x[10] = {127, -127, -2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f, 3.49f, 100.6f};
    static const signed char even[10] = {127, -127, -2, -2, 0, 0, 2, 2, 3, 101};
    static const signed char away[10] = {127, -127, -3, -2, -1, 1, 2, 3, 3, 101};
    static const float one = 1.0f;
    const int64_t shape[2] = {2, 5};
    float deq_even[10], deq_away[10];
    int i;
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    for (i = 0; i < 10; i++) {
        deq_even[i] = even[i];
        deq_away[i] = away[i];
    }
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, (const unsigned char *)even, 10, &one, 1, NULL, 0, deq_even);
    p.rounding = QK_ROUND_HALF_AWAY;
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, (const unsigned char *)away, 10, &one, 1, NULL, 0, deq_away);
}

/* Asymmetric 8-bit: range [-55, 200] is 255 wide, so the scale is 1 and the zero point exact. */
static void int8_asymmetric_cases(void) {
    static const float x[6] = {-55, 200, 0, 10.5f, 11.5f, -3.5f};
    static const unsigned char u8[6] = {0, 255, 55, 65, 67, 51};
    static const signed char i8[6] = {-128, 127, -73, -63, -61, -77};
    static const unsigned char zp_u8 = 55;
    static const signed char zp_i8 = -73;
    static const float one = 1.0f;
    static const float deq[6] = {-55, 200, 0, 10, 12, -4};
    const int64_t shape[1] = {6};
    qk_quant_params p = params_for(QK_FORMAT_UINT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    p.scheme = QK_SCHEME_ASYMMETRIC;
    QUANTIZE_AND_COMPARE(&p, 1, shape, x, u8, 6, &one, 1, &zp_u8, 1, deq);
    p.format = QK_FORMAT_INT8;
    QUANTIZE_AND_COMPARE(&p, 1, shape, x, (const unsigned char *)i8, 6, &one, 1, (const unsigned char *)&zp_i8, 1,
                         deq);
}

/* int4 [3,40] blocks of 16 along the last axis (the last block has 8 elements). Each block's
 * scale is a power of two s, with max|x| = 7s, so codes are the rounded pattern values. */
static void int4_blocked_cases(void) {
    static const float v[16] = {7,    -7, 2.5f, -2.5f, 3.5f, -3.5f, 0.49f, -0.51f,
                                6.5f, 1,  0,    -1,    5.25f, -4.75f, 0.5f, -6};
    static const int c[16] = {7, -7, 2, -2, 4, -4, 0, -1, 6, 1, 0, -1, 5, -5, 0, -6};
    const int64_t shape[2] = {3, 40};
    float x[120], deq[120], scales[9];
    int codes[120], r, k;
    unsigned char data[60];
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    p.block_size = 16;
    for (r = 0; r < 3; r++) {
        for (k = 0; k < 40; k++) {
            float s = ldexpf(1.0f, r - k / 16);
            x[r * 40 + k] = s * v[k % 16];
            codes[r * 40 + k] = c[k % 16];
            deq[r * 40 + k] = s * (float)c[k % 16];
        }
        for (k = 0; k < 3; k++) scales[r * 3 + k] = ldexpf(1.0f, r - k);
    }
    pack4(codes, 120, data, 0);
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, data, 60, scales, 9, NULL, 0, deq);
}

/* 15 int4 codes per tensor: the 8th byte's high nibble is padding and must be zero. */
static void int4_padding_case(void) {
    static const float x[15] = {7, -7, 1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6, 7};
    static const unsigned char data[8] = {0x97, 0x21, 0x43, 0x65, 0xEF, 0xCD, 0xAB, 0x07};
    static const float one = 1.0f;
    const int64_t shape[2] = {3, 5};
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, data, 8, &one, 1, NULL, 0, x);
}

/* uint4 asymmetric [2,16], one block per row. Row 0 spans [-2, 13]: scale 1, zero point 2.
 * Row 1 spans [0, 15]: scale 1, zero point 0. Zero points are packed uint4: 0x02. */
static void uint4_asymmetric_case(void) {
    static const float x[32] = {-2, 13, 0, 5.5f, 6.5f, -1.5f, 12.4f, 1, 0, 1, 2, 3, 4, 5, 6, 7,
                                0,  15, 7.5f, 8.5f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const int c[32] = {0, 15, 2, 8, 8, 0, 14, 3, 2, 3, 4, 5, 6, 7, 8, 9,
                              0, 15, 8, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    static const float scales[2] = {1, 1};
    static const unsigned char zp = 0x02;
    const int64_t shape[2] = {2, 16};
    unsigned char data[16];
    float deq[32];
    int i;
    qk_quant_params p = params_for(QK_FORMAT_UINT4);
    p.scheme = QK_SCHEME_ASYMMETRIC;
    p.block_size = 16;
    for (i = 0; i < 32; i++) deq[i] = (float)(c[i] - (i < 16 ? 2 : 0));
    pack4(c, 32, data, 0);
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, data, 16, scales, 2, &zp, 1, deq);
}

/* Every element within half a step of the original, for a uniform format with step = scale. */
static void check_uniform_bound_at(const float *x, const float *y, size_t n, const qtensor *t, size_t block,
                                   const char *what, int line) {
    size_t i;
    for (i = 0; i < n; i++) {
        float s = fabsf(scale_at(t, (int64_t)(i / block)));
        if (!(fabsf(y[i] - x[i]) <= 0.5f * s * (1 + 1e-5f) + 1e-7f)) {
            check_at(0, line, "%s: element %zu: %.9g -> %.9g, more than half a step (%g)", what, i, x[i], y[i], s);
            return;
        }
    }
    check_at(1, line, "");
}

/* Random data through a low-bit symmetric format: scales max|x|/code_max, error within half a step. */
static void uniform_roundtrip_at(int32_t format, int code_max, int block, int64_t cols, const char *what, int line) {
    const int64_t shape[2] = {1, cols};
    float x[256];
    size_t b;
    qtensor t;
    float *y;
    qk_quant_params p = params_for(format);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    p.block_size = block;
    fill_normal(x, (size_t)cols, 1.0f);
    if (!qt_quantize_at(&t, &p, &in, line)) return;
    for (b = 0; b < (size_t)(cols / block); b++) {
        float want = max_abs(x + b * (size_t)block, (size_t)block) / (float)code_max;
        check_at(close_rel(scale_at(&t, (int64_t)b), want, 1e-6), line, "%s: scale[%zu] %.9g, expected %.9g", what,
                 b, scale_at(&t, (int64_t)b), want);
    }
    y = qt_dequantize_at(&t, &p, 2, shape, line);
    if (y) check_uniform_bound_at(x, y, (size_t)cols, &t, (size_t)block, what, line);
    free(y);
    qt_free(&t);
}

/* uint8 symmetric keeps zero at code 128: the scale is max|x|/127, the zero point 128 is stored
 * (ONNX's default zero point is 0), zero comes back exactly and every element within half a step. */
static void uint8_symmetric_case(void) {
    static const float x[6] = {-1, 1, 0.5f, 0, -0.25f, 0.9f};
    const int64_t shape[1] = {6};
    qtensor t;
    float *y;
    qk_quant_params p = params_for(QK_FORMAT_UINT8);
    qk_tensor in = tensor_of((void *)x, QK_DTYPE_F32, 1, shape);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    if (!QT_QUANTIZE(&t, &p, &in)) return;
    CHECK(((unsigned char *)t.q.data)[3] == 128, "uint8 symmetric: 0 -> code %d, expected 128",
          ((unsigned char *)t.q.data)[3]);
    CHECK(close_rel(scale_at(&t, 0), 1.0 / 127, 1e-6), "uint8 symmetric: scale %.9g, expected 1/127",
          scale_at(&t, 0));
    CHECK(t.q.zero_points_bytes == 1 && ((unsigned char *)t.q.zero_points)[0] == 128,
          "uint8 symmetric: %zu zero-point bytes, expected one holding 128", t.q.zero_points_bytes);
    y = QT_DEQUANTIZE(&t, &p, 1, shape);
    if (y) {
        CHECK(y[3] == 0.0f, "uint8 symmetric: 0 dequantized to %g", y[3]);
        check_uniform_bound_at(x, y, 6, &t, 6, "uint8 symmetric", __LINE__);
    }
    free(y);
    qt_free(&t);
}

static void group_integer(void) {
    int8_per_tensor_cases();
    int8_asymmetric_cases();
    int4_blocked_cases();
    int4_padding_case();
    uint4_asymmetric_case();
    uint8_symmetric_case();
    uniform_roundtrip_at(QK_FORMAT_INT3, 3, 32, 64, "int3 block 32", __LINE__);
    uniform_roundtrip_at(QK_FORMAT_INT2, 1, 32, 64, "int2 block 32", __LINE__);
    uniform_roundtrip_at(QK_FORMAT_INT8, 127, 32, 256, "int8 block 32", __LINE__);
    uniform_roundtrip_at(QK_FORMAT_INT4, 7, 64, 256, "int4 block 64", __LINE__);
}

/* ============================================================================================ */
/* Group: MatMulNBits layout                                                                     */
/* ============================================================================================ */

/* MatMulNBits packs [N, blocks, block/2] bytes, first element in the low nibble. */
static void pack_mnb4(const int *codes, int64_t n, int64_t k, int block, unsigned char *out) {
    int64_t blocks = (k + block - 1) / block, r, j;
    memset(out, 0, (size_t)(n * blocks * block / 2));
    for (r = 0; r < n; r++)
        for (j = 0; j < k; j++) {
            size_t byte = (size_t)(r * blocks * block / 2 + j / 2);
            out[byte] |= (unsigned char)((codes[r * k + j] & 0xF) << ((j & 1) ? 4 : 0));
        }
}

/* [2,32] blocks of 16. Row 0 block 0 has extreme -8 (scale -8/-8 = 1), block 1 has extreme +8
 * (scale 8/-8 = -1, as ONNX Runtime's quantizer). Row 1 block 0 is zero (scale 0). Codes are
 * unsigned with zero point 8; 0.5 is where the two rounding rules differ. */
static void mnb_symmetric_cases(void) {
    static const float b00[16] = {-8, 7, 3, 0.5f, -2.5f, 1.5f, 2.5f, -0.5f, 6, -7, 4, 5, -3, -4, 0, 1};
    static const int even00[16] = {0, 15, 11, 8, 6, 10, 10, 8, 14, 1, 12, 13, 5, 4, 8, 9};
    static const int away00[16] = {0, 15, 11, 9, 6, 10, 11, 8, 14, 1, 12, 13, 5, 4, 8, 9};
    static const float b01[16] = {8, -4, 2, 1, -1, 0, 3, -3, 4, 5, -5, 6, -6, 7, -7, 0.25f};
    static const int c01[16] = {0, 12, 6, 7, 9, 8, 5, 11, 4, 3, 13, 2, 14, 1, 15, 8};
    static const float scales[4] = {1, -1, 0, 1};
    const int64_t shape[2] = {2, 32};
    float x[64], deq_even[64], deq_away[64];
    int even[64], away[64], j, round;
    unsigned char data[32];
    qk_quant_params p = mnb_params(4, 16);
    for (j = 0; j < 16; j++) {
        x[j] = b00[j];
        x[16 + j] = b01[j];
        x[32 + j] = 0;
        x[48 + j] = (float)(j % 15 - 7); /* extreme -7... 7: |min| = |max|, scale tie-break unpinned */
        even[j] = even00[j];
        away[j] = away00[j];
        even[16 + j] = away[16 + j] = c01[j];
        even[32 + j] = away[32 + j] = 8;
    }
    x[48] = -8; /* make the extreme unique: scale 1 */
    for (j = 0; j < 16; j++) even[48 + j] = away[48 + j] = (int)x[48 + j] + 8;
    for (j = 0; j < 64; j++) {
        float s = scales[j / 16];
        deq_even[j] = (float)(even[j] - 8) * s;
        deq_away[j] = (float)(away[j] - 8) * s;
        if (s == 0) deq_even[j] = deq_away[j] = 0;
    }
    for (round = 0; round < 2; round++) {
        p.rounding = round ? QK_ROUND_HALF_AWAY : QK_ROUND_HALF_EVEN;
        pack_mnb4(round ? away : even, 2, 32, 16, data);
        /* The zero block's codes are not pinned (any code times scale 0 is 0): copy from the result. */
        {
            qtensor t;
            qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
            if (QT_QUANTIZE(&t, &p, &in)) {
                memcpy(data + 16, (unsigned char *)t.q.data + 16, 8);
                qt_free(&t);
            }
        }
        QUANTIZE_AND_COMPARE(&p, 2, shape, x, data, 32, scales, 4, NULL, 0, round ? deq_away : deq_even);
    }
}

/* K = 40 with blocks of 16: the last block holds 8 codes then 8 padding nibbles of code 0.
 * Asymmetric zero points: 3 per row in 2 bytes, the 4th nibble padded with 8. */
static void mnb_padding_cases(void) {
    const int64_t shape[2] = {3, 40};
    float x[120];
    qtensor t;
    int r, b;
    qk_quant_params p = mnb_params(4, 16);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    fill_normal(x, 120, 1.0f);
    if (QT_QUANTIZE(&t, &p, &in)) {
        const unsigned char *d = (const unsigned char *)t.q.data;
        CHECK(t.q.data_bytes == 72, "MatMulNBits [3,40] block 16: %zu bytes", t.q.data_bytes);
        for (r = 0; r < 3; r++)
            for (b = 4; b < 8; b++)
                CHECK(d[r * 24 + 16 + b] == 0, "row %d: padding byte %d of the last block is 0x%02x", r, b,
                      d[r * 24 + 16 + b]);
        qt_free(&t);
    }
    p.scheme = QK_SCHEME_ASYMMETRIC;
    if (QT_QUANTIZE(&t, &p, &in)) {
        const unsigned char *z = (const unsigned char *)t.q.zero_points;
        float *y = QT_DEQUANTIZE(&t, &p, 2, shape);
        CHECK(t.q.zero_points_bytes == 6, "zero_points_bytes %zu, expected 6", t.q.zero_points_bytes);
        for (r = 0; z && t.q.zero_points_bytes == 6 && r < 3; r++)
            CHECK((z[r * 2 + 1] >> 4) == 8, "row %d: zero-point padding nibble is %d, expected 8", r,
                  z[r * 2 + 1] >> 4);
        if (y) {
            for (r = 0; r < 120; r++) {
                float s = fabsf(scale_at(&t, r / 40 * 3 + r % 40 / 16));
                if (!(fabsf(y[r] - x[r]) <= 0.5f * s * 1.0001f + 1e-6f)) {
                    CHECK(0, "asymmetric MatMulNBits: element %d off by %g (step %g)", r, y[r] - x[r], s);
                    break;
                }
            }
        }
        free(y);
        qt_free(&t);
    }
}

/* MatMulNBits codes are unsigned whatever the format's sign: when the library takes both int4 and
 * uint4 for the layout, they must give the same bytes. */
static void mnb_format_sign_case(void) {
    const int64_t shape[2] = {8, 96};
    float x[768];
    qk_quantized_layout l;
    qk_quant_params ps = params_for(QK_FORMAT_INT4), pu = params_for(QK_FORMAT_UINT4);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    fill_normal(x, 768, 1.0f);
    ps.layout = pu.layout = QK_LAYOUT_MATMULNBITS;
    if (layout_for(&ps, 2, shape, &l) && layout_for(&pu, 2, shape, &l))
        check_same_at(&ps, &in, &pu, &in, "MatMulNBits int4 vs uint4", __LINE__);
    else
        note("MatMulNBits takes only one of int4/uint4");
}

static void group_matmulnbits(void) {
    mnb_symmetric_cases();
    mnb_padding_cases();
    mnb_format_sign_case();
}

/* ============================================================================================ */
/* Group: codebook formats (NF4, FP4, LOG4, bitsandbytes FP4) and the BNB4 layout                */
/* ============================================================================================ */

/* NF4 levels times 2 (absmax 2): codes are the level indices, dequantization is exact. ONNX packs
 * the first element low, bitsandbytes high. */
static void nf4_cases(void) {
    const int64_t shape[2] = {1, 64};
    float x[64], scale = 2.0f;
    int codes[64], i;
    unsigned char onnx[32], bnb[32];
    qk_quant_params p = params_for(QK_FORMAT_NF4);
    for (i = 0; i < 64; i++) {
        codes[i] = (i * 7 + i / 16) % 16; /* every level, in a scrambled order */
        x[i] = 2.0f * NF4_LEVELS[codes[i]];
    }
    pack4(codes, 64, onnx, 0);
    pack4(codes, 64, bnb, 1);
    p.block_size = 64;
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, onnx, 32, &scale, 1, NULL, 0, x);
    p.layout = QK_LAYOUT_BNB4;
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, bnb, 32, &scale, 1, NULL, 0, x);
}

/* FP4 E2M1 with absmax 6 (scale 1): codes are the E2M1 bit patterns; ties go to the even code. */
static void fp4_e2m1_case(void) {
    static const float x[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.5f, -1, -6, 2.5f, 5, 0.25f, 0.75f, -1.75f};
    static const int c[16] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 15, 4, 6, 0, 2, 12};
    static const float deq[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.5f, -1, -6, 2, 4, 0, 1, -2};
    static const float one = 1.0f;
    const int64_t shape[2] = {1, 16};
    unsigned char data[8];
    qk_quant_params p = params_for(QK_FORMAT_FP4_E2M1);
    p.block_size = 16;
    pack4(c, 16, data, 0);
    QUANTIZE_AND_COMPARE(&p, 2, shape, x, data, 8, &one, 1, NULL, 0, deq);
}

/* LOG4 and bitsandbytes FP4: values on the scaled levels come back (nearly) exactly. */
static void level_roundtrip_at(int32_t format, const float *levels, int count, float absmax, const char *what,
                               int line) {
    const int64_t shape[2] = {1, 32};
    float x[32];
    int i;
    qtensor t;
    float *y;
    qk_quant_params p = params_for(format);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    for (i = 0; i < 32; i++) x[i] = absmax * levels[i % count] * ((i / count) % 2 ? -1.0f : 1.0f);
    if (!qt_quantize_at(&t, &p, &in, line)) return;
    y = qt_dequantize_at(&t, &p, 2, shape, line);
    if (y) check_floats_at(y, x, 32, absmax * 1e-6f, what, line);
    free(y);
    qt_free(&t);
}

/* BNB4 with an odd element count: the last low nibble holds the code of 0.0 (7 for NF4, 0 for
 * bitsandbytes FP4), as ONNX Runtime's quantizer writes it. */
static void bnb4_odd_count_at(int32_t format, int zero_code, int line) {
    const int64_t shape[1] = {63};
    float x[63];
    qtensor t;
    qk_quant_params p = params_for(format);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 1, shape);
    fill_normal(x, 63, 1.0f);
    p.layout = QK_LAYOUT_BNB4;
    p.block_size = 64;
    if (!qt_quantize_at(&t, &p, &in, line)) return;
    check_at(t.q.data_bytes == 32, line, "bnb4 63 elements: %zu data bytes, expected 32", t.q.data_bytes);
    if (t.q.data_bytes == 32)
        check_at((((unsigned char *)t.q.data)[31] & 0xF) == zero_code, line,
                 "format %d bnb4 63 elements: padding nibble %d, expected %d", format,
                 ((unsigned char *)t.q.data)[31] & 0xF, zero_code);
    qt_free(&t);
}

static void group_codebooks(void) {
    static const float log4[8] = {1, 0.5f, 0.25f, 0.125f, 0.0625f, 0.03125f, 0.015625f, 0};
    static const float fp4bnb[8] = {1, 0.6666667f, 0.5f, 0.3333333f, 0.25f, 0.1666667f, 0.0052083333f, 0};
    nf4_cases();
    fp4_e2m1_case();
    level_roundtrip_at(QK_FORMAT_LOG4, log4, 8, 4.0f, "log4", __LINE__);
    level_roundtrip_at(QK_FORMAT_FP4_BNB, fp4bnb, 8, 3.0f, "fp4_bnb", __LINE__);
    bnb4_odd_count_at(QK_FORMAT_NF4, 7, __LINE__);
    bnb4_odd_count_at(QK_FORMAT_FP4_BNB, 0, __LINE__);
}

/* ============================================================================================ */
/* Group: FP8, FP16, BF16                                                                        */
/* ============================================================================================ */

/* FP4 writes +0 for -0 (ONNX adds its zero point), FP8 keeps -0 (0x80). */
static void negative_zero_cases(void) {
    static const float x4[4] = {6, -0.0f, 0, -6}, x8[4] = {448, -0.0f, 0, -448};
    static const unsigned char c4[2] = {0x07, 0xF0}, c8[4] = {0x7E, 0x80, 0x00, 0xFE};
    static const float one = 1.0f;
    const int64_t shape[1] = {4};
    qk_quant_params p = params_for(QK_FORMAT_FP4_E2M1);
    QUANTIZE_AND_COMPARE(&p, 1, shape, x4, c4, 2, &one, 1, NULL, 0, NULL);
    p = params_for(QK_FORMAT_FP8_E4M3FN);
    QUANTIZE_AND_COMPARE(&p, 1, shape, x8, c8, 4, &one, 1, NULL, 0, NULL);
}

/* A value that does not fit its type is QK_ERROR_OVERFLOW, with every output untouched:
 * 1e6 converted to FP16, and a scale of 1e7/127 stored as F16 scales. */
static void value_overflow_at(int32_t format, int32_t scale_dtype, float big, const char *what, int line) {
    float x[4] = {0, 1, -3, 0.5f};
    const int64_t shape[1] = {4};
    unsigned char data[16 + GUARD], scales[8 + GUARD], before[sizeof data + sizeof scales];
    qk_quantized q;
    qk_quant_params p = params_for(format);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 1, shape);
    x[0] = big;
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    p.scale_dtype = scale_dtype;
    memset(data, POISON, sizeof data);
    memset(scales, POISON, sizeof scales);
    memcpy(before, data, sizeof data);
    memcpy(before + sizeof data, scales, sizeof scales);
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = data;
    q.data_bytes = 16;
    q.scales = scales;
    q.scales_bytes = 8;
    g_current = what;
    expect_fail_at(qk_quantize(&p, &in, &q), S(QK_ERROR_OVERFLOW), "overflow|range|fit|large|65504|f16|fp16",
                   what, line);
    check_at(memcmp(before, data, sizeof data) == 0 && memcmp(before + sizeof data, scales, sizeof scales) == 0,
             line, "%s: outputs changed on failure", what);
}

static void group_floats(void) {
    /* E4M3FN per tensor, absmax 448 (scale 1). 1.0625 and 1.1875 are ties between codes. */
    static const float x43[10] = {448, 1, -2, 0.5f, 0.001953125f, 0, -448, 3, 1.0625f, 1.1875f};
    static const unsigned char c43[10] = {0x7E, 0x38, 0xC0, 0x30, 0x01, 0x00, 0xFE, 0x44, 0x38, 0x3A};
    static const float d43[10] = {448, 1, -2, 0.5f, 0.001953125f, 0, -448, 3, 1, 1.25f};
    /* E5M2 per tensor, absmax 57344 (scale 1). */
    static const float x52[8] = {57344, 1, -2, 0.5f, 1.52587890625e-05f, 0, -57344, 3};
    static const unsigned char c52[8] = {0x7B, 0x3C, 0xC0, 0x38, 0x01, 0x00, 0xFB, 0x42};
    static const float one = 1.0f;
    static const float xh[6] = {1, -2, 0.5f, 65504, 3.14159265f, 1e-8f};
    const int64_t s10[1] = {10}, s8[1] = {8}, s6[1] = {6};
    uint16_t h[6], b[6];
    float dh[6], db[6];
    int i;
    qk_quant_params p = params_for(QK_FORMAT_FP8_E4M3FN);
    QUANTIZE_AND_COMPARE(&p, 1, s10, x43, c43, 10, &one, 1, NULL, 0, d43);
    p = params_for(QK_FORMAT_FP8_E5M2);
    QUANTIZE_AND_COMPARE(&p, 1, s8, x52, c52, 8, &one, 1, NULL, 0, x52);

    for (i = 0; i < 6; i++) {
        h[i] = f32_to_f16(xh[i]);
        b[i] = f32_to_bf16(xh[i]);
        dh[i] = f16_to_f32(h[i]);
        db[i] = bf16_to_f32(b[i]);
    }
    p = params_for(QK_FORMAT_FP16);
    QUANTIZE_AND_COMPARE(&p, 1, s6, xh, (const unsigned char *)h, 12, NULL, 0, NULL, 0, dh);
    p = params_for(QK_FORMAT_BF16);
    QUANTIZE_AND_COMPARE(&p, 1, s6, xh, (const unsigned char *)b, 12, NULL, 0, NULL, 0, db);
    negative_zero_cases();
    value_overflow_at(QK_FORMAT_FP16, QK_DTYPE_F32, 1e6f, "fp16 conversion of 1e6", __LINE__);
    value_overflow_at(QK_FORMAT_INT8, QK_DTYPE_F16, 1e7f, "int8 scale 1e7/127 as an F16 scale", __LINE__);
}

/* ============================================================================================ */
/* Group: input and output element types, strides, empty tensors, scale types, thread counts     */
/* ============================================================================================ */


/* F16 and BF16 inputs holding the same values as an F32 input quantize identically. */
static void half_input_cases(void) {
    const int64_t shape[2] = {4, 96};
    float x16v[384], xbv[384];
    uint16_t h[384], b[384];
    int i;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    qk_tensor tf, th;
    fill_normal(x16v, 384, 1.0f);
    for (i = 0; i < 384; i++) {
        h[i] = f32_to_f16(x16v[i]);
        x16v[i] = f16_to_f32(h[i]);
        b[i] = f32_to_bf16(x16v[i] * 3);
        xbv[i] = bf16_to_f32(b[i]);
    }
    tf = tensor_of(x16v, QK_DTYPE_F32, 2, shape);
    th = tensor_of(h, QK_DTYPE_F16, 2, shape);
    CHECK_SAME_INPUTS(&p, &tf, &th, "F16 input vs F32");
    tf = tensor_of(xbv, QK_DTYPE_F32, 2, shape);
    th = tensor_of(b, QK_DTYPE_BF16, 2, shape);
    CHECK_SAME_INPUTS(&p, &tf, &th, "BF16 input vs F32");
}

/* Negative strides: `data` points at element [0, 0] of the view, inside the buffer. */
static void negative_stride_cases(float *base) {
    const int64_t shape[2] = {3, 40}, rows_reversed[2] = {-40, 1}, cols_reversed[2] = {40, -1};
    float copy[120];
    int r, c;
    qk_tensor view, dense = tensor_of(copy, QK_DTYPE_F32, 2, shape);
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    p.block_size = 16;
    for (r = 0; r < 3; r++)
        for (c = 0; c < 40; c++) copy[r * 40 + c] = base[(2 - r) * 40 + c];
    view = tensor_of(base + 80, QK_DTYPE_F32, 2, shape);
    view.strides = rows_reversed;
    CHECK_SAME_INPUTS(&p, &view, &dense, "rows reversed (stride -40)");
    for (r = 0; r < 3; r++)
        for (c = 0; c < 40; c++) copy[r * 40 + c] = base[r * 40 + 39 - c];
    view = tensor_of(base + 39, QK_DTYPE_F32, 2, shape);
    view.strides = cols_reversed;
    CHECK_SAME_INPUTS(&p, &view, &dense, "columns reversed (stride -1)");
}

/* A transposed view (strides in elements) quantizes like a contiguous copy of it. */
static void strided_input_cases(void) {
    const int64_t view_shape[2] = {40, 3}, view_strides[2] = {1, 40}; /* over a [3, 40] buffer */
    float base[120], copy[120];
    int r, c;
    qk_tensor view, dense;
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    fill_normal(base, 120, 2.0f);
    for (r = 0; r < 40; r++)
        for (c = 0; c < 3; c++) copy[r * 3 + c] = base[c * 40 + r];
    view = tensor_of(base, QK_DTYPE_F32, 2, view_shape);
    view.strides = view_strides;
    dense = tensor_of(copy, QK_DTYPE_F32, 2, view_shape);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    CHECK_SAME_INPUTS(&p, &view, &dense, "transposed view, per tensor");
    p.granularity = QK_GRANULARITY_PER_AXIS;
    p.axis = 0;
    CHECK_SAME_INPUTS(&p, &view, &dense, "transposed view, per axis 0");
    p = params_for(QK_FORMAT_INT4);
    p.axis = 0;
    p.block_size = 16;
    CHECK_SAME_INPUTS(&p, &view, &dense, "transposed view, blocks along axis 0");
    negative_stride_cases(base);
}

/* Dequantize into F16, BF16 and a strided F32 view. Codes times a power-of-two scale are exact. */
static void output_type_cases(void) {
    const int64_t shape[2] = {3, 40}, tshape[2] = {3, 40}, tstrides[2] = {1, 3};
    float x[120], *y;
    uint16_t h[120], b[120];
    float t_out[120];
    int i;
    qtensor t;
    qk_tensor out;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    p.block_size = 16;
    for (i = 0; i < 120; i++) x[i] = (float)(i % 40 % 16 % 15 - 7) * 0.25f; /* each block holds -1.75: scale 0.25 */
    if (!QT_QUANTIZE(&t, &p, &in)) return;
    y = QT_DEQUANTIZE(&t, &p, 2, shape);
    if (y) CHECK_FLOATS(y, x, 120, 0.0f, "int4 f32 output");
    out = tensor_of(h, QK_DTYPE_F16, 2, shape);
    if (EXPECT_OK(qk_dequantize(&p, &t.q, &out)))
        for (i = 0; i < 120; i++)
            if (h[i] != f32_to_f16(x[i])) {
                CHECK(0, "F16 output element %d is 0x%04x, expected 0x%04x", i, h[i], f32_to_f16(x[i]));
                break;
            }
    out = tensor_of(b, QK_DTYPE_BF16, 2, shape);
    if (EXPECT_OK(qk_dequantize(&p, &t.q, &out)))
        for (i = 0; i < 120; i++)
            if (b[i] != f32_to_bf16(x[i])) {
                CHECK(0, "BF16 output element %d is 0x%04x, expected 0x%04x", i, b[i], f32_to_bf16(x[i]));
                break;
            }
    /* Column-major output: element (r, c) lands at t_out[r + 3c]. */
    out = tensor_of(t_out, QK_DTYPE_F32, 2, tshape);
    out.strides = tstrides;
    if (EXPECT_OK(qk_dequantize(&p, &t.q, &out)))
        for (i = 0; i < 120; i++)
            if (t_out[(i / 40) + 3 * (i % 40)] != x[i]) {
                CHECK(0, "strided output element %d is %g, expected %g", i, t_out[(i / 40) + 3 * (i % 40)], x[i]);
                break;
            }
    free(y);
    qt_free(&t);
}

/* F16 and BF16 scales: max|x| = 127 gives scale 1.0 = 0x3C00 (F16) and 0x3F80 (BF16). */
static void scale_type_cases(void) {
    static const float x[4] = {127, -3, 5, 0};
    const int64_t shape[1] = {4};
    const int32_t types[2] = {QK_DTYPE_F16, QK_DTYPE_BF16};
    const uint16_t one[2] = {0x3C00, 0x3F80};
    int k;
    for (k = 0; k < 2; k++) {
        qtensor t;
        float *y;
        uint16_t s;
        qk_quant_params p = params_for(QK_FORMAT_INT8);
        qk_tensor in = tensor_of((void *)x, QK_DTYPE_F32, 1, shape);
        p.granularity = QK_GRANULARITY_PER_TENSOR;
        p.scale_dtype = types[k];
        if (!QT_QUANTIZE(&t, &p, &in)) continue;
        CHECK(t.q.scales_bytes == 2, "16-bit scale: scales_bytes %zu", t.q.scales_bytes);
        memcpy(&s, t.q.scales, 2);
        CHECK(s == one[k], "scale_dtype %d: scale bits 0x%04x, expected 0x%04x", types[k], s, one[k]);
        y = QT_DEQUANTIZE(&t, &p, 1, shape);
        if (y) CHECK_FLOATS(y, x, 4, 0.0f, "dequantized with 16-bit scales");
        free(y);
        qt_free(&t);
    }
}

/* Empty and scalar tensors, and all-zero groups (scale 0, exact zeros back). */
static void edge_shape_cases(void) {
    const int64_t empty[2] = {0, 40}, one[1] = {1}, zshape[2] = {2, 32};
    float scalar = 3.0f, zeros[64], *y;
    unsigned char dummy[GUARD];
    qk_quantized q;
    qk_tensor in = tensor_of(NULL, QK_DTYPE_F32, 2, empty), out;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    qtensor t;
    int i;
    p.block_size = 16;
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = q.scales = dummy;
    EXPECT_OK(qk_quantize(&p, &in, &q));
    out = tensor_of(NULL, QK_DTYPE_F32, 2, empty);
    EXPECT_OK(qk_dequantize(&p, &q, &out));

    p = params_for(QK_FORMAT_INT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    in = tensor_of(&scalar, QK_DTYPE_F32, 0, one);
    if (QT_QUANTIZE(&t, &p, &in)) {
        CHECK(((signed char *)t.q.data)[0] == 127, "scalar 3.0: code %d", ((signed char *)t.q.data)[0]);
        CHECK(close_rel(scale_at(&t, 0), 3.0 / 127, 1e-6), "scalar 3.0: scale %g", scale_at(&t, 0));
        qt_free(&t);
    }

    memset(zeros, 0, sizeof zeros);
    for (i = 32; i < 64; i++) zeros[i] = (float)(i - 48); /* second row is not zero */
    p = params_for(QK_FORMAT_INT4);
    in = tensor_of(zeros, QK_DTYPE_F32, 2, zshape);
    if (QT_QUANTIZE(&t, &p, &in)) {
        CHECK(scale_at(&t, 0) == 0.0f, "all-zero block: scale %g, expected 0", scale_at(&t, 0));
        y = QT_DEQUANTIZE(&t, &p, 2, zshape);
        for (i = 0; y && i < 32; i++)
            if (y[i] != 0.0f || signbit(y[i])) {
                CHECK(0, "all-zero block dequantized element %d to %g", i, y[i]);
                break;
            }
        free(y);
        qt_free(&t);
    }
}

/* num_threads 1, 2 and 0 (default) give identical bytes. */
static void thread_count_cases(void) {
    const int64_t shape[2] = {64, 4096};
    float *x = (float *)malloc(64 * 4096 * sizeof(float));
    qk_quant_params p1 = params_for(QK_FORMAT_INT4), p2, p0;
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    fill_normal(x, 64 * 4096, 1.0f);
    p2 = p0 = p1;
    p1.num_threads = 1;
    p2.num_threads = 2;
    check_same_at(&p1, &in, &p2, &in, "num_threads 1 vs 2", __LINE__);
    check_same_at(&p1, &in, &p0, &in, "num_threads 1 vs 0", __LINE__);
    p1.format = p2.format = QK_FORMAT_NF4;
    check_same_at(&p1, &in, &p2, &in, "nf4: num_threads 1 vs 2", __LINE__);
    p1.format = p2.format = QK_FORMAT_INT4;
    p2.num_threads = 1000; /* more than the cores: clamped or refused, never different */
    {
        qk_quantized_layout l;
        if (layout_for(&p2, 2, shape, &l)) check_same_at(&p1, &in, &p2, &in, "num_threads 1 vs 1000", __LINE__);
        else note("num_threads 1000 refused: %s", g_msg);
    }
    free(x);
}

/* "A buffer larger than needed is fine": the same bytes come out with room to spare. */
static void oversized_buffer_case(void) {
    const int64_t shape[2] = {3, 40};
    float x[120];
    unsigned char data[200], scales[200];
    qtensor t;
    qk_quantized q;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    fill_normal(x, 120, 1.0f);
    if (!QT_QUANTIZE(&t, &p, &in)) return;
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = data;
    q.data_bytes = sizeof data;
    q.scales = scales;
    q.scales_bytes = sizeof scales;
    if (EXPECT_OK(qk_quantize(&p, &in, &q)))
        CHECK(memcmp(data, t.q.data, t.q.data_bytes) == 0 && memcmp(scales, t.q.scales, t.q.scales_bytes) == 0,
              "oversized buffers got different bytes");
    qt_free(&t);
}

/* A NaN at the very end of a large tensor: NON_FINITE; scales and zero points untouched, while
 * the header lets codes already written stay (reported as a note). */
static void late_nan_case(void) {
    const int64_t shape[2] = {1024, 4096};
    const size_t n = 1024 * 4096;
    float *x = (float *)malloc(n * sizeof(float));
    qtensor t;
    qk_quant_params p = params_for(QK_FORMAT_UINT4);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    size_t i;
    int data_written = 0, scales_ok = 1, zp_ok = 1;
    p.scheme = QK_SCHEME_ASYMMETRIC;
    fill_normal(x, n, 1.0f);
    x[n - 1] = NAN;
    if (!qt_alloc(&t, &p, 2, shape, __LINE__)) return;
    EXPECT_FAIL(S(QK_ERROR_NON_FINITE), NONFINITE_WORDS, qk_quantize(&p, &in, &t.q));
    for (i = 0; i < t.q.data_bytes; i++) data_written |= ((unsigned char *)t.q.data)[i] != POISON;
    for (i = 0; i < t.q.scales_bytes; i++) scales_ok &= ((unsigned char *)t.q.scales)[i] == POISON;
    for (i = 0; i < t.q.zero_points_bytes; i++) zp_ok &= ((unsigned char *)t.q.zero_points)[i] == POISON;
    CHECK(scales_ok, "late NaN: scales were written");
    CHECK(zp_ok, "late NaN: zero points were written");
    note("late NaN in a 16 MiB tensor: codes %s", data_written ? "partly written (allowed)" : "untouched");
    qt_free(&t);
    free(x);
}

static void group_inputs(void) {
    half_input_cases();
    strided_input_cases();
    output_type_cases();
    scale_type_cases();
    edge_shape_cases();
    thread_count_cases();
    oversized_buffer_case();
    late_nan_case();
}

/* ============================================================================================ */
/* Group: qk_quantize_with_scales and qk_dequantize with caller-made buffers                     */
/* ============================================================================================ */

/* Quantizes x with the given per-tensor scale (and zero point) and compares the codes. The
 * scales and zero points are inputs here: they must come back unchanged. */
static void with_scales_at(const qk_quant_params *p, const float *x, int n, float scale, const void *zp,
                           const void *want, const char *what, int line) {
    const int64_t shape[1] = {n};
    unsigned char data[64 + GUARD], zp_copy[1];
    float s = scale;
    qk_quantized q;
    qk_tensor in = tensor_of((void *)x, QK_DTYPE_F32, 1, shape);
    qk_status st;
    memset(&q, 0, sizeof q);
    memset(data, POISON, sizeof data);
    q.struct_size = sizeof q;
    q.data = data;
    q.data_bytes = (size_t)n;
    q.scales = &s;
    q.scales_bytes = sizeof s;
    if (zp) {
        memcpy(zp_copy, zp, 1);
        q.zero_points = zp_copy;
        q.zero_points_bytes = 1;
    }
    g_current = what;
    st = qk_quantize_with_scales(p, &in, &q);
    if (!expect_ok_at(st, what, line)) return;
    check_bytes_at(data, want, (size_t)n, what, line);
    check_at(guard_intact(data, (size_t)n), line, "%s: wrote past data_bytes", what);
    check_at(s == scale, line, "%s: the input scale was changed to %g", what, s);
    if (zp) check_at(memcmp(zp_copy, zp, 1) == 0, line, "%s: the input zero point was changed", what);
}

static void with_scales_cases(void) {
    /* x / 0.5 = {2, -2, 200, -200, 0.5, 1.5, -0.5, 127.5}: saturates to [-128, 127]. */
    static const float x[8] = {1, -1, 100, -100, 0.25f, 0.75f, -0.25f, 63.75f};
    static const signed char even[8] = {2, -2, 127, -128, 0, 2, 0, 127};
    static const signed char away[8] = {2, -2, 127, -128, 1, 2, -1, 127};
    /* uint8, zero point 10, scale 1: rne(x) + 10 saturated to [0, 255]. */
    static const float xu[5] = {-20, 0, 2.5f, 300, 3.5f};
    static const unsigned char wu[5] = {0, 10, 12, 255, 14};
    static const unsigned char zp = 10;
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    with_scales_at(&p, x, 8, 0.5f, NULL, even, "int8 with scale 0.5, half even", __LINE__);
    p.rounding = QK_ROUND_HALF_AWAY;
    with_scales_at(&p, x, 8, 0.5f, NULL, away, "int8 with scale 0.5, half away", __LINE__);
    p = params_for(QK_FORMAT_UINT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    p.scheme = QK_SCHEME_ASYMMETRIC;
    with_scales_at(&p, xu, 5, 1.0f, &zp, wu, "uint8 with scale 1, zero point 10", __LINE__);
}

/* A hand-made int8 [2,3] tensor dequantized per axis 0 and per axis 1. */
static void dequantize_cases(void) {
    static const signed char codes[6] = {1, -2, 127, -128, 0, 3};
    static const float rows[2] = {0.5f, 2}, cols[3] = {1, 2, 4};
    static const float want_rows[6] = {0.5f, -1, 63.5f, -256, 0, 6};
    static const float want_cols[6] = {1, -4, 508, -128, 0, 12};
    /* uint4 asymmetric, one block of 4: codes {0, 15, 3, 9}, zero point 3, scale 0.5. */
    static const unsigned char u4[2] = {0xF0, 0x93};
    static const unsigned char u4zp = 0x03;
    static const float u4scale = 0.5f, want_u4[4] = {-1.5f, 6, 0, 3};
    const int64_t shape[2] = {2, 3}, s4[1] = {4};
    float y[6];
    qk_quantized q;
    qk_tensor out = tensor_of(y, QK_DTYPE_F32, 2, shape);
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = (void *)codes;
    q.data_bytes = 6;
    p.granularity = QK_GRANULARITY_PER_AXIS;
    p.axis = 0;
    q.scales = (void *)rows;
    q.scales_bytes = sizeof rows;
    if (EXPECT_OK(qk_dequantize(&p, &q, &out))) CHECK_FLOATS(y, want_rows, 6, 0.0f, "int8 per axis 0");
    p.axis = 1;
    q.scales = (void *)cols;
    q.scales_bytes = sizeof cols;
    if (EXPECT_OK(qk_dequantize(&p, &q, &out))) CHECK_FLOATS(y, want_cols, 6, 0.0f, "int8 per axis 1");

    p = params_for(QK_FORMAT_UINT4);
    p.scheme = QK_SCHEME_ASYMMETRIC;
    p.block_size = 4;
    q.data = (void *)u4;
    q.data_bytes = 2;
    q.scales = (void *)&u4scale;
    q.scales_bytes = 4;
    q.zero_points = (void *)&u4zp;
    q.zero_points_bytes = 1;
    out = tensor_of(y, QK_DTYPE_F32, 1, s4);
    if (EXPECT_OK(qk_dequantize(&p, &q, &out))) CHECK_FLOATS(y, want_u4, 4, 0.0f, "uint4 asymmetric");
}

/* The header does not say what a zero, negative or non-finite caller scale does; report it. */
static void caller_scale_notes(void) {
    static const float x[4] = {1, -1, 0.5f, 3};
    const int64_t shape[1] = {4};
    const float bad[3] = {0.0f, -1.0f, NAN};
    const char *names[3] = {"0", "-1", "NaN"};
    int k;
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    for (k = 0; k < 3; k++) {
        signed char data[4] = {0, 0, 0, 0};
        float s = bad[k], y[4];
        qk_quantized q;
        qk_tensor in = tensor_of((void *)x, QK_DTYPE_F32, 1, shape), out = tensor_of(y, QK_DTYPE_F32, 1, shape);
        qk_status st;
        memset(&q, 0, sizeof q);
        q.struct_size = sizeof q;
        q.data = data;
        q.data_bytes = 4;
        q.scales = &s;
        q.scales_bytes = 4;
        st = qk_quantize_with_scales(&p, &in, &q);
        copy_last_error();
        note("quantize_with_scales with scale %s: %s%s%s", names[k], status_name(st), st ? " " : "",
             st ? g_msg : "");
        st = qk_dequantize(&p, &q, &out);
        copy_last_error();
        note("dequantize with scale %s: %s%s%s", names[k], status_name(st), st ? " " : "", st ? g_msg : "");
    }
}

static void group_with_scales(void) {
    with_scales_cases();
    dequantize_cases();
    caller_scale_notes();
}

/* ============================================================================================ */
/* Group: qk_quantization_error and qk_compare                                                   */
/* ============================================================================================ */

static void check_stats_at(const qk_error_stats *s, int64_t count, double max_abs_e, double mean_abs, double rmse,
                           double sqnr, double signal_rms, const char *what, int line) {
    check_at(s->count == count, line, "%s: count %lld, expected %lld", what, (long long)s->count, (long long)count);
    check_at(close_rel(s->max_abs_error, max_abs_e, 1e-6), line, "%s: max_abs_error %.9g, expected %.9g", what,
             s->max_abs_error, max_abs_e);
    check_at(close_rel(s->mean_abs_error, mean_abs, 1e-6), line, "%s: mean_abs_error %.9g, expected %.9g", what,
             s->mean_abs_error, mean_abs);
    check_at(close_rel(s->rmse, rmse, 1e-6), line, "%s: rmse %.9g, expected %.9g", what, s->rmse, rmse);
    if (isinf(sqnr))
        check_at(isinf(s->sqnr_db) && s->sqnr_db > 0, line, "%s: sqnr_db %g, expected +inf", what, s->sqnr_db);
    else
        check_at(close_rel(s->sqnr_db, sqnr, 1e-6), line, "%s: sqnr_db %.9g, expected %.9g", what, s->sqnr_db, sqnr);
    check_at(close_rel(s->signal_rms, signal_rms, 1e-6), line, "%s: signal_rms %.9g, expected %.9g", what,
             s->signal_rms, signal_rms);
}

/* Statistics of x against y computed here in double, the reference for both functions. */
static void reference_stats(const float *x, const float *y, size_t n, double out[5]) {
    double mx = 0, sa = 0, se = 0, ss = 0;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = (double)y[i] - (double)x[i];
        mx = fmax(mx, fabs(e));
        sa += fabs(e);
        se += e * e;
        ss += (double)x[i] * x[i];
    }
    out[0] = mx;
    out[1] = sa / (double)n;
    out[2] = sqrt(se / (double)n);
    out[3] = se == 0 ? INFINITY : 10 * log10(ss / se);
    out[4] = sqrt(ss / (double)n);
}

static void compare_cases(void) {
    static const float ref[4] = {1, 2, 3, 4}, act[4] = {1, 2, 3, 5};
    static const uint16_t act16[4] = {0x3C00, 0x4000, 0x4200, 0x4500}; /* 1, 2, 3, 5 in F16 */
    const int64_t shape[1] = {4}, shape2[2] = {2, 2};
    qk_tensor a = tensor_of((void *)ref, QK_DTYPE_F32, 1, shape), b = tensor_of((void *)act, QK_DTYPE_F32, 1, shape);
    qk_error_stats s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    if (EXPECT_OK(qk_compare(&a, &b, &s)))
        check_stats_at(&s, 4, 1, 0.25, 0.5, 10 * log10(30.0), sqrt(7.5), "compare {1,2,3,4} {1,2,3,5}", __LINE__);
    if (EXPECT_OK(qk_compare(&a, &a, &s)))
        check_stats_at(&s, 4, 0, 0, 0, INFINITY, sqrt(7.5), "compare x with itself", __LINE__);
    b = tensor_of((void *)act16, QK_DTYPE_F16, 1, shape);
    if (EXPECT_OK(qk_compare(&a, &b, &s)))
        check_stats_at(&s, 4, 1, 0.25, 0.5, 10 * log10(30.0), sqrt(7.5), "compare F32 with F16", __LINE__);
    b = tensor_of((void *)act, QK_DTYPE_F32, 2, shape2); /* same count, different shape */
    EXPECT_FAIL(S(QK_ERROR_SHAPE_MISMATCH), "shape", qk_compare(&a, &b, &s));
}

/* qk_quantization_error must agree with dequantizing and comparing by hand. */
static void quantization_error_cases(void) {
    const int64_t shape[2] = {8, 100};
    float x[800], *y;
    double want[5];
    qtensor t;
    qk_error_stats s;
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape), yt;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    fill_normal(x, 800, 1.5f);
    if (!QT_QUANTIZE(&t, &p, &in)) return;
    y = QT_DEQUANTIZE(&t, &p, 2, shape);
    if (y) {
        reference_stats(x, y, 800, want);
        memset(&s, 0, sizeof s);
        s.struct_size = sizeof s;
        if (EXPECT_OK(qk_quantization_error(&p, &in, &t.q, &s)))
            check_stats_at(&s, 800, want[0], want[1], want[2], want[3], want[4], "quantization_error", __LINE__);
        yt = tensor_of(y, QK_DTYPE_F32, 2, shape);
        if (EXPECT_OK(qk_compare(&in, &yt, &s)))
            check_stats_at(&s, 800, want[0], want[1], want[2], want[3], want[4], "compare with dequantized",
                           __LINE__);
        CHECK(want[3] > 15 && want[3] < 25, "int4 block 32 SQNR on Gaussian data is %.2f dB", want[3]);
    }
    free(y);
    qt_free(&t);
}

static void group_stats(void) {
    compare_cases();
    quantization_error_cases();
}

/* ============================================================================================ */
/* Group: scale-selection methods                                                                */
/* ============================================================================================ */

static double rmse_of(const qk_quant_params *p, const qk_tensor *in) {
    qtensor t;
    qk_error_stats s;
    double r = -1;
    if (!QT_QUANTIZE(&t, p, in)) return -1;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    if (EXPECT_OK(qk_quantization_error(p, in, &t.q, &s))) r = s.rmse;
    qt_free(&t);
    return r;
}

/* MSE search tries ratios from 1 down to min_clip_ratio, so it is never worse than min-max. */
static void mse_case(void) {
    const int64_t shape[2] = {16, 256};
    float x[4096];
    int i;
    double r_minmax, r_mse;
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    fill_normal(x, 4096, 1.0f);
    for (i = 0; i < 4096; i += 97) x[i] *= 6; /* outliers give clipping something to win */
    r_minmax = rmse_of(&p, &in);
    p.method = QK_METHOD_MSE;
    r_mse = rmse_of(&p, &in);
    CHECK(r_mse >= 0 && r_mse <= r_minmax * (1 + 1e-9), "MSE rmse %.6g > min-max rmse %.6g", r_mse, r_minmax);
    note("int4 block 32 rmse: min-max %.5f, MSE %.5f", r_minmax, r_mse);
}

/* Percentile 50 of |x| for x = 1..1000 clips near 500; percentile 100 is min-max. */
static void percentile_case(void) {
    const int64_t shape[1] = {1000};
    float x[1000];
    int i;
    qtensor t;
    qk_quant_params p = params_for(QK_FORMAT_INT8);
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 1, shape);
    for (i = 0; i < 1000; i++) x[i] = (float)(i + 1) * (i % 2 ? -1.0f : 1.0f);
    p.granularity = QK_GRANULARITY_PER_TENSOR;
    p.method = QK_METHOD_PERCENTILE;
    p.percentile = 50;
    if (QT_QUANTIZE(&t, &p, &in)) {
        float s = scale_at(&t, 0);
        CHECK(s > 490.0f / 127 && s < 510.0f / 127, "percentile 50: scale %g, expected about %g", s, 500.0 / 127);
        qt_free(&t);
    }
    p.percentile = 100;
    if (QT_QUANTIZE(&t, &p, &in)) {
        CHECK(close_rel(scale_at(&t, 0), 1000.0 / 127, 1e-6), "percentile 100: scale %g, expected %g",
              scale_at(&t, 0), 1000.0 / 127);
        qt_free(&t);
    }
}

static void group_methods(void) {
    mse_case();
    percentile_case();
}

/* ============================================================================================ */
/* Group: runtime settings                                                                       */
/* ============================================================================================ */

/* The variant the header promises: QUANTKIT_KERNELS caps it, the CPU caps it too. */
static const char *expected_variant(void) {
    static const char *const names[3] = {"scalar", "avx2", "avx512"};
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("bmi2");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    int best = avx512 ? 2 : avx2 ? 1 : 0, want = best;
    const char *env = getenv("QUANTKIT_KERNELS");
    if (env && *env) {
        if (strcmp(env, "scalar") == 0) want = 0;
        else if (strcmp(env, "avx2") == 0) want = 1;
        else if (strcmp(env, "avx512") == 0) want = 2;
        else return NULL; /* unspecified */
    }
    return names[want < best ? want : best];
}

static void group_runtime(void) {
    const char *v = qk_kernel_variant(), *want = expected_variant();
    int32_t n;
    CHECK(v && (strcmp(v, "scalar") == 0 || strcmp(v, "avx2") == 0 || strcmp(v, "avx512") == 0),
          "qk_kernel_variant() = \"%s\"", v ? v : "(null)");
    if (v && want) CHECK(strcmp(v, want) == 0, "qk_kernel_variant() = \"%s\", expected \"%s\" (QUANTKIT_KERNELS=%s)",
                         v, want, getenv("QUANTKIT_KERNELS") ? getenv("QUANTKIT_KERNELS") : "");
    CHECK(v == qk_kernel_variant() || (v && strcmp(v, qk_kernel_variant()) == 0), "variant changed between calls");

    n = qk_get_num_threads();
    CHECK(n >= 1, "qk_get_num_threads() = %d before any setting", n);
    if (EXPECT_OK(qk_set_num_threads(1))) CHECK(qk_get_num_threads() == 1, "set 1, got %d", qk_get_num_threads());
    if (EXPECT_OK(qk_set_num_threads(2))) CHECK(qk_get_num_threads() == 2, "set 2, got %d", qk_get_num_threads());
    EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "thread", qk_set_num_threads(-1));
    CHECK(qk_get_num_threads() == 2, "a failed qk_set_num_threads changed the count to %d", qk_get_num_threads());
    EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "thread", qk_set_num_threads(INT32_MIN));
    if (EXPECT_OK(qk_set_num_threads(0)))
        CHECK(qk_get_num_threads() == n, "set 0 (all cores): got %d, first value %d", qk_get_num_threads(), n);
}

/* ============================================================================================ */
/* Group: bad input to the small functions                                                       */
/* ============================================================================================ */

/* A struct `s` poisoned before a failing call must come back byte for byte. */
#define EXPECT_FAIL_UNTOUCHED(s, allowed, words, call)                                                    \
    do {                                                                                                  \
        unsigned char before_[sizeof(s)];                                                                 \
        memcpy(before_, &(s), sizeof(s));                                                                 \
        EXPECT_FAIL(allowed, words, call);                                                                \
        CHECK(memcmp(before_, &(s), sizeof(s)) == 0, "%s changed its out-parameter", #call);              \
    } while (0)

static void bad_format_queries(void) {
    qk_format_info info;
    int32_t fmt;
    char long_name[5000];
    memset(&info, POISON, sizeof info);
    info.struct_size = sizeof info;
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "index", qk_format_info_at(-1, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "index", qk_format_info_at(qk_format_count(), &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "index", qk_format_info_at(INT32_MAX, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_format_info_get(0, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_format_info_get(17, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_format_info_get(-1, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_format_info_get(999, &info));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), NULLS, qk_format_info_at(0, NULL));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), NULLS, qk_format_info_get(QK_FORMAT_INT4, NULL));
    info.struct_size = 0;
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_VERSION), SIZES, qk_format_info_at(0, &info));
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_VERSION), SIZES, qk_format_info_get(QK_FORMAT_INT4, &info));
    info.struct_size = sizeof info - 8;
    EXPECT_FAIL_UNTOUCHED(info, S(QK_ERROR_VERSION), SIZES, qk_format_info_get(QK_FORMAT_INT4, &info));

    fmt = 0x5A5A5A5A;
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_INVALID_ARGUMENT), "zzbogus", qk_format_from_name("zzbogus", &fmt));
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_INVALID_ARGUMENT), "format|name", qk_format_from_name("", &fmt));
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_INVALID_ARGUMENT), "format|name", qk_format_from_name("int4 ", &fmt));
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_INVALID_ARGUMENT), "format|name", qk_format_from_name("int", &fmt));
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_INVALID_ARGUMENT), "format|name", qk_format_from_name(long_name, &fmt));
    EXPECT_FAIL_UNTOUCHED(fmt, S(QK_ERROR_NULL_POINTER), NULLS, qk_format_from_name(NULL, &fmt));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), NULLS, qk_format_from_name("int4", NULL));
}

static void bad_params_init(void) {
    qk_quant_params p;
    memset(&p, POISON, sizeof p);
    p.struct_size = sizeof p;
    EXPECT_FAIL_UNTOUCHED(p, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_quant_params_init(&p, 0));
    EXPECT_FAIL_UNTOUCHED(p, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_quant_params_init(&p, 17));
    EXPECT_FAIL_UNTOUCHED(p, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_quant_params_init(&p, 999));
    EXPECT_FAIL_UNTOUCHED(p, S(QK_ERROR_INVALID_ARGUMENT), "format", qk_quant_params_init(&p, -1));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), NULLS, qk_quant_params_init(NULL, QK_FORMAT_INT4));
}

static void bad_compare(void) {
    static const float a4[4] = {1, 2, 3, 4}, b5[5] = {1, 2, 3, 4, 5};
    static const float nan4[4] = {1, NAN, 3, 4}, inf4[4] = {1, 2, INFINITY, 4};
    const int64_t s4[1] = {4}, s5[1] = {5}, neg[1] = {-4}, s9[9] = {1, 1, 1, 1, 4, 1, 1, 1, 1};
    qk_tensor a = tensor_of((void *)a4, QK_DTYPE_F32, 1, s4), b = tensor_of((void *)b5, QK_DTYPE_F32, 1, s5), c;
    qk_error_stats s;
    memset(&s, POISON, sizeof s);
    s.struct_size = sizeof s;
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_SHAPE_MISMATCH), "shape", qk_compare(&a, &b, &s));
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_NULL_POINTER), NULLS, qk_compare(NULL, &a, &s));
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_NULL_POINTER), NULLS, qk_compare(&a, NULL, &s));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), NULLS, qk_compare(&a, &a, NULL));
    c = tensor_of(NULL, QK_DTYPE_F32, 1, s4);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_NULL_POINTER), NULLS, qk_compare(&a, &c, &s));
    c = tensor_of((void *)a4, QK_DTYPE_F32, 1, NULL);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_NULL_POINTER), NULLS, qk_compare(&c, &a, &s));
    c = tensor_of((void *)a4, QK_DTYPE_I32, 1, s4);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_INVALID_ARGUMENT) | S(QK_ERROR_UNSUPPORTED), "dtype|type",
                          qk_compare(&a, &c, &s));
    c = tensor_of((void *)a4, 999, 1, s4);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_INVALID_ARGUMENT), "dtype|type", qk_compare(&a, &c, &s));
    c = tensor_of((void *)a4, QK_DTYPE_F32, 9, s9);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_INVALID_ARGUMENT), "ndim|rank|dim", qk_compare(&c, &c, &s));
    c = tensor_of((void *)a4, QK_DTYPE_F32, -1, s4);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_INVALID_ARGUMENT), "ndim|rank|dim", qk_compare(&c, &c, &s));
    c = tensor_of((void *)a4, QK_DTYPE_F32, 1, neg);
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_INVALID_ARGUMENT), "shape|dim|negative", qk_compare(&c, &c, &s));
    s.struct_size = 0;
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_VERSION), SIZES, qk_compare(&a, &a, &s));
    s.struct_size = sizeof s - 8;
    EXPECT_FAIL_UNTOUCHED(s, S(QK_ERROR_VERSION), SIZES, qk_compare(&a, &a, &s));

    /* Non-finite values: unspecified for compare. Either a NON_FINITE error or statistics that
     * show the problem are fine; finite statistics that hide it are not. */
    s.struct_size = sizeof s;
    c = tensor_of((void *)nan4, QK_DTYPE_F32, 1, s4);
    {
        qk_status st = qk_compare(&a, &c, &s);
        CHECK(st == QK_ERROR_NON_FINITE || (st == QK_OK && !isfinite(s.max_abs_error)),
              "compare with a NaN: %s, max_abs_error %g", status_name(st), s.max_abs_error);
        c = tensor_of((void *)inf4, QK_DTYPE_F32, 1, s4);
        st = qk_compare(&a, &c, &s);
        CHECK(st == QK_ERROR_NON_FINITE || (st == QK_OK && !isfinite(s.max_abs_error)),
              "compare with an Inf: %s, max_abs_error %g", status_name(st), s.max_abs_error);
    }
}

/* Behaviour the header leaves open, printed for the report (not counted). */
static void unspecified_notes(void) {
    int32_t fmt;
    qk_format_from_name("zzbogus", &fmt);
    qk_format_count();
    note("qk_last_error() after a later successful call: \"%.60s...\"", qk_last_error());
}

static void group_bad_simple(void) {
    unspecified_notes();
    bad_format_queries();
    bad_params_init();
    bad_compare();
}

/* ============================================================================================ */
/* Group: struct_size of output structs                                                          */
/* ============================================================================================ */
/*
 * Every function writing a struct (qk_quant_params_init included) gets it in a poisoned buffer with
 * each struct_size of size_cases(). Served (sizeof <= struct_size <= 4096): QK_OK, struct_size kept,
 * the known fields as with struct_size = sizeof, bytes sizeof..struct_size zeroed, nothing written
 * after them. Not served: QK_ERROR_VERSION and the buffer untouched. With a served size the same
 * call made to fail for another reason leaves the buffer untouched too, tail included.
 * (Input structs, qk_quant_params and qk_quantized: see the struct_size cases of bad_input.)
 */

#define MAX_STRUCT_SIZE 4096

/* Arguments of the calls below, set up by group_struct_size. */
static struct {
    qk_quant_params params;
    int64_t shape[2], other_shape[2];
    float x[144];
    qk_tensor in, copy, other; /* other: [3, 48], for a shape mismatch */
    qtensor q;
} g_sz;

static qk_status sz_format_info_at(void *out, int fail) { return qk_format_info_at(fail ? -1 : 8, out); }
static qk_status sz_format_info_get(void *out, int fail) { return qk_format_info_get(fail ? 999 : QK_FORMAT_BF16, out); }
static qk_status sz_params_init(void *out, int fail) { return qk_quant_params_init(out, fail ? 999 : QK_FORMAT_UINT4); }
static qk_status sz_layout_get(void *out, int fail) {
    return qk_quantized_layout_get(&g_sz.params, fail ? QK_MAX_DIMS + 1 : 2, g_sz.shape, out);
}
static qk_status sz_compare(void *out, int fail) { return qk_compare(&g_sz.in, fail ? &g_sz.other : &g_sz.copy, out); }
static qk_status sz_quantization_error(void *out, int fail) {
    return qk_quantization_error(&g_sz.params, fail ? &g_sz.other : &g_sz.in, &g_sz.q.q, out);
}

typedef struct output_struct {
    const char *call;
    size_t size;     /* sizeof the struct this header declares */
    int reserved;    /* offset of a `reserved` field that must come back 0, or -1 */
    qk_status (*run)(void *out, int fail);
    unsigned fail_codes; /* status of the failing variant */
} output_struct;

static const output_struct OUTPUT_STRUCTS[] = {
    {"qk_format_info_at", sizeof(qk_format_info), offsetof(qk_format_info, reserved), sz_format_info_at,
     S(QK_ERROR_INVALID_ARGUMENT)},
    {"qk_format_info_get", sizeof(qk_format_info), offsetof(qk_format_info, reserved), sz_format_info_get,
     S(QK_ERROR_INVALID_ARGUMENT)},
    {"qk_quant_params_init", sizeof(qk_quant_params), -1, sz_params_init, S(QK_ERROR_INVALID_ARGUMENT)},
    {"qk_quantized_layout_get", sizeof(qk_quantized_layout), -1, sz_layout_get, S(QK_ERROR_INVALID_ARGUMENT)},
    {"qk_compare", sizeof(qk_error_stats), offsetof(qk_error_stats, reserved), sz_compare,
     S(QK_ERROR_SHAPE_MISMATCH)},
    {"qk_quantization_error", sizeof(qk_error_stats), offsetof(qk_error_stats, reserved), sz_quantization_error,
     S(QK_ERROR_BUFFER_TOO_SMALL) | S(QK_ERROR_SHAPE_MISMATCH)},
};

#define NUM_SIZE_CASES 11

/* The struct_size values tried for a struct of `size` bytes. */
static void size_cases(size_t size, uint32_t out[NUM_SIZE_CASES]) {
    const uint32_t s = (uint32_t)size;
    const uint32_t all[NUM_SIZE_CASES] = {0, 4, s - 4, s, s + 4, s + 8, s + 64, MAX_STRUCT_SIZE,
                                          MAX_STRUCT_SIZE + 1, 5000, UINT32_MAX};
    memcpy(out, all, sizeof all);
}

/* A buffer for a struct of up to MAX_STRUCT_SIZE bytes, aligned for any of them, and guard bytes. */
static union {
    unsigned char b[MAX_STRUCT_SIZE + GUARD];
    int64_t i_;
    double d_;
    void *p_;
} g_out;

static int all_bytes(const unsigned char *b, size_t from, size_t to, unsigned char v) {
    for (; from < to; from++)
        if (b[from] != v) return 0;
    return 1;
}

static void check_output_struct(const output_struct *o) {
    static unsigned char want[MAX_STRUCT_SIZE + GUARD], before[MAX_STRUCT_SIZE + GUARD];
    uint32_t sizes[NUM_SIZE_CASES], reserved, exact = (uint32_t)o->size;
    int k, fail;
    char what[160];
    /* The reference: struct_size = sizeof, over poison. */
    memset(g_out.b, POISON, sizeof g_out.b);
    memcpy(g_out.b, &exact, 4);
    g_current = o->call;
    if (!expect_ok_at(o->run(g_out.b, 0), o->call, __LINE__)) return;
    memcpy(want, g_out.b, sizeof want);
    if (o->reserved >= 0) {
        memcpy(&reserved, g_out.b + o->reserved, 4);
        CHECK(reserved == 0, "%s: reserved is 0x%x, expected 0", o->call, reserved);
    }
    size_cases(o->size, sizes);
    for (k = 0; k < NUM_SIZE_CASES; k++) {
        const uint32_t s = sizes[k];
        const int served = s >= o->size && s <= MAX_STRUCT_SIZE;
        for (fail = 0; fail < 2; fail++) {
            qk_status st;
            uint32_t kept;
            if (fail && !served) continue;
            sprintf(what, "%s%s, struct_size %u (sizeof %zu)", o->call, fail ? " made to fail" : "", s, o->size);
            g_current = what;
            memset(g_out.b, POISON, sizeof g_out.b);
            memcpy(g_out.b, &s, 4);
            memcpy(before, g_out.b, sizeof before);
            st = o->run(g_out.b, fail);
            if (fail || !served) {
                expect_fail_at(st, fail ? o->fail_codes : S(QK_ERROR_VERSION), fail ? NULL : SIZES, what, __LINE__);
                CHECK(memcmp(before, g_out.b, sizeof before) == 0, "%s: failed but wrote byte %ld", what,
                      first_diff(before, g_out.b, sizeof before));
                continue;
            }
            if (!expect_ok_at(st, what, __LINE__)) continue;
            memcpy(&kept, g_out.b, 4);
            CHECK(kept == s, "%s: struct_size changed to %u", what, kept);
            CHECK(memcmp(g_out.b + 4, want + 4, o->size - 4) == 0, "%s: the fields differ from struct_size %zu's",
                  what, o->size);
            CHECK(all_bytes(g_out.b, o->size, s, 0), "%s: the bytes the library does not know are not zeroed", what);
            CHECK(all_bytes(g_out.b, s, sizeof g_out.b, POISON), "%s: wrote past struct_size", what);
        }
    }
}

static void group_struct_size(void) {
    size_t i;
    g_sz.params = params_for(QK_FORMAT_INT4);
    g_sz.shape[0] = g_sz.other_shape[0] = 3;
    g_sz.shape[1] = 40;
    g_sz.other_shape[1] = 48;
    fill_normal(g_sz.x, 144, 1.0f);
    g_sz.in = g_sz.copy = tensor_of(g_sz.x, QK_DTYPE_F32, 2, g_sz.shape);
    g_sz.other = tensor_of(g_sz.x, QK_DTYPE_F32, 2, g_sz.other_shape);
    if (!QT_QUANTIZE(&g_sz.q, &g_sz.params, &g_sz.in)) return;
    for (i = 0; i < sizeof OUTPUT_STRUCTS / sizeof OUTPUT_STRUCTS[0]; i++) check_output_struct(&OUTPUT_STRUCTS[i]);
    qt_free(&g_sz.q);
}

/* ============================================================================================ */
/* Group: bad input to the five tensor functions                                                 */
/* ============================================================================================ */
/*
 * Each case starts from a fixture whose arguments are all valid (and whose quantized buffers hold
 * a real quantization), changes one or two things, and calls each function the case applies to.
 * The whole fixture (every buffer, input or output) is snapshotted before the call; on failure it
 * must come back byte for byte. Outputs are poisoned first, so "untouched" also means "not
 * cleared". Each case runs in its own child process.
 */

enum { FN_LAYOUT = 1, FN_QUANTIZE = 2, FN_WITH_SCALES = 4, FN_DEQUANTIZE = 8, FN_ERROR = 16 };
#define FNS_ALL 31u
#define FNS_IN (FN_QUANTIZE | FN_WITH_SCALES | FN_ERROR) /* functions reading the input tensor */
#define FNS_Q (FN_QUANTIZE | FN_WITH_SCALES | FN_DEQUANTIZE | FN_ERROR)

enum { CFG_INT4, CFG_UINT4_ASYM, CFG_MNB, CFG_NF4_BNB, CFG_INT8_AXIS0 };

enum {
    M_END, M_PARAM, M_PARAM_F, M_NULL, M_NDIM, M_DIM, M_DTYPE, M_DATA_NULL, M_SHAPE_NULL, M_VALUE, M_VALUE16,
    M_USE_F16, M_QSIZE, M_QBYTES, M_QBYTES_SET, M_QNULL, M_LAYOUT_SIZE, M_STATS_SIZE, M_TAIL
};
enum { T_LAYOUT, T_IN, T_OUT };                                       /* which shape or tensor */
enum { A_PARAMS, A_LAYOUT, A_SHAPE, A_INPUT, A_Q, A_OUTPUT, A_STATS }; /* which argument is NULL */
enum { B_DATA, B_SCALES, B_ZP };                                      /* which quantized buffer */
enum { TAIL_PARAMS, TAIL_Q };                                         /* which input struct's tail */

typedef struct mutation {
    int kind, target, index;
    int64_t i;
    double f;
} mutation;

typedef struct bad_case {
    const char *name;
    int cfg;
    unsigned fns, codes;
    const char *words;
    mutation m[3];
} bad_case;

#define P(field, v) {M_PARAM, (int)offsetof(qk_quant_params, field), 0, (v), 0.0}
#define PF(field, v) {M_PARAM_F, (int)offsetof(qk_quant_params, field), 0, 0, (v)}
#define NUL(arg) {M_NULL, (arg), 0, 0, 0.0}
#define NDIM(t, v) {M_NDIM, (t), 0, (v), 0.0}
#define DIM(t, d, v) {M_DIM, (t), (d), (v), 0.0}
#define DTYPE(t, v) {M_DTYPE, (t), 0, (v), 0.0}
#define DATA_NULL(t) {M_DATA_NULL, (t), 0, 0, 0.0}
#define SHAPE_NULL(t) {M_SHAPE_NULL, (t), 0, 0, 0.0}
#define VAL(idx, v) {M_VALUE, 0, (idx), 0, (v)}
#define VAL16(idx, bits) {M_VALUE16, 0, (idx), (bits), 0.0}
#define USE_F16(t) {M_USE_F16, (t), 0, 0, 0.0}
#define QSIZE(v) {M_QSIZE, 0, 0, (v), 0.0}
#define QBYTES(b, delta) {M_QBYTES, (b), 0, (delta), 0.0}
#define QBYTES_SET(b, v) {M_QBYTES_SET, (b), 0, (v), 0.0}
#define QNULL(b) {M_QNULL, (b), 0, 0, 0.0}
#define LSIZE(v) {M_LAYOUT_SIZE, 0, 0, (v), 0.0}
#define SSIZE(v) {M_STATS_SIZE, 0, 0, (v), 0.0}
#define TAIL(which, idx, v) {M_TAIL, (which), (idx), (v), 0.0} /* byte idx past the end of the struct */
#define NONE {M_END, 0, 0, 0, 0.0}

#define INVALID S(QK_ERROR_INVALID_ARGUMENT)
#define INVALID_OR_UNSUPPORTED (S(QK_ERROR_INVALID_ARGUMENT) | S(QK_ERROR_UNSUPPORTED))
#define TOO_SMALL S(QK_ERROR_BUFFER_TOO_SMALL)
/* An input buffer too small for the shape: the header names BUFFER_TOO_SMALL for outputs only. */
#define INPUT_TOO_SMALL (S(QK_ERROR_BUFFER_TOO_SMALL) | S(QK_ERROR_SHAPE_MISMATCH))
#define OVERFLOWS S(QK_ERROR_OVERFLOW)
#define BIG (((int64_t)1) << 32)
#define FN_QE (FN_QUANTIZE | FN_ERROR) /* NaN/Inf must fail here; see the with_scales cases */
#define NONFINITE S(QK_ERROR_NON_FINITE)
#define VERSION S(QK_ERROR_VERSION)
#define NEWER "struct_size|size|version|newer" /* words for a struct from a newer caller */
#define PSIZE ((int64_t)sizeof(qk_quant_params))
#define QSZ ((int64_t)sizeof(qk_quantized))

static const bad_case BAD_CASES[] = {
    /* Controls: the unchanged fixtures must succeed everywhere. */
    {"control int4", CFG_INT4, FNS_ALL, S(QK_OK), NULL, {NONE, NONE, NONE}},
    {"control uint4 asymmetric", CFG_UINT4_ASYM, FNS_ALL, S(QK_OK), NULL, {NONE, NONE, NONE}},
    {"control MatMulNBits", CFG_MNB, FNS_ALL, S(QK_OK), NULL, {NONE, NONE, NONE}},
    {"control nf4 bnb4", CFG_NF4_BNB, FNS_ALL, S(QK_OK), NULL, {NONE, NONE, NONE}},
    {"control int8 per axis", CFG_INT8_AXIS0, FNS_ALL, S(QK_OK), NULL, {NONE, NONE, NONE}},
    {"control f16 input", CFG_INT4, FNS_IN, S(QK_OK), NULL, {USE_F16(T_IN), NONE, NONE}},
    {"control f16 output", CFG_INT4, FN_DEQUANTIZE, S(QK_OK), NULL, {USE_F16(T_OUT), NONE, NONE}},

    /* Parameters. */
    {"params NULL", CFG_INT4, FNS_ALL, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_PARAMS), NONE, NONE}},
    {"params.struct_size 0", CFG_INT4, FNS_ALL, S(QK_ERROR_VERSION), SIZES, {P(struct_size, 0), NONE, NONE}},
    {"params.struct_size 4", CFG_INT4, FNS_ALL, S(QK_ERROR_VERSION), SIZES, {P(struct_size, 4), NONE, NONE}},
    {"params.struct_size - 4", CFG_INT4, FNS_ALL, S(QK_ERROR_VERSION), SIZES,
     {P(struct_size, sizeof(qk_quant_params) - 4), NONE, NONE}},
    /* A newer caller's params: accepted while the bytes past sizeof are zero, up to 4096. */
    {"params.struct_size + 8, zero tail", CFG_INT4, FNS_ALL, S(QK_OK), NULL, {P(struct_size, PSIZE + 8), NONE, NONE}},
    {"params.struct_size 4096, zero tail", CFG_INT4, FNS_ALL, S(QK_OK), NULL, {P(struct_size, 4096), NONE, NONE}},
    {"params.struct_size + 8, byte 8 past it set", CFG_INT4, FNS_ALL, S(QK_OK), NULL,
     {P(struct_size, PSIZE + 8), TAIL(TAIL_PARAMS, 8, 1), NONE}},
    {"params.struct_size + 8, tail byte 0 set", CFG_INT4, FNS_ALL, VERSION, NEWER,
     {P(struct_size, PSIZE + 8), TAIL(TAIL_PARAMS, 0, 1), NONE}},
    {"params.struct_size 4096, last tail byte set", CFG_INT4, FNS_ALL, VERSION, NEWER,
     {P(struct_size, 4096), TAIL(TAIL_PARAMS, 4096 - PSIZE - 1, 0x80), NONE}},
    {"params.struct_size 4097", CFG_INT4, FNS_ALL, VERSION, SIZES, {P(struct_size, 4097), NONE, NONE}},
    {"params.struct_size 5000", CFG_INT4, FNS_ALL, VERSION, SIZES, {P(struct_size, 5000), NONE, NONE}},
    {"params.struct_size UINT32_MAX", CFG_INT4, FNS_ALL, VERSION, SIZES, {P(struct_size, UINT32_MAX), NONE, NONE}},
    {"format 0", CFG_INT4, FNS_ALL, INVALID, "format", {P(format, 0), NONE, NONE}},
    {"format 999", CFG_INT4, FNS_ALL, INVALID, "format", {P(format, 999), NONE, NONE}},
    {"format -1", CFG_INT4, FNS_ALL, INVALID, "format", {P(format, -1), NONE, NONE}},
    {"scheme 7", CFG_INT4, FNS_ALL, INVALID, "scheme", {P(scheme, 7), NONE, NONE}},
    {"scheme -1", CFG_INT4, FNS_ALL, INVALID, "scheme", {P(scheme, -1), NONE, NONE}},
    {"granularity 3", CFG_INT4, FNS_ALL, INVALID, "granularity", {P(granularity, 3), NONE, NONE}},
    {"granularity -1", CFG_INT4, FNS_ALL, INVALID, "granularity", {P(granularity, -1), NONE, NONE}},
    {"axis 2 of 2-D", CFG_INT4, FNS_ALL, INVALID, "axis", {P(axis, 2), NONE, NONE}},
    {"axis -3 of 2-D", CFG_INT4, FNS_ALL, INVALID, "axis", {P(axis, -3), NONE, NONE}},
    {"axis INT32_MIN", CFG_INT4, FNS_ALL, INVALID, "axis", {P(axis, INT32_MIN), NONE, NONE}},
    {"per-axis axis 5", CFG_INT8_AXIS0, FNS_ALL, INVALID, "axis", {P(axis, 5), NONE, NONE}},
    {"block_size 0", CFG_INT4, FNS_ALL, INVALID, "block", {P(block_size, 0), NONE, NONE}},
    {"block_size -1", CFG_INT4, FNS_ALL, INVALID, "block", {P(block_size, -1), NONE, NONE}},
    {"block_size INT32_MIN", CFG_INT4, FNS_ALL, INVALID, "block", {P(block_size, INT32_MIN), NONE, NONE}},
    {"method 3", CFG_INT4, FNS_ALL, INVALID, "method", {P(method, 3), NONE, NONE}},
    {"method -1", CFG_INT4, FNS_ALL, INVALID, "method", {P(method, -1), NONE, NONE}},
    {"rounding 2", CFG_INT4, FNS_ALL, INVALID, "round", {P(rounding, 2), NONE, NONE}},
    {"rounding -1", CFG_INT4, FNS_ALL, INVALID, "round", {P(rounding, -1), NONE, NONE}},
    {"layout -1", CFG_INT4, FNS_ALL, INVALID, "layout", {P(layout, -1), NONE, NONE}},
    {"layout 3", CFG_INT4, FNS_ALL, INVALID, "layout", {P(layout, 3), NONE, NONE}},
    {"scale_dtype 0", CFG_INT4, FNS_ALL, INVALID_OR_UNSUPPORTED, "scale|dtype", {P(scale_dtype, 0), NONE, NONE}},
    {"scale_dtype I8", CFG_INT4, FNS_ALL, INVALID_OR_UNSUPPORTED, "scale|dtype",
     {P(scale_dtype, QK_DTYPE_I8), NONE, NONE}},
    {"scale_dtype 999", CFG_INT4, FNS_ALL, INVALID, "scale|dtype", {P(scale_dtype, 999), NONE, NONE}},
    {"num_threads -1", CFG_INT4, FNS_ALL, INVALID, "thread", {P(num_threads, -1), NONE, NONE}},
    {"percentile 0", CFG_INT4, FN_QUANTIZE, INVALID, "percentile",
     {P(method, QK_METHOD_PERCENTILE), PF(percentile, 0), NONE}},
    {"percentile 100.5", CFG_INT4, FN_QUANTIZE, INVALID, "percentile",
     {P(method, QK_METHOD_PERCENTILE), PF(percentile, 100.5), NONE}},
    {"percentile -5", CFG_INT4, FN_QUANTIZE, INVALID, "percentile",
     {P(method, QK_METHOD_PERCENTILE), PF(percentile, -5), NONE}},
    {"percentile NaN", CFG_INT4, FN_QUANTIZE, INVALID, "percentile",
     {P(method, QK_METHOD_PERCENTILE), PF(percentile, NAN), NONE}},
    {"search_steps 0", CFG_INT4, FN_QUANTIZE, INVALID, "search|step",
     {P(method, QK_METHOD_MSE), P(search_steps, 0), NONE}},
    {"search_steps -3", CFG_INT4, FN_QUANTIZE, INVALID, "search|step",
     {P(method, QK_METHOD_MSE), P(search_steps, -3), NONE}},
    {"min_clip_ratio 0", CFG_INT4, FN_QUANTIZE, INVALID, "clip|ratio",
     {P(method, QK_METHOD_MSE), PF(min_clip_ratio, 0), NONE}},
    {"min_clip_ratio 1.5", CFG_INT4, FN_QUANTIZE, INVALID, "clip|ratio",
     {P(method, QK_METHOD_MSE), PF(min_clip_ratio, 1.5), NONE}},
    {"min_clip_ratio NaN", CFG_INT4, FN_QUANTIZE, INVALID, "clip|ratio",
     {P(method, QK_METHOD_MSE), PF(min_clip_ratio, NAN), NONE}},
    {"MatMulNBits block 24", CFG_MNB, FNS_ALL, INVALID, "block|power", {P(block_size, 24), NONE, NONE}},
    {"MatMulNBits block 8", CFG_MNB, FNS_ALL, INVALID, "block", {P(block_size, 8), NONE, NONE}},
    {"MatMulNBits nf4", CFG_MNB, FNS_ALL, INVALID_OR_UNSUPPORTED, "format|layout|bits",
     {P(format, QK_FORMAT_NF4), NONE, NONE}},
    {"MatMulNBits 3-bit", CFG_MNB, FNS_ALL, INVALID_OR_UNSUPPORTED, "format|layout|bits",
     {P(format, QK_FORMAT_UINT3), NONE, NONE}},
    {"MatMulNBits per tensor", CFG_MNB, FNS_ALL, INVALID_OR_UNSUPPORTED, "granularity|layout|block",
     {P(granularity, QK_GRANULARITY_PER_TENSOR), NONE, NONE}},
    {"MatMulNBits axis 0", CFG_MNB, FNS_ALL, INVALID_OR_UNSUPPORTED, "axis|layout", {P(axis, 0), NONE, NONE}},
    {"MatMulNBits 3-D", CFG_MNB, FN_LAYOUT, INVALID_OR_UNSUPPORTED | S(QK_ERROR_SHAPE_MISMATCH),
     "ndim|rank|dim|shape|2", {NDIM(T_LAYOUT, 3), NONE, NONE}},
    {"MatMulNBits 3-D input", CFG_MNB, FNS_IN, INVALID_OR_UNSUPPORTED | S(QK_ERROR_SHAPE_MISMATCH),
     "ndim|rank|dim|shape|2", {NDIM(T_IN, 3), NONE, NONE}},
    {"BNB4 layout with int4", CFG_INT4, FNS_ALL, INVALID_OR_UNSUPPORTED, "layout|format|nf4",
     {P(layout, QK_LAYOUT_BNB4), NONE, NONE}},
    {"BNB4 block 0", CFG_NF4_BNB, FNS_ALL, INVALID, "block", {P(block_size, 0), NONE, NONE}},
    {"nf4 asymmetric", CFG_NF4_BNB, FNS_ALL, INVALID_OR_UNSUPPORTED, "scheme|asymmetric|zero",
     {P(scheme, QK_SCHEME_ASYMMETRIC), NONE, NONE}},

    /* qk_quantized_layout_get's own arguments. */
    {"layout NULL", CFG_INT4, FN_LAYOUT, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_LAYOUT), NONE, NONE}},
    {"layout shape NULL", CFG_INT4, FN_LAYOUT, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_SHAPE), NONE, NONE}},
    {"layout.struct_size 0", CFG_INT4, FN_LAYOUT, S(QK_ERROR_VERSION), SIZES, {LSIZE(0), NONE, NONE}},
    {"layout.struct_size - 8", CFG_INT4, FN_LAYOUT, S(QK_ERROR_VERSION), SIZES,
     {LSIZE(sizeof(qk_quantized_layout) - 8), NONE, NONE}},
    {"layout ndim -1", CFG_INT4, FN_LAYOUT, INVALID, "ndim|rank|dim", {NDIM(T_LAYOUT, -1), NONE, NONE}},
    {"layout ndim 9", CFG_INT4, FN_LAYOUT, INVALID, "ndim|rank|dim", {NDIM(T_LAYOUT, 9), NONE, NONE}},
    {"layout ndim INT32_MAX", CFG_INT4, FN_LAYOUT, INVALID, "ndim|rank|dim", {NDIM(T_LAYOUT, INT32_MAX), NONE, NONE}},
    {"layout scalar, blocked", CFG_INT4, FN_LAYOUT, INVALID, "axis|rank|ndim|scalar", {NDIM(T_LAYOUT, 0), NONE, NONE}},
    {"layout dim -1", CFG_INT4, FN_LAYOUT, INVALID, "shape|dim|negative", {DIM(T_LAYOUT, 0, -1), NONE, NONE}},
    {"layout dim INT64_MIN", CFG_INT4, FN_LAYOUT, INVALID, "shape|dim|negative",
     {DIM(T_LAYOUT, 1, INT64_MIN), NONE, NONE}},
    {"layout [INT64_MAX, 2]", CFG_INT4, FN_LAYOUT, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, INT64_MAX), DIM(T_LAYOUT, 1, 2), NONE}},
    {"layout [2^32, 2^32]", CFG_INT4, FN_LAYOUT, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, BIG), DIM(T_LAYOUT, 1, BIG), NONE}},
    {"layout [2^62, 4]", CFG_INT4, FN_LAYOUT, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, ((int64_t)1) << 62), DIM(T_LAYOUT, 1, 4), NONE}},
    {"layout per-axis scales overflow", CFG_INT8_AXIS0, FN_LAYOUT, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, INT64_MAX), DIM(T_LAYOUT, 1, 1), NONE}},
    /* Sizes that fit a size_t but are absurd: success or OVERFLOW, never a trap. */
    {"layout [1, INT64_MAX] int4", CFG_INT4, FN_LAYOUT, S(QK_OK) | OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, 1), DIM(T_LAYOUT, 1, INT64_MAX), NONE}},
    {"layout [1, INT64_MAX] MatMulNBits", CFG_MNB, FN_LAYOUT, S(QK_OK) | OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, 1), DIM(T_LAYOUT, 1, INT64_MAX), NONE}},
    {"layout [16, INT64_MAX] MatMulNBits", CFG_MNB, FN_LAYOUT, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, 16), DIM(T_LAYOUT, 1, INT64_MAX), NONE}},
    {"layout [INT64_MAX, 1] nf4 bnb4", CFG_NF4_BNB, FN_LAYOUT, S(QK_OK) | OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_LAYOUT, 0, INT64_MAX), DIM(T_LAYOUT, 1, 1), NONE}},

    /* The input tensor (quantize, quantize_with_scales, quantization_error) ... */
    {"input NULL", CFG_INT4, FNS_IN, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_INPUT), NONE, NONE}},
    {"input data NULL", CFG_INT4, FNS_IN, S(QK_ERROR_NULL_POINTER), NULLS, {DATA_NULL(T_IN), NONE, NONE}},
    {"input shape NULL", CFG_INT4, FNS_IN, S(QK_ERROR_NULL_POINTER), NULLS, {SHAPE_NULL(T_IN), NONE, NONE}},
    {"input dtype 0", CFG_INT4, FNS_IN, INVALID_OR_UNSUPPORTED, "dtype|type", {DTYPE(T_IN, 0), NONE, NONE}},
    {"input dtype 999", CFG_INT4, FNS_IN, INVALID, "dtype|type", {DTYPE(T_IN, 999), NONE, NONE}},
    {"input dtype I8", CFG_INT4, FNS_IN, INVALID_OR_UNSUPPORTED, "dtype|type", {DTYPE(T_IN, QK_DTYPE_I8), NONE, NONE}},
    {"input dtype F64", CFG_INT4, FNS_IN, INVALID_OR_UNSUPPORTED, "dtype|type",
     {DTYPE(T_IN, QK_DTYPE_F64), NONE, NONE}},
    {"input ndim -1", CFG_INT4, FNS_IN, INVALID, "ndim|rank|dim", {NDIM(T_IN, -1), NONE, NONE}},
    {"input ndim 9", CFG_INT4, FNS_IN, INVALID, "ndim|rank|dim", {NDIM(T_IN, 9), NONE, NONE}},
    {"input dim -1", CFG_INT4, FNS_IN, INVALID, "shape|dim|negative", {DIM(T_IN, 0, -1), NONE, NONE}},
    {"input dim -40", CFG_INT4, FNS_IN, INVALID, "shape|dim|negative", {DIM(T_IN, 1, -40), NONE, NONE}},
    {"input [1, INT64_MAX]", CFG_INT4, FNS_IN, OVERFLOWS | INPUT_TOO_SMALL,
     "overflow|large|size|small|shape|fit|memory",
     {DIM(T_IN, 0, 1), DIM(T_IN, 1, INT64_MAX), NONE}},
    {"input [INT64_MAX, 2]", CFG_INT4, FNS_IN, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_IN, 0, INT64_MAX), DIM(T_IN, 1, 2), NONE}},
    {"input [2^32, 2^32]", CFG_INT4, FNS_IN, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_IN, 0, BIG), DIM(T_IN, 1, BIG), NONE}},
    {"input [3, 48] for [3, 40] buffers", CFG_INT4, FNS_IN, INPUT_TOO_SMALL, "small|bytes|buffer|size|shape",
     {DIM(T_IN, 1, 48), NONE, NONE}},
    {"input NaN first", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(0, NAN), NONE, NONE}},
    {"input NaN last", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(119, NAN), NONE, NONE}},
    {"input +Inf", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(57, INFINITY), NONE, NONE}},
    {"input -Inf", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(1, -INFINITY), NONE, NONE}},
    {"f16 input Inf", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS,
     {USE_F16(T_IN), VAL16(119, 0x7C00), NONE}},
    {"f16 input NaN", CFG_INT4, FN_QE, NONFINITE, NONFINITE_WORDS,
     {USE_F16(T_IN), VAL16(0, 0x7E00), NONE}},
    {"nf4 input NaN", CFG_NF4_BNB, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(33, NAN), NONE, NONE}},
    {"MatMulNBits input NaN", CFG_MNB, FN_QE, NONFINITE, NONFINITE_WORDS, {VAL(45, NAN), NONE, NONE}},
    {"per-axis input Inf", CFG_INT8_AXIS0, FN_QE, NONFINITE, NONFINITE_WORDS,
     {VAL(80, INFINITY), NONE, NONE}},

    /* quantize_with_scales is ONNX QuantizeLinear, which saturates: the header does not say whether
     * a non-finite input is an error there, so success is accepted too (see the notes). */
    {"with_scales input NaN", CFG_INT4, FN_WITH_SCALES, S(QK_ERROR_NON_FINITE) | S(QK_OK), NONFINITE_WORDS,
     {VAL(119, NAN), NONE, NONE}},
    {"with_scales input Inf", CFG_INT4, FN_WITH_SCALES, S(QK_ERROR_NON_FINITE) | S(QK_OK), NONFINITE_WORDS,
     {VAL(57, INFINITY), NONE, NONE}},
    /* ... and the output tensor of dequantize. */
    {"output NULL", CFG_INT4, FN_DEQUANTIZE, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_OUTPUT), NONE, NONE}},
    {"output data NULL", CFG_INT4, FN_DEQUANTIZE, S(QK_ERROR_NULL_POINTER), NULLS, {DATA_NULL(T_OUT), NONE, NONE}},
    {"output shape NULL", CFG_INT4, FN_DEQUANTIZE, S(QK_ERROR_NULL_POINTER), NULLS, {SHAPE_NULL(T_OUT), NONE, NONE}},
    {"output dtype 0", CFG_INT4, FN_DEQUANTIZE, INVALID_OR_UNSUPPORTED, "dtype|type", {DTYPE(T_OUT, 0), NONE, NONE}},
    {"output dtype I8", CFG_INT4, FN_DEQUANTIZE, INVALID_OR_UNSUPPORTED, "dtype|type",
     {DTYPE(T_OUT, QK_DTYPE_I8), NONE, NONE}},
    {"output dtype 999", CFG_INT4, FN_DEQUANTIZE, INVALID, "dtype|type", {DTYPE(T_OUT, 999), NONE, NONE}},
    {"output ndim -1", CFG_INT4, FN_DEQUANTIZE, INVALID, "ndim|rank|dim", {NDIM(T_OUT, -1), NONE, NONE}},
    {"output ndim 9", CFG_INT4, FN_DEQUANTIZE, INVALID, "ndim|rank|dim", {NDIM(T_OUT, 9), NONE, NONE}},
    {"output dim -1", CFG_INT4, FN_DEQUANTIZE, INVALID, "shape|dim|negative", {DIM(T_OUT, 0, -1), NONE, NONE}},
    {"output [INT64_MAX, 2]", CFG_INT4, FN_DEQUANTIZE, OVERFLOWS, "overflow|large|size|fit|memory",
     {DIM(T_OUT, 0, INT64_MAX), DIM(T_OUT, 1, 2), NONE}},
    {"output [1, INT64_MAX]", CFG_INT4, FN_DEQUANTIZE, OVERFLOWS | INPUT_TOO_SMALL,
     "overflow|large|size|small|shape|fit|memory", {DIM(T_OUT, 0, 1), DIM(T_OUT, 1, INT64_MAX), NONE}},
    {"output [3, 48] for [3, 40] buffers", CFG_INT4, FN_DEQUANTIZE, INPUT_TOO_SMALL, "small|bytes|buffer|size|shape",
     {DIM(T_OUT, 1, 48), NONE, NONE}},

    /* The quantized buffers. */
    {"quantized NULL", CFG_INT4, FNS_Q, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_Q), NONE, NONE}},
    {"quantized.struct_size 0", CFG_INT4, FNS_Q, S(QK_ERROR_VERSION), SIZES, {QSIZE(0), NONE, NONE}},
    {"quantized.struct_size - 8", CFG_INT4, FNS_Q, S(QK_ERROR_VERSION), SIZES,
     {QSIZE(sizeof(qk_quantized) - 8), NONE, NONE}},
    {"quantized.struct_size + 8, zero tail", CFG_INT4, FNS_Q, S(QK_OK), NULL, {QSIZE(QSZ + 8), NONE, NONE}},
    {"quantized.struct_size 4096, zero tail", CFG_UINT4_ASYM, FNS_Q, S(QK_OK), NULL, {QSIZE(4096), NONE, NONE}},
    {"quantized.struct_size + 8, byte 8 past it set", CFG_INT4, FNS_Q, S(QK_OK), NULL,
     {QSIZE(QSZ + 8), TAIL(TAIL_Q, 8, 1), NONE}},
    {"quantized.struct_size + 8, tail byte 0 set", CFG_INT4, FNS_Q, VERSION, NEWER,
     {QSIZE(QSZ + 8), TAIL(TAIL_Q, 0, 1), NONE}},
    {"quantized.struct_size 4096, last tail byte set", CFG_UINT4_ASYM, FNS_Q, VERSION, NEWER,
     {QSIZE(4096), TAIL(TAIL_Q, 4096 - QSZ - 1, 0x80), NONE}},
    {"quantized.struct_size 4097", CFG_INT4, FNS_Q, VERSION, SIZES, {QSIZE(4097), NONE, NONE}},
    {"quantized.struct_size 5000", CFG_INT4, FNS_Q, VERSION, SIZES, {QSIZE(5000), NONE, NONE}},
    {"quantized.struct_size UINT32_MAX", CFG_INT4, FNS_Q, VERSION, SIZES, {QSIZE(UINT32_MAX), NONE, NONE}},
    {"data NULL", CFG_INT4, FNS_Q, S(QK_ERROR_NULL_POINTER), NULLS, {QNULL(B_DATA), NONE, NONE}},
    {"scales NULL", CFG_INT4, FNS_Q, S(QK_ERROR_NULL_POINTER), NULLS, {QNULL(B_SCALES), NONE, NONE}},
    {"data_bytes - 1 (output)", CFG_INT4, FN_QUANTIZE | FN_WITH_SCALES, TOO_SMALL, "small|bytes|buffer|size|data",
     {QBYTES(B_DATA, -1), NONE, NONE}},
    {"data_bytes - 1 (input)", CFG_INT4, FN_DEQUANTIZE | FN_ERROR, INPUT_TOO_SMALL, "small|bytes|buffer|size|data",
     {QBYTES(B_DATA, -1), NONE, NONE}},
    {"data_bytes 0", CFG_INT4, FN_QUANTIZE | FN_WITH_SCALES, TOO_SMALL, "small|bytes|buffer|size|data",
     {QBYTES_SET(B_DATA, 0), NONE, NONE}},
    {"scales_bytes - 1 (output)", CFG_INT4, FN_QUANTIZE, TOO_SMALL, "small|bytes|buffer|size|scale",
     {QBYTES(B_SCALES, -1), NONE, NONE}},
    {"scales_bytes - 1 (input)", CFG_INT4, FN_WITH_SCALES | FN_DEQUANTIZE | FN_ERROR, INPUT_TOO_SMALL,
     "small|bytes|buffer|size|scale", {QBYTES(B_SCALES, -1), NONE, NONE}},
    {"scales_bytes 0", CFG_INT4, FNS_Q, TOO_SMALL | INPUT_TOO_SMALL, "small|bytes|buffer|size|scale",
     {QBYTES_SET(B_SCALES, 0), NONE, NONE}},
    {"zero_points NULL", CFG_UINT4_ASYM, FNS_Q, S(QK_ERROR_NULL_POINTER), NULLS, {QNULL(B_ZP), NONE, NONE}},
    {"zero_points_bytes - 1 (output)", CFG_UINT4_ASYM, FN_QUANTIZE, TOO_SMALL, "small|bytes|buffer|size|zero",
     {QBYTES(B_ZP, -1), NONE, NONE}},
    {"zero_points_bytes - 1 (input)", CFG_UINT4_ASYM, FN_WITH_SCALES | FN_DEQUANTIZE | FN_ERROR, INPUT_TOO_SMALL,
     "small|bytes|buffer|size|zero", {QBYTES(B_ZP, -1), NONE, NONE}},
    {"MatMulNBits data_bytes - 1", CFG_MNB, FN_QUANTIZE | FN_WITH_SCALES, TOO_SMALL, "small|bytes|buffer|size",
     {QBYTES(B_DATA, -1), NONE, NONE}},
    {"MatMulNBits scales_bytes - 1", CFG_MNB, FN_QUANTIZE, TOO_SMALL, "small|bytes|buffer|size",
     {QBYTES(B_SCALES, -1), NONE, NONE}},
    {"bnb4 data_bytes - 1", CFG_NF4_BNB, FN_QUANTIZE | FN_WITH_SCALES, TOO_SMALL, "small|bytes|buffer|size",
     {QBYTES(B_DATA, -1), NONE, NONE}},
    {"per-axis scales_bytes - 1", CFG_INT8_AXIS0, FN_QUANTIZE, TOO_SMALL, "small|bytes|buffer|size",
     {QBYTES(B_SCALES, -1), NONE, NONE}},

    /* The statistics struct. */
    {"stats NULL", CFG_INT4, FN_ERROR, S(QK_ERROR_NULL_POINTER), NULLS, {NUL(A_STATS), NONE, NONE}},
    {"stats.struct_size 0", CFG_INT4, FN_ERROR, S(QK_ERROR_VERSION), SIZES, {SSIZE(0), NONE, NONE}},
    {"stats.struct_size - 8", CFG_INT4, FN_ERROR, S(QK_ERROR_VERSION), SIZES,
     {SSIZE(sizeof(qk_error_stats) - 8), NONE, NONE}},
};

#define MAXN 1024 /* elements in the fixture arrays: more than any mutated shape can reach */

typedef struct call_args {
    const qk_quant_params *params;
    int32_t ndim;
    const int64_t *shape;
    qk_quantized_layout *layout;
    const qk_tensor *input;
    qk_quantized *q;
    qk_tensor *output;
    qk_error_stats *stats;
} call_args;

#define TAIL_BYTES 4096 /* room past an input struct for a struct_size up to 4096 (and a bit more) */

/* Everything a call can read or write lives in here, so one memcmp covers it all. */
typedef struct fixture {
    qk_quant_params params;
    unsigned char params_tail[TAIL_BYTES]; /* a newer caller's fields, zero unless a case sets one */
    int64_t shape_layout[16], shape_in[16], shape_out[16];
    float x[MAXN], y[MAXN];
    uint16_t x16[MAXN], y16[MAXN];
    qk_tensor in, out;
    qk_quantized_layout need, layout;
    uint32_t layout_size, stats_size;
    qk_quantized q;
    unsigned char q_tail[TAIL_BYTES];
    unsigned char data[512], scales[512], zp[512];
    qk_error_stats stats;
    call_args args;
} fixture;

/* The tails start right where the structs end. */
STATIC_ASSERT(params_tail, offsetof(fixture, params_tail) == offsetof(fixture, params) + sizeof(qk_quant_params));
STATIC_ASSERT(q_tail, offsetof(fixture, q_tail) == offsetof(fixture, q) + sizeof(qk_quantized));

static qk_quant_params fixture_params(int cfg) {
    qk_quant_params p;
    switch (cfg) {
    case CFG_UINT4_ASYM:
        p = params_for(QK_FORMAT_UINT4);
        p.scheme = QK_SCHEME_ASYMMETRIC;
        p.block_size = 16;
        break;
    case CFG_MNB:
        p = mnb_params(4, 16);
        break;
    case CFG_NF4_BNB:
        p = params_for(QK_FORMAT_NF4);
        p.layout = QK_LAYOUT_BNB4;
        p.block_size = 64;
        break;
    case CFG_INT8_AXIS0:
        p = params_for(QK_FORMAT_INT8);
        p.granularity = QK_GRANULARITY_PER_AXIS;
        p.axis = 0;
        break;
    default:
        p = params_for(QK_FORMAT_INT4);
        p.block_size = 16;
        break;
    }
    return p;
}

/* Valid arguments for [3, 40] and a real quantization in the buffers. */
static int fixture_build(fixture *f, int cfg) {
    int i;
    qk_status st;
    memset(f, 0, sizeof *f);
    f->params = fixture_params(cfg);
    for (i = 0; i < 16; i++) f->shape_layout[i] = f->shape_in[i] = f->shape_out[i] = 1;
    f->shape_layout[0] = f->shape_in[0] = f->shape_out[0] = 3;
    f->shape_layout[1] = f->shape_in[1] = f->shape_out[1] = 40;
    fill_normal(f->x, MAXN, 2.0f);
    for (i = 0; i < MAXN; i++) f->x16[i] = f32_to_f16(f->x[i]);
    f->in = tensor_of(f->x, QK_DTYPE_F32, 2, f->shape_in);
    f->out = tensor_of(f->y, QK_DTYPE_F32, 2, f->shape_out);
    if (!layout_for(&f->params, 2, f->shape_layout, &f->need)) return 0;
    f->layout_size = sizeof f->layout;
    f->stats_size = sizeof f->stats;
    f->q.struct_size = sizeof f->q;
    f->q.data = f->data;
    f->q.data_bytes = f->need.data_bytes;
    f->q.scales = f->scales;
    f->q.scales_bytes = f->need.scales_bytes;
    if (f->need.zero_points_bytes) {
        f->q.zero_points = f->zp;
        f->q.zero_points_bytes = f->need.zero_points_bytes;
    }
    st = qk_quantize(&f->params, &f->in, &f->q);
    if (st != QK_OK) copy_last_error();
    f->args.params = &f->params;
    f->args.ndim = 2;
    f->args.shape = f->shape_layout;
    f->args.layout = &f->layout;
    f->args.input = &f->in;
    f->args.q = &f->q;
    f->args.output = &f->out;
    f->args.stats = &f->stats;
    return st == QK_OK;
}

static qk_tensor *fixture_tensor(fixture *f, int target) { return target == T_OUT ? &f->out : &f->in; }

static size_t *fixture_bytes(fixture *f, int which) {
    return which == B_DATA ? &f->q.data_bytes : which == B_SCALES ? &f->q.scales_bytes : &f->q.zero_points_bytes;
}

static size_t fixture_need(const fixture *f, int which) {
    return which == B_DATA ? f->need.data_bytes : which == B_SCALES ? f->need.scales_bytes : f->need.zero_points_bytes;
}

static void set_null_arg(fixture *f, int arg) {
    switch (arg) {
    case A_PARAMS: f->args.params = NULL; break;
    case A_LAYOUT: f->args.layout = NULL; break;
    case A_SHAPE: f->args.shape = NULL; break;
    case A_INPUT: f->args.input = NULL; break;
    case A_Q: f->args.q = NULL; break;
    case A_OUTPUT: f->args.output = NULL; break;
    default: f->args.stats = NULL; break;
    }
}

static void apply_mutation(fixture *f, const mutation *m) {
    int32_t v32 = (int32_t)m->i;
    float vf = (float)m->f;
    switch (m->kind) {
    case M_PARAM: memcpy((char *)&f->params + m->target, &v32, 4); break;
    case M_PARAM_F: memcpy((char *)&f->params + m->target, &vf, 4); break;
    case M_NULL: set_null_arg(f, m->target); break;
    case M_NDIM:
        if (m->target == T_LAYOUT) f->args.ndim = v32;
        else fixture_tensor(f, m->target)->ndim = v32;
        break;
    case M_DIM:
        (m->target == T_LAYOUT ? f->shape_layout : m->target == T_IN ? f->shape_in : f->shape_out)[m->index] = m->i;
        break;
    case M_DTYPE: fixture_tensor(f, m->target)->dtype = v32; break;
    case M_DATA_NULL: fixture_tensor(f, m->target)->data = NULL; break;
    case M_SHAPE_NULL:
        if (m->target == T_LAYOUT) f->args.shape = NULL;
        else fixture_tensor(f, m->target)->shape = NULL;
        break;
    case M_VALUE: f->x[m->index] = vf; break;
    case M_VALUE16: f->x16[m->index] = (uint16_t)m->i; break;
    case M_USE_F16:
        fixture_tensor(f, m->target)->dtype = QK_DTYPE_F16;
        fixture_tensor(f, m->target)->data = m->target == T_OUT ? (void *)f->y16 : (void *)f->x16;
        break;
    case M_QSIZE: f->q.struct_size = (uint32_t)m->i; break;
    case M_QBYTES: *fixture_bytes(f, m->target) = fixture_need(f, m->target) + (size_t)m->i; break;
    case M_QBYTES_SET: *fixture_bytes(f, m->target) = (size_t)m->i; break;
    case M_QNULL:
        if (m->target == B_DATA) f->q.data = NULL;
        else if (m->target == B_SCALES) f->q.scales = NULL;
        else f->q.zero_points = NULL;
        break;
    case M_LAYOUT_SIZE: f->layout_size = (uint32_t)m->i; break;
    case M_STATS_SIZE: f->stats_size = (uint32_t)m->i; break;
    case M_TAIL: (m->target == TAIL_PARAMS ? f->params_tail : f->q_tail)[m->index] = (unsigned char)m->i; break;
    default: break;
    }
}

/* Poisons what `fn` writes (keeping the struct_size fields the case asked for). */
static void poison_outputs(fixture *f, unsigned fn) {
    if (fn == FN_LAYOUT) memset(&f->layout, POISON, sizeof f->layout);
    if (fn == FN_QUANTIZE) {
        memset(f->data, POISON, sizeof f->data);
        memset(f->scales, POISON, sizeof f->scales);
        memset(f->zp, POISON, sizeof f->zp);
    }
    if (fn == FN_WITH_SCALES) memset(f->data, POISON, sizeof f->data);
    if (fn == FN_DEQUANTIZE) {
        memset(f->y, POISON, sizeof f->y);
        memset(f->y16, POISON, sizeof f->y16);
    }
    if (fn == FN_ERROR) memset(&f->stats, POISON, sizeof f->stats);
    f->layout.struct_size = f->layout_size;
    f->stats.struct_size = f->stats_size;
}

static qk_status call_fn(unsigned fn, const call_args *a) {
    switch (fn) {
    case FN_LAYOUT: return qk_quantized_layout_get(a->params, a->ndim, a->shape, a->layout);
    case FN_QUANTIZE: return qk_quantize(a->params, a->input, a->q);
    case FN_WITH_SCALES: return qk_quantize_with_scales(a->params, a->input, a->q);
    case FN_DEQUANTIZE: return qk_dequantize(a->params, a->q, a->output);
    default: return qk_quantization_error(a->params, a->input, a->q, a->stats);
    }
}

static const char *fn_name(unsigned fn) {
    switch (fn) {
    case FN_LAYOUT: return "qk_quantized_layout_get";
    case FN_QUANTIZE: return "qk_quantize";
    case FN_WITH_SCALES: return "qk_quantize_with_scales";
    case FN_DEQUANTIZE: return "qk_dequantize";
    default: return "qk_quantization_error";
    }
}

/* Names the part of the fixture a failed call changed. */
static const char *changed_part(const fixture *a, const fixture *b) {
#define PART(field)                                                                                       \
    if (memcmp(&a->field, &b->field, sizeof a->field) != 0) return #field
    PART(params); PART(params_tail); PART(q_tail); PART(shape_layout); PART(shape_in); PART(shape_out); PART(x); PART(y); PART(x16); PART(y16);
    PART(in); PART(out); PART(layout); PART(q); PART(data); PART(scales); PART(zp); PART(stats);
#undef PART
    return "something";
}

static void run_bad_call(const bad_case *c, unsigned fn) {
    static fixture f, before;
    static char where[256];
    qk_status st;
    int k;
    sprintf(where, "case \"%s\", %s", c->name, fn_name(fn));
    g_current = where;
    if (!fixture_build(&f, c->cfg)) {
        CHECK(0, "%s: the valid fixture failed: %s", where, g_msg);
        return;
    }
    for (k = 0; k < 3 && c->m[k].kind != M_END; k++) apply_mutation(&f, &c->m[k]);
    poison_outputs(&f, fn);
    memcpy(&before, &f, sizeof f);
    st = call_fn(fn, &f.args);
    /* The header does not say that quantization_error rejects a non-finite original; statistics
     * that show the problem (NaN or Inf) are accepted, statistics that hide it are not. */
    if (st == QK_OK && fn == FN_ERROR && (c->codes & S(QK_ERROR_NON_FINITE))) {
        CHECK(!isfinite(f.stats.max_abs_error) && !isfinite(f.stats.rmse),
              "%s returned QK_OK with max_abs_error %g, rmse %g for a non-finite input", where,
              f.stats.max_abs_error, f.stats.rmse);
        return;
    }
    if (st == QK_OK) {
        CHECK(c->codes & S(QK_OK), "%s returned QK_OK, expected %s", where, mask_names(c->codes));
        return;
    }
    expect_fail_at(st, c->codes, c->words, where, __LINE__);
    /* The header's one exception: qk_quantize may have written part of output->data before it
     * met a non-finite value. */
    if (fn == FN_QUANTIZE && st == QK_ERROR_NON_FINITE) memcpy(f.data, before.data, sizeof f.data);
    CHECK(memcmp(&before, &f, sizeof f) == 0, "%s failed (%s) but changed %s", where, status_name(st),
          changed_part(&before, &f));
}

static void run_bad_case(const bad_case *c) {
    unsigned fn;
    for (fn = 1; fn <= FN_ERROR; fn <<= 1)
        if (c->fns & fn) run_bad_call(c, fn);
}

/* ============================================================================================ */
/* Group: per-thread last error, concurrent quantization                                         */
/* ============================================================================================ */

#define THREAD_ITERATIONS 2000

typedef struct thread_job {
    int which;              /* 0: unknown format name, 1: bad format number */
    const char *expected;   /* this thread's message, recorded single-threaded */
    int mismatches;
    char first_bad[256];
    pthread_barrier_t *start;
} thread_job;

static qk_status failing_call(int which) {
    int32_t fmt;
    qk_quant_params p;
    if (which == 0) return qk_format_from_name("thread-a-unknown-format", &fmt);
    memset(&p, 0, sizeof p);
    return init_params(&p, 999);
}

static void *last_error_thread(void *arg) {
    thread_job *job = (thread_job *)arg;
    int i;
    pthread_barrier_wait(job->start);
    for (i = 0; i < THREAD_ITERATIONS; i++) {
        const char *m;
        if (failing_call(job->which) == QK_OK) m = "(the call succeeded)";
        else m = qk_last_error();
        if (strcmp(m, job->expected) != 0 && job->mismatches++ == 0) {
            strncpy(job->first_bad, m, sizeof job->first_bad - 1);
            job->first_bad[sizeof job->first_bad - 1] = '\0';
        }
    }
    return NULL;
}

static void *fresh_thread(void *arg) {
    const char *m = qk_last_error();
    *(int *)arg = m != NULL && m[0] == '\0';
    return NULL;
}

static void last_error_threads(void) {
    char expected[2][1024];
    thread_job jobs[2];
    pthread_t threads[2];
    pthread_barrier_t start;
    int k, fresh_empty = 0;
    for (k = 0; k < 2; k++) {
        failing_call(k);
        copy_last_error();
        strcpy(expected[k], g_msg);
    }
    CHECK(strcmp(expected[0], expected[1]) != 0, "the two failures give the same message \"%s\"", expected[0]);
    /* This thread has failed before; a new one has not. */
    pthread_create(&threads[0], NULL, fresh_thread, &fresh_empty);
    pthread_join(threads[0], NULL);
    CHECK(fresh_empty, "qk_last_error() in a new thread is not \"\" (it sees another thread's failure)");

    pthread_barrier_init(&start, NULL, 2);
    for (k = 0; k < 2; k++) {
        memset(&jobs[k], 0, sizeof jobs[k]);
        jobs[k].which = k;
        jobs[k].expected = expected[k];
        jobs[k].start = &start;
        pthread_create(&threads[k], NULL, last_error_thread, &jobs[k]);
    }
    for (k = 0; k < 2; k++) pthread_join(threads[k], NULL);
    pthread_barrier_destroy(&start);
    for (k = 0; k < 2; k++)
        CHECK(jobs[k].mismatches == 0, "thread %d saw %d foreign messages, first \"%s\" (own: \"%s\")", k,
              jobs[k].mismatches, jobs[k].first_bad, expected[k]);
}

typedef struct quantize_job {
    const qk_quant_params *p;
    const qk_tensor *in;
    const unsigned char *expected;
    size_t bytes;
    int mismatches;
} quantize_job;

static void *quantize_thread(void *arg) {
    quantize_job *job = (quantize_job *)arg;
    qk_quantized_layout l;
    qk_quantized q;
    int i;
    if (!layout_for(job->p, job->in->ndim, job->in->shape, &l)) {
        job->mismatches = -1;
        return NULL;
    }
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = malloc(l.data_bytes);
    q.data_bytes = l.data_bytes;
    q.scales = malloc(l.scales_bytes);
    q.scales_bytes = l.scales_bytes;
    for (i = 0; i < 50; i++)
        if (qk_quantize(job->p, job->in, &q) != QK_OK || memcmp(q.data, job->expected, job->bytes) != 0)
            job->mismatches++;
    free(q.data);
    free(q.scales);
    return NULL;
}

/* Two threads quantizing different tensors at once get the single-threaded results. */
static void concurrent_quantize(void) {
    const int64_t shape[2] = {64, 512};
    static float x[2][64 * 512];
    qtensor ref[2];
    quantize_job jobs[2];
    pthread_t threads[2];
    qk_tensor in[2];
    qk_quant_params p = params_for(QK_FORMAT_INT4);
    int k;
    p.num_threads = 1;
    for (k = 0; k < 2; k++) {
        fill_normal(x[k], 64 * 512, (float)(k + 1));
        in[k] = tensor_of(x[k], QK_DTYPE_F32, 2, shape);
        if (!QT_QUANTIZE(&ref[k], &p, &in[k])) return;
    }
    for (k = 0; k < 2; k++) {
        jobs[k].p = &p;
        jobs[k].in = &in[k];
        jobs[k].expected = (const unsigned char *)ref[k].q.data;
        jobs[k].bytes = ref[k].q.data_bytes;
        jobs[k].mismatches = 0;
        pthread_create(&threads[k], NULL, quantize_thread, &jobs[k]);
    }
    for (k = 0; k < 2; k++) {
        pthread_join(threads[k], NULL);
        CHECK(jobs[k].mismatches == 0, "concurrent quantize in thread %d: %d of 50 runs differ or fail", k,
              jobs[k].mismatches);
        qt_free(&ref[k]);
    }
}

static void group_threads(void) {
    last_error_threads();
    concurrent_quantize();
}

/* ============================================================================================ */
/* Checksums: one line per configuration, compared across kernel variants by run.sh              */
/* ============================================================================================ */

typedef struct checksum_config {
    const char *name;
    int32_t format, scheme, granularity, axis, block, layout, rounding, method;
} checksum_config;

static const checksum_config CHECKSUM_CONFIGS[] = {
    {"int4 g128 sym", QK_FORMAT_INT4, 0, QK_GRANULARITY_BLOCKED, -1, 128, QK_LAYOUT_ONNX, 0, 0},
    {"int4 g32 sym", QK_FORMAT_INT4, 0, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_ONNX, 0, 0},
    {"int4 g32 axis0", QK_FORMAT_INT4, 0, QK_GRANULARITY_BLOCKED, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"uint4 g32 asym", QK_FORMAT_UINT4, 1, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_ONNX, 0, 0},
    {"int8 per-channel", QK_FORMAT_INT8, 0, QK_GRANULARITY_PER_AXIS, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"uint8 per-tensor asym", QK_FORMAT_UINT8, 1, QK_GRANULARITY_PER_TENSOR, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"nf4 b64", QK_FORMAT_NF4, 0, QK_GRANULARITY_BLOCKED, -1, 64, QK_LAYOUT_ONNX, 0, 0},
    {"nf4 b64 bnb4", QK_FORMAT_NF4, 0, QK_GRANULARITY_BLOCKED, -1, 64, QK_LAYOUT_BNB4, 0, 0},
    {"fp4 e2m1 g32", QK_FORMAT_FP4_E2M1, 0, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_ONNX, 0, 0},
    {"fp8 e4m3 per-tensor", QK_FORMAT_FP8_E4M3FN, 0, QK_GRANULARITY_PER_TENSOR, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"fp8 e5m2 per-tensor", QK_FORMAT_FP8_E5M2, 0, QK_GRANULARITY_PER_TENSOR, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"fp16", QK_FORMAT_FP16, 0, -1, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"bf16", QK_FORMAT_BF16, 0, -1, 0, 32, QK_LAYOUT_ONNX, 0, 0},
    {"matmulnbits4 b32 away", -4, 0, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_MATMULNBITS, 1, 0},
    {"matmulnbits4 b32 asym", -4, 1, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_MATMULNBITS, 1, 0},
    {"int4 g32 mse", QK_FORMAT_INT4, 0, QK_GRANULARITY_BLOCKED, -1, 32, QK_LAYOUT_ONNX, 0, QK_METHOD_MSE},
};

static void print_checksum(const checksum_config *c, const qk_tensor *in) {
    qk_quant_params p = params_for(c->format < 0 ? mnb_format(-c->format) : c->format);
    qtensor t;
    float *y;
    uint64_t hq = 14695981039346656037ull, hd = hq;
    size_t n = (size_t)element_count(in->ndim, in->shape);
    p.scheme = c->scheme;
    if (c->granularity >= 0) p.granularity = c->granularity;
    p.axis = c->axis;
    p.block_size = c->block;
    p.layout = c->layout;
    p.rounding = c->rounding;
    p.method = c->method;
    if (!QT_QUANTIZE(&t, &p, in)) {
        printf("%-24s quantize failed: %s\n", c->name, g_msg);
        return;
    }
    hq = fnv1a(hq, t.q.data, t.q.data_bytes);
    hq = fnv1a(hq, t.q.scales, t.q.scales_bytes);
    if (t.q.zero_points) hq = fnv1a(hq, t.q.zero_points, t.q.zero_points_bytes);
    y = QT_DEQUANTIZE(&t, &p, in->ndim, in->shape);
    if (y) hd = fnv1a(hd, y, n * sizeof(float));
    printf("%-24s quantized %016llx dequantized %016llx\n", c->name, (unsigned long long)hq, (unsigned long long)hd);
    free(y);
    qt_free(&t);
}

/* Odd sizes: K not a multiple of any block, N not a multiple of a tile. */
static void print_checksums(void) {
    const int64_t shape[2] = {257, 1000};
    float *x = (float *)malloc(257 * 1000 * sizeof(float));
    qk_tensor in = tensor_of(x, QK_DTYPE_F32, 2, shape);
    size_t i;
    fill_normal(x, 257 * 1000, 1.0f);
    for (i = 0; i < 257 * 1000; i += 331) x[i] *= 8; /* outliers */
    for (i = 0; i < sizeof CHECKSUM_CONFIGS / sizeof CHECKSUM_CONFIGS[0]; i++)
        print_checksum(&CHECKSUM_CONFIGS[i], &in);
    free(x);
}

/* ============================================================================================ */
/* Running groups in child processes                                                             */
/* ============================================================================================ */

typedef struct group {
    const char *name;
    void (*run)(void);
} group;

static void group_bad_input(void);

/* ============================================================================================ */
/* Fused matmul (ABI 2)                                                                          */
/* ============================================================================================ */

/* W [N, K] int4 block 32 quantized by the library, packed, multiplied; compared with a float64
 * product of the dequantized weights. */
static void group_matmul(void) {
    enum { N = 37, K = 70, M = 3 };
    static float w[N * K], wd[N * K], x[M * K], y[M * N], bias[N];
    int64_t wshape[2] = {N, K}, xshape[2] = {M, K}, yshape[2] = {M, N}, bshape[1] = {N}, badshape[2] = {M, K + 1};
    qk_quant_params p;
    qk_quantized_layout lay;
    qk_quantized q;
    qk_packed_matrix *pm = NULL, *untouched = (qk_packed_matrix *)&w;
    qk_packed_matrix_info info;
    qk_matmul_options opt;
    qk_pack_options po;
    int i, j, c, bad = 0;
    for (i = 0; i < N * K; i++) w[i] = (float)sin(i * 0.37) * 0.5f;
    for (i = 0; i < M * K; i++) x[i] = (float)cos(i * 0.11);
    for (i = 0; i < N; i++) bias[i] = (float)i * 0.01f;
    p.struct_size = sizeof p;
    EXPECT_OK(qk_quant_params_init(&p, QK_FORMAT_INT4));
    lay.struct_size = sizeof lay;
    EXPECT_OK(qk_quantized_layout_get(&p, 2, wshape, &lay));
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = malloc(lay.data_bytes);
    q.data_bytes = lay.data_bytes;
    q.scales = malloc(lay.scales_bytes);
    q.scales_bytes = lay.scales_bytes;
    {
        qk_tensor wt = {w, QK_DTYPE_F32, 2, wshape, NULL}, dt = {wd, QK_DTYPE_F32, 2, wshape, NULL};
        EXPECT_OK(qk_quantize(&p, &wt, &q));
        EXPECT_OK(qk_dequantize(&p, &q, &dt));
    }
    EXPECT_OK(qk_pack_weights(&p, N, K, &q, NULL, &pm));
    info.struct_size = sizeof info;
    if (pm && EXPECT_OK(qk_packed_matrix_get_info(pm, &info))) {
        CHECK(info.n == N && info.k == K && info.format == QK_FORMAT_INT4 && info.block_size == 32 && info.int8_compute == 1,
              "info: n %lld k %lld format %d block %d int8 %d", (long long)info.n, (long long)info.k, info.format,
              info.block_size, info.int8_compute);
    }
    for (c = 0; c < 2 && pm; c++) {
        qk_tensor xt = {x, QK_DTYPE_F32, 2, xshape, NULL}, yt = {y, QK_DTYPE_F32, 2, yshape, NULL};
        qk_tensor bt = {bias, QK_DTYPE_F32, 1, bshape, NULL};
        opt.struct_size = sizeof opt;
        opt.compute = c == 0 ? QK_COMPUTE_FLOAT : QK_COMPUTE_INT8;
        opt.num_threads = 0;
        for (i = 0; i < M * N; i++) y[i] = NAN;
        EXPECT_OK(qk_matmul(pm, &xt, &bt, &yt, &opt));
        for (i = 0; i < M && !bad; i++) {
            for (j = 0; j < N && !bad; j++) {
                double exact = bias[j], magnitude = 0, quant = 0;
                int k, b;
                for (k = 0; k < K; k++) {
                    exact += (double)x[i * K + k] * wd[j * K + k];
                    magnitude += fabs((double)x[i * K + k] * wd[j * K + k]);
                }
                for (b = 0; b < (K + 31) / 32; b++) { /* the header's int8 bound */
                    double mx = 0, sw = 0;
                    for (k = b * 32; k < K && k < b * 32 + 32; k++) {
                        if (fabs(x[i * K + k]) > mx) mx = fabs(x[i * K + k]);
                        sw += fabs(wd[j * K + k]);
                    }
                    quant += mx / 127 / 2 * sw;
                }
                if (!(fabs(y[i * N + j] - exact) <= 1e-5 * magnitude + (c ? quant * 1.001 : 0) + 1e-6)) bad = 1;
                CHECK(!bad, "compute %d: y[%d,%d] = %g, float64 %g", c, i, j, y[i * N + j], exact);
            }
        }
    }
    if (pm) {
        qk_tensor xt = {x, QK_DTYPE_F32, 2, xshape, NULL}, yt = {y, QK_DTYPE_F32, 2, yshape, NULL};
        qk_tensor xbad = {x, QK_DTYPE_F32, 2, badshape, NULL}, yover = {x, QK_DTYPE_F32, 2, yshape, NULL};
        opt.struct_size = 4;
        EXPECT_FAIL(S(QK_ERROR_VERSION), "struct_size", qk_matmul(pm, &xt, NULL, &yt, &opt));
        EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), "w", qk_matmul(NULL, &xt, NULL, &yt, NULL));
        EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), "x", qk_matmul(pm, NULL, NULL, &yt, NULL));
        EXPECT_FAIL(S(QK_ERROR_SHAPE_MISMATCH), "K", qk_matmul(pm, &xbad, NULL, &yt, NULL));
        EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "overlap", qk_matmul(pm, &xt, NULL, &yover, NULL));
        x[5] = NAN;
        opt.struct_size = sizeof opt;
        opt.compute = QK_COMPUTE_INT8;
        EXPECT_FAIL(S(QK_ERROR_NON_FINITE), "finite", qk_matmul(pm, &xt, NULL, &yt, &opt));
        x[5] = 0;
    }
    qk_packed_matrix_release(pm);
    qk_packed_matrix_release(NULL);
    /* Packing errors leave *out untouched. */
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), "out", qk_pack_weights(&p, N, K, &q, NULL, NULL));
    EXPECT_FAIL(S(QK_ERROR_BUFFER_TOO_SMALL), "bytes", qk_pack_weights(&p, N, K + 64, &q, NULL, &untouched));
    po.struct_size = sizeof po;
    po.orientation = 7;
    po.num_threads = 0;
    po.reserved = 0;
    EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "orientation", qk_pack_weights(&p, N, K, &q, &po, &untouched));
    p.block_size = 12; /* 6 blocks per row: scale buffers sized for them */
    {
        qk_quantized q12 = q;
        q12.scales_bytes = N * 6 * sizeof(float);
        q12.scales = calloc(N * 6, sizeof(float));
        EXPECT_FAIL(S(QK_ERROR_UNSUPPORTED), "multiple of 8", qk_pack_weights(&p, N, K, &q12, NULL, &untouched));
        free(q12.scales);
    }
    CHECK(untouched == (qk_packed_matrix *)&w, "*out was written by a failing qk_pack_weights");
    free(q.data);
    free(q.scales);
    {
        const char *v = qk_matmul_kernel_variant();
        CHECK(v && (!strcmp(v, "avx512-vnni") || !strcmp(v, "avx2-vnni") || !strcmp(v, "avx2") || !strcmp(v, "scalar")),
              "qk_matmul_kernel_variant() = %s", v ? v : "(null)");
    }
}

/* MatMulInteger: u8 a with per-row zero points, i8 b with a scalar zero point; then rescaled. */
static void group_matmul_integer(void) {
    enum { M = 3, K = 9, N = 5 };
    uint8_t a[M * K], az[M] = {3, 128, 250};
    int8_t b[K * N], bz = -4;
    int32_t y[M * N];
    float yf[M * N], as[M] = {0.5f, 0.25f, 2.0f}, bs = 0.125f, bias[N] = {1, 2, 3, 4, 5};
    int64_t ash[2] = {M, K}, bsh[2] = {K, N}, ysh[2] = {M, N}, azsh[1] = {M}, assh[1] = {M}, biassh[1] = {N};
    qk_tensor at = {a, QK_DTYPE_U8, 2, ash, NULL}, bt = {b, QK_DTYPE_I8, 2, bsh, NULL};
    qk_tensor azt = {az, QK_DTYPE_U8, 1, azsh, NULL}, bzt = {&bz, QK_DTYPE_I8, 0, NULL, NULL};
    qk_tensor yt = {y, QK_DTYPE_I32, 2, ysh, NULL}, yft = {yf, QK_DTYPE_F32, 2, ysh, NULL};
    qk_tensor ast = {as, QK_DTYPE_F32, 1, assh, NULL}, bst = {&bs, QK_DTYPE_F32, 0, NULL, NULL};
    qk_tensor biast = {bias, QK_DTYPE_F32, 1, biassh, NULL};
    int i, j, k;
    for (i = 0; i < M * K; i++) a[i] = (uint8_t)(i * 37 + 11);
    for (i = 0; i < K * N; i++) b[i] = (int8_t)(i * 53 - 100);
    EXPECT_OK(qk_matmul_integer(&at, &azt, &bt, &bzt, NULL, NULL, NULL, &yt, 0));
    EXPECT_OK(qk_matmul_integer(&at, &azt, &bt, &bzt, &ast, &bst, &biast, &yft, 1));
    for (i = 0; i < M; i++) {
        for (j = 0; j < N; j++) {
            int64_t acc = 0;
            for (k = 0; k < K; k++) acc += ((int64_t)a[i * K + k] - az[i]) * ((int64_t)b[k * N + j] - bz);
            CHECK(y[i * N + j] == acc, "matmul_integer y[%d,%d] = %d, expected %lld", i, j, y[i * N + j], (long long)acc);
            CHECK(fabs(yf[i * N + j] - ((double)acc * as[i] * bs + bias[j])) <= 1e-5 * fabs((double)acc * as[i] * bs) + 1e-5,
                  "scaled y[%d,%d] = %g", i, j, yf[i * N + j]);
        }
    }
    EXPECT_FAIL(S(QK_ERROR_UNSUPPORTED), "dtype", qk_matmul_integer(&at, NULL, &bt, NULL, NULL, NULL, NULL, &yft, 0));
    EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "both", qk_matmul_integer(&at, NULL, &bt, NULL, &ast, NULL, NULL, &yft, 0));
    EXPECT_FAIL(S(QK_ERROR_INVALID_ARGUMENT), "bias", qk_matmul_integer(&at, NULL, &bt, NULL, NULL, NULL, &biast, &yt, 0));
    EXPECT_FAIL(S(QK_ERROR_SHAPE_MISMATCH), "K", qk_matmul_integer(&bt, NULL, &bt, NULL, NULL, NULL, NULL, &yt, 0));
    EXPECT_FAIL(S(QK_ERROR_NULL_POINTER), "a", qk_matmul_integer(NULL, NULL, &bt, NULL, NULL, NULL, NULL, &yt, 0));
}

static const group GROUPS[] = {
    {"abi", group_abi},
    {"status_strings", group_status_strings},
    {"formats", group_formats},
    {"params", group_params},
    {"layout", group_layout},
    {"integer", group_integer},
    {"matmulnbits", group_matmulnbits},
    {"codebooks", group_codebooks},
    {"floats", group_floats},
    {"inputs", group_inputs},
    {"with_scales", group_with_scales},
    {"stats", group_stats},
    {"methods", group_methods},
    {"runtime", group_runtime},
    {"bad_simple", group_bad_simple},
    {"struct_size", group_struct_size},
    {"bad_input", group_bad_input},
    {"threads", group_threads},
    {"matmul", group_matmul},
    {"matmul_integer", group_matmul_integer},
};

/* The crash handler names the call in flight (write() only: async-signal-safe). */
static void on_crash(int sig) {
    const char *head = "\nCRASH in: ";
    const char *what = g_current;
    (void)!write(1, head, strlen(head));
    (void)!write(1, what, strlen(what));
    (void)!write(1, "\n", 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_crash_handler(void) {
    const int sigs[] = {SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGABRT, SIGFPE};
    size_t i;
    for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) signal(sigs[i], on_crash);
}

static int no_fork(void) {
    const char *v = getenv("QK_TEST_NO_FORK");
    return v && *v && strcmp(v, "0") != 0;
}

/* Runs fn(arg) in a child (unless QK_TEST_NO_FORK); a crash or hang counts as one failure. */
static void run_isolated(const char *what, void (*fn)(const void *), const void *arg) {
    pid_t pid;
    int status = 0;
    if (no_fork()) {
        fn(arg);
        return;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        install_crash_handler();
        alarm(300);
        fn(arg);
        fflush(stdout);
        _exit(0);
    }
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        CHECK(0, "%s: fork/wait failed", what);
        return;
    }
    if (WIFSIGNALED(status))
        CHECK(0, "%s: the process died with signal %d%s (reproduce: test_abi --group %s%s%s%s)", what,
              WTERMSIG(status), WTERMSIG(status) == SIGALRM ? " (timeout)" : "", g_group,
              strcmp(g_group, "bad_input") == 0 ? " --case '" : "", strcmp(g_group, "bad_input") == 0 ? what : "",
              strcmp(g_group, "bad_input") == 0 ? "'" : "");
    else
        CHECK(WEXITSTATUS(status) == 0, "%s: the process exited with status %d", what, WEXITSTATUS(status));
}

static void run_bad_case_arg(const void *arg) { run_bad_case((const bad_case *)arg); }

static void group_bad_input(void) {
    size_t i;
    for (i = 0; i < sizeof BAD_CASES / sizeof BAD_CASES[0]; i++) {
        if (g_case_filter && !strstr(BAD_CASES[i].name, g_case_filter)) continue;
        run_isolated(BAD_CASES[i].name, run_bad_case_arg, &BAD_CASES[i]);
    }
}

static void run_group_arg(const void *arg) {
    const group *g = (const group *)arg;
    g_group = g->name;
    g->run();
}

int main(int argc, char **argv) {
    const char *only = NULL;
    size_t i;
    int found = 0;
    for (i = 1; i < (size_t)argc; i++) {
        if (strcmp(argv[i], "--checksums") == 0) {
            g_counts = (int *)calloc(2, sizeof(int));
            print_checksums();
            return g_counts[1] != 0;
        } else if (strcmp(argv[i], "--group") == 0 && i + 1 < (size_t)argc) {
            only = argv[++i];
        } else if (strcmp(argv[i], "--case") == 0 && i + 1 < (size_t)argc) {
            g_case_filter = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--group NAME] [--case TEXT] | --checksums\n", argv[0]);
            return 2;
        }
    }
    g_counts = (int *)mmap(NULL, 2 * sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (g_counts == MAP_FAILED) return 2;
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The parent makes no QuantKit call, so every child starts from a library never used. */
    for (i = 0; i < sizeof GROUPS / sizeof GROUPS[0]; i++) {
        if (only && strcmp(only, GROUPS[i].name) != 0) continue;
        found = 1;
        g_group = GROUPS[i].name;
        run_isolated(GROUPS[i].name, run_group_arg, &GROUPS[i]);
    }
    if (!found) fprintf(stderr, "no group named %s\n", only);
    printf("%d passed, %d failed\n", g_counts[0], g_counts[1]);
    return g_counts[1] != 0 || !found;
}
