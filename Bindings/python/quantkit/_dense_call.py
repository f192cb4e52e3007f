"""The fast path of quantkit.matmul for the decode-loop case: dense float32 x of rank 1 or 2,
float32 output, optional dense float32 bias.

A decode step multiplies a single row by each layer's weights, so the Python work around the C call
is paid once per layer per token. Building fresh ctypes structs, reading `x.ctypes.data` (1.4 us)
and re-checking every argument cost about 18 us a call, as much as ONNX Runtime's whole
`session.run` of a small MatMulNBits; after a large product has flushed the CPU caches that same
Python work took several times longer. This path fills per-thread structs that are built once and
takes data pointers through the buffer protocol. Anything it does not cover returns None, and
matmul() takes the general path, which checks the arguments and raises their errors; errors of
the C call itself are raised here.
"""

import ctypes
import threading

import numpy as np

from . import _ffi
from ._constants import Compute, DType
from .errors import check

_F32 = np.dtype(np.float32)
_COMPUTE = {"float": int(Compute.FLOAT), "int8": int(Compute.INT8)}
_INT32_MIN, _INT32_MAX = -(1 << 31), (1 << 31) - 1
_address = ctypes.addressof
_byte_at = ctypes.c_char.from_buffer  # a writable buffer's first byte (0.4 us; x.ctypes.data 1.4 us)


class _Structs:
    """One thread's qk_tensor structs for x, y and bias, with their shape arrays."""

    __slots__ = ("x", "y", "bias", "x_shape", "y_shape", "bias_shape", "options",
                 "x_ref", "y_ref", "bias_ref", "options_ref", "busy")

    def __init__(self):
        self.x_shape = (ctypes.c_int64 * 2)()
        self.y_shape = (ctypes.c_int64 * 2)()
        self.bias_shape = (ctypes.c_int64 * 1)()
        f32 = int(DType.F32)
        self.x = _ffi.qk_tensor(data=None, dtype=f32, ndim=2, shape=self.x_shape, strides=None)
        self.y = _ffi.qk_tensor(data=None, dtype=f32, ndim=2, shape=self.y_shape, strides=None)
        self.bias = _ffi.qk_tensor(data=None, dtype=f32, ndim=1, shape=self.bias_shape, strides=None)
        self.options = _ffi.new_struct(_ffi.qk_matmul_options)
        self.x_ref, self.y_ref = ctypes.byref(self.x), ctypes.byref(self.y)
        self.bias_ref, self.options_ref = ctypes.byref(self.bias), ctypes.byref(self.options)
        # Set while the structs are filled and in use: a signal handler that calls matmul() on
        # this thread in between must not overwrite them (it takes the general path instead).
        self.busy = False


_local = threading.local()


def _dense(array):
    """A C-contiguous, writable float32 ndarray with at least one element."""
    return (type(array) is np.ndarray and array.dtype is _F32 and array.size
            and array.flags.c_contiguous and array.flags.writeable)


def try_dense_matmul(x, packed, bias, compute, num_threads, out, out_dtype):
    """y as quantkit.matmul computes it, or None when the call is not the dense float32 case (the
    general path then serves it, with its own argument checks). Errors of the C call are raised."""
    if not _dense(x) or not 1 <= x.ndim <= 2 or (out is None and out_dtype is not np.float32 and out_dtype != _F32):
        return None
    code = _COMPUTE.get(compute) if type(compute) is str else None
    if code is None or type(num_threads) is not int or not _INT32_MIN <= num_threads <= _INT32_MAX:
        return None
    n, k = packed._n, packed._k
    rows = x.shape[0] if x.ndim == 2 else 1
    if x.shape[-1] != k or n == 0:
        return None
    shape = (rows, n) if x.ndim == 2 else (n,)
    if out is None:
        out = np.empty(shape, _F32)
    elif not _dense(out) or out.shape != shape or np.may_share_memory(out, x):
        return None
    if bias is not None and not (_dense(bias) and bias.shape == (n,)):
        return None
    structs = getattr(_local, "structs", None)
    if structs is None:
        structs = _local.structs = _Structs()
    if structs.busy:
        return None
    structs.busy = True
    try:
        structs.x.data = _address(_byte_at(x))
        structs.y.data = _address(_byte_at(out))
        structs.x.ndim = structs.y.ndim = x.ndim
        structs.x_shape[0], structs.x_shape[1] = (rows, k) if x.ndim == 2 else (k, 0)
        structs.y_shape[0], structs.y_shape[1] = (rows, n) if x.ndim == 2 else (n, 0)
        bias_ref = None
        if bias is not None:
            structs.bias.data = _address(_byte_at(bias))
            structs.bias_shape[0] = n
            bias_ref = structs.bias_ref
        structs.options.compute = code
        structs.options.num_threads = num_threads
        handle = packed._acquire()
        try:
            status = _ffi.lib().qk_matmul(handle, structs.x_ref, bias_ref, structs.y_ref, structs.options_ref)
        finally:
            packed._done()
    finally:
        structs.busy = False
    # The structs keep bare pointers: x, out and bias stay referenced by this frame until the call
    # above has returned.
    check(status, "qk_matmul")
    return out
