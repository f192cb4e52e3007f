"""Bad arguments straight through ctypes (what a careless caller of the C ABI can do from Python):
every one gets its documented status and a message, never a crash."""

import ctypes

import numpy as np
import pytest

import quantkit as qk
from quantkit import Status, _ffi
from quantkit._tensor import TensorView

B = ctypes.byref
X = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
PARAMS = qk.make_params("uint4", symmetric=False)
LAYOUT = qk.layout_for(PARAMS, X.shape)


class Call:
    """Buffers for one qk_quantize call that a test may break before calling."""

    def __init__(self):
        self.params = PARAMS.to_c()
        self.view = TensorView(X, "x")
        self.input = self.view.struct
        self.data = np.zeros(LAYOUT.data_bytes, np.uint8)
        self.scales = np.zeros(LAYOUT.scales_count, np.float32)
        self.zps = np.zeros(LAYOUT.zero_points_bytes, np.uint8)
        q = _ffi.new_struct(_ffi.qk_quantized)
        q.data, q.data_bytes = self.data.ctypes.data, self.data.nbytes
        q.scales, q.scales_bytes = self.scales.ctypes.data, self.scales.nbytes
        q.zero_points, q.zero_points_bytes = self.zps.ctypes.data, self.zps.nbytes
        self.output = q

    def quantize(self, params=True, input=True, output=True):
        return _ffi.lib().qk_quantize(B(self.params) if params else None,
                                      B(self.input) if input else None,
                                      B(self.output) if output else None)


def _set(obj, **fields):
    for k, v in fields.items():
        setattr(obj, k, v)


BREAKAGES = {
    "params NULL": (Status.NULL_POINTER, lambda c: c.quantize(params=False)),
    "input NULL": (Status.NULL_POINTER, lambda c: c.quantize(input=False)),
    "output NULL": (Status.NULL_POINTER, lambda c: c.quantize(output=False)),
    "params.struct_size 0": (Status.VERSION, lambda c: (_set(c.params, struct_size=0), c.quantize())[1]),
    "output.struct_size 8": (Status.VERSION, lambda c: (_set(c.output, struct_size=8), c.quantize())[1]),
    "data too small": (Status.BUFFER_TOO_SMALL,
                       lambda c: (_set(c.output, data_bytes=LAYOUT.data_bytes - 1), c.quantize())[1]),
    "scales too small": (Status.BUFFER_TOO_SMALL,
                         lambda c: (_set(c.output, scales_bytes=3), c.quantize())[1]),
    "zero points NULL": (Status.NULL_POINTER, lambda c: (_set(c.output, zero_points=None), c.quantize())[1]),
    "data NULL": (Status.NULL_POINTER, lambda c: (_set(c.output, data=None), c.quantize())[1]),
    "input.data NULL": (Status.NULL_POINTER, lambda c: (_set(c.input, data=None), c.quantize())[1]),
    "input.shape NULL": (Status.NULL_POINTER, lambda c: (_set(c.input, shape=None), c.quantize())[1]),
    "input.dtype 0": (Status.INVALID_ARGUMENT, lambda c: (_set(c.input, dtype=0), c.quantize())[1]),
    "input.dtype I32": (Status.UNSUPPORTED, lambda c: (_set(c.input, dtype=7), c.quantize())[1]),
    "input.ndim 9": (Status.INVALID_ARGUMENT, lambda c: (_set(c.input, ndim=9), c.quantize())[1]),
    "input.ndim -1": (Status.INVALID_ARGUMENT, lambda c: (_set(c.input, ndim=-1), c.quantize())[1]),
    "format 0": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, format=0), c.quantize())[1]),
    "scheme 7": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, scheme=7), c.quantize())[1]),
    "granularity 9": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, granularity=9), c.quantize())[1]),
    "layout 5": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, layout=5), c.quantize())[1]),
    "scale_dtype I8": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, scale_dtype=5), c.quantize())[1]),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_broken_quantize_call(name):
    status, call = BREAKAGES[name]
    c = Call()
    before = (c.data.tobytes(), c.scales.tobytes(), c.zps.tobytes())
    assert call(c) == status
    assert _ffi.lib().qk_last_error().decode()
    assert (c.data.tobytes(), c.scales.tobytes(), c.zps.tobytes()) == before


def test_sizes_past_the_address_space():
    shape = (ctypes.c_int64 * 2)(2 ** 62, 2 ** 62)
    out = _ffi.new_struct(_ffi.qk_quantized_layout)
    params = PARAMS.to_c()
    assert _ffi.lib().qk_quantized_layout_get(B(params), 2, shape, B(out)) == Status.OVERFLOW
    c = Call()
    c.input.shape = ctypes.cast(shape, ctypes.POINTER(ctypes.c_int64))
    assert c.quantize() == Status.OVERFLOW
    c = Call()
    strides = (ctypes.c_int64 * 2)(2 ** 62, 1)
    c.input.strides = ctypes.cast(strides, ctypes.POINTER(ctypes.c_int64))
    assert c.quantize() == Status.OVERFLOW


def test_other_functions_reject_null():
    lib = _ffi.lib()
    out = ctypes.c_int32()
    assert lib.qk_format_from_name(None, B(out)) == Status.NULL_POINTER
    assert lib.qk_format_from_name(b"int4", None) == Status.NULL_POINTER
    assert lib.qk_format_info_at(0, None) == Status.NULL_POINTER
    assert lib.qk_format_info_at(lib.qk_format_count(), B(_ffi.new_struct(_ffi.qk_format_info))) \
        == Status.INVALID_ARGUMENT
    assert lib.qk_quant_params_init(None, 3) == Status.NULL_POINTER
    c = Call()
    assert lib.qk_quantization_error(B(c.params), B(c.input), B(c.output), None) == Status.NULL_POINTER
    stats = _ffi.new_struct(_ffi.qk_error_stats)
    stats.struct_size = 0
    assert lib.qk_quantization_error(B(c.params), B(c.input), B(c.output), B(stats)) == Status.VERSION
    assert lib.qk_compare(None, B(c.input), B(_ffi.new_struct(_ffi.qk_error_stats))) == Status.NULL_POINTER


def test_dequantize_into_strided_view():
    qt = qk.quantize(X, "int4")
    wide = np.full((4, 128), 7.0, np.float32)
    qt.dequantize(out=wide[:, ::2])
    np.testing.assert_array_equal(wide[:, ::2], qt.dequantize())
    assert (wide[:, 1::2] == 7.0).all()  # nothing written between the strided elements
    # Negative strides go to the library as they are (no copy, so the write lands in `wide`).
    wide[:] = 7.0
    qt.dequantize(out=wide[:, ::-2])
    np.testing.assert_array_equal(wide[:, ::-2], qt.dequantize())
    assert (wide[:, ::2] == 7.0).all()
    with pytest.raises(ValueError):
        qt.dequantize(out=wide.view(np.uint8)[:, 1:-3].view(np.float32))  # not whole elements
    with pytest.raises(ValueError):
        qt.dequantize(out=np.zeros((4, 63), np.float32))
