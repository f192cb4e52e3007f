/*
 * quantize_weights.c: quantize a weight matrix to int4 (blocks of 32) with QuantKit, report the
 * size and the error, and dequantize it back. Build: see Examples/README.md.
 */
#include "quantkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define ROWS 256
#define COLS 512

/* Prints the failed call and QuantKit's message for it, then exits. */
static void check(qk_status status, const char *what) {
    if (status == QK_OK) return;
    fprintf(stderr, "%s failed: %s (%s)\n", what, qk_status_string(status), qk_last_error());
    exit(1);
}

/* Gaussian-looking weights, like a trained layer's (sum of uniforms; no seed to manage). */
static void random_weights(float *w, size_t n) {
    size_t i;
    int k;
    for (i = 0; i < n; i++) {
        float s = 0;
        for (k = 0; k < 12; k++) s += (float)rand() / (float)RAND_MAX;
        w[i] = 0.02f * (s - 6.0f);
    }
}

int main(void) {
    static float weights[ROWS * COLS], restored[ROWS * COLS];
    const int64_t shape[2] = {ROWS, COLS};
    qk_tensor input = {0}, output = {0};
    qk_quant_params params;
    qk_quantized_layout layout = {0};
    qk_quantized q = {0};
    qk_error_stats stats = {0};

    if (qk_version_number() != QK_VERSION_NUMBER)
        fprintf(stderr, "warning: header %s, library %s\n", QK_VERSION_STRING, qk_version_string());
    random_weights(weights, ROWS * COLS);

    /* 1. Parameters: defaults for int4 (symmetric, blocks of 32 along the last axis). Every struct
     *    given to QuantKit starts with struct_size, which the caller sets: here before init fills
     *    in the other fields. (The `= {0}` structs below also keep their `reserved` fields 0.) */
    params.struct_size = sizeof params;
    check(qk_quant_params_init(&params, QK_FORMAT_INT4), "qk_quant_params_init");
    params.block_size = 32;

    /* 2. Ask how big the quantized buffers are, and allocate them (we own them). */
    layout.struct_size = sizeof layout;
    check(qk_quantized_layout_get(&params, 2, shape, &layout), "qk_quantized_layout_get");
    q.struct_size = sizeof q;
    q.data_bytes = layout.data_bytes;
    q.scales_bytes = layout.scales_bytes;
    q.zero_points_bytes = layout.zero_points_bytes; /* 0 for symmetric int4 */
    q.data = malloc(q.data_bytes);
    q.scales = malloc(q.scales_bytes);
    q.zero_points = q.zero_points_bytes ? malloc(q.zero_points_bytes) : NULL;
    if (!q.data || !q.scales || (q.zero_points_bytes && !q.zero_points)) return 1;

    /* 3. Quantize. The tensor is a borrowed view: QuantKit keeps no pointer after the call. */
    input.data = weights;
    input.dtype = QK_DTYPE_F32;
    input.ndim = 2;
    input.shape = shape;
    check(qk_quantize(&params, &input, &q), "qk_quantize");

    /* 4. How good is it? */
    stats.struct_size = sizeof stats;
    check(qk_quantization_error(&params, &input, &q, &stats), "qk_quantization_error");
    printf("int4, blocks of 32: %zu bytes of fp32 -> %zu bytes (%zu codes + %zu scales), %.1fx smaller\n",
           sizeof weights, q.data_bytes + q.scales_bytes, q.data_bytes, q.scales_bytes,
           (double)sizeof weights / (double)(q.data_bytes + q.scales_bytes));
    printf("error: max %.6f, mean %.6f, rmse %.6f, SQNR %.2f dB (signal rms %.6f)\n", stats.max_abs_error,
           stats.mean_abs_error, stats.rmse, stats.sqnr_db, stats.signal_rms);

    /* 5. Back to fp32. */
    output = input;
    output.data = restored;
    check(qk_dequantize(&params, &q, &output), "qk_dequantize");
    printf("w[0][0..3] = % .5f % .5f % .5f % .5f\n", weights[0], weights[1], weights[2], weights[3]);
    printf("restored   = % .5f % .5f % .5f % .5f\n", restored[0], restored[1], restored[2], restored[3]);

    free(q.data);
    free(q.scales);
    free(q.zero_points);
    return 0;
}
