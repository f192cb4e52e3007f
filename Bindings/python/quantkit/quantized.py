"""QuantizedTensor: the three caller-owned buffers of qk_quantized, plus the shape and params."""

import ctypes

import numpy as np

from . import _ffi
from ._codes import decode
from ._dtypes import float_dtype_code, numpy_dtype
from ._packing import unpack_high_nibble_first, unpack_lsb
from ._tensor import TensorView
from .errors import check
from .layout import check_shape, layout_for


def _bytes(array, what, size):
    """A 1-D uint8 view of exactly `size` bytes."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what} must be a numpy uint8 array, not {type(array).__name__}")
    if array.dtype not in (np.uint8, np.int8):
        raise TypeError(f"{what} must hold uint8 bytes, not {array.dtype}")
    if array.size != size:
        raise ValueError(f"{what} has {array.size} bytes; the layout needs {size}")
    return np.ascontiguousarray(array).reshape(-1).view(np.uint8)


def _scales(array, params, layout):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"scales must be a numpy array, not {type(array).__name__}")
    if float_dtype_code(array.dtype, "scales") != float_dtype_code(params.scale_dtype, "scale_dtype"):
        raise TypeError(f"scales are {array.dtype} but params.scale_dtype is {params.scale_dtype}")
    if array.size != layout.scales_count:
        raise ValueError(f"scales have shape {array.shape} ({array.size} values); the layout needs "
                         f"{layout.scales_shape} ({layout.scales_count} values)")
    return np.ascontiguousarray(array).reshape(layout.scales_array_shape)


class QuantizedTensor:
    """A quantized tensor.

    data:        1-D uint8, the packed codes exactly as the layout defines them (quantkit.h
                 QK_LAYOUT_*); for "matmulnbits" reshape to (N, ceil(K/block), block*bits//8).
    scales:      the layout's scales shape, in params.scale_dtype.
    zero_points: 1-D uint8 packed like the data, or None when the layout stores none
                 (zero_point_values() unpacks them).
    shape:       logical shape of the original tensor.
    params:      the QuantParams used.
    """

    def __init__(self, data, scales, zero_points, shape, params):
        self.params = params
        self.shape = check_shape(shape)
        self.layout = layout_for(params, self.shape)
        self.data = _bytes(data, "data", self.layout.data_bytes)
        self.scales = _scales(scales, params, self.layout)
        if self.layout.zero_points_bytes:
            if zero_points is None:
                raise ValueError(f"this layout stores {self.layout.zero_points_bytes} bytes of zero points; "
                                 "zero_points is None")
            self.zero_points = _bytes(zero_points, "zero_points", self.layout.zero_points_bytes)
        elif zero_points is not None:
            raise ValueError("this layout stores no zero points (symmetric scheme); pass zero_points=None")
        else:
            self.zero_points = None

    @classmethod
    def _trusted(cls, data, scales, zero_points, shape, params, layout):
        """Wraps buffers the library just filled (skips re-validation)."""
        self = cls.__new__(cls)
        self.params, self.shape, self.layout = params, tuple(shape), layout
        self.data, self.scales, self.zero_points = data, scales, zero_points
        return self

    # ---- sizes ----

    @property
    def format(self):
        return self.params.format

    @property
    def size(self):
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self):
        """Bytes of data + scales + zero points."""
        zp = 0 if self.zero_points is None else self.zero_points.nbytes
        return self.data.nbytes + self.scales.nbytes + zp

    @property
    def bits_per_weight(self):
        """Storage bits per element, scales and zero points included."""
        return 8.0 * self.nbytes / self.size if self.size else 0.0

    # ---- C view ----

    def _c_struct(self):
        """qk_quantized pointing into this object's arrays (valid while self is alive)."""
        q = _ffi.new_struct(_ffi.qk_quantized)
        q.data = self.data.ctypes.data if self.data.size else None
        q.data_bytes = self.data.nbytes
        q.scales = self.scales.ctypes.data if self.scales.size else None
        q.scales_bytes = self.scales.nbytes
        if self.zero_points is not None:
            q.zero_points = self.zero_points.ctypes.data if self.zero_points.size else None
            q.zero_points_bytes = self.zero_points.nbytes
        return q

    # ---- conversions ----

    def dequantize(self, dtype=np.float32, out=None):
        """Float tensor of self.shape (float32, float16 or bfloat16).

        out: an existing array of self.shape to write into instead (any strides that are whole
        elements, negative ones included, e.g. a column slice of a bigger matrix); its dtype then
        decides the output type."""
        if out is None:
            out = np.empty(self.shape, dtype=numpy_dtype(float_dtype_code(dtype, "dtype")))
        elif not isinstance(out, np.ndarray) or out.shape != self.shape:
            raise ValueError(f"out must be a numpy array of shape {self.shape}")
        view = TensorView(out, "out", writable=True)
        params = self.params.to_c()
        q = self._c_struct()
        check(_ffi.lib().qk_dequantize(ctypes.byref(params), ctypes.byref(q), view.ref()), "qk_dequantize")
        return out

    def codes(self):
        """Unpacked codes in the logical element order (see quantkit._codes for what a code is).

        onnx layout: self.shape; matmulnbits: [N, K] unsigned codes; bnb4: self.shape level indices."""
        info = self.params.info
        n = self.size
        if self.params.layout == "onnx":
            return decode(unpack_lsb(self.data, info.bits, n), info).reshape(self.shape)
        if self.params.layout == "bnb4":
            return unpack_high_nibble_first(self.data, n).reshape(self.shape)
        rows, k = self.shape
        kblocks = self.layout.scales_shape[1]
        block = self.params.block_size
        raw = unpack_lsb(self.data, info.bits, rows * kblocks * block).reshape(rows, kblocks * block)
        return raw[:, :k].astype(np.uint8)

    def zero_point_values(self):
        """Zero points in the scales' shape: the stored ones, or the fixed symmetric ones
        (0 for signed codes, 2**(bits-1) for unsigned); None for formats without zero points."""
        info = self.params.info
        if not info.takes_zero_point:
            return None
        shape, count = self.layout.scales_shape, self.layout.scales_count
        if self.zero_points is None:
            fixed = 0 if (info.signed and self.params.layout == "onnx") else 1 << (info.bits - 1)
            return np.full(shape, fixed, dtype=np.int8 if fixed == 0 and info.signed else np.uint8)
        if self.params.layout == "matmulnbits":
            rows, kblocks = shape
            per_row = self.zero_points.size // rows
            raw = unpack_lsb(self.zero_points, info.bits, rows * per_row * 8 // info.bits)
            return raw.reshape(rows, -1)[:, :kblocks].astype(np.uint8)
        return decode(unpack_lsb(self.zero_points, info.bits, count), info).reshape(shape)

    def __repr__(self):
        p = self.params
        how = {"tensor": "per-tensor", "axis": f"per-axis {p.axis}",
               "block": f"block {p.block_size} on axis {p.axis}"}[p.granularity]
        zp = "symmetric" if p.symmetric else "asymmetric"
        return (f"<QuantizedTensor {p.format} {how} {zp} layout={p.layout} shape={self.shape} "
                f"{self.nbytes} bytes ({self.bits_per_weight:.3f} bits/weight)>")
