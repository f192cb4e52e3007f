/*
 * side_by_side.h: what the C benchmarks that run QuantKit next to ONNX Runtime share: ONNX Runtime
 * loaded at run time through its C API, deterministic weights, QuantKit quantize and pack calls,
 * and timing in alternating blocks. Header-only, static functions; errors end the process
 * (benchmarks only). Include it after defining _GNU_SOURCE.
 */
#ifndef QK_BENCH_SIDE_BY_SIDE_H
#define QK_BENCH_SIDE_BY_SIDE_H

#include "onnx_model_writer.h"
#include "ort_minimal_api.h"
#include "quantkit.h"

#include <dlfcn.h>
#include <errno.h> /* program_invocation_short_name */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 16

static void die(const char *what, const char *detail) {
    fprintf(stderr, "%s: %s%s%s\n", program_invocation_short_name, what, detail ? ": " : "", detail ? detail : "");
    exit(1);
}

static void *checked_malloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) die("out of memory", NULL);
    memset(p, 0, bytes);
    return p;
}

static void qk_check(qk_status status, const char *what) {
    if (status != QK_OK) die(what, qk_last_error());
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- ONNX Runtime through its C API ---------------------------------------------------------- */

static const OrtApi *ort;
static OrtEnv *ort_env;
static OrtMemoryInfo *ort_cpu;

static void ort_check(OrtStatus *status, const char *what) {
    if (!status) return;
    fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    exit(1);
}

static void ort_load(const char *path) {
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) die("cannot load ONNX Runtime", dlerror());
    const OrtApiBase *(*get_base)(void);
    *(void **)&get_base = dlsym(library, "OrtGetApiBase");  /* POSIX's way round ISO C's object/function pointer rule */
    if (!get_base) die("no OrtGetApiBase in", path);
    const OrtApiBase *base = get_base();
    ort = base->GetApi(ORT_MINIMAL_API_VERSION);
    if (!ort) die("ONNX Runtime does not serve API version " ORT_MINIMAL_API_VERSION_STRING ", found", base->GetVersionString());
    printf("ONNX Runtime %s (%s)\n", base->GetVersionString(), path);
    ort_check(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "quantkit-benchmark", &ort_env), "CreateEnv");
    ort_check(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &ort_cpu), "CreateCpuMemoryInfo");
}

static OrtSession *ort_session(const pb_buf *model, int threads) {
    OrtSessionOptions *options;
    ort_check(ort->CreateSessionOptions(&options), "CreateSessionOptions");
    ort_check(ort->SetIntraOpNumThreads(options, threads), "SetIntraOpNumThreads");
    ort_check(ort->SetInterOpNumThreads(options, 1), "SetInterOpNumThreads");
    ort_check(ort->SetSessionGraphOptimizationLevel(options, ORT_ENABLE_ALL), "SetSessionGraphOptimizationLevel");
    OrtSession *session;
    ort_check(ort->CreateSessionFromArray(ort_env, model->bytes, model->count, options, &session), "CreateSessionFromArray");
    ort->ReleaseSessionOptions(options);
    return session;
}

static OrtValue *ort_float_tensor(float *data, int64_t rows, int64_t cols) {
    int64_t shape[2] = {rows, cols};
    OrtValue *value;
    ort_check(ort->CreateTensorWithDataAsOrtValue(ort_cpu, data, (size_t)(rows * cols) * sizeof(float), shape, 2,
                                                  ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &value),
              "CreateTensorWithDataAsOrtValue");
    return value;
}

/* Runs a model with one input A and one output Y, both preallocated tensors. */
static void ort_run(OrtSession *session, const OrtValue *a, OrtValue *y) {
    const char *in_names[] = {"A"}, *out_names[] = {"Y"};
    const OrtValue *inputs[] = {a};
    OrtValue *outputs[] = {y};
    ort_check(ort->Run(session, NULL, in_names, inputs, 1, out_names, 1, outputs), "Run");
}

/* ---- Weights ------------------------------------------------------------------------------------ */

/* Standard normal values from xorshift64* and Box-Muller: the same numbers on every machine. */
static void fill_normal(float *out, size_t count, uint64_t seed, float scale) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < count; i += 2) {
        double u[2];
        for (int j = 0; j < 2; j++) {
            s ^= s >> 12; s ^= s << 25; s ^= s >> 27;
            u[j] = ((double)((s * 0x2545F4914F6CDD1Dull) >> 11) + 0.5) / 9007199254740992.0;
        }
        double r = sqrt(-2.0 * log(u[0])), a = 6.283185307179586 * u[1];
        out[i] = (float)(r * cos(a)) * scale;
        if (i + 1 < count) out[i + 1] = (float)(r * sin(a)) * scale;
    }
}

static qk_quantized quantize(const qk_quant_params *p, float *w, int64_t n, int64_t k) {
    int64_t shape[2] = {n, k};
    qk_quantized_layout layout = {.struct_size = sizeof layout};
    qk_check(qk_quantized_layout_get(p, 2, shape, &layout), "qk_quantized_layout_get");
    qk_quantized q = {.struct_size = sizeof q};
    q.data = checked_malloc(q.data_bytes = layout.data_bytes);
    q.scales = checked_malloc(q.scales_bytes = layout.scales_bytes);
    if (layout.zero_points_bytes) q.zero_points = checked_malloc(q.zero_points_bytes = layout.zero_points_bytes);
    qk_tensor input = {.data = w, .dtype = QK_DTYPE_F32, .ndim = 2, .shape = shape};
    qk_check(qk_quantize(p, &input, &q), "qk_quantize");
    return q;
}

static void free_quantized(qk_quantized *q) {
    free(q->data);
    free(q->scales);
    free(q->zero_points);
}

static qk_packed_matrix *pack(const qk_quant_params *p, qk_quantized *q, int64_t n, int64_t k) {
    qk_packed_matrix *packed;
    qk_check(qk_pack_weights(p, n, k, q, NULL, &packed), "qk_pack_weights");
    return packed;
}

/* INT4 symmetric, MatMulNBits layout, ONNX Runtime's rounding: byte for byte its quantizer's. */
static qk_quant_params matmulnbits_int4_params(int32_t block) {
    qk_quant_params p = {.struct_size = sizeof p};
    qk_check(qk_quant_params_init(&p, QK_FORMAT_INT4), "qk_quant_params_init");
    p.granularity = QK_GRANULARITY_BLOCKED;
    p.axis = 1;
    p.block_size = block;
    p.rounding = QK_ROUND_HALF_AWAY;
    p.layout = QK_LAYOUT_MATMULNBITS;
    return p;
}

/* A com.microsoft::MatMulNBits node (accuracy level 4) from `input` to `output`, with its weights
 * `q` as initializers B<suffix> and scales<suffix>. */
static void add_matmulnbits(pb_buf *graph, const char *input, const char *output, const char *suffix, const qk_quantized *q,
                            int64_t n, int64_t k, int32_t block) {
    char b_name[64], s_name[64];
    snprintf(b_name, sizeof b_name, "B%s", suffix);
    snprintf(s_name, sizeof s_name, "scales%s", suffix);
    int64_t blocks = (k + block - 1) / block;
    int64_t b_dims[3] = {n, blocks, block / 2}, s_dims[2] = {n, blocks};
    onnx_initializer(graph, b_name, ONNX_UINT8, b_dims, 3, q->data, q->data_bytes);
    onnx_initializer(graph, s_name, ONNX_FLOAT, s_dims, 2, q->scales, q->scales_bytes);
    const char *inputs[] = {input, b_name, s_name}, *outputs[] = {output};
    onnx_attr attrs[] = {{"K", k}, {"N", n}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 4}};
    onnx_node(graph, "MatMulNBits", "com.microsoft", inputs, 3, outputs, 1, attrs, 5);
}

/* A graph with input A [M, k] and output Y [M, n] (M symbolic). */
static pb_buf graph_with_io(int64_t k, int64_t n) {
    pb_buf graph = {0};
    int64_t in_dims[2] = {-1, k}, out_dims[2] = {-1, n};
    onnx_graph_input(&graph, "A", ONNX_FLOAT, in_dims, 2);
    onnx_graph_output(&graph, "Y", ONNX_FLOAT, out_dims, 2);
    return graph;
}

/* ---- Timing and comparing ----------------------------------------------------------------------- */

typedef void (*timed_call)(const void *context);

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms of single calls of qk and ort, timed in 3 rounds of one block each, about `seconds` in
 * all, with `pause_ms` before each block: each library's workers spin for a while after a call,
 * and must not take cores from the other's block. */
static void time_both(timed_call qk, timed_call ort_call, const void *context, double seconds, int pause_ms, double *qk_ms,
                      double *ort_ms) {
    enum { ROUNDS = 3, MAX_REPS = 4000 };
    static double qk_t[ROUNDS * MAX_REPS], ort_t[ROUNDS * MAX_REPS];
    double t0 = now_seconds();
    qk(context); ort_call(context); qk(context); ort_call(context);
    double per_pair = (now_seconds() - t0) / 2;
    int reps = (int)(seconds / ROUNDS / per_pair);
    reps = reps < 3 ? 3 : reps > MAX_REPS ? MAX_REPS : reps;
    int count = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int side = 0; side < 2; side++) {
            usleep((useconds_t)pause_ms * 1000);
            timed_call call = side == 0 ? qk : ort_call;
            double *times = side == 0 ? qk_t : ort_t;
            call(context);
            for (int r = 0; r < reps; r++) {
                double s = now_seconds();
                call(context);
                times[count + r] = now_seconds() - s;
            }
        }
        count += reps;
    }
    qsort(qk_t, (size_t)count, sizeof(double), compare_doubles);
    qsort(ort_t, (size_t)count, sizeof(double), compare_doubles);
    *qk_ms = 1e3 * qk_t[count / 2];
    *ort_ms = 1e3 * ort_t[count / 2];
}

static double relative_difference(const float *a, const float *b, size_t count) {
    double diff = 0, scale = 0;
    for (size_t i = 0; i < count; i++) {
        double d = fabs((double)a[i] - (double)b[i]), s = fabs((double)b[i]);
        if (!(d <= diff)) diff = d;  /* NaN propagates */
        if (s > scale) scale = s;
    }
    return scale > 0 ? diff / scale : diff;
}

/* ---- Command line ------------------------------------------------------------------------------ */

/* Comma-separated integers (or KxN pairs when `pairs`), at most MAX_LIST. */
static int parse_list(const char *text, int64_t *out, int pairs) {
    int count = 0;
    const char *s = text;
    while (*s && count < MAX_LIST) {
        char *end;
        out[count * (pairs ? 2 : 1)] = strtoll(s, &end, 10);
        if (pairs) {
            if (*end != 'x') die("shapes are KxN, got", text);
            out[count * 2 + 1] = strtoll(end + 1, &end, 10);
        }
        count++;
        if (*end != ',' && *end) die("cannot read the list", text);
        s = *end ? end + 1 : end;
    }
    return count;
}

/* The thread counts of `text` that are between 1 and the core count. */
static int parse_threads(const char *text, int *out) {
    int64_t threads[MAX_LIST];
    int count = parse_list(text, threads, 0), kept = 0;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < count; i++)
        if (threads[i] >= 1 && threads[i] <= cores) out[kept++] = (int)threads[i];
    if (kept == 0) die("no thread count between 1 and the core count in", text);
    return kept;
}

#endif
