/*
 * matmul_threads.c: QuantKit's fused matmul next to ONNX Runtime's, in one C process, from one
 * thread up to every core: how each scales, and the ratio at each thread count.
 *
 * Same weights, same shapes, same thread count on both sides, no Python in between:
 *   int4 b32, int4 b128  QuantKit quantizes W once in the MatMulNBits layout (the bytes ONNX
 *                        Runtime's quantizer writes); ORT runs com.microsoft::MatMulNBits with
 *                        accuracy_level 4 on them, QuantKit qk_matmul QK_COMPUTE_INT8 on
 *                        qk_pack_weights of the same bytes.
 *   W8A8                 int8 per-channel weights; ORT runs DynamicQuantizeLinear + MatMulInteger
 *                        + rescale (what its quantize_dynamic writes; ORT fuses it), QuantKit
 *                        qk_matmul QK_COMPUTE_INT8 on the packed int8 weights.
 * ORT gets its model from memory (onnx_model_writer.h) and writes into a preallocated output, as a
 * C engine would; sessions use intra_op_num_threads = threads. Each timing is the median of single
 * calls, taken in blocks that alternate between the two libraries, with a pause between blocks
 * (--pause-ms, 50 by default) so that the other library's workers have stopped spinning: with a
 * 3 ms pause, ORT's still-spinning workers made QuantKit's 16-thread calls up to 2x slower on a
 * 16-core machine.
 * Columns: ms, QK/ORT (below 1: QuantKit is faster), each library's speed-up over its own time at
 * the first thread count, and "rel diff" = max|QK - ORT| / max|ORT|: about 1e-6 for the int4 rows
 * (both quantize activations per block alike), about 1e-2 for W8A8 (ORT quantizes activations per
 * tensor to uint8, QuantKit per block of ~512 to int8). The last line says whether QuantKit's
 * outputs were bit-identical across thread counts, as qk_matmul promises.
 * A benchmark, not a test: it asserts nothing.
 *
 *   matmul_threads --ort PATH/libonnxruntime.so.X [--shapes 4096x4096,4096x11008,11008x4096]
 *                  [--ms 1,16,512] [--threads 1,2,4,8,16] [--seconds 0.3] [--pause-ms 50]
 * Thread counts above the core count are dropped. See run_matmul_threads.sh.
 */
#define _GNU_SOURCE

#include "onnx_model_writer.h"
#include "ort_minimal_api.h"
#include "quantkit.h"

#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_LIST 16

static void die(const char *what, const char *detail) {
    fprintf(stderr, "matmul_threads: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
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
    fprintf(stderr, "matmul_threads: %s: %s\n", what, ort->GetErrorMessage(status));
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
    ort_check(ort->CreateEnv(ORT_LOGGING_LEVEL_WARNING, "matmul_threads", &ort_env), "CreateEnv");
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

/* One weight set: the packed QuantKit matrix and the ORT model over the same quantized bytes. */
typedef struct weight_set {
    const char *name;
    qk_packed_matrix *packed;
    pb_buf model;
} weight_set;

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

static pb_buf graph_with_io(int64_t k, int64_t n) {
    pb_buf graph = {0};
    int64_t in_dims[2] = {-1, k}, out_dims[2] = {-1, n};
    onnx_graph_input(&graph, "A", ONNX_FLOAT, in_dims, 2);
    onnx_graph_output(&graph, "Y", ONNX_FLOAT, out_dims, 2);
    return graph;
}

/* INT4 symmetric, MatMulNBits layout, ONNX Runtime's rounding: byte for byte its quantizer's. */
static weight_set int4_set(const char *name, float *w, int64_t n, int64_t k, int32_t block) {
    qk_quant_params p = {.struct_size = sizeof p};
    qk_check(qk_quant_params_init(&p, QK_FORMAT_INT4), "qk_quant_params_init");
    p.granularity = QK_GRANULARITY_BLOCKED;
    p.axis = 1;
    p.block_size = block;
    p.rounding = QK_ROUND_HALF_AWAY;
    p.layout = QK_LAYOUT_MATMULNBITS;
    qk_quantized q = quantize(&p, w, n, k);
    weight_set set = {.name = name, .packed = pack(&p, &q, n, k)};
    int64_t blocks = (k + block - 1) / block;
    pb_buf graph = graph_with_io(k, n);
    int64_t b_dims[3] = {n, blocks, block / 2}, s_dims[2] = {n, blocks};
    onnx_initializer(&graph, "B", ONNX_UINT8, b_dims, 3, q.data, q.data_bytes);
    onnx_initializer(&graph, "scales", ONNX_FLOAT, s_dims, 2, q.scales, q.scales_bytes);
    const char *inputs[] = {"A", "B", "scales"}, *outputs[] = {"Y"};
    onnx_attr attrs[] = {{"K", k}, {"N", n}, {"bits", 4}, {"block_size", block}, {"accuracy_level", 4}};
    onnx_node(&graph, "MatMulNBits", "com.microsoft", inputs, 3, outputs, 1, attrs, 5);
    set.model = onnx_model(&graph, 21);
    free_quantized(&q);
    return set;
}

/* INT8 symmetric per output channel: QuantKit packs codes [N, K]; ORT's MatMulInteger takes them as [K, N]. */
static weight_set w8a8_set(float *w, int64_t n, int64_t k) {
    qk_quant_params p = {.struct_size = sizeof p};
    qk_check(qk_quant_params_init(&p, QK_FORMAT_INT8), "qk_quant_params_init");
    p.granularity = QK_GRANULARITY_PER_AXIS;
    p.axis = 0;
    qk_quantized q = quantize(&p, w, n, k);
    weight_set set = {.name = "W8A8", .packed = pack(&p, &q, n, k)};
    int8_t *codes_kn = checked_malloc((size_t)(k * n));
    const int8_t *codes = q.data;
    for (int64_t r = 0; r < n; r++)
        for (int64_t c = 0; c < k; c++) codes_kn[c * n + r] = codes[r * k + c];
    int8_t *zeros = checked_malloc((size_t)n);
    pb_buf graph = graph_with_io(k, n);
    int64_t w_dims[2] = {k, n}, n_dims[1] = {n};
    onnx_initializer(&graph, "Wq", ONNX_INT8, w_dims, 2, codes_kn, (size_t)(k * n));
    onnx_initializer(&graph, "Wzp", ONNX_INT8, n_dims, 1, zeros, (size_t)n);
    onnx_initializer(&graph, "Ws", ONNX_FLOAT, n_dims, 1, q.scales, (size_t)n * sizeof(float));
    const char *dq_in[] = {"A"}, *dq_out[] = {"Aq", "As", "Azp"};
    onnx_node(&graph, "DynamicQuantizeLinear", NULL, dq_in, 1, dq_out, 3, NULL, 0);
    const char *mm_in[] = {"Aq", "Wq", "Azp", "Wzp"}, *mm_out[] = {"Yi"};
    onnx_node(&graph, "MatMulInteger", NULL, mm_in, 4, mm_out, 1, NULL, 0);
    const char *cast_in[] = {"Yi"}, *cast_out[] = {"Yf"};
    onnx_attr to_float[] = {{"to", ONNX_FLOAT}};
    onnx_node(&graph, "Cast", NULL, cast_in, 1, cast_out, 1, to_float, 1);
    const char *scale_in[] = {"As", "Ws"}, *scale_out[] = {"S"};
    onnx_node(&graph, "Mul", NULL, scale_in, 2, scale_out, 1, NULL, 0);
    const char *y_in[] = {"Yf", "S"}, *y_out[] = {"Y"};
    onnx_node(&graph, "Mul", NULL, y_in, 2, y_out, 1, NULL, 0);
    set.model = onnx_model(&graph, 21);
    free(codes_kn);
    free(zeros);
    free_quantized(&q);
    return set;
}

/* ---- One product, both libraries ------------------------------------------------------------ */

typedef struct product {
    int64_t m, k, n;
    int threads;
    float *x, *y_qk, *y_ort;
    const qk_packed_matrix *packed;
    OrtSession *session;
    OrtValue *ort_x, *ort_y;
} product;

static void run_qk(const product *p) {
    int64_t x_shape[2] = {p->m, p->k}, y_shape[2] = {p->m, p->n};
    qk_tensor x = {.data = p->x, .dtype = QK_DTYPE_F32, .ndim = 2, .shape = x_shape};
    qk_tensor y = {.data = p->y_qk, .dtype = QK_DTYPE_F32, .ndim = 2, .shape = y_shape};
    qk_matmul_options options = {.struct_size = sizeof options, .compute = QK_COMPUTE_INT8, .num_threads = p->threads};
    qk_check(qk_matmul(p->packed, &x, NULL, &y, &options), "qk_matmul");
}

static void run_ort(const product *p) {
    const char *in_names[] = {"A"}, *out_names[] = {"Y"};
    const OrtValue *inputs[] = {p->ort_x};
    OrtValue *outputs[] = {p->ort_y};
    ort_check(ort->Run(p->session, NULL, in_names, inputs, 1, out_names, 1, outputs), "Run");
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median ms of single calls of qk and ort, timed in 3 rounds of one block each, about `seconds` in all. */
static void time_both(const product *p, double seconds, int pause_ms, double *qk_ms, double *ort_ms) {
    enum { ROUNDS = 3, MAX_REPS = 4000 };
    static double qk_t[ROUNDS * MAX_REPS], ort_t[ROUNDS * MAX_REPS];
    double t0 = now_seconds();
    run_qk(p); run_ort(p); run_qk(p); run_ort(p);
    double per_pair = (now_seconds() - t0) / 2;
    int reps = (int)(seconds / ROUNDS / per_pair);
    reps = reps < 3 ? 3 : reps > MAX_REPS ? MAX_REPS : reps;
    int count = 0;
    for (int round = 0; round < ROUNDS; round++) {
        for (int side = 0; side < 2; side++) {
            usleep((useconds_t)pause_ms * 1000);
            void (*call)(const product *) = side == 0 ? run_qk : run_ort;
            double *times = side == 0 ? qk_t : ort_t;
            call(p);
            for (int r = 0; r < reps; r++) {
                double s = now_seconds();
                call(p);
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

typedef struct settings {
    const char *ort_path;
    int64_t shapes[MAX_LIST][2];
    int shape_count;
    int64_t ms[MAX_LIST];
    int m_count;
    int threads[MAX_LIST];
    int thread_count;
    double seconds;
    int pause_ms;
} settings;

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

static settings parse(int argc, char **argv) {
    settings s = {.seconds = 0.3, .pause_ms = 50};
    parse_list("4096x4096,4096x11008,11008x4096", &s.shapes[0][0], 1);
    s.shape_count = 3;
    s.m_count = parse_list("1,16,512", s.ms, 0);
    int64_t threads[MAX_LIST];
    int thread_count = parse_list("1,2,4,8,16", threads, 0);
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--ort") && value) s.ort_path = value;
        else if (!strcmp(argv[i], "--shapes") && value) s.shape_count = parse_list(value, &s.shapes[0][0], 1);
        else if (!strcmp(argv[i], "--ms") && value) s.m_count = parse_list(value, s.ms, 0);
        else if (!strcmp(argv[i], "--threads") && value) thread_count = parse_list(value, threads, 0);
        else if (!strcmp(argv[i], "--seconds") && value) s.seconds = atof(value);
        else if (!strcmp(argv[i], "--pause-ms") && value) s.pause_ms = atoi(value);
        else die("usage: matmul_threads --ort PATH [--shapes KxN,...] [--ms 1,16,...] [--threads 1,2,...] [--seconds S] [--pause-ms P]", NULL);
        i++;
    }
    if (!s.ort_path) die("--ort PATH/libonnxruntime.so.VERSION is required", NULL);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < thread_count; i++)
        if (threads[i] >= 1 && threads[i] <= cores) s.threads[s.thread_count++] = (int)threads[i];
    if (s.thread_count == 0) die("no thread count between 1 and the core count", NULL);
    return s;
}

/* ---- Main ----------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    settings s = parse(argc, argv);
    ort_load(s.ort_path);
    printf("QuantKit %s, matmul kernels %s; %ld cores\n", qk_version_string(), qk_matmul_kernel_variant(),
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("median ms of single calls; QK/ORT below 1: QuantKit is faster; xN: speed-up over the same library's time at %d thread(s)\n", s.threads[0]);
    int identical = 0, compared = 0;
    for (int si = 0; si < s.shape_count; si++) {
        int64_t k = s.shapes[si][0], n = s.shapes[si][1], max_m = 0;
        for (int i = 0; i < s.m_count; i++) max_m = s.ms[i] > max_m ? s.ms[i] : max_m;
        float *w = checked_malloc((size_t)(n * k) * sizeof(float));
        fill_normal(w, (size_t)(n * k), (uint64_t)(k * 7 + n), (float)(1.0 / sqrt((double)k)));
        weight_set sets[3] = {int4_set("int4 b32", w, n, k, 32), int4_set("int4 b128", w, n, k, 128), w8a8_set(w, n, k)};
        free(w);
        product p = {.k = k, .n = n};
        p.x = checked_malloc((size_t)(max_m * k) * sizeof(float));
        fill_normal(p.x, (size_t)(max_m * k), (uint64_t)k + 1, 1.0f);
        p.y_qk = checked_malloc((size_t)(max_m * n) * sizeof(float));
        p.y_ort = checked_malloc((size_t)(max_m * n) * sizeof(float));
        float *y_one_thread = checked_malloc((size_t)(max_m * n) * sizeof(float));
        for (int wi = 0; wi < 3; wi++) {
            weight_set *set = &sets[wi];
            p.packed = set->packed;
            printf("\nK=%lld N=%lld %s\n", (long long)k, (long long)n, set->name);
            printf("  %5s %7s %9s %9s %7s %7s %7s %12s\n", "M", "threads", "ORT ms", "QK ms", "QK/ORT", "ORT xN", "QK xN",
                   "rel diff");
            double ort_one[MAX_LIST] = {0}, qk_one[MAX_LIST] = {0};
            for (int ti = 0; ti < s.thread_count; ti++) {
                p.threads = s.threads[ti];
                p.session = ort_session(&set->model, p.threads);
                for (int mi = 0; mi < s.m_count; mi++) {
                    p.m = s.ms[mi];
                    p.ort_x = ort_float_tensor(p.x, p.m, k);
                    p.ort_y = ort_float_tensor(p.y_ort, p.m, n);
                    double qk_ms, ort_ms;
                    time_both(&p, s.seconds, s.pause_ms, &qk_ms, &ort_ms);
                    size_t outputs = (size_t)(p.m * n);
                    if (ti == 0) {
                        ort_one[mi] = ort_ms;
                        qk_one[mi] = qk_ms;
                        memcpy(y_one_thread, p.y_qk, outputs * sizeof(float));
                    } else {
                        compared++;
                        identical += !memcmp(y_one_thread, p.y_qk, outputs * sizeof(float));
                    }
                    printf("  %5lld %7d %9.3f %9.3f %7.2f %7.2f %7.2f %12.2e\n", (long long)p.m, p.threads, ort_ms, qk_ms,
                           qk_ms / ort_ms, ort_one[mi] / ort_ms, qk_one[mi] / qk_ms,
                           relative_difference(p.y_qk, p.y_ort, outputs));
                    fflush(stdout);
                    ort->ReleaseValue(p.ort_x);
                    ort->ReleaseValue(p.ort_y);
                }
                ort->ReleaseSession(p.session);
            }
        }
        for (int wi = 0; wi < 3; wi++) {
            qk_packed_matrix_release(sets[wi].packed);
            free(sets[wi].model.bytes);
        }
        free(p.x);
        free(p.y_qk);
        free(p.y_ort);
        free(y_one_thread);
    }
    printf("\nQuantKit's outputs bit-identical to its 1-thread outputs: %d of %d products\n", identical, compared);
    ort->ReleaseMemoryInfo(ort_cpu);
    ort->ReleaseEnv(ort_env);
    return 0;
}
