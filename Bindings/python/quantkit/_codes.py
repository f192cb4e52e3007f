"""Element values <-> raw codes of one format (the bits stored per element, before packing).

  integer formats:            the integer value; signed ones as two's complement in `bits` bits
  FP8 / FP4 E2M1:             the float's own bit pattern (ml_dtypes float8_* / float4_e2m1fn)
  FP16 / BF16:                the 16-bit pattern
  codebook formats (NF4, LOG4, FP4_BNB): the level index, 0 .. code_max
"""

import numpy as np

from ._constants import Format
from ._dtypes import ml_dtypes

# Formats whose codes are an ml_dtypes float type's bit pattern.
_ML_FLOAT = {
    Format.FP8_E4M3FN: "float8_e4m3fn",
    Format.FP8_E5M2: "float8_e5m2",
    Format.FP4_E2M1: "float4_e2m1fn",
    Format.BF16: "bfloat16",
}


def _ml_dtype(name):
    if ml_dtypes is None:
        raise TypeError(f"{name} values need the ml_dtypes package (pip install ml_dtypes)")
    return np.dtype(getattr(ml_dtypes, name))


def encode(values, info, what):
    """Values (any shape) -> uint32 codes, flattened in row-major order; ValueError when out of range."""
    values = np.asarray(values)
    mask = (1 << info.bits) - 1
    fmt = info.id
    if fmt == Format.FP16:
        return values.astype(np.float16).reshape(-1).view(np.uint16).astype(np.uint32)
    if fmt in _ML_FLOAT:
        dt = _ml_dtype(_ML_FLOAT[fmt])
        if values.dtype != dt:
            if values.dtype.kind not in "fiub" and values.dtype.name != "bfloat16":
                raise TypeError(f"{what}: cannot read {values.dtype} as {info.name}")
            values = values.astype(np.float32).astype(dt)
        raw = values.reshape(-1).view(np.uint16 if dt.itemsize == 2 else np.uint8)
        return raw.astype(np.uint32) & mask
    # Integer and codebook formats: integer values (sub-byte ml_dtypes ints convert exactly).
    if values.dtype.kind == "f":
        if values.size and not np.array_equal(values, np.round(values)):
            raise ValueError(f"{what} must hold whole numbers for {info.name}")
    ints = values.astype(np.int64).reshape(-1)
    if ints.size and (ints.min() < info.code_min or ints.max() > info.code_max):
        raise ValueError(f"{what} must lie in [{info.code_min}, {info.code_max}] for {info.name}; "
                         f"got [{ints.min()}, {ints.max()}]")
    return (ints & mask).astype(np.uint32)


def decode(codes, info):
    """uint32 codes -> values: int8/uint8 (integer formats), uint8 indices (codebooks),
    float16, or the ml_dtypes float type (FP8, FP4 E2M1, BF16)."""
    codes = np.asarray(codes, dtype=np.uint32)
    fmt = info.id
    if fmt == Format.FP16:
        return codes.astype(np.uint16).view(np.float16)
    if fmt in _ML_FLOAT:
        dt = _ml_dtype(_ML_FLOAT[fmt])
        return codes.astype(np.uint16 if dt.itemsize == 2 else np.uint8).view(dt)
    if info.signed and not info.codebook:
        sign = 1 << (info.bits - 1)
        return ((codes.astype(np.int64) ^ sign) - sign).astype(np.int8)
    return codes.astype(np.uint8)
