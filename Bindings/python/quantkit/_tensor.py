"""Borrowed qk_tensor views of numpy arrays.

A view holds the array and its shape/stride arrays; keep the TensorView object alive until the C
call returns (the library never keeps the pointers after it).
"""

import ctypes

import numpy as np

from ._constants import MAX_DIMS
from ._dtypes import float_dtype_code
from ._ffi import qk_tensor


class TensorView:
    __slots__ = ("array", "struct", "_shape", "_strides")

    def __init__(self, array, what, writable=False, dtypes=None):
        """dtypes: {numpy dtype: QK_DTYPE} the tensor may have; default float32/float16/bfloat16."""
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{what} must be a numpy array, not {type(array).__name__}")
        if dtypes is None:
            code = float_dtype_code(array.dtype, what)
        elif array.dtype in dtypes:
            code = dtypes[array.dtype]
        else:
            names = ", ".join(str(np.dtype(d)) for d in dtypes)
            raise TypeError(f"{what} must be {names}; not {array.dtype}")
        if array.ndim > MAX_DIMS:
            raise ValueError(f"{what} has {array.ndim} dimensions; QuantKit accepts at most {MAX_DIMS}")
        if writable and not array.flags.writeable:
            raise ValueError(f"{what} is read-only")
        itemsize = array.dtype.itemsize
        contiguous = array.flags.c_contiguous
        if not contiguous and any(s % itemsize for s in array.strides):
            # Byte strides that are not whole elements cannot be described to the library: read
            # such inputs from a copy.
            if writable:
                raise ValueError(f"{what} needs strides that are whole elements")
            array = np.ascontiguousarray(array)
        self.array = array
        self._shape = (ctypes.c_int64 * max(array.ndim, 1))(*array.shape)
        self._strides = None
        if not contiguous:
            # Pass element strides instead of copying: the header allows any strides, negative ones
            # included, with data pointing at element [0,...,0] -- which is numpy's data pointer.
            self._strides = (ctypes.c_int64 * array.ndim)(*(s // itemsize for s in array.strides))
        # ctypes arrays convert to the POINTER(c_int64) fields directly (no ctypes.cast: a decode
        # loop pays this on every call).
        self.struct = qk_tensor(
            data=array.ctypes.data if array.size else None,
            dtype=int(code),
            ndim=array.ndim,
            shape=self._shape,
            strides=self._strides,
        )

    def ref(self):
        return ctypes.byref(self.struct)


def shape_array(shape):
    """An int64[] of a shape, for qk_quantized_layout_get (never a zero-length ctypes array)."""
    return (ctypes.c_int64 * max(len(shape), 1))(*shape)
