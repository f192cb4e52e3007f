"""numpy dtypes <-> QK_DTYPE_* for float tensors and scales. bfloat16 needs ml_dtypes."""

import numpy as np

from ._constants import DType

try:
    import ml_dtypes
except ImportError:  # optional: only bfloat16 (and codes() of FP8/FP4/int4) need it
    ml_dtypes = None


def bfloat16():
    if ml_dtypes is None:
        raise TypeError("bfloat16 needs the ml_dtypes package (pip install ml_dtypes)")
    return np.dtype(ml_dtypes.bfloat16)


def _is_bfloat16(dtype):
    return dtype.name == "bfloat16" and dtype.itemsize == 2


# Float element types the library reads and writes (qk_quantize input, qk_dequantize output, scales).
_NAMES = {"float32": DType.F32, "f32": DType.F32, "float16": DType.F16, "f16": DType.F16,
          "half": DType.F16, "bfloat16": DType.BF16, "bf16": DType.BF16}


def float_dtype_code(dtype, what):
    """QK_DTYPE of a numpy dtype (or name) among float32/float16/bfloat16; TypeError otherwise."""
    if isinstance(dtype, str) and dtype.lower() in _NAMES:
        return _NAMES[dtype.lower()]
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{what}: unknown dtype {dtype!r}") from None
    if dt == np.float32:
        return DType.F32
    if dt == np.float16:
        return DType.F16
    if _is_bfloat16(dt):
        return DType.BF16
    hint = " (convert with .astype(np.float32))" if dt.kind in "fiub" else ""
    raise TypeError(f"{what} must be float32, float16 or bfloat16, not {dt}{hint}")


def numpy_dtype(code):
    """numpy dtype for a QK_DTYPE float code."""
    if code == DType.F32:
        return np.dtype(np.float32)
    if code == DType.F16:
        return np.dtype(np.float16)
    if code == DType.BF16:
        return bfloat16()
    raise ValueError(f"no numpy dtype for QK_DTYPE {code}")


def dtype_name(code):
    return {DType.F32: "float32", DType.F16: "float16", DType.BF16: "bfloat16"}[DType(code)]
