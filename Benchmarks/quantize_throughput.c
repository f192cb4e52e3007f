/*
 * quantize_throughput.c: QuantKit quantize/dequantize throughput next to memcpy, in one process.
 *
 * Quantization streams fp32 weights once, so single-core memcpy bandwidth is the natural yardstick:
 * the target for int4 group-128 symmetric is at least half of it. Throughput is counted in bytes of
 * fp32 data (read by quantize, written by dequantize); memcpy in bytes copied. Best of N runs after
 * a warm-up, CLOCK_MONOTONIC. This is a benchmark, not a test: it asserts nothing.
 *
 *   quantize_throughput [--runs N] [--quick]     --quick: 4096x4096 only, 3 runs
 *   QUANTKIT_KERNELS=scalar|avx2|avx512           forces a kernel variant (see run_quantize_throughput.sh)
 */
#define _POSIX_C_SOURCE 200809L

#include "quantkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct config {
    const char *name;
    int32_t format, scheme, granularity, axis, block_size;
} config;

static const config CONFIGS[] = {
    {"int4 g128 sym", QK_FORMAT_INT4, QK_SCHEME_SYMMETRIC, QK_GRANULARITY_BLOCKED, -1, 128},
    {"int4 g32 sym", QK_FORMAT_INT4, QK_SCHEME_SYMMETRIC, QK_GRANULARITY_BLOCKED, -1, 32},
    {"uint4 g32 asym", QK_FORMAT_UINT4, QK_SCHEME_ASYMMETRIC, QK_GRANULARITY_BLOCKED, -1, 32},
    {"int8 per-channel", QK_FORMAT_INT8, QK_SCHEME_SYMMETRIC, QK_GRANULARITY_PER_AXIS, 0, 0},
    {"nf4 b64", QK_FORMAT_NF4, QK_SCHEME_SYMMETRIC, QK_GRANULARITY_BLOCKED, -1, 64},
    {"fp8 e4m3 per-tensor", QK_FORMAT_FP8_E4M3FN, QK_SCHEME_SYMMETRIC, QK_GRANULARITY_PER_TENSOR, 0, 0},
};
#define NUM_CONFIGS (sizeof CONFIGS / sizeof CONFIGS[0])

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Allocates and touches every page, so page faults stay out of the timings. */
static void *alloc_touched(size_t bytes) {
    unsigned char *p = (unsigned char *)malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    memset(p, 1, bytes);
    return p;
}

/* Called through a volatile pointer so the compiler cannot drop or shrink the copies. */
static void *(*volatile copy_fn)(void *, const void *, size_t) = memcpy;

/* Best single-thread memcpy rate in GB/s (bytes copied per second) over 256 MiB buffers. */
static double memcpy_gbps(int runs) {
    const size_t bytes = (size_t)256 << 20;
    unsigned char *src = (unsigned char *)alloc_touched(bytes), *dst = (unsigned char *)alloc_touched(bytes);
    double best = 1e30;
    int r;
    copy_fn(dst, src, bytes); /* warm-up */
    for (r = 0; r < runs; r++) {
        double t0 = now_seconds();
        copy_fn(dst, src, bytes);
        t0 = now_seconds() - t0;
        if (t0 < best) best = t0;
    }
    if (dst[bytes - 1] != 1) printf("(memcpy check failed)\n");
    free(src);
    free(dst);
    return (double)bytes / best / 1e9;
}

/* Gaussian weights (Box-Muller on a fixed LCG): realistic ranges, same data every run. */
static void fill_weights(float *x, size_t n) {
    uint64_t s = 0x2545F4914F6CDD1Dull;
    size_t i;
    for (i = 0; i + 1 < n; i += 2) {
        double u, v;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        u = ((double)(s >> 11) + 1.0) / 9007199254740993.0;
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        v = (double)(s >> 11) / 9007199254740992.0;
        x[i] = (float)(0.02 * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
        x[i + 1] = (float)(0.02 * sqrt(-2.0 * log(u)) * sin(6.283185307179586 * v));
    }
    if (i < n) x[i] = 0.01f;
}

typedef struct case_buffers {
    qk_quant_params params;
    qk_quantized q;
} case_buffers;

static int setup_case(case_buffers *b, const config *c, int32_t threads, const int64_t shape[2]) {
    qk_quantized_layout l;
    memset(b, 0, sizeof *b); /* also zeroes qk_quantized's reserved field */
    b->params.struct_size = sizeof b->params; /* the caller's to set, also before qk_quant_params_init */
    if (qk_quant_params_init(&b->params, c->format) != QK_OK) return 0;
    b->params.scheme = c->scheme;
    b->params.granularity = c->granularity;
    b->params.axis = c->axis;
    if (c->block_size) b->params.block_size = c->block_size;
    b->params.num_threads = threads;
    memset(&l, 0, sizeof l);
    l.struct_size = sizeof l;
    if (qk_quantized_layout_get(&b->params, 2, shape, &l) != QK_OK) return 0;
    b->q.struct_size = sizeof b->q;
    b->q.data = alloc_touched(l.data_bytes);
    b->q.data_bytes = l.data_bytes;
    b->q.scales = alloc_touched(l.scales_bytes);
    b->q.scales_bytes = l.scales_bytes;
    if (l.zero_points_bytes) {
        b->q.zero_points = alloc_touched(l.zero_points_bytes);
        b->q.zero_points_bytes = l.zero_points_bytes;
    }
    return 1;
}

static void free_case(case_buffers *b) {
    free(b->q.data);
    free(b->q.scales);
    free(b->q.zero_points);
}

/* Best time of `runs` calls after one warm-up; negative if a call fails. */
static double best_time(int dequantize, case_buffers *b, const qk_tensor *x, qk_tensor *y, int runs) {
    double best = 1e30;
    int r;
    for (r = -1; r < runs; r++) {
        double t0 = now_seconds();
        qk_status st = dequantize ? qk_dequantize(&b->params, &b->q, y) : qk_quantize(&b->params, x, &b->q);
        t0 = now_seconds() - t0;
        if (st != QK_OK) {
            printf("  %s failed: %s\n", dequantize ? "qk_dequantize" : "qk_quantize", qk_last_error());
            return -1;
        }
        if (r >= 0 && t0 < best) best = t0;
    }
    return best;
}

static void print_row(const int64_t shape[2], const config *c, int32_t threads, double bytes, double tq, double td,
                      double memcpy_rate) {
    double q = tq > 0 ? bytes / tq / 1e9 : 0, d = td > 0 ? bytes / td / 1e9 : 0;
    printf("%5lldx%-6lld %-20s %3d %10.2f %7.2fx %10.2f %7.2fx\n", (long long)shape[0], (long long)shape[1], c->name,
           threads, q, q / memcpy_rate, d, d / memcpy_rate);
}

static void bench_shape(const int64_t shape[2], const int32_t *threads, int nthreads, int runs, double memcpy_rate,
                        double *target_ratio) {
    size_t n = (size_t)(shape[0] * shape[1]);
    float *x = (float *)alloc_touched(n * sizeof(float)), *y = (float *)alloc_touched(n * sizeof(float));
    qk_tensor tx = {0}, ty = {0};
    size_t c;
    int t;
    fill_weights(x, n);
    tx.data = x;
    tx.dtype = QK_DTYPE_F32;
    tx.ndim = 2;
    tx.shape = shape;
    ty = tx;
    ty.data = y;
    for (c = 0; c < NUM_CONFIGS; c++) {
        for (t = 0; t < nthreads; t++) {
            case_buffers b;
            double tq, td;
            if (!setup_case(&b, &CONFIGS[c], threads[t], shape)) {
                printf("%-34s setup failed: %s\n", CONFIGS[c].name, qk_last_error());
                continue;
            }
            tq = best_time(0, &b, &tx, &ty, runs);
            td = tq > 0 ? best_time(1, &b, &tx, &ty, runs) : -1;
            print_row(shape, &CONFIGS[c], threads[t], (double)(n * sizeof(float)), tq, td, memcpy_rate);
            if (c == 0 && threads[t] == 1 && tq > 0) {
                double r = (double)(n * sizeof(float)) / tq / 1e9 / memcpy_rate;
                if (r < *target_ratio) *target_ratio = r;
            }
            free_case(&b);
        }
    }
    free(x);
    free(y);
}

int main(int argc, char **argv) {
    const int64_t shapes[2][2] = {{4096, 4096}, {4096, 11008}};
    int32_t threads[2] = {1, 2};
    int runs = 5, quick = 0, nshapes, nthreads, i;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    double rate, target = 1e30;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else {
            fprintf(stderr, "usage: %s [--runs N] [--quick]\n", argv[0]);
            return 2;
        }
    }
    if (quick) runs = 3;
    if (runs < 1) runs = 1;
    nshapes = quick ? 1 : 2;
    nthreads = cpus >= 2 ? 2 : 1;

    rate = memcpy_gbps(runs);
    printf("\nQuantKit %s, kernels: %s (QUANTKIT_KERNELS=%s), %ld CPUs, best of %d after a warm-up\n",
           qk_version_string(), qk_kernel_variant(), getenv("QUANTKIT_KERNELS") ? getenv("QUANTKIT_KERNELS") : "",
           cpus, runs);
    printf("memcpy, 1 thread, 256 MiB: %.2f GB/s (bytes copied per second)\n", rate);
    printf("%-12s %-20s %3s %10s %8s %10s %8s\n", "shape", "format", "thr", "quant GB/s", "/memcpy", "deq GB/s",
           "/memcpy");
    for (i = 0; i < nshapes; i++) bench_shape(shapes[i], threads, nthreads, runs, rate, &target);
    if (target < 1e30)
        printf("target int4 g128 sym quantize, 1 thread, >= 0.50x memcpy: %.2fx (%s)\n", target,
               target >= 0.5 ? "met" : "missed");
    return 0;
}
