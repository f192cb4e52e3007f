"""ONNX QuantizeLinear / DequantizeLinear conventions, mapped onto QuantParams.

  * output type: from `format`, else from the zero point's dtype, else uint8 (ONNX default);
  * granularity: given, else "block" when block_size is given, else "tensor" for a scale with one
    element (shape [] or [1]), else "axis";
  * axis: ONNX's default 1 when not given (per-axis and blocked only);
  * layout "onnx" (the only one whose tensors these operators read);
  * a missing zero point means 0 (also for unsigned types, unlike QuantKit's symmetric scheme,
    whose unsigned zero point is 2**(bits-1)); FP8/FP4 zero points must be 0.
"""

import numpy as np

from ._codes import encode
from ._constants import Format
from ._dtypes import dtype_name, float_dtype_code
from ._packing import pack_lsb
from .formats import format_info
from .layout import layout_for
from .params import make_params

# numpy / ml_dtypes dtype names of ONNX element types -> QuantKit formats.
_FORMAT_OF_DTYPE = {
    "uint8": Format.UINT8, "int8": Format.INT8, "uint4": Format.UINT4, "int4": Format.INT4,
    "uint2": Format.UINT2, "int2": Format.INT2, "float8_e4m3fn": Format.FP8_E4M3FN,
    "float8_e5m2": Format.FP8_E5M2, "float4_e2m1fn": Format.FP4_E2M1,
}


def format_of_dtype(dtype):
    try:
        return format_info(_FORMAT_OF_DTYPE[np.dtype(dtype).name])
    except KeyError:
        raise TypeError(f"no QuantKit format for element type {np.dtype(dtype)}") from None


def resolve_format(fmt, zero_points):
    if fmt is not None:
        return format_info(fmt)
    if isinstance(zero_points, (np.ndarray, np.generic)):  # arrays and numpy scalars carry a type
        return format_of_dtype(zero_points.dtype)
    return format_info(Format.UINT8)


def onnx_params(shape, scales, zero_points, fmt, *, axis, block_size, granularity, rounding, num_threads):
    """(QuantParams, scales reshaped to the layout, packed zero-point bytes or None)."""
    if not isinstance(scales, np.ndarray):
        scales = np.asarray(scales, dtype=np.float32)
    scale_dtype = dtype_name(float_dtype_code(scales.dtype, "scales"))
    info = resolve_format(fmt, zero_points)
    if granularity is None:
        if block_size:
            granularity = "block"
        elif scales.size == 1 and scales.ndim <= 1:
            granularity = "tensor"
        else:
            granularity = "axis"
    if granularity in ("tensor", "per_tensor"):
        axis = None
    elif axis is None:
        axis = 1

    zp_values = None
    if zero_points is not None:
        zp_values = np.asarray(zero_points)
        if zp_values.size != scales.size:
            raise ValueError(f"zero_points have {zp_values.size} values, scales {scales.size}")
        if not info.takes_zero_point:
            if np.any(zp_values.astype(np.float32) != 0):
                raise ValueError(f"{info.name} zero points must be 0 (ONNX)")
            zp_values = None
    elif info.takes_zero_point and not info.signed:
        zp_values = np.zeros(scales.shape, np.int64)  # ONNX: missing zero point = 0

    params = make_params(info.id, granularity=granularity, axis=axis, block_size=block_size,
                         symmetric=zp_values is None, layout="onnx", rounding=rounding,
                         scale_dtype=scale_dtype, num_threads=num_threads)
    lay = layout_for(params, shape)
    if scales.size != lay.scales_count or (scales.size != 1 and scales.shape != lay.scales_shape):
        raise ValueError(f"scales have shape {scales.shape}; {params.granularity} quantization of "
                         f"{tuple(shape)} needs {lay.scales_shape}")
    scales = np.ascontiguousarray(scales).reshape(lay.scales_array_shape)
    zp_bytes = None
    if zp_values is not None:
        zp_bytes = pack_lsb(encode(zp_values, info, "zero_points"), info.bits)
        if zp_bytes.size != lay.zero_points_bytes:
            raise ValueError(f"zero points pack to {zp_bytes.size} bytes; the layout expects "
                             f"{lay.zero_points_bytes}")
    return params, scales, zp_bytes
