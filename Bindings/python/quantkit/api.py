"""The public functions: numpy in, numpy out, QuantKitError from any non-zero qk_status.

Every C call runs without the GIL (ctypes releases it), so Python threads quantize in parallel.
The arrays handed to C are held by local variables until the call returns.
"""

import ctypes

import numpy as np

from . import _ffi
from ._codes import encode
from ._dtypes import numpy_dtype, float_dtype_code
from ._onnx_semantics import format_of_dtype, onnx_params
from ._packing import pack_lsb
from ._tensor import TensorView
from .errors import check
from .layout import layout_for
from .params import QuantParams, _int32, make_params
from .quantized import QuantizedTensor
from .stats import ErrorStats


# ---- library ----

def version():
    """Version string of the loaded library, e.g. "0.1.0"."""
    return _ffi.lib().qk_version_string().decode()


def version_number():
    """MAJOR * 10000 + MINOR * 100 + PATCH of the loaded library."""
    return int(_ffi.lib().qk_version_number())


def kernel_variant():
    """"avx512", "avx2" or "scalar" (QUANTKIT_KERNELS=... in the environment asks for a lower one)."""
    return _ffi.lib().qk_kernel_variant().decode()


def set_num_threads(n):
    """Default thread count for calls with num_threads=0; 0 means all cores."""
    check(_ffi.lib().qk_set_num_threads(_int32("num_threads", n)), "qk_set_num_threads")


def get_num_threads():
    return int(_ffi.lib().qk_get_num_threads())


def library_path():
    return _ffi.library_path()


# ---- quantization ----

def _as_input(array, what="array"):
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    return TensorView(array, what)


def quantize(array, format="int4", *, granularity=None, block_size=None, axis=None, symmetric=True,
             method="minmax", layout="onnx", rounding="half_even", scale_dtype="float32",
             percentile=None, search_steps=None, min_clip_ratio=None, num_threads=0, params=None):
    """Quantizes a float32/float16/bfloat16 array; scales (and zero points) are chosen by `method`.

    Granularity follows quantkit.params.make_params: block when block_size is given, per-axis when
    only axis is given, else the format's default (block 32 on the last axis; per-tensor for FP8).
    Pass params=QuantParams(...) to give every setting at once (the keywords are then ignored).
    """
    view = _as_input(array)
    if params is None:
        params = make_params(format, granularity=granularity, block_size=block_size, axis=axis,
                             symmetric=symmetric, method=method, layout=layout, rounding=rounding,
                             scale_dtype=scale_dtype, num_threads=num_threads, percentile=percentile,
                             search_steps=search_steps, min_clip_ratio=min_clip_ratio)
    elif not isinstance(params, QuantParams):
        raise TypeError("params must be a QuantParams (see quantkit.make_params)")
    lay = layout_for(params, view.array.shape)
    data = np.zeros(lay.data_bytes, np.uint8)
    scales = np.zeros(lay.scales_array_shape, numpy_dtype(float_dtype_code(params.scale_dtype, "scale_dtype")))
    zero_points = np.zeros(lay.zero_points_bytes, np.uint8) if lay.zero_points_bytes else None
    qt = QuantizedTensor._trusted(data, scales, zero_points, view.array.shape, params, lay)
    c_params, c_out = params.to_c(), qt._c_struct()
    check(_ffi.lib().qk_quantize(ctypes.byref(c_params), view.ref(), ctypes.byref(c_out)), "qk_quantize")
    return qt


def quantize_with_scales(array, scales, zero_points=None, *, format=None, axis=None, block_size=None,
                         granularity=None, rounding="half_even", num_threads=0):
    """ONNX QuantizeLinear: codes = saturate(round(x / scale) + zero_point) with the given scales.

    Conventions follow ONNX (see quantkit._onnx_semantics): the output type comes from `format`,
    else from zero_points' dtype (numpy int8/uint8 or ml_dtypes int4/uint4/int2/uint2/float8/float4),
    else uint8; axis defaults to 1; a missing zero point is 0. Layout "onnx".
    """
    view = _as_input(array)
    params, scales, zp_bytes = onnx_params(
        view.array.shape, scales, zero_points, format, axis=axis, block_size=block_size,
        granularity=granularity, rounding=rounding, num_threads=num_threads)
    lay = layout_for(params, view.array.shape)
    data = np.zeros(lay.data_bytes, np.uint8)
    qt = QuantizedTensor._trusted(data, scales, zp_bytes, view.array.shape, params, lay)
    c_params, c_out = params.to_c(), qt._c_struct()
    check(_ffi.lib().qk_quantize_with_scales(ctypes.byref(c_params), view.ref(), ctypes.byref(c_out)),
          "qk_quantize_with_scales")
    return qt


def from_codes(codes, scales, zero_points=None, *, format=None, axis=None, block_size=None,
               granularity=None):
    """A QuantizedTensor from unpacked codes (ONNX DequantizeLinear inputs), same conventions as
    quantize_with_scales; the format defaults to the codes' dtype."""
    codes = np.asarray(codes)
    if format is None:
        format = format_of_dtype(codes.dtype).id  # ONNX: x and x_zero_point share one type
    params, scales, zp_bytes = onnx_params(
        codes.shape, scales, zero_points, format, axis=axis, block_size=block_size,
        granularity=granularity, rounding="half_even", num_threads=0)
    data = pack_lsb(encode(codes, params.info, "codes"), params.info.bits)
    return QuantizedTensor(data, scales, zp_bytes, codes.shape, params)


def dequantize(qt, dtype=np.float32, out=None):
    """ONNX DequantizeLinear: (code - zero_point) * scale (levels * scale for codebook formats)."""
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"dequantize expects a QuantizedTensor, not {type(qt).__name__}")
    return qt.dequantize(dtype, out=out)


def error(original, qt):
    """How far `qt` is from `original` (same shape): an ErrorStats."""
    if not isinstance(qt, QuantizedTensor):
        raise TypeError(f"error expects a QuantizedTensor, not {type(qt).__name__}")
    view = _as_input(original, "original")
    if tuple(view.array.shape) != qt.shape:
        raise ValueError(f"original has shape {view.array.shape}, the quantized tensor {qt.shape}")
    stats = _ffi.new_struct(_ffi.qk_error_stats)
    c_params, c_q = qt.params.to_c(), qt._c_struct()
    check(_ffi.lib().qk_quantization_error(ctypes.byref(c_params), view.ref(), ctypes.byref(c_q),
                                           ctypes.byref(stats)), "qk_quantization_error")
    return ErrorStats.from_c(stats)


def compare(reference, actual):
    """Error statistics between two float arrays of equal shape (reference first)."""
    ref, act = _as_input(reference, "reference"), _as_input(actual, "actual")
    if ref.array.shape != act.array.shape:
        raise ValueError(f"shapes differ: {ref.array.shape} vs {act.array.shape}")
    stats = _ffi.new_struct(_ffi.qk_error_stats)
    check(_ffi.lib().qk_compare(ref.ref(), act.ref(), ctypes.byref(stats)), "qk_compare")
    return ErrorStats.from_c(stats)
