"""ctypes mirror of Include/quantkit.h: structures, function prototypes, and the loaded library.

Field order and types follow the header exactly; ctypes applies the same natural alignment as the
C compiler, so sizeof() here equals sizeof() in C on the same platform. Padding is explicit in the
header (`reserved` fields, always 0), so it is spelled out here too.

struct_size rules (top of the header): the CALLER always sets struct_size to sizeof(the struct it was
compiled with) -- for qk_quant_params also before qk_quant_params_init, which keeps it -- so every
struct that starts with struct_size is made by new_struct(). A smaller struct_size is
QK_ERROR_VERSION; a larger one is accepted when the bytes past this version's struct are zero
(input structs) and those bytes are zeroed (output structs); above 4096 is QK_ERROR_VERSION.
"""

import ctypes
import threading
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_double, c_float, c_int32, c_int64,
                    c_size_t, c_uint32, c_void_p)

from . import _library
from ._constants import ABI_VERSION, HEADER_VERSION_MAJOR, HEADER_VERSION_NUMBER, MAX_DIMS

qk_status = c_int32  # typedef int32_t qk_status; values are the QK_OK / QK_ERROR_* enum


class qk_tensor(Structure):
    _fields_ = [
        ("data", c_void_p),
        ("dtype", c_int32),
        ("ndim", c_int32),
        ("shape", POINTER(c_int64)),
        ("strides", POINTER(c_int64)),
    ]


class qk_format_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("format", c_int32),
        ("name", c_char_p),
        ("description", c_char_p),
        ("bits", c_int32),
        ("flags", c_int32),
        ("code_min", c_int32),
        ("code_max", c_int32),
        ("level_max", c_float),
        ("reserved", c_uint32),  # 0; makes the tail padding explicit (sizeof stays 48 on LP64)
    ]


class qk_quant_params(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("format", c_int32),
        ("scheme", c_int32),
        ("granularity", c_int32),
        ("axis", c_int32),
        ("block_size", c_int32),
        ("method", c_int32),
        ("rounding", c_int32),
        ("layout", c_int32),
        ("scale_dtype", c_int32),
        ("num_threads", c_int32),
        ("percentile", c_float),
        ("search_steps", c_int32),
        ("min_clip_ratio", c_float),
    ]


class qk_quantized_layout(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("scales_ndim", c_int32),
        ("data_bytes", c_size_t),
        ("scales_bytes", c_size_t),
        ("zero_points_bytes", c_size_t),
        ("scales_count", c_int64),
        ("scales_shape", c_int64 * MAX_DIMS),
    ]


class qk_quantized(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),  # 0
        ("data", c_void_p),
        ("data_bytes", c_size_t),
        ("scales", c_void_p),
        ("scales_bytes", c_size_t),
        ("zero_points", c_void_p),
        ("zero_points_bytes", c_size_t),
    ]


class qk_error_stats(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("reserved", c_uint32),  # 0
        ("count", c_int64),
        ("max_abs_error", c_double),
        ("mean_abs_error", c_double),
        ("rmse", c_double),
        ("sqnr_db", c_double),
        ("signal_rms", c_double),
    ]


# ---- since ABI 2: fused low-bit matrix multiplication ----

# typedef struct qk_packed_matrix qk_packed_matrix; -- opaque, so handles travel as void pointers.
qk_packed_matrix_p = c_void_p


class qk_pack_options(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("orientation", c_int32),  # QK_WEIGHT_*
        ("num_threads", c_int32),
        ("reserved", c_int32),     # 0
    ]


class qk_packed_matrix_info(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("format", c_int32),
        ("n", c_int64),
        ("k", c_int64),
        ("block_size", c_int32),
        ("int8_compute", c_int32),
        ("packed_bytes", c_size_t),
    ]


class qk_matmul_options(Structure):
    _fields_ = [
        ("struct_size", c_uint32),
        ("compute", c_int32),      # QK_COMPUTE_*
        ("num_threads", c_int32),
    ]


# Largest struct_size the library accepts (a bigger one is garbage, not a newer version).
MAX_STRUCT_SIZE = 4096


def new_struct(cls):
    """A zeroed instance (reserved fields 0) with struct_size set, as the header asks of every
    caller, also before qk_quant_params_init."""
    value = cls()
    value.struct_size = ctypes.sizeof(cls)
    return value


P = POINTER
# name: (restype, argtypes), in header order.
PROTOTYPES = {
    "qk_version_number": (c_uint32, []),
    "qk_version_string": (c_char_p, []),
    "qk_last_error": (c_char_p, []),
    "qk_status_string": (c_char_p, [c_int32]),
    "qk_format_count": (c_int32, []),
    "qk_format_info_at": (qk_status, [c_int32, P(qk_format_info)]),
    "qk_format_info_get": (qk_status, [c_int32, P(qk_format_info)]),
    "qk_format_from_name": (qk_status, [c_char_p, P(c_int32)]),
    "qk_quant_params_init": (qk_status, [P(qk_quant_params), c_int32]),
    "qk_quantized_layout_get": (qk_status, [P(qk_quant_params), c_int32, P(c_int64),
                                            P(qk_quantized_layout)]),
    "qk_quantize": (qk_status, [P(qk_quant_params), P(qk_tensor), P(qk_quantized)]),
    "qk_quantize_with_scales": (qk_status, [P(qk_quant_params), P(qk_tensor), P(qk_quantized)]),
    "qk_dequantize": (qk_status, [P(qk_quant_params), P(qk_quantized), P(qk_tensor)]),
    "qk_quantization_error": (qk_status, [P(qk_quant_params), P(qk_tensor), P(qk_quantized),
                                          P(qk_error_stats)]),
    "qk_compare": (qk_status, [P(qk_tensor), P(qk_tensor), P(qk_error_stats)]),
    "qk_kernel_variant": (c_char_p, []),
    "qk_set_num_threads": (qk_status, [c_int32]),
    "qk_get_num_threads": (c_int32, []),
    "qk_get_extension": (c_void_p, [c_char_p]),
    # since ABI 2
    "qk_pack_weights": (qk_status, [P(qk_quant_params), c_int64, c_int64, P(qk_quantized),
                                    P(qk_pack_options), P(qk_packed_matrix_p)]),
    "qk_packed_matrix_release": (None, [qk_packed_matrix_p]),
    "qk_packed_matrix_get_info": (qk_status, [qk_packed_matrix_p, P(qk_packed_matrix_info)]),
    "qk_matmul": (qk_status, [qk_packed_matrix_p, P(qk_tensor), P(qk_tensor), P(qk_tensor),
                              P(qk_matmul_options)]),
    "qk_matmul_integer": (qk_status, [P(qk_tensor), P(qk_tensor), P(qk_tensor), P(qk_tensor),
                                      P(qk_tensor), P(qk_tensor), P(qk_tensor), P(qk_tensor),
                                      c_int32]),
    "qk_matmul_kernel_variant": (c_char_p, []),
}


class qk_api(Structure):
    """The plugin table of qk_get_api(); slot order is the header's and never changes (ABI 1
    slots, then the slots each later ABI appended). A library's table may be shorter than this
    struct: its struct_size says which slots exist (api_slots() tells)."""
    _fields_ = [
        ("struct_size", c_uint32),
        ("abi_version", c_uint32),
        ("version_number", CFUNCTYPE(c_uint32)),
        ("version_string", CFUNCTYPE(c_char_p)),
        ("last_error", CFUNCTYPE(c_char_p)),
        ("status_string", CFUNCTYPE(c_char_p, c_int32)),
        ("format_count", CFUNCTYPE(c_int32)),
        ("format_info_at", CFUNCTYPE(qk_status, c_int32, P(qk_format_info))),
        ("format_info_get", CFUNCTYPE(qk_status, c_int32, P(qk_format_info))),
        ("format_from_name", CFUNCTYPE(qk_status, c_char_p, P(c_int32))),
        ("quant_params_init", CFUNCTYPE(qk_status, P(qk_quant_params), c_int32)),
        ("quantized_layout_get", CFUNCTYPE(qk_status, P(qk_quant_params), c_int32, P(c_int64),
                                           P(qk_quantized_layout))),
        ("quantize", CFUNCTYPE(qk_status, P(qk_quant_params), P(qk_tensor), P(qk_quantized))),
        ("quantize_with_scales", CFUNCTYPE(qk_status, P(qk_quant_params), P(qk_tensor),
                                           P(qk_quantized))),
        ("dequantize", CFUNCTYPE(qk_status, P(qk_quant_params), P(qk_quantized), P(qk_tensor))),
        ("quantization_error", CFUNCTYPE(qk_status, P(qk_quant_params), P(qk_tensor),
                                         P(qk_quantized), P(qk_error_stats))),
        ("compare", CFUNCTYPE(qk_status, P(qk_tensor), P(qk_tensor), P(qk_error_stats))),
        ("kernel_variant", CFUNCTYPE(c_char_p)),
        ("set_num_threads", CFUNCTYPE(qk_status, c_int32)),
        ("get_num_threads", CFUNCTYPE(c_int32)),
        ("get_extension", CFUNCTYPE(c_void_p, c_char_p)),
        # since ABI 2
        ("pack_weights", CFUNCTYPE(qk_status, P(qk_quant_params), c_int64, c_int64, P(qk_quantized),
                                   P(qk_pack_options), P(qk_packed_matrix_p))),
        ("packed_matrix_release", CFUNCTYPE(None, qk_packed_matrix_p)),
        ("packed_matrix_get_info", CFUNCTYPE(qk_status, qk_packed_matrix_p, P(qk_packed_matrix_info))),
        ("matmul", CFUNCTYPE(qk_status, qk_packed_matrix_p, P(qk_tensor), P(qk_tensor), P(qk_tensor),
                             P(qk_matmul_options))),
        ("matmul_integer", CFUNCTYPE(qk_status, P(qk_tensor), P(qk_tensor), P(qk_tensor), P(qk_tensor),
                                     P(qk_tensor), P(qk_tensor), P(qk_tensor), P(qk_tensor), c_int32)),
        ("matmul_kernel_variant", CFUNCTYPE(c_char_p)),
    ]


def api_slots(api):
    """Names of the slots a qk_api table really has (those inside its struct_size)."""
    return [name for name, _ in qk_api._fields_[2:]
            if getattr(qk_api, name).offset + ctypes.sizeof(c_void_p) <= api.struct_size]


class VersionMismatchError(ImportError):
    """The loaded library cannot serve the header this binding mirrors."""


_lock = threading.Lock()
_lib = None
_path = None


def _declare(lib, path):
    # Checked after _check_version, so an older library is reported by version, not by symbol.
    missing = [name for name in PROTOTYPES if not hasattr(lib, name)]
    if missing:
        raise VersionMismatchError(f"{path} lacks {', '.join(missing)} (declared by the header this "
                                   f"binding mirrors, QK_ABI_VERSION {ABI_VERSION})")
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    lib.qk_get_api.restype = P(qk_api)
    lib.qk_get_api.argtypes = [c_uint32]


def _check_version(lib, path):
    for name in ("qk_version_number", "qk_version_string"):
        restype, argtypes = PROTOTYPES[name]
        getattr(lib, name).restype, getattr(lib, name).argtypes = restype, argtypes
    lib.qk_get_api.restype = P(qk_api)
    lib.qk_get_api.argtypes = [c_uint32]
    number = lib.qk_version_number()
    major = number // 10000
    # Same major, and at least the header's version (an older library may lack what we call).
    if major != HEADER_VERSION_MAJOR or number < HEADER_VERSION_NUMBER:
        raise VersionMismatchError(
            f"{path} is QuantKit {lib.qk_version_string().decode()} ({number}); this binding "
            f"needs major version {HEADER_VERSION_MAJOR}, at least {HEADER_VERSION_NUMBER}")
    if not lib.qk_get_api(ABI_VERSION):
        raise VersionMismatchError(f"{path} does not serve ABI version {ABI_VERSION}")


def lib():
    """The loaded library (loaded and checked on first use, so `import quantkit` never fails)."""
    global _lib, _path
    if _lib is None:
        with _lock:
            if _lib is None:
                loaded, path = _library.load()
                _check_version(loaded, path)
                _declare(loaded, path)
                _path = path
                _lib = loaded
    return _lib


def library_path():
    """Where the loaded library came from."""
    lib()
    return _path
