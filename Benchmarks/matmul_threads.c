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
 * (--pause-ms, 100 by default) so that the other library's workers have stopped spinning: ORT's
 * intra-op workers spin for about 60 ms after a run, and with 3 ms pauses they made QuantKit's
 * 16-thread calls up to 2x slower on a 16-core machine.
 * Columns: ms, QK/ORT (below 1: QuantKit is faster), each library's speed-up over its own time at
 * the first thread count, and "rel diff" = max|QK - ORT| / max|ORT|: about 1e-6 for the int4 rows
 * (both quantize activations per block alike), about 1e-2 for W8A8 (ORT quantizes activations per
 * tensor to uint8, QuantKit per block of ~512 to int8). The last line says whether QuantKit's
 * outputs were bit-identical across thread counts, as qk_matmul promises.
 * A benchmark, not a test: it asserts nothing.
 *
 *   matmul_threads --ort PATH/libonnxruntime.so.X [--shapes 4096x4096,4096x11008,11008x4096]
 *                  [--ms 1,16,512] [--threads 1,2,4,8,16] [--seconds 0.3] [--pause-ms 100]
 * Thread counts above the core count are dropped. See run_matmul_threads.sh.
 */
#define _GNU_SOURCE

#include "side_by_side.h"

/* ---- Weight sets ----------------------------------------------------------------------------- */

/* One weight set: the packed QuantKit matrix and the ORT model over the same quantized bytes. */
typedef struct weight_set {
    const char *name;
    qk_packed_matrix *packed;
    pb_buf model;
} weight_set;

static weight_set int4_set(const char *name, float *w, int64_t n, int64_t k, int32_t block) {
    qk_quant_params p = matmulnbits_int4_params(block);
    qk_quantized q = quantize(&p, w, n, k);
    weight_set set = {.name = name, .packed = pack(&p, &q, n, k)};
    pb_buf graph = graph_with_io(k, n);
    add_matmulnbits(&graph, "A", "Y", "", &q, n, k, block);
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

static void run_qk(const void *context) {
    const product *p = context;
    int64_t x_shape[2] = {p->m, p->k}, y_shape[2] = {p->m, p->n};
    qk_tensor x = {.data = p->x, .dtype = QK_DTYPE_F32, .ndim = 2, .shape = x_shape};
    qk_tensor y = {.data = p->y_qk, .dtype = QK_DTYPE_F32, .ndim = 2, .shape = y_shape};
    qk_matmul_options options = {.struct_size = sizeof options, .compute = QK_COMPUTE_INT8, .num_threads = p->threads};
    qk_check(qk_matmul(p->packed, &x, NULL, &y, &options), "qk_matmul");
}

static void run_ort(const void *context) {
    const product *p = context;
    ort_run(p->session, p->ort_x, p->ort_y);
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

static settings parse(int argc, char **argv) {
    settings s = {.seconds = 0.3, .pause_ms = 100};
    parse_list("4096x4096,4096x11008,11008x4096", &s.shapes[0][0], 1);
    s.shape_count = 3;
    s.m_count = parse_list("1,16,512", s.ms, 0);
    s.thread_count = parse_threads("1,2,4,8,16", s.threads);
    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--ort") && value) s.ort_path = value;
        else if (!strcmp(argv[i], "--shapes") && value) s.shape_count = parse_list(value, &s.shapes[0][0], 1);
        else if (!strcmp(argv[i], "--ms") && value) s.m_count = parse_list(value, s.ms, 0);
        else if (!strcmp(argv[i], "--threads") && value) s.thread_count = parse_threads(value, s.threads);
        else if (!strcmp(argv[i], "--seconds") && value) s.seconds = atof(value);
        else if (!strcmp(argv[i], "--pause-ms") && value) s.pause_ms = atoi(value);
        else die("usage: matmul_threads --ort PATH [--shapes KxN,...] [--ms 1,16,...] [--threads 1,2,...] [--seconds S] [--pause-ms P]", NULL);
        i++;
    }
    if (!s.ort_path) die("--ort PATH/libonnxruntime.so.VERSION is required", NULL);
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
                    time_both(run_qk, run_ort, &p, s.seconds, s.pause_ms, &qk_ms, &ort_ms);
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
