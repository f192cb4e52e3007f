"""Buffer sizes and scale shapes of a quantized tensor (qk_quantized_layout_get)."""

import ctypes
from dataclasses import dataclass

from . import _ffi
from ._constants import MAX_DIMS
from ._tensor import shape_array
from .errors import check


@dataclass(frozen=True)
class QuantizedLayout:
    data_bytes: int
    scales_bytes: int
    zero_points_bytes: int   # 0 when the layout stores no zero points
    scales_count: int
    scales_shape: tuple

    @property
    def scales_array_shape(self):
        """Shape for a numpy scales array: scales_shape, or (0,) when the format has no scales
        (FP16/BF16 report ndim 0 and count 0; a 0-d numpy array would hold one value)."""
        return self.scales_shape if self.scales_count else (0,)


def check_shape(shape, what="shape"):
    shape = tuple(int(d) for d in shape)
    if len(shape) > MAX_DIMS:
        raise ValueError(f"{what} has {len(shape)} dimensions; QuantKit accepts at most {MAX_DIMS}")
    if any(d < 0 for d in shape):
        raise ValueError(f"{what} {shape} has a negative dimension")
    return shape


def layout_for(params, shape):
    """The layout of `shape` quantized with `params` (a QuantParams)."""
    shape = check_shape(shape)
    c_params = params.to_c()
    out = _ffi.new_struct(_ffi.qk_quantized_layout)
    dims = shape_array(shape)
    check(_ffi.lib().qk_quantized_layout_get(ctypes.byref(c_params), len(shape), dims, ctypes.byref(out)),
          "qk_quantized_layout_get")
    if not 0 <= out.scales_ndim <= MAX_DIMS:
        raise RuntimeError(f"library returned scales_ndim={out.scales_ndim}")
    return QuantizedLayout(
        data_bytes=int(out.data_bytes),
        scales_bytes=int(out.scales_bytes),
        zero_points_bytes=int(out.zero_points_bytes),
        scales_count=int(out.scales_count),
        scales_shape=tuple(int(out.scales_shape[i]) for i in range(out.scales_ndim)),
    )
