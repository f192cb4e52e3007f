/*
 * quantkit.h — the QuantKit C ABI. This file is the contract: the only copy.
 *
 * Rules this header keeps (see DESIGN.md):
 *  - Published functions and values are never changed, renumbered or reused.
 *  - Every fallible function returns qk_status. On failure, out-parameters are left untouched (the
 *    one exception is written at qk_quantize) and qk_last_error() holds a message for the calling
 *    thread. Successful calls do not clear that message.
 *  - Structs that cross the boundary start with `uint32_t struct_size`, which the CALLER always sets
 *    to sizeof(the struct it was compiled with), also before qk_quant_params_init. New fields are
 *    only appended (marked "since ABI N"); padding is explicit (`reserved` fields, set to 0).
 *    A struct_size smaller than this version's -> QK_ERROR_VERSION. A larger one (a caller built
 *    against a newer header) is accepted when the bytes this library does not know are all zero
 *    (input structs) -- else QK_ERROR_VERSION -- and those bytes are zeroed (output structs).
 *  - Enumerated values travel as int32_t so the ABI does not depend on the size of a C enum.
 *  - qk_tensor is the one struct without struct_size (it mirrors DLPack's DLTensor): it never grows.
 *  - Nothing here allocates memory the caller must free unless the function says so. Empty tensors
 *    may pass NULL data pointers.
 *
 * Thread safety: every function may be called from any thread at the same time, as long as two
 * calls do not write the same output buffer.
 */
#ifndef QUANTKIT_H
#define QUANTKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Versions ------------------------------------------------------------------------------- */

#define QK_VERSION_MAJOR 0
#define QK_VERSION_MINOR 2
#define QK_VERSION_PATCH 0
/* MAJOR * 10000 + MINOR * 100 + PATCH, written out so every FFI can read it. */
#define QK_VERSION_NUMBER 200
#define QK_VERSION_STRING "0.2.0"

/* The function-table version this header describes (see qk_get_api). */
#define QK_ABI_VERSION 2

/* Largest tensor rank the library accepts. */
#define QK_MAX_DIMS 8

/* Run-time version of the library actually loaded: compare with QK_VERSION_NUMBER. */
uint32_t qk_version_number(void);
/* Static string, e.g. "0.1.0". Never NULL; never freed. */
const char *qk_version_string(void);

/* ---- Status codes (values are pinned) -------------------------------------------------------- */

/* The status every fallible function returns: one of the QK_OK / QK_ERROR_* values below. */
typedef int32_t qk_status;

enum {
    QK_OK = 0,
    QK_ERROR_INVALID_ARGUMENT = 1, /* a value is outside its documented range */
    QK_ERROR_NULL_POINTER = 2,     /* a required pointer was NULL */
    QK_ERROR_UNSUPPORTED = 3,      /* a valid combination this version does not implement */
    QK_ERROR_BUFFER_TOO_SMALL = 4, /* an output buffer is smaller than the layout requires */
    QK_ERROR_SHAPE_MISMATCH = 5,   /* shapes or element counts disagree */
    QK_ERROR_NON_FINITE = 6,       /* the input holds NaN or +-Inf where finite values are needed */
    QK_ERROR_OUT_OF_MEMORY = 7,
    QK_ERROR_OVERFLOW = 8,         /* a size does not fit in the address space, or a value in its type
                                      (a scale past the scale type's range, fp16 conversion of 1e6) */
    QK_ERROR_IO = 9,               /* a file could not be read or written */
    QK_ERROR_INVALID_MODEL = 10,   /* a model file is malformed or truncated */
    QK_ERROR_INTERNAL = 11,        /* a bug in QuantKit: please report it */
    QK_ERROR_VERSION = 12          /* a struct_size or ABI version this library does not serve */
};

/* Message for the last failure on the calling thread, or "" if none. The pointer stays valid
 * until the next QuantKit call on the same thread. Never NULL. */
const char *qk_last_error(void);
/* Static name of a status code, e.g. "QK_ERROR_NON_FINITE"; "unknown status" otherwise. */
const char *qk_status_string(int32_t status);

/* ---- Element types of plain tensors ---------------------------------------------------------- */

enum {
    QK_DTYPE_INVALID = 0,
    QK_DTYPE_F32 = 1,
    QK_DTYPE_F16 = 2,  /* IEEE binary16 */
    QK_DTYPE_BF16 = 3, /* bfloat16 */
    QK_DTYPE_F64 = 4,
    QK_DTYPE_I8 = 5,
    QK_DTYPE_U8 = 6,
    QK_DTYPE_I32 = 7
};

/* A borrowed view of a dense tensor (DLPack-like). The library never keeps the pointers. */
typedef struct qk_tensor {
    void *data;             /* first element; may be NULL only when the tensor is empty */
    int32_t dtype;          /* QK_DTYPE_* */
    int32_t ndim;           /* 0..QK_MAX_DIMS; 0 is a scalar */
    const int64_t *shape;   /* ndim entries, each >= 0 */
    const int64_t *strides; /* ndim entries in elements (not bytes), or NULL for row-major; negative
                               strides are allowed (data then points at element [0,...,0]) */
} qk_tensor;

/* ---- Formats ----------------------------------------------------------------------------------- */

enum {
    QK_FORMAT_INVALID = 0,
    QK_FORMAT_INT8 = 1,
    QK_FORMAT_UINT8 = 2,
    QK_FORMAT_INT4 = 3,
    QK_FORMAT_UINT4 = 4,
    QK_FORMAT_INT3 = 5,
    QK_FORMAT_UINT3 = 6,
    QK_FORMAT_INT2 = 7,
    QK_FORMAT_UINT2 = 8,
    QK_FORMAT_NF4 = 9,         /* 16 normal-quantile levels of QLoRA/bitsandbytes, scaled by absmax */
    QK_FORMAT_FP4_E2M1 = 10,   /* OCP MX FP4 (ONNX FLOAT4E2M1): +-{0,0.5,1,1.5,2,3,4,6} */
    QK_FORMAT_FP8_E4M3FN = 11, /* max 448, no infinities */
    QK_FORMAT_FP8_E5M2 = 12,   /* max 57344 */
    QK_FORMAT_FP16 = 13,       /* plain conversion; no scale */
    QK_FORMAT_BF16 = 14,       /* plain conversion; no scale */
    QK_FORMAT_LOG4 = 15,       /* sign + power of two: +-{0, 2^-6 .. 2^0}, scaled by absmax */
    QK_FORMAT_FP4_BNB = 16     /* bitsandbytes' FP4 levels (MatMulBnb4 quant_type 0) */
};

enum {
    QK_FORMAT_FLAG_SIGNED = 1,     /* codes represent negative values without a zero point */
    QK_FORMAT_FLAG_FLOAT = 2,      /* levels of a floating-point type (FP4 E2M1, FP4 bnb, FP8, FP16, BF16) */
    QK_FORMAT_FLAG_CODEBOOK = 4,   /* non-uniform levels from a table (NF4, FP4, LOG4) */
    QK_FORMAT_FLAG_SCALED = 8,     /* needs scales (all but FP16/BF16) */
    QK_FORMAT_FLAG_ZERO_POINT = 16 /* can take an asymmetric zero point (integer formats) */
};

typedef struct qk_format_info {
    uint32_t struct_size; /* set by the caller to sizeof(qk_format_info) */
    int32_t format;       /* QK_FORMAT_* */
    const char *name;     /* static, e.g. "int4"; the name qk_format_from_name accepts */
    const char *description;
    int32_t bits;         /* bits per stored element */
    int32_t flags;        /* QK_FORMAT_FLAG_* */
    int32_t code_min;     /* smallest integer code (integer formats), else 0 */
    int32_t code_max;     /* largest integer code, or the number of codes - 1 */
    float level_max;      /* largest positive level before scaling, above the zero point for unsigned
                             formats (int4 and uint4: 7): symmetric min-max maps max|x| onto it */
    uint32_t reserved;    /* 0 */
} qk_format_info;

/* Number of formats; valid indices for qk_format_info_at are 0 ..< count. */
int32_t qk_format_count(void);
qk_status qk_format_info_at(int32_t index, qk_format_info *info);
qk_status qk_format_info_get(int32_t format, qk_format_info *info);
/* Case-insensitive; also accepts aliases such as "fp8" (E4M3FN) and "fp4" (E2M1). */
qk_status qk_format_from_name(const char *name, int32_t *format);

/* ---- Quantization parameters ------------------------------------------------------------------ */

enum {
    QK_SCHEME_SYMMETRIC = 0,  /* zero point fixed: 0 for signed codes, 2^(bits-1) for unsigned */
    QK_SCHEME_ASYMMETRIC = 1  /* a zero point per scale, chosen from the data */
};

enum {
    QK_GRANULARITY_PER_TENSOR = 0,
    QK_GRANULARITY_PER_AXIS = 1, /* one scale per index along `axis` (per-channel) */
    QK_GRANULARITY_BLOCKED = 2   /* blocks of `block_size` consecutive elements along `axis` */
};

enum {
    QK_METHOD_MINMAX = 0,     /* scale from the range of the values */
    QK_METHOD_MSE = 1,        /* search a clipping ratio per scale group minimising squared error */
    QK_METHOD_PERCENTILE = 2  /* clip the range at `percentile` of |x| (for activations) */
};

/* The two rounding rules differ in formula too, each matching its reference bit for bit. */
enum {
    QK_ROUND_HALF_EVEN = 0, /* ONNX QuantizeLinear: saturate(round(x / scale) + zero_point), ties to even */
    QK_ROUND_HALF_AWAY = 1  /* ONNX Runtime (MLAS): saturate(round(x * (1 / scale) + zero_point)),
                               ties away from zero */
};

/* Byte layout of the quantized buffers.
 * QK_LAYOUT_ONNX: codes in row-major element order; sub-byte codes packed LSB first (first element
 *   in the low bits), the last byte zero-padded, exactly as ONNX int4/uint4/int2/uint2/float4 tensors.
 *   Scales have the shape ONNX DequantizeLinear expects: scalar, [dim(axis)], or the input shape with
 *   dim(axis) replaced by ceil(dim(axis)/block_size). Zero points are stored for asymmetric schemes
 *   and for symmetric unsigned formats (2^(bits-1), since ONNX's default zero point is 0); they
 *   have the scales' shape and the data's element type, packed the same way. FP16/BF16 store no
 *   scales (scales_count 0). Float formats are encoded as ONNX's saturating cast; FP4 writes +0
 *   for -0 (ONNX adds its zero point), FP8 keeps -0.
 * QK_LAYOUT_MATMULNBITS: com.microsoft::MatMulNBits for a weight given as [N, K] (blocked, axis 1;
 *   bits 2, 4 or 8): data [N, ceil(K/block), block*bits/8] with each block padded by code 0; scales
 *   [N, ceil(K/block)]; zero points only when asymmetric, [N, ceil(ceil(K/block)*bits/8)], padded
 *   with 2^(bits-1). Unsigned codes: INT and UINT formats of the same width give the same bytes. With METHOD_MINMAX the scales follow ONNX Runtime's quantizer
 *   (symmetric: the extreme of larger magnitude / -2^(bits-1)); with QK_ROUND_HALF_AWAY scales, zero
 *   points and every real code equal those of ONNX Runtime's MatMulNBits quantizer (its padding
 *   bits past K are not reproducible; ours are 0).
 * QK_LAYOUT_BNB4: com.microsoft::MatMulBnb4 / bitsandbytes: blocks over the flattened row-major
 *   tensor, first element in the HIGH nibble, one absmax (the scale) per block; NF4 or FP4_BNB. An odd
 *   element count pads the last low nibble with the code of 0.0, as ONNX Runtime's quantizer does.
 */
enum {
    QK_LAYOUT_ONNX = 0,
    QK_LAYOUT_MATMULNBITS = 1,
    QK_LAYOUT_BNB4 = 2
};

typedef struct qk_quant_params {
    uint32_t struct_size;  /* sizeof(qk_quant_params), set by the caller before qk_quant_params_init */
    int32_t format;        /* QK_FORMAT_* */
    int32_t scheme;        /* QK_SCHEME_* */
    int32_t granularity;   /* QK_GRANULARITY_* */
    int32_t axis;          /* for PER_AXIS and BLOCKED; negative counts from the last axis */
    int32_t block_size;    /* for BLOCKED: >= 1 (MATMULNBITS: a power of two >= 16) */
    int32_t method;        /* QK_METHOD_* */
    int32_t rounding;      /* QK_ROUND_* */
    int32_t layout;        /* QK_LAYOUT_* */
    int32_t scale_dtype;   /* QK_DTYPE_F32, QK_DTYPE_F16 or QK_DTYPE_BF16 */
    int32_t num_threads;   /* 0 = qk_get_num_threads() */
    float percentile;      /* METHOD_PERCENTILE: in (0, 100], e.g. 99.99 */
    int32_t search_steps;  /* METHOD_MSE: candidate clipping ratios per group, >= 1 */
    float min_clip_ratio;  /* METHOD_MSE: smallest ratio tried, in (0, 1] */
} qk_quant_params;

/* Scales of the ONNX layout with METHOD_MINMAX: symmetric integers = max|x| / (2^(bits-1) - 1)
 * (positive; e.g. /127 for int8 and for uint8 with its zero point 128);
 * asymmetric = (max(x,0) - min(x,0)) / (code_max - code_min), zero point = code_min - min(x,0)/scale
 * rounded and saturated; codebook and float formats: max|x| / level_max. An all-zero group gets
 * scale 0 (it dequantizes to exact zeros).
 *
 * qk_quant_params_init: params->struct_size must be set first (the library writes only the fields
 * the caller's version knows). Fills every field with the defaults for `format`: symmetric, blocked along the last axis with
 * block 32 (per-tensor for FP8 and for FP16/BF16, which ignore it), min-max, round half to even, ONNX layout,
 * f32 scales, percentile 99.99, 20 search steps down to ratio 0.5. */
qk_status qk_quant_params_init(qk_quant_params *params, int32_t format);

/* Sizes of the buffers a quantized tensor of this shape needs. */
typedef struct qk_quantized_layout {
    uint32_t struct_size;      /* set by the caller */
    int32_t scales_ndim;
    size_t data_bytes;
    size_t scales_bytes;
    size_t zero_points_bytes;  /* 0 when the layout stores no zero points */
    int64_t scales_count;      /* number of scales (and of zero points, when stored) */
    int64_t scales_shape[QK_MAX_DIMS];
} qk_quantized_layout;

qk_status qk_quantized_layout_get(const qk_quant_params *params, int32_t ndim, const int64_t *shape,
                                  qk_quantized_layout *layout);

/* Caller-owned buffers of one quantized tensor. Sizes come from qk_quantized_layout_get; a buffer
 * larger than needed is fine. The library reads and writes only inside the given sizes. */
typedef struct qk_quantized {
    uint32_t struct_size;
    uint32_t reserved;        /* 0 */
    void *data;
    size_t data_bytes;
    void *scales;             /* params.scale_dtype elements */
    size_t scales_bytes;
    void *zero_points;        /* may be NULL when the layout stores none */
    size_t zero_points_bytes;
} qk_quantized;

/* Chooses scales (and zero points) with params.method and writes codes, scales and zero points.
 * input: F32, F16 or BF16, any strides. NaN or Inf in the input -> QK_ERROR_NON_FINITE; a scale
 * that overflows params.scale_dtype (a group's values spanning more than FLT_MAX, or a scale past
 * the F16 or BF16 maximum) -> QK_ERROR_OVERFLOW. These two are the one exception to "outputs
 * untouched on failure": output->data may then be partly written, because checking the whole input
 * before writing would cost a second pass over it (~40% of the time on tensors larger than the
 * caches). Scales and zero points are still untouched. */
qk_status qk_quantize(const qk_quant_params *params, const qk_tensor *input, qk_quantized *output);

/* ONNX QuantizeLinear: reads the given output->scales (and output->zero_points when stored) and
 * writes only output->data, saturating to the format's range. Scales may be negative; a zero scale
 * gives the zero point's code; NaN/Inf scales or inputs -> QK_ERROR_NON_FINITE (nothing written). */
qk_status qk_quantize_with_scales(const qk_quant_params *params, const qk_tensor *input,
                                  qk_quantized *output);

/* ONNX DequantizeLinear: writes output (F32, F16 or BF16, row-major or strided; an F16 output turns
 * values past 65504 into +-Inf, as an IEEE conversion). output's shape is
 * the logical shape of the quantized tensor: the buffers carry no shape, so only their sizes are
 * checked against it. Scales are used as given (a NaN scale yields NaN, as in ONNX). */
qk_status qk_dequantize(const qk_quant_params *params, const qk_quantized *input, qk_tensor *output);

/* How far a quantized tensor is from the original. */
typedef struct qk_error_stats {
    uint32_t struct_size;  /* set by the caller */
    uint32_t reserved;     /* 0 */
    int64_t count;         /* elements compared */
    double max_abs_error;
    double mean_abs_error;
    double rmse;
    double sqnr_db;        /* 10*log10(sum x^2 / sum err^2); +inf when err is 0 */
    double signal_rms;
} qk_error_stats;

qk_status qk_quantization_error(const qk_quant_params *params, const qk_tensor *original,
                                const qk_quantized *quantized, qk_error_stats *stats);
/* The same statistics between two float tensors of equal shape (reference first). A NaN in either
 * makes max_abs_error, mean_abs_error and rmse NaN. Quantized buffers smaller than the layout
 * needs -> QK_ERROR_BUFFER_TOO_SMALL (in every function taking a qk_quantized). */
qk_status qk_compare(const qk_tensor *reference, const qk_tensor *actual, qk_error_stats *stats);

/* ---- Runtime --------------------------------------------------------------------------------- */

/* Static name of the kernel variant in use: "avx512", "avx2" or "scalar". It is chosen once, at
 * first use, from the CPU; the environment variable QUANTKIT_KERNELS=scalar|avx2|avx512 asks for a
 * lower one (a variant the CPU lacks is never used; an unknown value is ignored). */
const char *qk_kernel_variant(void);
/* Default thread count for calls whose num_threads is 0; 0 here means all cores. More threads than
 * cores is allowed. */
qk_status qk_set_num_threads(int32_t num_threads);
/* The thread count a call with num_threads 0 uses now (resolved: always >= 1). */
int32_t qk_get_num_threads(void);

/* ---- Fused low-bit matrix multiplication (since ABI 2) ---------------------------------------- */
/* Y[M,N] = X[M,K] . dequant(W)^T + bias, with W[N,K] kept packed: the dequantized matrix is never
 * materialised. Weights are packed once (qk_pack_weights) into an opaque, immutable handle; any
 * number of threads may multiply with one handle at the same time.
 *
 * Formats served: INT8/UINT8, INT4/UINT4, INT3/UINT3, INT2/UINT2 (symmetric or asymmetric),
 * NF4, FP4_E2M1, FP4_BNB, LOG4, FP8_E4M3FN, FP8_E5M2. 2- and 3-bit codes are held in 4 bits
 * inside the handle (the same speed as INT4, not less memory traffic). FP16/BF16 weights are not
 * served (multiply them as float). Scales may be F32, F16 or BF16; they are held as F16 when every
 * one of them is exactly an F16 value and the zero point is the same for every block (weights from
 * BF16/F16 checkpoints with MatMulNBits' absmax / -2^(bits-1) scales, F16 scales), else as F32.
 * Either way the results are the same bits; F16 scales only mean fewer bytes to hold and read. */

/* A packed weight matrix. Opaque; created by qk_pack_weights, freed by qk_packed_matrix_release. */
typedef struct qk_packed_matrix qk_packed_matrix;

/* How activations meet the weights. */
enum {
    /* Activations stay float; each output is computed in float (fused multiply-add), so the result
     * equals X . dequant(W)^T up to float rounding. */
    QK_COMPUTE_FLOAT = 0,
    /* Activations are quantized to int8 on the fly, per row and per block of the handle's
     * block_size along K (symmetric: scale = max|x| / 127, round half to even), and multiplied with
     * integer dot products, as ONNX Runtime's MatMulNBits accuracy_level 4. For each output the
     * difference from QK_COMPUTE_FLOAT is at most sum over blocks of (scale_x / 2) * sum |w| (plus
     * float rounding; a block whose max|x| is below 127 / FLT_MAX, about 3.7e-37, counts as zero).
     * Served for the integer formats; the other formats compute as FLOAT. NaN or Inf in X ->
     * QK_ERROR_NON_FINITE. */
    QK_COMPUTE_INT8 = 1
};

/* Which way round the weight tensor given to qk_pack_weights is stored. */
enum {
    QK_WEIGHT_NK = 0, /* [N, K], one row per output: MatMulNBits' B, Gemm with transB = 1,
                         a PyTorch Linear weight. Blocks run along axis 1, per-axis is axis 0. */
    QK_WEIGHT_KN = 1  /* [K, N]: ONNX MatMul's B (QDQ weights). Blocks run along axis 0,
                         per-axis is axis 1. */
};

typedef struct qk_pack_options {
    uint32_t struct_size; /* set by the caller to sizeof(qk_pack_options) */
    int32_t orientation;  /* QK_WEIGHT_*; default (NULL options) QK_WEIGHT_NK */
    int32_t num_threads;  /* threads used while packing; 0 = qk_get_num_threads() */
    int32_t reserved;     /* 0 */
} qk_pack_options;

/* Packs a quantized weight of logical shape [n, k] (seen through options->orientation) whose
 * buffers follow `params` exactly as qk_quantize writes them, in any layout: QK_LAYOUT_MATMULNBITS
 * (ONNX Runtime's blob, scales and zero points), QK_LAYOUT_ONNX (blocked along K, per output channel,
 * or per tensor), QK_LAYOUT_BNB4 (NF4/FP4_BNB; k must be a multiple of block_size). Blocked weights
 * need a block size with a power-of-two factor of at least 8 (16..256 powers of two are the usual).
 * The weights are copied: the caller's buffers may be freed after the call. options may be NULL.
 * Errors: a scale that is NaN or Inf, or an FP8 code that is NaN -> QK_ERROR_NON_FINITE; a layout,
 * granularity or axis the kernels do not serve -> QK_ERROR_UNSUPPORTED.
 * On success *out receives a new handle, owned by the caller. */
qk_status qk_pack_weights(const qk_quant_params *params, int64_t n, int64_t k,
                          const qk_quantized *weights, const qk_pack_options *options,
                          qk_packed_matrix **out);

/* Frees a handle. NULL is ignored. The handle must not be in use by another call. */
void qk_packed_matrix_release(qk_packed_matrix *matrix);

typedef struct qk_packed_matrix_info {
    uint32_t struct_size;   /* set by the caller */
    int32_t format;         /* QK_FORMAT_* of the weights */
    int64_t n;              /* outputs (rows of W) */
    int64_t k;              /* inputs (columns of W) */
    int32_t block_size;     /* block along K in the handle: scales change at most once per block, and
                               QK_COMPUTE_INT8 quantizes activations per block of this size */
    int32_t int8_compute;   /* 1 when QK_COMPUTE_INT8 uses integer dot products for this handle */
    size_t packed_bytes;    /* memory the handle holds */
} qk_packed_matrix_info;

qk_status qk_packed_matrix_get_info(const qk_packed_matrix *matrix, qk_packed_matrix_info *info);

typedef struct qk_matmul_options {
    uint32_t struct_size; /* set by the caller to sizeof(qk_matmul_options) */
    int32_t compute;      /* QK_COMPUTE_*; default (NULL options) QK_COMPUTE_FLOAT */
    int32_t num_threads;  /* 0 = qk_get_num_threads(); results do not depend on it */
} qk_matmul_options;

/* y = x . dequant(W)^T + bias.
 * x: F32, F16 or BF16, shape [..., K] (rank 1..QK_MAX_DIMS; leading dimensions are rows), any
 *    strides. y: F32, F16 or BF16, shape [..., N] with the same leading dimensions, any strides; it
 *    must not overlap x. bias: NULL or F32 [N], dense and 4-byte aligned (else QK_ERROR_UNSUPPORTED). options may be NULL.
 * Every output element is written exactly once, from the same arithmetic whatever the thread count
 * and the kernel variant: results are bit-identical across them. */
qk_status qk_matmul(const qk_packed_matrix *w, const qk_tensor *x, const qk_tensor *bias,
                    qk_tensor *y, const qk_matmul_options *options);

/* ONNX MatMulInteger, optionally rescaled to float (W8A8):
 *   acc[m,n] = sum_k (a[m,k] - a_zero_point[m]) * (b[k,n] - b_zero_point[n])   (int32, exact)
 * a: U8 or I8 [M, K]; b: U8 or I8 [K, N]; a_zero_point: NULL (0), a scalar or [M] of a's dtype;
 * b_zero_point: NULL (0), a scalar or [N] of b's dtype. Without scales, y is I32 [M, N] = acc.
 * With a_scale (F32 scalar or [M]) and b_scale (F32 scalar or [N]), both given, y is F32 [M, N]
 * = acc * a_scale[m] * b_scale[n] + bias[n] (bias: NULL or F32 [N]; only with scales).
 * Any strides. num_threads: 0 = qk_get_num_threads(). */
qk_status qk_matmul_integer(const qk_tensor *a, const qk_tensor *a_zero_point, const qk_tensor *b,
                            const qk_tensor *b_zero_point, const qk_tensor *a_scale,
                            const qk_tensor *b_scale, const qk_tensor *bias, qk_tensor *y,
                            int32_t num_threads);

/* Static name of the matmul kernels in use: "avx512-vnni", "avx2-vnni", "avx2" or "scalar", chosen
 * once from the CPU. QUANTKIT_KERNELS (see qk_kernel_variant) lowers it: "avx512" allows
 * avx512-vnni, "avx2-vnni" and "avx2" their own level, "scalar" the reference. */
const char *qk_matmul_kernel_variant(void);

/* ---- Plugin entry ------------------------------------------------------------------------------- */

/* Append-only table: the functions of ABI 1 in header order, then each later version's functions as
 * marked. Slots are never moved or removed. */
typedef struct qk_api {
    uint32_t struct_size; /* sizeof(qk_api) of the library: slots beyond it are absent */
    uint32_t abi_version;
    uint32_t (*version_number)(void);
    const char *(*version_string)(void);
    const char *(*last_error)(void);
    const char *(*status_string)(int32_t status);
    int32_t (*format_count)(void);
    qk_status (*format_info_at)(int32_t index, qk_format_info *info);
    qk_status (*format_info_get)(int32_t format, qk_format_info *info);
    qk_status (*format_from_name)(const char *name, int32_t *format);
    qk_status (*quant_params_init)(qk_quant_params *params, int32_t format);
    qk_status (*quantized_layout_get)(const qk_quant_params *params, int32_t ndim,
                                      const int64_t *shape, qk_quantized_layout *layout);
    qk_status (*quantize)(const qk_quant_params *params, const qk_tensor *input,
                          qk_quantized *output);
    qk_status (*quantize_with_scales)(const qk_quant_params *params, const qk_tensor *input,
                                      qk_quantized *output);
    qk_status (*dequantize)(const qk_quant_params *params, const qk_quantized *input,
                            qk_tensor *output);
    qk_status (*quantization_error)(const qk_quant_params *params, const qk_tensor *original,
                                    const qk_quantized *quantized, qk_error_stats *stats);
    qk_status (*compare)(const qk_tensor *reference, const qk_tensor *actual,
                         qk_error_stats *stats);
    const char *(*kernel_variant)(void);
    qk_status (*set_num_threads)(int32_t num_threads);
    int32_t (*get_num_threads)(void);
    const void *(*get_extension)(const char *id);
    /* since ABI 2 */
    qk_status (*pack_weights)(const qk_quant_params *params, int64_t n, int64_t k,
                              const qk_quantized *weights, const qk_pack_options *options,
                              qk_packed_matrix **out);
    void (*packed_matrix_release)(qk_packed_matrix *matrix);
    qk_status (*packed_matrix_get_info)(const qk_packed_matrix *matrix, qk_packed_matrix_info *info);
    qk_status (*matmul)(const qk_packed_matrix *w, const qk_tensor *x, const qk_tensor *bias,
                        qk_tensor *y, const qk_matmul_options *options);
    qk_status (*matmul_integer)(const qk_tensor *a, const qk_tensor *a_zero_point, const qk_tensor *b,
                                const qk_tensor *b_zero_point, const qk_tensor *a_scale,
                                const qk_tensor *b_scale, const qk_tensor *bias, qk_tensor *y,
                                int32_t num_threads);
    const char *(*matmul_kernel_variant)(void);
} qk_api;

/* The table for `abi_version` (1 ..= QK_ABI_VERSION of the library), or NULL for a version this
 * library does not serve. The table is static: never freed. */
const qk_api *qk_get_api(uint32_t abi_version);

/* Optional capabilities by versioned string id, e.g. "org.quantkit.onnxruntime-ops.v1";
 * NULL when this build does not provide it (none does yet). The pointer is always a data pointer:
 * to a const struct (typically a table of function pointers starting with struct_size) that the id
 * defines and that lives as long as the library. */
const void *qk_get_extension(const char *id);

#ifdef __cplusplus
}
#endif

#endif /* QUANTKIT_H */
