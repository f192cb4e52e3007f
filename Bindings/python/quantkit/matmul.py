"""Fused low-bit matrix multiplication (quantkit.h, since ABI 2): packed weights and y = x . W^T.

    qt = quantkit.quantize(w, "int4", block_size=32)        # w: [N, K] (a PyTorch Linear weight)
    with quantkit.pack_weights(qt) as packed:                # copied into an opaque, immutable handle
        y = quantkit.matmul(x, packed)                       # x: [..., K] -> y: [..., N], float32
        y8 = quantkit.matmul(x, packed, compute="int8")      # int8 activations (as ORT accuracy_level 4)

A PackedMatrix may be used from many Python threads at once (each call runs without the GIL).
close() (or leaving the `with` block, or garbage collection) frees the handle exactly once; a call
that is still running on another thread keeps it alive until that call returns.
"""

import ctypes
import threading

import numpy as np

from . import _ffi
from ._constants import COMPUTE_NAMES, ORIENTATION_NAMES, Compute, DType, WeightOrientation
from ._dense_call import try_dense_matmul
from ._dtypes import float_dtype_code, numpy_dtype
from ._tensor import TensorView
from .errors import check
from .formats import format_info
from .params import _choice, _int32, make_params
from .quantized import QuantizedTensor

__all__ = ["PackedMatrix", "pack_weights", "pack_matmulnbits", "matmul", "matmul_integer",
           "matmul_kernel_variant"]

_INT_DTYPES = {np.dtype(np.uint8): DType.U8, np.dtype(np.int8): DType.I8}
_F32 = {np.dtype(np.float32): DType.F32}


class PackedMatrix:
    """Weights W[N, K] packed by qk_pack_weights. Build with quantkit.pack_weights() or
    quantkit.pack_matmulnbits(); multiply with quantkit.matmul().

    n, k:          outputs and inputs (y = x . W^T maps [..., k] to [..., n])
    format:        the weights' format name, e.g. "int4"
    block_size:    block along K in the handle (scales change at most once per block; compute="int8"
                   quantizes activations per block of this size)
    int8_compute:  True when compute="int8" uses integer dot products for these weights (integer
                   formats); other formats compute as float whatever `compute` says
    packed_bytes:  memory the handle holds
    orientation:   "nk" or "kn", as the weights were given to pack_weights
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("PackedMatrix is made by quantkit.pack_weights() or quantkit.pack_matmulnbits()")

    @classmethod
    def _adopt(cls, handle, orientation):
        """Takes ownership of a handle qk_pack_weights just returned."""
        self = cls.__new__(cls)
        lib = _ffi.lib()
        self._handle = handle
        self._lock = threading.Lock()
        self._busy = 0           # calls running with the handle now
        self._closed = False     # close() was asked for; the handle is freed once _busy is 0
        self._release = lib.qk_packed_matrix_release  # kept: __del__ may run at interpreter exit
        self._orientation = orientation
        try:
            info = _ffi.new_struct(_ffi.qk_packed_matrix_info)
            check(lib.qk_packed_matrix_get_info(handle, ctypes.byref(info)), "qk_packed_matrix_get_info")
        except BaseException:
            self.close()
            raise
        # The handle is immutable: its description is read once.
        self._format_id = int(info.format)
        self._n, self._k = int(info.n), int(info.k)
        self._block_size = int(info.block_size)
        self._int8_compute = bool(info.int8_compute)
        self._packed_bytes = int(info.packed_bytes)
        return self

    # ---- description ----

    @property
    def n(self):
        return self._n

    @property
    def k(self):
        return self._k

    @property
    def shape(self):
        """(n, k): the logical shape of W."""
        return (self._n, self._k)

    @property
    def format(self):
        return format_info(self._format_id).name

    @property
    def block_size(self):
        return self._block_size

    @property
    def int8_compute(self):
        return self._int8_compute

    @property
    def packed_bytes(self):
        return self._packed_bytes

    @property
    def orientation(self):
        return self._orientation

    @property
    def closed(self):
        return self._closed

    def info(self):
        """A fresh qk_packed_matrix_get_info of the live handle, as a dict."""
        handle = self._acquire()
        try:
            info = _ffi.new_struct(_ffi.qk_packed_matrix_info)
            check(_ffi.lib().qk_packed_matrix_get_info(handle, ctypes.byref(info)),
                  "qk_packed_matrix_get_info")
        finally:
            self._done()
        return {"format": format_info(int(info.format)).name, "n": int(info.n), "k": int(info.k),
                "block_size": int(info.block_size), "int8_compute": bool(info.int8_compute),
                "packed_bytes": int(info.packed_bytes)}

    # ---- lifetime ----

    def _acquire(self):
        """The handle, for one C call; pair with _done(). ValueError once closed."""
        with self._lock:
            if self._closed:
                raise ValueError("this PackedMatrix is closed (its handle was released)")
            self._busy += 1
            return self._handle

    def _done(self):
        with self._lock:
            self._busy -= 1
            handle = self._take_if_idle()
        if handle is not None:
            self._release(handle)

    def _take_if_idle(self):
        """With the lock held: the handle to free now (closed and unused), or None."""
        if self._closed and self._busy == 0 and self._handle is not None:
            handle, self._handle = self._handle, None
            return handle
        return None

    def close(self):
        """Releases the handle (exactly once; later calls do nothing). A multiplication running on
        another thread finishes first: the handle is freed when it returns."""
        lock = getattr(self, "_lock", None)
        if lock is None:  # __init__ never completed
            return
        with lock:
            self._closed = True
            handle = self._take_if_idle()
        if handle is not None:
            self._release(handle)

    def __enter__(self):
        if self._closed:
            raise ValueError("this PackedMatrix is closed")
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing sensible left to do
            pass

    def __reduce_ex__(self, protocol):
        # A copy would share the handle and free it twice; pickling a pointer means nothing.
        raise TypeError("a PackedMatrix cannot be copied or pickled; pack the QuantizedTensor again")

    def __repr__(self):
        state = "closed" if self._closed else f"{self._packed_bytes} bytes"
        return (f"<PackedMatrix {self.format} n={self._n} k={self._k} block={self._block_size} "
                f"int8_compute={self._int8_compute} {state}>")


# ---- packing ----

def pack_weights(quantized, orientation="nk", num_threads=0):
    """Packs a 2-D QuantizedTensor into a PackedMatrix (the buffers are copied; `quantized` may be
    dropped afterwards).

    orientation "nk": quantized.shape is [N, K] (MatMulNBits' B, Gemm transB=1, a PyTorch Linear
    weight; blocks along axis 1, per-channel = axis 0). "kn": [K, N] (ONNX MatMul's B, QDQ weights;
    blocks along axis 0, per-channel = axis 1). Which layouts, granularities and formats the kernels
    serve is the library's call (QuantKitError UNSUPPORTED otherwise, NON_FINITE for a NaN/Inf scale).
    """
    if not isinstance(quantized, QuantizedTensor):
        raise TypeError(f"pack_weights expects a QuantizedTensor, not {type(quantized).__name__}")
    orient = WeightOrientation(_choice("orientation", ORIENTATION_NAMES, orientation))
    if len(quantized.shape) != 2:
        raise ValueError(f"pack_weights needs a 2-D weight; got shape {quantized.shape}")
    rows, cols = quantized.shape
    n, k = (rows, cols) if orient == WeightOrientation.NK else (cols, rows)
    options = _ffi.new_struct(_ffi.qk_pack_options)
    options.orientation = int(orient)
    options.num_threads = _int32("num_threads", num_threads)
    params = quantized.params.to_c()
    q = quantized._c_struct()
    handle = _ffi.qk_packed_matrix_p()
    check(_ffi.lib().qk_pack_weights(ctypes.byref(params), n, k, ctypes.byref(q), ctypes.byref(options),
                                     ctypes.byref(handle)), "qk_pack_weights")
    if not handle.value:
        raise RuntimeError("qk_pack_weights returned QK_OK without a handle")
    return PackedMatrix._adopt(handle.value, "nk" if orient == WeightOrientation.NK else "kn")


def pack_matmulnbits(blob, scales, zero_points=None, *, k, n, bits=4, block_size=32, num_threads=0):
    """Packs ONNX Runtime com.microsoft::MatMulNBits weights as they sit in a model.

    blob:        uint8 B, [N, ceil(K/block_size), block_size*bits/8] (any shape with that many bytes)
    scales:      float32 or float16 [N, ceil(K/block_size)]
    zero_points: None (= 2**(bits-1)) or uint8 packed zero points [N, ceil(ceil(K/block)*bits/8)]
                 (zero points given in the scales' float type are not supported)
    k, n, bits, block_size: the node's attributes.
    """
    if bits not in (2, 4, 8):
        raise ValueError(f"MatMulNBits bits must be 2, 4 or 8; got {bits!r}")
    k, n, block_size = (_int32(name, v) for name, v in (("k", k), ("n", n), ("block_size", block_size)))
    if k < 0 or n < 0:
        raise ValueError(f"k and n must be >= 0; got k={k}, n={n}")
    if block_size < 16 or block_size & (block_size - 1):
        raise ValueError(f"MatMulNBits block_size must be a power of two >= 16; got {block_size}")
    if not isinstance(scales, np.ndarray):
        raise TypeError(f"scales must be a numpy array, not {type(scales).__name__}")
    if scales.dtype not in (np.float32, np.float16):
        raise TypeError(f"MatMulNBits scales are float32 or float16 (the activation type), not {scales.dtype}")
    if zero_points is not None:
        if not isinstance(zero_points, np.ndarray):
            raise TypeError(f"zero_points must be a numpy uint8 array, not {type(zero_points).__name__}")
        if zero_points.dtype != np.uint8:
            raise TypeError(f"zero_points must be packed uint8 (MatMulNBits' zero_points input); "
                            f"got {zero_points.dtype}")
    params = make_params(f"uint{bits}", layout="matmulnbits", block_size=block_size,
                         symmetric=zero_points is None, rounding="half_away",
                         scale_dtype="float16" if scales.dtype == np.float16 else "float32")
    qt = QuantizedTensor(np.asarray(blob).reshape(-1) if isinstance(blob, np.ndarray) else blob,
                         scales, zero_points, (n, k), params)
    return pack_weights(qt, "nk", num_threads=num_threads)


# ---- multiplication ----

def _float_output_shape_ok(out, shape):
    return isinstance(out, np.ndarray) and out.shape == shape


def _overlaps(a, b):
    if not np.may_share_memory(a, b):
        return False
    try:
        return bool(np.shares_memory(a, b, max_work=1 << 20))
    except Exception:  # numpy's TooHardError: too costly to decide, so treat as overlapping
        return True


def matmul(x, packed, bias=None, *, compute="float", num_threads=0, out=None, out_dtype=np.float32):
    """y = x . dequant(W)^T + bias without materialising W (qk_matmul).

    x:        float32, float16 or bfloat16 (ml_dtypes), shape [..., K], any strides
    packed:   a PackedMatrix
    bias:     None or [N] (float arrays are converted to float32)
    compute:  "float" (float arithmetic: equal to x @ dequantize(W).T up to float rounding) or
              "int8" (activations quantized to int8 per row and per packed.block_size block along K,
              integer dot products, as ONNX Runtime's MatMulNBits accuracy_level 4; only for integer
              formats -- packed.int8_compute says -- the others compute as float)
    out:      an array of shape [..., N] (float32/float16/bfloat16, any strides, not overlapping x)
              to write into; else a new array of out_dtype
    Results do not depend on num_threads (0 = quantkit.get_num_threads()).
    """
    if type(packed) is PackedMatrix:
        y = try_dense_matmul(x, packed, bias, compute, num_threads, out, out_dtype)
        if y is not None:
            return y
    if not isinstance(packed, PackedMatrix):
        raise TypeError(f"matmul expects a PackedMatrix (quantkit.pack_weights), not {type(packed).__name__}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array, not {type(x).__name__}")
    float_dtype_code(x.dtype, "x")  # TypeError for anything but float32/float16/bfloat16
    if x.ndim < 1:
        raise ValueError("x must have at least one dimension ([..., K])")
    if x.shape[-1] != packed.k:
        raise ValueError(f"x has {x.shape[-1]} columns (shape {x.shape}); the packed weights take "
                         f"K = {packed.k}")
    options = _ffi.new_struct(_ffi.qk_matmul_options)
    options.compute = int(Compute(_choice("compute", COMPUTE_NAMES, compute)))
    options.num_threads = _int32("num_threads", num_threads)
    shape = tuple(x.shape[:-1]) + (packed.n,)
    if out is None:
        out = np.empty(shape, dtype=numpy_dtype(float_dtype_code(out_dtype, "out_dtype")))
    else:
        if not _float_output_shape_ok(out, shape):
            got = out.shape if isinstance(out, np.ndarray) else type(out).__name__
            raise ValueError(f"out must be a numpy array of shape {shape}; got {got}")
        if _overlaps(out, x):
            raise ValueError("out overlaps x")
    bias_view = None
    if bias is not None:
        bias = np.asarray(bias)
        if bias.dtype.kind != "f" and bias.dtype.name != "bfloat16":
            raise TypeError(f"bias must hold floats, not {bias.dtype}")
        if bias.shape != (packed.n,):
            raise ValueError(f"bias must have shape ({packed.n},); got {bias.shape}")
        bias_view = TensorView(np.ascontiguousarray(bias, dtype=np.float32), "bias", dtypes=_F32)
    x_view = TensorView(x, "x")
    y_view = TensorView(out, "out", writable=True)
    handle = packed._acquire()
    try:
        check(_ffi.lib().qk_matmul(handle, x_view.ref(), bias_view.ref() if bias_view else None,
                                   y_view.ref(), ctypes.byref(options)), "qk_matmul")
    finally:
        packed._done()
    return out


def _int_operand(value, what):
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{what} must be a numpy uint8 or int8 array, not {type(value).__name__}")
    if value.dtype not in _INT_DTYPES:
        raise TypeError(f"{what} must be uint8 or int8, not {value.dtype}")
    if value.ndim != 2:
        raise ValueError(f"{what} must be 2-D; got shape {value.shape}")
    return value


def _zero_point(value, dtype, length, what):
    """None, a scalar or a [length] vector, in `dtype` (Python ints are range-checked)."""
    if value is None:
        return None
    if isinstance(value, (np.ndarray, np.generic)):
        arr = np.asarray(value)
        if arr.dtype != dtype:
            raise TypeError(f"{what} must have the dtype of its matrix ({dtype}), not {arr.dtype}")
    else:
        arr = np.asarray(value)
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{what} must be an integer or an array of {dtype}")
        info = np.iinfo(dtype)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ValueError(f"{what} must lie in [{info.min}, {info.max}] for {dtype}")
        arr = arr.astype(dtype)
    return _scalar_or_vector(arr, length, what)


def _scalar_or_vector(arr, length, what):
    """arr as a 0-d scalar or a [length] vector (a [1] vector counts as a scalar, as in ONNX)."""
    if arr.ndim == 1 and arr.shape[0] == 1 and length != 1:
        arr = arr.reshape(())
    if arr.ndim > 1 or (arr.ndim == 1 and arr.shape[0] != length):
        raise ValueError(f"{what} must be a scalar or have shape ({length},); got {arr.shape}")
    return arr if arr.flags.c_contiguous else arr.copy()  # (ascontiguousarray makes 0-d arrays 1-d)


def _scale(value, length, what):
    arr = np.asarray(value)
    if arr.dtype.kind != "f":
        raise TypeError(f"{what} must hold floats, not {arr.dtype}")
    return _scalar_or_vector(arr.astype(np.float32), length, what)


def matmul_integer(a, b, a_zero_point=None, b_zero_point=None, a_scale=None, b_scale=None, bias=None,
                   num_threads=0):
    """ONNX MatMulInteger, optionally rescaled to float (qk_matmul_integer):

        acc[m, n] = sum_k (a[m, k] - a_zero_point[m]) * (b[k, n] - b_zero_point[n])   (exact)

    a: uint8/int8 [M, K]; b: uint8/int8 [K, N]; zero points: None (0), a scalar, or [M] / [N] in the
    dtype of their matrix (Python ints are converted). Without scales the result is int32 acc; with
    a_scale (scalar or [M]) and b_scale (scalar or [N]), both given, it is float32
    acc * a_scale[m] * b_scale[n] + bias[n] (bias: [N], only with scales).
    """
    a = _int_operand(a, "a")
    b = _int_operand(b, "b")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a is {a.shape} and b is {b.shape}: a's columns must equal b's rows")
    m, n = a.shape[0], b.shape[1]
    azp = _zero_point(a_zero_point, a.dtype, m, "a_zero_point")
    bzp = _zero_point(b_zero_point, b.dtype, n, "b_zero_point")
    if (a_scale is None) != (b_scale is None):
        raise ValueError("give both a_scale and b_scale, or neither")
    scaled = a_scale is not None
    if bias is not None and not scaled:
        raise ValueError("bias needs a_scale and b_scale (the integer result takes no bias)")
    views = {}
    views["a"] = TensorView(a, "a", dtypes=_INT_DTYPES)
    views["b"] = TensorView(b, "b", dtypes=_INT_DTYPES)
    if azp is not None:
        views["azp"] = TensorView(azp, "a_zero_point", dtypes=_INT_DTYPES)
    if bzp is not None:
        views["bzp"] = TensorView(bzp, "b_zero_point", dtypes=_INT_DTYPES)
    if scaled:
        views["as"] = TensorView(_scale(a_scale, m, "a_scale"), "a_scale", dtypes=_F32)
        views["bs"] = TensorView(_scale(b_scale, n, "b_scale"), "b_scale", dtypes=_F32)
        if bias is not None:
            bias = np.asarray(bias)
            if bias.dtype.kind != "f":
                raise TypeError(f"bias must hold floats, not {bias.dtype}")
            if bias.shape != (n,):
                raise ValueError(f"bias must have shape ({n},); got {bias.shape}")
            views["bias"] = TensorView(np.ascontiguousarray(bias, dtype=np.float32), "bias", dtypes=_F32)
        out = np.empty((m, n), np.float32)
        y = TensorView(out, "out", writable=True, dtypes=_F32)
    else:
        out = np.empty((m, n), np.int32)
        y = TensorView(out, "out", writable=True, dtypes={np.dtype(np.int32): DType.I32})

    def ref(key):
        view = views.get(key)
        return view.ref() if view is not None else None

    check(_ffi.lib().qk_matmul_integer(ref("a"), ref("azp"), ref("b"), ref("bzp"), ref("as"), ref("bs"),
                                       ref("bias"), y.ref(), _int32("num_threads", num_threads)),
          "qk_matmul_integer")
    return out


def matmul_kernel_variant():
    """Name of the matmul kernels in use: "avx512-vnni", "avx2-vnni", "avx2" or "scalar"
    (QUANTKIT_KERNELS=... in the environment asks for a lower one)."""
    return _ffi.lib().qk_matmul_kernel_variant().decode()
