"""QuantParams: the Python form of qk_quant_params, and the rule that fills it from keywords.

Granularity rule (make_params):
  * granularity given ("tensor", "axis" or "block"; also "per_tensor", "per_axis", "channel",
    "blocked")                                  -> used as given;
  * else block_size given                       -> "block";
  * else axis given                             -> "axis" (one scale per index along `axis`);
  * else layout "matmulnbits" or "bnb4"          -> "block" (those layouts are blocked);
  * else                                        -> the library's default for the format
    (qk_quant_params_init: blocked along the last axis with block 32; per-tensor for FP8).
  Unset block_size / axis take the library defaults (32 / -1).

So: quantize(x, "int4") is block 32 on the last axis, quantize(x, "int8", axis=0) is per-channel
over axis 0, quantize(x, "int8", granularity="tensor") is one scale.
"""

import ctypes
import operator
from dataclasses import dataclass, replace

from . import _ffi
from ._constants import (GRANULARITY_NAMES, LAYOUT_NAMES, METHOD_NAMES, ROUNDING_NAMES,
                         Granularity, Layout, Scheme, canonical_name)
from ._dtypes import dtype_name, float_dtype_code
from .errors import check
from .formats import format_info

_INT32_MIN, _INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def _int32(name, value):
    """An int that fits int32_t (ctypes would silently wrap a larger one)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}") from None
    if not _INT32_MIN <= value <= _INT32_MAX:
        raise ValueError(f"{name}={value} does not fit in a 32-bit int")
    return value


def _choice(name, table, value):
    if isinstance(value, int) and not isinstance(value, bool):
        if value in table.values():
            return value
    elif isinstance(value, str) and value.lower() in table:
        return table[value.lower()]
    names = ", ".join(repr(k) for k in dict.fromkeys(canonical_name(table, v) for v in table.values()))
    raise ValueError(f"{name} must be one of {names}; got {value!r}")


@dataclass(frozen=True)
class QuantParams:
    """Everything qk_quant_params holds, with Python names. Build with make_params()."""
    format: str
    symmetric: bool = True
    granularity: str = "block"
    axis: int = -1
    block_size: int = 32
    method: str = "minmax"
    rounding: str = "half_even"
    layout: str = "onnx"
    scale_dtype: str = "float32"
    num_threads: int = 0
    percentile: float = 99.99
    search_steps: int = 20
    min_clip_ratio: float = 0.5

    @property
    def info(self):
        return format_info(self.format)

    def replace(self, **changes):
        return replace(self, **changes)

    def to_c(self):
        """A filled qk_quant_params (values range-checked for int32 here; meaning checked by the library)."""
        c = _ffi.new_struct(_ffi.qk_quant_params)
        c.format = self.info.id
        c.scheme = Scheme.SYMMETRIC if self.symmetric else Scheme.ASYMMETRIC
        c.granularity = _choice("granularity", GRANULARITY_NAMES, self.granularity)
        c.axis = _int32("axis", self.axis)
        c.block_size = _int32("block_size", self.block_size)
        c.method = _choice("method", METHOD_NAMES, self.method)
        c.rounding = _choice("rounding", ROUNDING_NAMES, self.rounding)
        c.layout = _choice("layout", LAYOUT_NAMES, self.layout)
        c.scale_dtype = float_dtype_code(self.scale_dtype, "scale_dtype")
        c.num_threads = _int32("num_threads", self.num_threads)
        c.percentile = float(self.percentile)
        c.search_steps = _int32("search_steps", self.search_steps)
        c.min_clip_ratio = float(self.min_clip_ratio)
        return c


def _library_defaults(format_id):
    c = _ffi.new_struct(_ffi.qk_quant_params)
    check(_ffi.lib().qk_quant_params_init(ctypes.byref(c), format_id), "qk_quant_params_init")
    return c


def make_params(format="int4", *, granularity=None, block_size=None, axis=None, symmetric=True,
                method="minmax", layout="onnx", rounding="half_even", scale_dtype="float32",
                num_threads=0, percentile=None, search_steps=None, min_clip_ratio=None):
    """QuantParams from keywords, following the granularity rule in this module's docstring."""
    info = format_info(format)
    defaults = _library_defaults(info.id)
    layout_id = _choice("layout", LAYOUT_NAMES, layout)
    if granularity is not None:
        gran = _choice("granularity", GRANULARITY_NAMES, granularity)
    elif block_size is not None:
        gran = Granularity.BLOCKED
    elif axis is not None:
        gran = Granularity.PER_AXIS
    elif layout_id != Layout.ONNX:
        gran = Granularity.BLOCKED
    else:
        gran = Granularity(defaults.granularity)
    return QuantParams(
        format=info.name,
        symmetric=bool(symmetric),
        granularity=canonical_name(GRANULARITY_NAMES, gran),
        axis=_int32("axis", defaults.axis if axis is None else axis),
        block_size=_int32("block_size", (defaults.block_size or 32) if block_size is None else block_size),
        method=canonical_name(METHOD_NAMES, _choice("method", METHOD_NAMES, method)),
        rounding=canonical_name(ROUNDING_NAMES, _choice("rounding", ROUNDING_NAMES, rounding)),
        layout=canonical_name(LAYOUT_NAMES, layout_id),
        scale_dtype=dtype_name(float_dtype_code(scale_dtype, "scale_dtype")),
        num_threads=_int32("num_threads", num_threads),
        percentile=float(defaults.percentile if percentile is None else percentile),
        search_steps=_int32("search_steps", defaults.search_steps if search_steps is None else search_steps),
        min_clip_ratio=float(defaults.min_clip_ratio if min_clip_ratio is None else min_clip_ratio),
    )

