"""Numeric values copied from Include/quantkit.h (they are pinned there and never change).

Only values live here; the ctypes structures and prototypes are in _ffi.py.
"""

from enum import IntEnum

# The header this binding was written against (QK_VERSION_* / QK_ABI_VERSION / QK_MAX_DIMS).
HEADER_VERSION_MAJOR = 0
HEADER_VERSION_MINOR = 2
HEADER_VERSION_PATCH = 0
HEADER_VERSION_NUMBER = 200
ABI_VERSION = 2
MAX_DIMS = 8


class Status(IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    NULL_POINTER = 2
    UNSUPPORTED = 3
    BUFFER_TOO_SMALL = 4
    SHAPE_MISMATCH = 5
    NON_FINITE = 6
    OUT_OF_MEMORY = 7
    OVERFLOW = 8
    IO = 9
    INVALID_MODEL = 10
    INTERNAL = 11
    VERSION = 12


class DType(IntEnum):
    INVALID = 0
    F32 = 1
    F16 = 2
    BF16 = 3
    F64 = 4
    I8 = 5
    U8 = 6
    I32 = 7


class Format(IntEnum):
    INVALID = 0
    INT8 = 1
    UINT8 = 2
    INT4 = 3
    UINT4 = 4
    INT3 = 5
    UINT3 = 6
    INT2 = 7
    UINT2 = 8
    NF4 = 9
    FP4_E2M1 = 10
    FP8_E4M3FN = 11
    FP8_E5M2 = 12
    FP16 = 13
    BF16 = 14
    LOG4 = 15
    FP4_BNB = 16


class FormatFlag(IntEnum):
    SIGNED = 1
    FLOAT = 2      # levels of a floating-point type (FP4 E2M1, FP4 bnb, FP8, FP16, BF16); not NF4
    CODEBOOK = 4
    SCALED = 8
    ZERO_POINT = 16


class Scheme(IntEnum):
    SYMMETRIC = 0
    ASYMMETRIC = 1


class Granularity(IntEnum):
    PER_TENSOR = 0
    PER_AXIS = 1
    BLOCKED = 2


class Method(IntEnum):
    MINMAX = 0
    MSE = 1
    PERCENTILE = 2


class Rounding(IntEnum):
    HALF_EVEN = 0
    HALF_AWAY = 1


class Layout(IntEnum):
    ONNX = 0
    MATMULNBITS = 1
    BNB4 = 2


class Compute(IntEnum):
    """QK_COMPUTE_*: how activations meet the weights in qk_matmul (since ABI 2)."""
    FLOAT = 0
    INT8 = 1


class WeightOrientation(IntEnum):
    """QK_WEIGHT_*: which way round the tensor given to qk_pack_weights is stored (since ABI 2)."""
    NK = 0
    KN = 1


# Python spellings accepted by the public API (first name of each entry is the canonical one).
GRANULARITY_NAMES = {
    "tensor": Granularity.PER_TENSOR, "per_tensor": Granularity.PER_TENSOR,
    "axis": Granularity.PER_AXIS, "per_axis": Granularity.PER_AXIS, "channel": Granularity.PER_AXIS,
    "per_channel": Granularity.PER_AXIS,
    "block": Granularity.BLOCKED, "blocked": Granularity.BLOCKED,
}
METHOD_NAMES = {"minmax": Method.MINMAX, "mse": Method.MSE, "percentile": Method.PERCENTILE}
ROUNDING_NAMES = {"half_even": Rounding.HALF_EVEN, "half_away": Rounding.HALF_AWAY}
LAYOUT_NAMES = {"onnx": Layout.ONNX, "matmulnbits": Layout.MATMULNBITS, "bnb4": Layout.BNB4}
COMPUTE_NAMES = {"float": Compute.FLOAT, "fp32": Compute.FLOAT, "float32": Compute.FLOAT,
                 "int8": Compute.INT8}
ORIENTATION_NAMES = {"nk": WeightOrientation.NK, "kn": WeightOrientation.KN}


def canonical_name(table, value):
    """The first (canonical) spelling of an enum value in one of the tables above."""
    for name, member in table.items():
        if member == value:
            return name
    raise KeyError(value)
