"""The struct_size rules of Include/quantkit.h, straight through ctypes.

  * the CALLER always sets struct_size, also before qk_quant_params_init (which keeps it);
  * smaller than this version's sizeof -> QK_ERROR_VERSION;
  * larger (a caller built against a newer header): input structs are accepted when the bytes this
    library does not know are all zero, else QK_ERROR_VERSION; output structs get those bytes zeroed;
  * above 4096 -> QK_ERROR_VERSION.
"""

import ctypes

import numpy as np
import pytest

import quantkit as qk
from quantkit import Status, _ffi
from quantkit._tensor import TensorView
from quantkit.errors import check

B = ctypes.byref
P = ctypes.POINTER
X = np.random.default_rng(11).standard_normal((4, 64)).astype(np.float32)
PARAMS = qk.make_params("uint4", symmetric=False)
LAYOUT = qk.layout_for(PARAMS, X.shape)


def newer(cls, extra, fill=0):
    """A struct as a caller built against a newer header would pass it: this version's `cls`
    followed by `extra` bytes of fields this library does not know (filled with `fill`).
    Returns (holder, pointer to cls); struct_size is the whole size."""
    class Newer(ctypes.Structure):
        _fields_ = [("base", cls), ("tail", ctypes.c_uint8 * extra)]
    holder = Newer()
    holder.base.struct_size = ctypes.sizeof(Newer)
    for i in range(extra):
        holder.tail[i] = fill
    return holder, ctypes.cast(B(holder), P(cls))


def copy_into(holder, value):
    """Copies a filled struct into holder.base, keeping holder's struct_size."""
    size = holder.base.struct_size
    ctypes.memmove(B(holder), B(value), ctypes.sizeof(value))
    holder.base.struct_size = size


class Buffers:
    """Output buffers of one quantization of X with PARAMS."""

    def __init__(self):
        self.data = np.zeros(LAYOUT.data_bytes, np.uint8)
        self.scales = np.zeros(LAYOUT.scales_count, np.float32)
        self.zps = np.zeros(LAYOUT.zero_points_bytes, np.uint8)

    def fill(self, q):
        q.data, q.data_bytes = self.data.ctypes.data, self.data.nbytes
        q.scales, q.scales_bytes = self.scales.ctypes.data, self.scales.nbytes
        q.zero_points, q.zero_points_bytes = self.zps.ctypes.data, self.zps.nbytes
        return q

    def result(self):
        return self.data.tobytes(), self.scales.tobytes(), self.zps.tobytes()


def quantize(params_ptr, quantized_ptr=None):
    """(status, result bytes) of qk_quantize(X) with the given params (and qk_quantized) pointers."""
    bufs = Buffers()
    holder = None
    if quantized_ptr is None:
        holder = bufs.fill(_ffi.new_struct(_ffi.qk_quantized))
        quantized_ptr = B(holder)
    else:
        bufs.fill(quantized_ptr.contents)
    view = TensorView(X, "x")
    status = _ffi.lib().qk_quantize(params_ptr, view.ref(), quantized_ptr)
    return status, bufs.result()


EXPECTED = qk.quantize(X, params=PARAMS)
EXPECTED_BYTES = (EXPECTED.data.tobytes(), EXPECTED.scales.tobytes(), EXPECTED.zero_points.tobytes())


# ---- qk_quant_params_init reads the caller's struct_size ----

def test_init_with_struct_size_zero_is_a_version_error():
    params = _ffi.qk_quant_params()  # struct_size 0: the caller forgot to set it
    with pytest.raises(qk.QuantKitError) as info:
        check(_ffi.lib().qk_quant_params_init(B(params), qk.Format.INT4), "qk_quant_params_init")
    err = info.value
    assert err.status == Status.VERSION and err.name == "QK_ERROR_VERSION"
    assert "struct_size" in err.message
    assert bytes(params) == bytes(ctypes.sizeof(params))  # untouched on failure


@pytest.mark.parametrize("size", [1, 4, ctypes.sizeof(_ffi.qk_quant_params) - 1,
                                  _ffi.MAX_STRUCT_SIZE + 1, 2 ** 32 - 1])
def test_init_rejects_sizes_it_does_not_serve(size):
    params = _ffi.qk_quant_params(struct_size=size)
    assert _ffi.lib().qk_quant_params_init(B(params), qk.Format.INT4) == Status.VERSION
    assert _ffi.lib().qk_last_error().decode()
    assert params.struct_size == size and params.format == 0


def test_init_keeps_the_callers_struct_size():
    params = _ffi.new_struct(_ffi.qk_quant_params)
    assert _ffi.lib().qk_quant_params_init(B(params), qk.Format.INT4) == 0
    assert params.struct_size == ctypes.sizeof(_ffi.qk_quant_params)
    assert (params.format, params.block_size, params.search_steps) == (qk.Format.INT4, 32, 20)


@pytest.mark.parametrize("extra", [4, 64, _ffi.MAX_STRUCT_SIZE - ctypes.sizeof(_ffi.qk_quant_params)])
def test_init_of_a_newer_struct_fills_known_fields_and_zeroes_the_rest(extra):
    holder, ptr = newer(_ffi.qk_quant_params, extra, fill=0xAB)
    assert _ffi.lib().qk_quant_params_init(ptr, qk.Format.INT4) == 0
    assert holder.base.struct_size == ctypes.sizeof(holder)  # kept, not overwritten with 56
    assert set(holder.tail) == {0}  # unknown output bytes are zeroed
    plain = _ffi.new_struct(_ffi.qk_quant_params)
    _ffi.lib().qk_quant_params_init(B(plain), qk.Format.INT4)
    assert bytes(holder.base)[4:] == bytes(plain)[4:]


def test_binding_params_set_struct_size_before_init():
    # make_params goes through qk_quant_params_init: it works only because struct_size is set first.
    assert qk.make_params("int4").block_size == 32
    assert PARAMS.to_c().struct_size == ctypes.sizeof(_ffi.qk_quant_params)


# ---- qk_quant_params as an input ----

def test_newer_params_with_zero_tail_are_accepted():
    holder, ptr = newer(_ffi.qk_quant_params, 16)
    copy_into(holder, PARAMS.to_c())
    assert quantize(ptr) == (0, EXPECTED_BYTES)


@pytest.mark.parametrize("byte", [0, 7, 15])
def test_newer_params_with_nonzero_tail_are_rejected(byte):
    holder, ptr = newer(_ffi.qk_quant_params, 16)
    copy_into(holder, PARAMS.to_c())
    holder.tail[byte] = 1
    status, result = quantize(ptr)
    assert status == Status.VERSION
    assert "newer" in _ffi.lib().qk_last_error().decode()
    assert result == Buffers().result()  # nothing written
    with pytest.raises(qk.QuantKitError) as info:
        check(status, "qk_quantize")
    assert info.value.status == Status.VERSION


def test_params_struct_size_4096_is_the_largest():
    holder, ptr = newer(_ffi.qk_quant_params, _ffi.MAX_STRUCT_SIZE - ctypes.sizeof(_ffi.qk_quant_params))
    copy_into(holder, PARAMS.to_c())
    assert holder.base.struct_size == _ffi.MAX_STRUCT_SIZE
    assert quantize(ptr) == (0, EXPECTED_BYTES)
    holder2, ptr2 = newer(_ffi.qk_quant_params, _ffi.MAX_STRUCT_SIZE + 4 - ctypes.sizeof(_ffi.qk_quant_params))
    copy_into(holder2, PARAMS.to_c())
    holder2.base.struct_size = _ffi.MAX_STRUCT_SIZE + 1  # every byte readable, but past the limit
    assert quantize(ptr2)[0] == Status.VERSION


@pytest.mark.parametrize("size", [0, ctypes.sizeof(_ffi.qk_quant_params) - 4, 4097, 2 ** 31])
def test_params_struct_size_out_of_range(size):
    params = PARAMS.to_c()
    params.struct_size = size
    assert quantize(B(params))[0] == Status.VERSION


def test_newer_params_everywhere_params_are_read():
    holder, ptr = newer(_ffi.qk_quant_params, 8)
    copy_into(holder, PARAMS.to_c())
    lib = _ffi.lib()
    shape = (ctypes.c_int64 * 2)(*X.shape)
    out = _ffi.new_struct(_ffi.qk_quantized_layout)
    assert lib.qk_quantized_layout_get(ptr, 2, shape, B(out)) == 0
    assert out.data_bytes == LAYOUT.data_bytes
    holder.tail[3] = 9
    assert lib.qk_quantized_layout_get(ptr, 2, shape, B(out)) == Status.VERSION
    q = EXPECTED._c_struct()
    result = np.zeros(X.shape, np.float32)
    view = TensorView(result, "out", writable=True)
    assert lib.qk_dequantize(ptr, B(q), view.ref()) == Status.VERSION
    assert not result.any()
    holder.tail[3] = 0
    assert lib.qk_dequantize(ptr, B(q), view.ref()) == 0
    np.testing.assert_array_equal(result, EXPECTED.dequantize())


# ---- qk_quantized (an input struct: it describes the caller's buffers) ----

def test_newer_quantized_with_zero_tail_is_accepted():
    holder, ptr = newer(_ffi.qk_quantized, 24)
    assert quantize(B(PARAMS.to_c()), ptr) == (0, EXPECTED_BYTES)


def test_newer_quantized_with_nonzero_tail_is_rejected():
    holder, ptr = newer(_ffi.qk_quantized, 24)
    holder.tail[23] = 0x80
    status, result = quantize(B(PARAMS.to_c()), ptr)
    assert status == Status.VERSION and result == Buffers().result()


@pytest.mark.parametrize("size", [0, 8, ctypes.sizeof(_ffi.qk_quantized) - 8, 4097])
def test_quantized_struct_size_out_of_range(size):
    q = Buffers().fill(_ffi.new_struct(_ffi.qk_quantized))
    q.struct_size = size
    assert quantize(B(PARAMS.to_c()), ctypes.pointer(q))[0] == Status.VERSION


# ---- output structs: the unknown tail is zeroed ----

def test_newer_output_structs_get_their_tail_zeroed():
    lib = _ffi.lib()
    holder, ptr = newer(_ffi.qk_format_info, 16, fill=0xCD)
    holder.base.reserved = 0x1234
    assert lib.qk_format_info_get(qk.Format.INT4, ptr) == 0
    assert set(holder.tail) == {0} and holder.base.reserved == 0
    assert holder.base.struct_size == ctypes.sizeof(holder) and holder.base.bits == 4

    holder, ptr = newer(_ffi.qk_quantized_layout, 16, fill=0xCD)
    shape = (ctypes.c_int64 * 2)(*X.shape)
    assert lib.qk_quantized_layout_get(B(PARAMS.to_c()), 2, shape, ptr) == 0
    assert set(holder.tail) == {0} and holder.base.data_bytes == LAYOUT.data_bytes

    holder, ptr = newer(_ffi.qk_error_stats, 16, fill=0xCD)
    holder.base.reserved = 0x1234
    view = TensorView(X, "x")
    assert lib.qk_compare(view.ref(), view.ref(), ptr) == 0
    assert set(holder.tail) == {0} and holder.base.reserved == 0 and holder.base.count == X.size

    holder, ptr = newer(_ffi.qk_error_stats, 16, fill=0xCD)
    q = EXPECTED._c_struct()
    assert lib.qk_quantization_error(B(PARAMS.to_c()), view.ref(), B(q), ptr) == 0
    assert set(holder.tail) == {0} and holder.base.count == X.size


@pytest.mark.parametrize("cls", [_ffi.qk_format_info, _ffi.qk_quantized_layout, _ffi.qk_error_stats])
@pytest.mark.parametrize("delta", [-1, "max+1"])
def test_output_struct_size_out_of_range(cls, delta):
    lib = _ffi.lib()
    value = _ffi.new_struct(cls)
    value.struct_size = ctypes.sizeof(cls) - 1 if delta == -1 else _ffi.MAX_STRUCT_SIZE + 1
    view = TensorView(X, "x")
    if cls is _ffi.qk_format_info:
        status = lib.qk_format_info_get(qk.Format.INT4, B(value))
    elif cls is _ffi.qk_quantized_layout:
        status = lib.qk_quantized_layout_get(B(PARAMS.to_c()), 2, (ctypes.c_int64 * 2)(*X.shape), B(value))
    else:
        status = lib.qk_compare(view.ref(), view.ref(), B(value))
    assert status == Status.VERSION
