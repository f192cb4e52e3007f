/* Randomised calls through the C ABI with parameters inside and outside their documented ranges.
 *
 *   abi_fuzz [rounds] [seed]
 *
 * Every buffer is as large as the call's shapes and the library's own layout say (now and then
 * one byte short, which must be refused) and ends at an inaccessible page. Any status is allowed,
 * but the library must never crash, read or write past a buffer, return a status that is not in
 * the header, or fail without a message. A crash ends the process: rerun with the printed seed
 * and the iteration count to reproduce it. */
#define _DEFAULT_SOURCE /* mmap, MAP_ANONYMOUS */
#include "quantkit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_BYTE 0xA5

static uint64_t rng_state;
static uint64_t next_random(void) {
    /* splitmix64: deterministic across platforms */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t below(int64_t n) { return (int64_t)(next_random() % (uint64_t)n); }
static int chance(int percent) { return below(100) < percent; }
static int32_t pick(const int32_t *values, int count) { return values[below(count)]; }

static long failures;
static long iteration;
static char round_description[512]; /* the current round's parameters, for the failure report */

static void fail(const char *what) {
    fprintf(stderr, "abi_fuzz: iteration %ld: %s\n    (%s)\n", iteration, what, round_description);
    failures++;
}

/* A buffer of `bytes` usable bytes that ends (to within 8 bytes, for alignment) where an
 * inaccessible page begins, so reading or writing past its end faults; the bytes before it in
 * its page and the few after it hold guard bytes, checked afterwards. */
typedef struct {
    unsigned char *base;
    size_t bytes;
    unsigned char *region;
    size_t region_bytes;
} guarded;

static size_t page_size;

static guarded guarded_alloc(size_t bytes) {
    size_t pages = (bytes + 8 + page_size - 1) / page_size;
    guarded g = {NULL, bytes, NULL, (pages + 1) * page_size};
    g.region = mmap(NULL, g.region_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.region == MAP_FAILED || mprotect(g.region + pages * page_size, page_size, PROT_NONE) != 0) {
        fprintf(stderr, "abi_fuzz: cannot map %zu bytes\n", bytes);
        exit(2);
    }
    memset(g.region, GUARD_BYTE, pages * page_size);
    g.base = g.region + ((pages * page_size - bytes) & ~(size_t)7);
    return g;
}

static void guarded_check(const guarded *g, const char *name) {
    size_t end = (size_t)(g->base - g->region) + g->bytes, usable = g->region_bytes - page_size;
    for (size_t i = 0; i < usable; i++) {
        if (i == (size_t)(g->base - g->region)) i = end;
        if (i < usable && g->region[i] != GUARD_BYTE) {
            char text[128];
            snprintf(text, sizeof text, "wrote outside %s (%zu bytes)", name, g->bytes);
            fail(text);
            return;
        }
    }
}

static void guarded_free(guarded *g) { munmap(g->region, g->region_bytes); }

/* The header's rule: on failure, out-parameters are left untouched. */
static unsigned char *snapshot(const guarded *g) {
    unsigned char *copy = malloc(g->bytes + 1);
    if (!copy) exit(2);
    memcpy(copy, g->base, g->bytes);
    return copy;
}

static void check_untouched(qk_status status, const guarded *g, unsigned char *before, const char *call, const char *name) {
    if (status != QK_OK && memcmp(before, g->base, g->bytes) != 0) {
        char text[160];
        snprintf(text, sizeof text, "%s failed with %s but changed %s", call, qk_status_string(status), name);
        fail(text);
    }
    free(before);
}

/* Calls that succeeded, per function: a campaign where nothing passes the argument checks
 * exercises nothing else, so main() insists on some of each. */
enum { CALL_LAYOUT, CALL_QUANTIZE, CALL_DEQUANTIZE, CALL_PACK, CALL_MATMUL, CALL_MATMUL_INTEGER, CALLS };
static long succeeded[CALLS];
static const char *call_names[CALLS] = {"layout", "quantize", "dequantize", "pack", "matmul", "matmul_integer"};

static void check_status(qk_status status, const char *call) {
    char text[256];
    if (status < QK_OK || status > QK_ERROR_VERSION) {
        snprintf(text, sizeof text, "%s returned %d, not a status of the header", call, status);
        fail(text);
    } else if (status != QK_OK && (!qk_last_error() || !qk_last_error()[0])) {
        snprintf(text, sizeof text, "%s failed with %s and no message", call, qk_status_string(status));
        fail(text);
    }
}

static size_t dtype_size(int32_t dtype) {
    switch (dtype) {
    case QK_DTYPE_F32: case QK_DTYPE_I32: return 4;
    case QK_DTYPE_F16: case QK_DTYPE_BF16: return 2;
    case QK_DTYPE_F64: return 8;
    case QK_DTYPE_I8: case QK_DTYPE_U8: return 1;
    default: return 4; /* an invalid dtype still gets room for 4-byte elements */
    }
}

/* Fills a tensor's buffer with values of its dtype: mostly small normals, sometimes extremes. */
static void fill(guarded *g, int32_t dtype) {
    size_t size = dtype_size(dtype), count = g->bytes / size;
    int special = chance(10);
    for (size_t i = 0; i < count; i++) {
        float v = (float)((int64_t)below(2001) - 1000) / 250.0f;
        if (special && chance(5)) {
            static const float extremes[] = {NAN, INFINITY, -INFINITY, 3.0e38f, -3.0e38f, 1e-45f, 0.0f, -0.0f, 65520.0f};
            v = extremes[below(9)];
        }
        unsigned char *p = g->base + i * size;
        if (dtype == QK_DTYPE_F32 || size == 4) memcpy(p, &v, 4);
        else if (dtype == QK_DTYPE_F64) { double d = v; memcpy(p, &d, 8); }
        else if (size == 2) { uint32_t bits; memcpy(&bits, &v, 4); uint16_t h = (uint16_t)(bits >> 16); memcpy(p, &h, 2); }
        else *p = (unsigned char)below(256);
    }
}

/* A random plain tensor of `ndim` dims over a fresh guarded buffer (row-major or strided). */
typedef struct {
    qk_tensor t;
    int64_t shape[QK_MAX_DIMS + 1];
    int64_t strides[QK_MAX_DIMS + 1];
    guarded buffer;
    int64_t offset; /* element index of [0,...,0] inside the buffer (negative strides) */
} tensor_case;

static void tensor_make(tensor_case *c, int32_t dtype, int32_t ndim, const int64_t *shape) {
    memset(c, 0, sizeof *c);
    c->t.dtype = dtype;
    c->t.ndim = ndim;
    c->t.shape = c->shape;
    int64_t count = 1;
    for (int i = 0; i < ndim && i <= QK_MAX_DIMS; i++) {
        c->shape[i] = shape[i];
        count *= shape[i] > 0 ? shape[i] : 1;
    }
    size_t size = dtype_size(dtype);
    int strided = ndim > 0 && ndim <= QK_MAX_DIMS && chance(20);
    int64_t span = count;
    if (strided) {
        /* column-major with one dimension reversed and a gap: covers any-stride paths */
        int64_t step = 1 + below(2);
        int reversed = (int)below(ndim);
        span = 0;
        for (int i = ndim - 1; i >= 0; i--) {
            c->strides[i] = step * (i == reversed ? -1 : 1);
            if (c->shape[i] > 0) span += (c->shape[i] - 1) * step;
            step *= c->shape[i] > 0 ? c->shape[i] : 1;
        }
        span += 1;
        for (int i = 0; i < ndim; i++)
            if (c->strides[i] < 0 && c->shape[i] > 0) c->offset += -c->strides[i] * (c->shape[i] - 1);
        c->t.strides = c->strides;
    }
    for (int i = 0; i < ndim; i++)
        if (c->shape[i] == 0) span = 0;
    c->buffer = guarded_alloc((size_t)span * size);
    fill(&c->buffer, dtype);
    c->t.data = span == 0 && chance(50) ? NULL : c->buffer.base + c->offset * (int64_t)size;
}

static const int32_t formats[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, -1};
static const int32_t dtypes[] = {QK_DTYPE_F32, QK_DTYPE_F32, QK_DTYPE_F16, QK_DTYPE_BF16, QK_DTYPE_F64, QK_DTYPE_I8, 0, 99};
static const int32_t blocks[] = {1, 2, 3, 7, 8, 16, 32, 48, 64, 128, 256, 0, -4, 1 << 20};

static void random_params(qk_quant_params *p) {
    p->struct_size = sizeof *p;
    int32_t format = pick(formats, sizeof formats / sizeof *formats);
    if (qk_quant_params_init(p, format) != QK_OK) p->format = format;
    if (chance(30)) p->scheme = (int32_t)below(3);
    if (chance(40)) p->granularity = (int32_t)below(4);
    if (chance(40)) p->axis = (int32_t)below(7) - 3;
    if (chance(40)) p->block_size = pick(blocks, sizeof blocks / sizeof *blocks);
    if (chance(20)) p->method = (int32_t)below(4);
    if (chance(20)) p->rounding = (int32_t)below(3);
    if (chance(40)) p->layout = (int32_t)below(4);
    if (chance(20)) p->scale_dtype = pick(dtypes, sizeof dtypes / sizeof *dtypes);
    if (chance(10)) p->num_threads = (int32_t)below(4) - 1;
    if (chance(10)) p->percentile = chance(50) ? NAN : (float)below(120);
    if (chance(10)) p->search_steps = (int32_t)below(5) - 1;
    if (chance(10)) p->min_clip_ratio = (float)below(3) / 2.0f - 0.25f;
}

static void random_shape(int32_t *ndim, int64_t *shape) {
    *ndim = (int32_t)(chance(5) ? below(QK_MAX_DIMS + 2) : 1 + below(3));
    int64_t count = 1;
    for (int i = 0; i < *ndim && i <= QK_MAX_DIMS; i++) {
        shape[i] = chance(5) ? 0 : 1 + below(chance(20) ? 300 : 40);
        if (count * shape[i] > (1 << 16)) shape[i] = 1; /* small tensors: many calls per second */
        count *= shape[i] ? shape[i] : 1;
    }
}

static void quantized_alloc(guarded g[3], qk_quantized *q, const qk_quantized_layout *layout) {
    /* usually the exact sizes; sometimes one short (must be refused, not overrun) */
    size_t sizes[3] = {layout->data_bytes, layout->scales_bytes, layout->zero_points_bytes};
    if (chance(10)) {
        int which = (int)below(3);
        if (sizes[which] > 0) sizes[which] -= 1;
    }
    for (int i = 0; i < 3; i++) g[i] = guarded_alloc(sizes[i]);
    memset(q, 0, sizeof *q);
    q->struct_size = sizeof *q;
    q->data = g[0].base;
    q->data_bytes = sizes[0];
    q->scales = g[1].base;
    q->scales_bytes = sizes[1];
    q->zero_points = layout->zero_points_bytes || chance(50) ? g[2].base : NULL;
    q->zero_points_bytes = sizes[2];
}

static void matmul_round(const qk_quant_params *p, const int64_t *shape, const qk_quantized *q) {
    qk_pack_options po = {sizeof po, chance(20) ? QK_WEIGHT_KN : QK_WEIGHT_NK, (int32_t)below(3), 0};
    qk_packed_matrix *w = NULL;
    qk_status s = qk_pack_weights(p, shape[0], shape[1], q, chance(80) ? &po : NULL, &w);
    check_status(s, "qk_pack_weights");
    if (s != QK_OK) return;
    succeeded[CALL_PACK]++;
    qk_packed_matrix_info info = {sizeof info, 0, 0, 0, 0, 0, 0};
    check_status(qk_packed_matrix_get_info(w, &info), "qk_packed_matrix_get_info");
    int64_t k = info.k, n = info.n, m = chance(10) ? 0 : 1 + below(chance(30) ? 80 : 5);
    if (chance(5)) k += 1; /* the wrong K: a shape mismatch */
    int64_t xs[3] = {1 + below(2), m, k}, ys[3] = {xs[0], m, n};
    int32_t rank = (int32_t)(chance(70) ? 2 : 3);
    const int64_t *xshape = rank == 2 ? xs + 1 : xs, *yshape = rank == 2 ? ys + 1 : ys;
    static const int32_t float_dtypes[] = {QK_DTYPE_F32, QK_DTYPE_F32, QK_DTYPE_F16, QK_DTYPE_BF16, QK_DTYPE_I8};
    tensor_case x, y, bias;
    tensor_make(&x, pick(float_dtypes, 5), rank, xshape);
    tensor_make(&y, pick(float_dtypes, 5), rank, yshape);
    int64_t bias_shape[1] = {chance(90) ? n : n + 1};
    tensor_make(&bias, chance(90) ? QK_DTYPE_F32 : QK_DTYPE_F16, 1, bias_shape);
    qk_matmul_options o = {sizeof o, (int32_t)below(3) - (chance(5) ? 2 : 0), (int32_t)below(3)};
    unsigned char *y_before = snapshot(&y.buffer);
    s = qk_matmul(w, &x.t, chance(30) ? &bias.t : NULL, &y.t, chance(90) ? &o : NULL);
    check_status(s, "qk_matmul");
    check_untouched(s, &y.buffer, y_before, "qk_matmul", "y");
    if (s == QK_OK) succeeded[CALL_MATMUL]++;
    guarded_check(&y.buffer, "the matmul output");
    guarded_free(&x.buffer);
    guarded_free(&y.buffer);
    guarded_free(&bias.buffer);
    qk_packed_matrix_release(w);
}

/* An optional operand of qk_matmul_integer: absent, a scalar, a vector of `length` (now and then
 * one too long), of `dtype` or now and then another. */
static const qk_tensor *optional_operand(tensor_case *c, int32_t dtype, int64_t length) {
    static const int32_t others[] = {QK_DTYPE_U8, QK_DTYPE_I8, QK_DTYPE_F32, QK_DTYPE_I32};
    int64_t shape[1] = {length + (chance(5) ? 1 : 0)};
    tensor_make(c, chance(90) ? dtype : pick(others, 4), chance(50) ? 0 : 1, shape);
    return chance(40) ? NULL : &c->t;
}

static void integer_round(void) {
    snprintf(round_description, sizeof round_description, "qk_matmul_integer");
    static const int32_t operand_dtypes[] = {QK_DTYPE_U8, QK_DTYPE_I8, QK_DTYPE_U8, QK_DTYPE_I8, QK_DTYPE_F32};
    int64_t m = below(chance(20) ? 70 : 8), k = below(chance(20) ? 300 : 40) + (chance(95) ? 1 : 0), n = 1 + below(40);
    int64_t a_shape[2] = {m, k}, b_shape[2] = {k + (chance(5) ? 1 : 0), n}, y_shape[2] = {m, chance(95) ? n : n + 1};
    int scaled = chance(50);
    tensor_case a, b, az, bz, as, bs, bias, y;
    tensor_make(&a, pick(operand_dtypes, 5), 2, a_shape);
    tensor_make(&b, pick(operand_dtypes, 5), 2, b_shape);
    const qk_tensor *a_zero = optional_operand(&az, a.t.dtype, m), *b_zero = optional_operand(&bz, b.t.dtype, n);
    const qk_tensor *a_scale = optional_operand(&as, QK_DTYPE_F32, m), *b_scale = optional_operand(&bs, QK_DTYPE_F32, n);
    const qk_tensor *bias_t = optional_operand(&bias, QK_DTYPE_F32, n);
    if (scaled && chance(90)) {
        if (!a_scale) a_scale = &as.t;
        if (!b_scale) b_scale = &bs.t;
    } else if (chance(90)) {
        a_scale = b_scale = bias_t = NULL;
    }
    int32_t y_dtype = (a_scale && b_scale) == chance(95) ? QK_DTYPE_F32 : QK_DTYPE_I32;
    tensor_make(&y, y_dtype, 2, y_shape);
    unsigned char *y_before = snapshot(&y.buffer);
    qk_status s = qk_matmul_integer(&a.t, a_zero, &b.t, b_zero, a_scale, b_scale, bias_t, &y.t, (int32_t)below(3));
    check_status(s, "qk_matmul_integer");
    check_untouched(s, &y.buffer, y_before, "qk_matmul_integer", "y");
    if (s == QK_OK) succeeded[CALL_MATMUL_INTEGER]++;
    guarded_check(&y.buffer, "the integer matmul output");
    tensor_case *all[] = {&a, &b, &az, &bz, &as, &bs, &bias, &y};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) guarded_free(&all[i]->buffer);
}

static void one_round(void) {
    if (chance(15)) {
        integer_round();
        return;
    }
    qk_quant_params p;
    random_params(&p);
    int32_t ndim;
    int64_t shape[QK_MAX_DIMS + 2] = {0};
    random_shape(&ndim, shape);
    qk_quantized_layout layout;
    memset(&layout, 0, sizeof layout);
    layout.struct_size = sizeof layout;
    int used = snprintf(round_description, sizeof round_description,
                        "format %d scheme %d granularity %d axis %d block %d method %d rounding %d layout %d scale dtype %d; shape",
                        p.format, p.scheme, p.granularity, p.axis, p.block_size, p.method, p.rounding, p.layout, p.scale_dtype);
    for (int i = 0; i < ndim && i <= QK_MAX_DIMS && used > 0 && used < (int)sizeof round_description; i++)
        used += snprintf(round_description + used, sizeof round_description - (size_t)used, " %lld", (long long)shape[i]);
    qk_status s = qk_quantized_layout_get(&p, ndim, shape, &layout);
    check_status(s, "qk_quantized_layout_get");
    if (s != QK_OK) return;
    succeeded[CALL_LAYOUT]++;

    tensor_case input;
    tensor_make(&input, chance(85) ? QK_DTYPE_F32 : pick(dtypes, sizeof dtypes / sizeof *dtypes), ndim, shape);
    guarded g[3];
    qk_quantized q;
    quantized_alloc(g, &q, &layout);
    unsigned char *before[3];
    for (int i = 0; i < 3; i++) before[i] = snapshot(&g[i]);
    s = qk_quantize(&p, &input.t, &q);
    check_status(s, "qk_quantize");
    /* the documented exception: codes may be partly written */
    if (s == QK_ERROR_NON_FINITE || s == QK_ERROR_OVERFLOW) free(before[0]);
    else check_untouched(s, &g[0], before[0], "qk_quantize", "the codes");
    check_untouched(s, &g[1], before[1], "qk_quantize", "the scales");
    check_untouched(s, &g[2], before[2], "qk_quantize", "the zero points");
    if (chance(20)) {
        unsigned char *codes = snapshot(&g[0]);
        qk_status w = qk_quantize_with_scales(&p, &input.t, &q);
        check_status(w, "qk_quantize_with_scales");
        check_untouched(w, &g[0], codes, "qk_quantize_with_scales", "the codes");
    }
    if (s == QK_OK) {
        succeeded[CALL_QUANTIZE]++;
        tensor_case out;
        static const int32_t out_dtypes[] = {QK_DTYPE_F32, QK_DTYPE_F16, QK_DTYPE_BF16, QK_DTYPE_F64};
        tensor_make(&out, pick(out_dtypes, 4), ndim, shape);
        unsigned char *out_before = snapshot(&out.buffer);
        qk_status d = qk_dequantize(&p, &q, &out.t);
        check_status(d, "qk_dequantize");
        check_untouched(d, &out.buffer, out_before, "qk_dequantize", "the output");
        if (d == QK_OK) succeeded[CALL_DEQUANTIZE]++;
        guarded_check(&out.buffer, "the dequantized output");
        qk_error_stats stats = {sizeof stats, 0, 0, 0, 0, 0, 0, 0};
        check_status(qk_quantization_error(&p, &input.t, &q, &stats), "qk_quantization_error");
        if (chance(30)) check_status(qk_compare(&input.t, &out.t, &stats), "qk_compare");
        guarded_free(&out.buffer);
        if (ndim == 2) matmul_round(&p, shape, &q);
    }
    for (int i = 0; i < 3; i++) guarded_check(&g[i], i == 0 ? "data" : i == 1 ? "scales" : "zero points");
    for (int i = 0; i < 3; i++) guarded_free(&g[i]);
    guarded_free(&input.buffer);
}

int main(int argc, char **argv) {
    long iterations = argc > 1 ? atol(argv[1]) : 2000;
    unsigned long long seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
    rng_state = seed;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    printf("abi_fuzz: %ld rounds, seed %llu, kernels %s\n", iterations, seed, qk_matmul_kernel_variant());
    fflush(stdout);
    for (iteration = 0; iteration < iterations && failures < 20; iteration++) one_round();
    printf("abi_fuzz: %ld rounds, %ld failures; calls that succeeded:", iteration, failures);
    for (int c = 0; c < CALLS; c++) printf(" %s %ld", call_names[c], succeeded[c]);
    printf("\n");
    /* at 2000 iterations a campaign passes each check hundreds of times; 1% is a floor */
    for (int c = 0; c < CALLS && failures == 0; c++)
        if (succeeded[c] < iteration / 100) {
            fprintf(stderr, "abi_fuzz: only %ld %s calls succeeded: the campaign no longer reaches past the checks\n",
                    succeeded[c], call_names[c]);
            return 1;
        }
    return failures ? 1 : 0;
}
