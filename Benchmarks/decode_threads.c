/*
 * decode_threads.c: a decode step that streams its weights from DRAM, QuantKit next to ONNX
 * Runtime, in one C process, at each thread count; with the DRAM read bandwidth of the same
 * thread count as the yardstick.
 *
 * L distinct 4096x4096 INT4 b32 layers (enough to fill twice the L3 cache, at least 16), M = 1,
 * each layer's output feeding the next: QuantKit calls qk_matmul (QK_COMPUTE_INT8) layer after
 * layer; ONNX Runtime runs one model that chains L MatMulNBits nodes (accuracy level 4), so one
 * Run and one thread pool. Both hold the same quantized bytes (each layer's codes differ, so no
 * two layers share cache lines). The probe reads a buffer of 4x the L3 size with glibc's memchr
 * (vector loads, hardware prefetch only), split over the threads: a plain read loop, which
 * QuantKit's kernels, with software prefetch, can pass. Columns: ms per layer, QK/ORT (below 1:
 * QuantKit is faster), each side's weight GB/s (bytes as each holds them: QuantKit's packed_bytes,
 * MatMulNBits codes and fp32 scales) and its share of the probe, and the last output's relative
 * difference (QuantKit against ORT, after L layers). A benchmark, not a test: it asserts nothing.
 *
 *   decode_threads --ort PATH/libonnxruntime.so.X [--threads 1,2,4,8,16] [--layers L] [--seconds 1]
 *                  [--pause-ms 100]
 * See run_matmul_threads.sh (--decode).
 */
#define _GNU_SOURCE

#include "side_by_side.h"

#include <pthread.h>

enum { D = 4096, BLOCK = 32 };

/* ---- DRAM read probe ---------------------------------------------------------------------------- */

typedef struct probe_slice {
    const unsigned char *bytes;
    size_t count;
} probe_slice;

static void *probe_read(void *context) {
    const probe_slice *slice = context;
    if (memchr(slice->bytes, 0, slice->count)) die("the probe buffer should hold no zero byte", NULL);
    return NULL;
}

/* Pseudo-random bytes, none of them 0: pages of zeros (or of one repeated pattern) may be merged
 * into one physical page by a hypervisor, and then read from the cache. */
static unsigned char *probe_buffer(size_t bytes) {
    uint64_t *words = checked_malloc(bytes);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < bytes / 8; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        words[i] = s | 0x0101010101010101ull;
    }
    return (unsigned char *)words;
}

enum { MAX_PROBE_THREADS = 256 };

/* Best GB/s of `threads` threads reading disjoint slices of `bytes` at once, over 5 tries. */
static double dram_read_gbps(const unsigned char *buffer, size_t bytes, int threads) {
    static pthread_t ids[MAX_PROBE_THREADS];
    static probe_slice slices[MAX_PROBE_THREADS];
    if (threads > MAX_PROBE_THREADS) die("the probe runs at most 256 threads", NULL);
    size_t per = bytes / (size_t)threads / 64 * 64;
    double best = 0;
    for (int attempt = 0; attempt < 5; attempt++) {
        double start = now_seconds();
        for (int t = 0; t < threads; t++) {
            slices[t] = (probe_slice){buffer + (size_t)t * per, per};
            if (t > 0 && pthread_create(&ids[t], NULL, probe_read, &slices[t]) != 0) die("pthread_create failed", NULL);
        }
        probe_read(&slices[0]);
        for (int t = 1; t < threads; t++) pthread_join(ids[t], NULL);
        double gbps = (double)per * threads / (now_seconds() - start) / 1e9;
        best = gbps > best ? gbps : best;
    }
    return best;
}

/* ---- The layer chain ---------------------------------------------------------------------------- */

typedef struct chain {
    int layers, threads;
    qk_packed_matrix **packed;
    size_t qk_bytes, ort_bytes;  /* all layers, as each library holds them */
    pb_buf model;
    float *x, *h[2], *y_ort;
    OrtSession *session;
    OrtValue *ort_x, *ort_y;
} chain;

/* One fp32 W quantized once; layer i's codes are those XOR (i * 37 mod 256), still valid nibbles. */
static chain make_chain(int layers) {
    chain c = {.layers = layers};
    float *w = checked_malloc(sizeof(float) * D * D);
    fill_normal(w, (size_t)D * D, 11, (float)(1.0 / sqrt((double)D)));
    qk_quant_params p = matmulnbits_int4_params(BLOCK);
    qk_quantized q = quantize(&p, w, D, D);
    free(w);
    unsigned char *codes = q.data;
    unsigned char *original = checked_malloc(q.data_bytes);
    memcpy(original, codes, q.data_bytes);
    c.packed = checked_malloc(sizeof(qk_packed_matrix *) * (size_t)layers);
    pb_buf graph = graph_with_io(D, D);
    for (int i = 0; i < layers; i++) {
        for (size_t b = 0; b < q.data_bytes; b++) codes[b] = original[b] ^ (unsigned char)(i * 37);
        c.packed[i] = pack(&p, &q, D, D);
        qk_packed_matrix_info info = {.struct_size = sizeof info};
        qk_check(qk_packed_matrix_get_info(c.packed[i], &info), "qk_packed_matrix_get_info");
        c.qk_bytes += info.packed_bytes;
        c.ort_bytes += q.data_bytes + q.scales_bytes;
        char input[32] = "A", output[32] = "Y", suffix[32];
        if (i > 0) snprintf(input, sizeof input, "H%d", i - 1);
        if (i < layers - 1) snprintf(output, sizeof output, "H%d", i);
        snprintf(suffix, sizeof suffix, "_%d", i);
        add_matmulnbits(&graph, input, output, suffix, &q, D, D, BLOCK);
    }
    c.model = onnx_model(&graph, 21);
    free(original);
    free_quantized(&q);
    c.x = checked_malloc(sizeof(float) * D);
    fill_normal(c.x, D, 5, 1.0f);
    c.h[0] = checked_malloc(sizeof(float) * D);
    c.h[1] = checked_malloc(sizeof(float) * D);
    c.y_ort = checked_malloc(sizeof(float) * D);
    return c;
}

/* x through every layer; the last output ends in h[(layers - 1) % 2]. */
static void run_qk_chain(const void *context) {
    const chain *c = context;
    int64_t shape[2] = {1, D};
    qk_matmul_options options = {.struct_size = sizeof options, .compute = QK_COMPUTE_INT8, .num_threads = c->threads};
    for (int i = 0; i < c->layers; i++) {
        qk_tensor x = {.data = i == 0 ? c->x : c->h[(i - 1) % 2], .dtype = QK_DTYPE_F32, .ndim = 2, .shape = shape};
        qk_tensor y = {.data = c->h[i % 2], .dtype = QK_DTYPE_F32, .ndim = 2, .shape = shape};
        qk_check(qk_matmul(c->packed[i], &x, NULL, &y, &options), "qk_matmul");
    }
}

static void run_ort_chain(const void *context) {
    const chain *c = context;
    ort_run(c->session, c->ort_x, c->ort_y);
}

/* ---- Main ----------------------------------------------------------------------------------------- */

int main(int argc, char **argv) {
    const char *ort_path = NULL;
    int threads[MAX_LIST], thread_count = parse_threads("1,2,4,8,16", threads), layers = 0, pause_ms = 100;
    double seconds = 1.0;
    for (int i = 1; i < argc; i += 2) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--ort") && value) ort_path = value;
        else if (!strcmp(argv[i], "--threads") && value) thread_count = parse_threads(value, threads);
        else if (!strcmp(argv[i], "--layers") && value) layers = atoi(value);
        else if (!strcmp(argv[i], "--seconds") && value) seconds = atof(value);
        else if (!strcmp(argv[i], "--pause-ms") && value) pause_ms = atoi(value);
        else die("usage: decode_threads --ort PATH [--threads 1,2,...] [--layers L] [--seconds S] [--pause-ms P]", NULL);
    }
    if (!ort_path) die("--ort PATH/libonnxruntime.so.VERSION is required", NULL);
    ort_load(ort_path);
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 <= 0) l3 = 256L << 20;  /* unknown: assume a large one */
    size_t layer_bytes = (size_t)D * D / 2;
    if (layers <= 0) layers = (int)((2 * (size_t)l3 + layer_bytes - 1) / layer_bytes);
    layers = layers < 16 ? 16 : layers;
    printf("QuantKit %s, matmul kernels %s; %ld cores; L3 %.0f MB\n", qk_version_string(), qk_matmul_kernel_variant(),
           sysconf(_SC_NPROCESSORS_ONLN), l3 / 1e6);

    size_t probe_bytes = 4 * (size_t)l3 / 64 * 64;
    unsigned char *probe = probe_buffer(probe_bytes);
    chain c = make_chain(layers);
    printf("decode through %d distinct %dx%d INT4 b%d layers, M = 1: QuantKit holds %.0f MB, ORT's MatMulNBits %.0f MB\n",
           layers, D, D, BLOCK, c.qk_bytes / 1e6, c.ort_bytes / 1e6);
    printf("median of whole passes, in ms per layer; %%probe: share of the DRAM read probe at the same thread count\n");
    printf("  %7s %10s %12s %12s %7s %8s %8s %9s %9s %10s\n", "threads", "probe GB/s", "ORT ms/layer", "QK ms/layer", "QK/ORT",
           "ORT GB/s", "QK GB/s", "ORT %probe", "QK %probe", "rel diff");
    for (int ti = 0; ti < thread_count; ti++) {
        c.threads = threads[ti];
        double probe_gbps = dram_read_gbps(probe, probe_bytes, c.threads);
        c.session = ort_session(&c.model, c.threads);
        c.ort_x = ort_float_tensor(c.x, 1, D);
        c.ort_y = ort_float_tensor(c.y_ort, 1, D);
        double qk_ms, ort_ms;
        time_both(run_qk_chain, run_ort_chain, &c, seconds, pause_ms, &qk_ms, &ort_ms);
        double qk_gbps = c.qk_bytes / (qk_ms * 1e-3) / 1e9, ort_gbps = c.ort_bytes / (ort_ms * 1e-3) / 1e9;
        printf("  %7d %10.1f %12.3f %12.3f %7.2f %8.1f %8.1f %9.0f%% %9.0f%% %10.2e\n", c.threads, probe_gbps, ort_ms / layers,
               qk_ms / layers, qk_ms / ort_ms, ort_gbps, qk_gbps, 100 * ort_gbps / probe_gbps, 100 * qk_gbps / probe_gbps,
               relative_difference(c.h[(layers - 1) % 2], c.y_ort, D));
        fflush(stdout);
        ort->ReleaseValue(c.ort_x);
        ort->ReleaseValue(c.ort_y);
        ort->ReleaseSession(c.session);
    }
    return 0;
}
