/*
 * thread_stress.c: qk_matmul calls of different sizes, modes and thread counts back to back for a
 * few seconds; every output must equal, bit for bit, the same call's output with one thread.
 *
 * Back-to-back calls hand the worker pool jobs of different chunk counts (an activation job, then
 * the product's). A worker pool that let a late worker run a chunk of the next job ran chunks
 * twice and trapped ("closure argument was escaped in withoutActuallyEscaping block"): through
 * this program in about one 10-second run in three on a 2-core machine, and in a benchmark on 16
 * cores. The Swift test ParallelTests.testLateWorkersNeverRunChunksOfTheNextJob catches it every
 * time; this one covers the same path through the C ABI.
 *
 *   thread_stress [seconds]      default 3; exit status 0 when every output matched
 */
#define _POSIX_C_SOURCE 200809L

#include "quantkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { K = 2048, N = 1024, MAX_M = 24, CASES = 5 };

static const int64_t ROWS[CASES] = {1, 16, 3, 24, 9};
static const int32_t THREADS[] = {16, 8, 3, 12, 2, 5};

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *checked_malloc(size_t bytes) {
    void *p = malloc(bytes);
    if (!p) {
        fprintf(stderr, "thread_stress: out of memory\n");
        exit(2);
    }
    return p;
}

static int check(qk_status status, const char *what) {
    if (status != QK_OK) fprintf(stderr, "thread_stress: %s failed: %s\n", what, qk_last_error());
    return status == QK_OK;
}

/* y = x[0..rows) . W^T; odd cases use int8 activations. */
static int multiply(const qk_packed_matrix *w, float *x, int c, int32_t threads, float *y) {
    int64_t x_shape[2] = {ROWS[c], K}, y_shape[2] = {ROWS[c], N};
    qk_tensor tx = {x, QK_DTYPE_F32, 2, x_shape, NULL};
    qk_tensor ty = {y, QK_DTYPE_F32, 2, y_shape, NULL};
    qk_matmul_options options = {sizeof options, c % 2 ? QK_COMPUTE_INT8 : QK_COMPUTE_FLOAT, threads};
    return check(qk_matmul(w, &tx, NULL, &ty, &options), "qk_matmul");
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    float *w = checked_malloc(sizeof(float) * K * N);
    for (long i = 0; i < (long)K * N; i++) w[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;

    qk_quant_params p;
    p.struct_size = sizeof p;
    if (!check(qk_quant_params_init(&p, QK_FORMAT_INT4), "qk_quant_params_init")) return 2;
    p.axis = 1;
    p.block_size = 32;
    p.layout = QK_LAYOUT_MATMULNBITS;
    int64_t shape[2] = {N, K};
    qk_quantized_layout layout;
    layout.struct_size = sizeof layout;
    if (!check(qk_quantized_layout_get(&p, 2, shape, &layout), "qk_quantized_layout_get")) return 2;
    qk_quantized q;
    memset(&q, 0, sizeof q);
    q.struct_size = sizeof q;
    q.data = checked_malloc(q.data_bytes = layout.data_bytes);
    q.scales = checked_malloc(q.scales_bytes = layout.scales_bytes);
    qk_tensor input = {w, QK_DTYPE_F32, 2, shape, NULL};
    qk_packed_matrix *packed = NULL;
    if (!check(qk_quantize(&p, &input, &q), "qk_quantize") || !check(qk_pack_weights(&p, N, K, &q, NULL, &packed), "qk_pack_weights"))
        return 2;

    float *x = checked_malloc(sizeof(float) * MAX_M * K);
    for (long i = 0; i < (long)MAX_M * K; i++) x[i] = (float)(i % 13) - 6.0f;
    float *expected[CASES];
    for (int c = 0; c < CASES; c++) {
        expected[c] = checked_malloc(sizeof(float) * MAX_M * N);
        if (!multiply(packed, x, c, 1, expected[c])) return 2;
    }

    float *y = checked_malloc(sizeof(float) * MAX_M * N);
    long calls = 0, differed = 0;
    const int thread_counts = (int)(sizeof THREADS / sizeof THREADS[0]);
    for (double end = now_seconds() + seconds; now_seconds() < end;) {
        for (int c = 0; c < CASES; c++, calls++) {
            if (!multiply(packed, x, c, THREADS[calls % thread_counts], y)) return 2;
            differed += memcmp(y, expected[c], sizeof(float) * (size_t)ROWS[c] * N) != 0;
        }
    }
    printf("thread stress: %ld calls, %ld differed from the 1-thread output\n", calls, differed);
    qk_packed_matrix_release(packed);
    return differed == 0 ? 0 : 1;
}
