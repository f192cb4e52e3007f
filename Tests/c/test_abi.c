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
STATIC_ASSERT(status_is_4_bytes, sizeof(qk_status) == 4);
STATIC_ASSERT(version_number_formula,
              QK_VERSION_NUMBER == QK_VERSION_MAJOR * 10000 + QK_VERSION_MINOR * 100 + QK_VERSION_PATCH);

PIN_VALUE(QK_ABI_VERSION, 1);
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
PIN_FIELD(qk_quantized, data, 8);
PIN_FIELD(qk_quantized, data_bytes, 16);
PIN_FIELD(qk_quantized, scales, 24);
PIN_FIELD(qk_quantized, scales_bytes, 32);
PIN_FIELD(qk_quantized, zero_points, 40);
PIN_FIELD(qk_quantized, zero_points_bytes, 48);

PIN_SIZE(qk_error_stats, 56);
PIN_FIELD(qk_error_stats, struct_size, 0);
PIN_FIELD(qk_error_stats, count, 8);
PIN_FIELD(qk_error_stats, max_abs_error, 16);
PIN_FIELD(qk_error_stats, mean_abs_error, 24);
PIN_FIELD(qk_error_stats, rmse, 32);
PIN_FIELD(qk_error_stats, sqnr_db, 40);
PIN_FIELD(qk_error_stats, signal_rms, 48);

/* qk_api: two uint32 fields, then one 8-byte slot per function, append-only. */
PIN_SIZE(qk_api, 160);
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

/* Defaults for `format` from qk_quant_params_init. */
static qk_quant_params params_for(int32_t format) {
    qk_quant_params p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    EXPECT_OK(qk_quant_params_init(&p, format));
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
    /* A fresh thread has no failure yet; this process has made no failing call either. */
    CHECK(strcmp(qk_last_error(), "") == 0, "qk_last_error() before any failure is \"%s\"", qk_last_error());
}

/* ============================================================================================ */
/* Group: format table                                                                           */
/* ============================================================================================ */

typedef struct format_expect {
    int32_t format, bits, must_flags, must_not_flags, code_min, code_max;
    float level_max; /* < 0: not checked */
} format_expect;

#define F_SIG QK_FORMAT_FLAG_SIGNED
#define F_FLT QK_FORMAT_FLAG_FLOAT
#define F_CB QK_FORMAT_FLAG_CODEBOOK
#define F_SC QK_FORMAT_FLAG_SCALED
#define F_ZP QK_FORMAT_FLAG_ZERO_POINT

static const format_expect FORMAT_EXPECT[] = {
    {QK_FORMAT_INT8, 8, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -128, 127, -1},
    {QK_FORMAT_UINT8, 8, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 255, -1},
    {QK_FORMAT_INT4, 4, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -8, 7, -1},
    {QK_FORMAT_UINT4, 4, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 15, -1},
    {QK_FORMAT_INT3, 3, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -4, 3, -1},
    {QK_FORMAT_UINT3, 3, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 7, -1},
    {QK_FORMAT_INT2, 2, F_SIG | F_SC | F_ZP, F_FLT | F_CB, -2, 1, -1},
    {QK_FORMAT_UINT2, 2, F_SC | F_ZP, F_SIG | F_FLT | F_CB, 0, 3, -1},
    {QK_FORMAT_NF4, 4, F_CB | F_SC, F_ZP | F_FLT, 0, 15, 1.0f},
    {QK_FORMAT_FP4_E2M1, 4, F_FLT | F_SC, F_ZP, 0, 15, 6.0f},
    {QK_FORMAT_FP8_E4M3FN, 8, F_FLT | F_SC, F_ZP | F_CB, 0, 255, 448.0f},
    {QK_FORMAT_FP8_E5M2, 8, F_FLT | F_SC, F_ZP | F_CB, 0, 255, 57344.0f},
    {QK_FORMAT_FP16, 16, F_FLT, F_SC | F_ZP | F_CB, 0, 65535, 65504.0f},
    {QK_FORMAT_BF16, 16, F_FLT, F_SC | F_ZP | F_CB, 0, 65535, 3.38953139e38f},
    {QK_FORMAT_LOG4, 4, F_CB | F_SC, F_ZP | F_FLT, 0, 15, 1.0f},
    {QK_FORMAT_FP4_BNB, 4, F_CB | F_SC, F_ZP, 0, 15, 1.0f},
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
    if (e->level_max >= 0)
        CHECK(close_rel(info->level_max, e->level_max, 1e-6), "%s: level_max %g, expected %g", info->name,
              info->level_max, e->level_max);
}

static void check_format_entry(int32_t index, int *seen) {
    qk_format_info info, again;
    int32_t back = -1;
    char upper[64];
    size_t i;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (!EXPECT_OK(qk_format_info_at(index, &info))) return;
    CHECK(info.struct_size == sizeof info, "format_info_at changed struct_size to %u", info.struct_size);
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
                  again.flags == info.flags && again.code_min == info.code_min && again.code_max == info.code_max,
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
    g.p.struct_size = sizeof g.p;
    if (!EXPECT_OK(qk_quant_params_init(&g.p, format))) return;
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
    qk_quant_params p;
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

    /* The header says init sets struct_size, so a caller need not: a garbage value must not matter. */
    memset(&p, POISON, sizeof p);
    if (EXPECT_OK(qk_quant_params_init(&p, QK_FORMAT_INT4)))
        CHECK(p.struct_size == sizeof p && p.format == QK_FORMAT_INT4, "init over garbage left struct_size %u",
              p.struct_size);
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
    p.scheme = QK_SCHEME_ASYMMETRIC;
    p.block_size = 16;
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
    const int64_t s3x40[2] = {3, 40}, empty[2] = {0, 40};
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
            CHECK(l.data_bytes == 240 && l.scales_bytes == 0 && l.zero_points_bytes == 0,
                  "fp16 [3,40]: data %zu scales %zu zero points %zu, expected 240/0/0", l.data_bytes, l.scales_bytes,
                  l.zero_points_bytes);
        else
            CHECK(0, "fp16 layout failed: %s", g_msg);
    }

    p = params_for(QK_FORMAT_INT4);
    p.block_size = 16;
    CHECK_LAYOUT(&p, 2, empty, 0, 0, 0, 0, 2, {0, 3});
}

static void group_layout(void) {
    layout_integer_cases();
    layout_other_cases();
}
