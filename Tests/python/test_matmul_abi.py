"""The ABI-2 matmul functions straight through ctypes: constants and struct layouts against the
header, the qk_api slots, NULL pointers, struct_size rules, enum values, shape checks, and the
"outputs untouched on failure" rule (what a careless C caller can do, never a crash)."""

import ctypes
import re
import shutil
import subprocess

import numpy as np
import pytest

import quantkit as qk
from quantkit import Status, _constants, _ffi
from quantkit._tensor import TensorView
from conftest import REPO

B = ctypes.byref
P = ctypes.POINTER
HEADER = REPO / "Include" / "quantkit.h"
NEW_STRUCTS = ["qk_pack_options", "qk_packed_matrix_info", "qk_matmul_options", "qk_api"]
K, N = 77, 33
W = np.random.default_rng(21).standard_normal((N, K)).astype(np.float32)
X = np.random.default_rng(22).standard_normal((3, K)).astype(np.float32)
QT = qk.quantize(W, "uint4", symmetric=False)
SENTINEL = 0x5A5A5A5A


def _header_enum(name):
    match = re.search(rf"\b{name}\s*=\s*(-?\d+)", HEADER.read_text())
    assert match, f"{name} is not in the header"
    return int(match.group(1))


def test_constants_match_header():
    text = HEADER.read_text()
    assert f"#define QK_VERSION_NUMBER {_constants.HEADER_VERSION_NUMBER}" in text
    assert f"#define QK_VERSION_MINOR {_constants.HEADER_VERSION_MINOR}" in text
    assert f"#define QK_ABI_VERSION {_constants.ABI_VERSION}" in text
    assert (_constants.HEADER_VERSION_NUMBER == _constants.HEADER_VERSION_MAJOR * 10000
            + _constants.HEADER_VERSION_MINOR * 100 + _constants.HEADER_VERSION_PATCH)
    for member in _constants.Compute:
        assert _header_enum(f"QK_COMPUTE_{member.name}") == member
    for member in _constants.WeightOrientation:
        assert _header_enum(f"QK_WEIGHT_{member.name}") == member
    assert qk.version_number() >= _constants.HEADER_VERSION_NUMBER


def test_version_string_agrees_with_version_number():
    # qk_version_string and qk_version_number describe one library.
    number = qk.version_number()
    assert qk.version() == f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    text = HEADER.read_text()
    c = _constants
    assert f'#define QK_VERSION_STRING "{c.HEADER_VERSION_MAJOR}.{c.HEADER_VERSION_MINOR}.' \
           f'{c.HEADER_VERSION_PATCH}"' in text


def _c_layout_program():
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "quantkit.h"', "int main(void) {"]
    for struct in NEW_STRUCTS:
        cls = getattr(_ffi, struct)
        lines.append(f'printf("{struct} %zu\\n", sizeof({struct}));')
        for name, _ in cls._fields_:
            lines.append(f'printf("{struct}.{name} %zu\\n", offsetof({struct}, {name}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to lay out the header")
def test_new_structs_match_c_compiler(tmp_path):
    source = tmp_path / "layout.c"
    source.write_text(_c_layout_program())
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c99", "-I", str(HEADER.parent), str(source), "-o", str(exe)], check=True)
    c_layout = [line for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                text=True).stdout.split("\n") if line]
    ours = []
    for struct in NEW_STRUCTS:
        cls = getattr(_ffi, struct)
        ours.append(f"{struct} {ctypes.sizeof(cls)}")
        ours += [f"{struct}.{name} {getattr(cls, name).offset}" for name, _ in cls._fields_]
    assert c_layout == ours


def test_struct_sizes_on_lp64():
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("sizes pinned for 64-bit platforms")
    assert ctypes.sizeof(_ffi.qk_pack_options) == 16
    assert ctypes.sizeof(_ffi.qk_matmul_options) == 12
    assert ctypes.sizeof(_ffi.qk_packed_matrix_info) == 40
    assert _ffi.qk_packed_matrix_info.packed_bytes.offset == 32


def test_api_table_abi_2():
    lib = _ffi.lib()
    api = lib.qk_get_api(2)
    assert api, "qk_get_api(2) is NULL"
    api = api.contents
    assert api.abi_version == 2
    assert api.struct_size >= ctypes.sizeof(_ffi.qk_api)
    slots = _ffi.api_slots(api)
    assert slots == [name for name, _ in _ffi.qk_api._fields_[2:]]
    for name in slots:
        slot = ctypes.cast(getattr(api, name), ctypes.c_void_p).value
        export = ctypes.cast(getattr(lib, "qk_" + name), ctypes.c_void_p).value
        assert slot == export, name
    assert api.matmul_kernel_variant().decode() == qk.matmul_kernel_variant()
    # ABI 1 callers are still served; the library may hand them the same (grown) table, whose
    # ABI 1 prefix is what they read.
    old = lib.qk_get_api(1)
    assert old, "ABI 1 callers must still be served"
    old = old.contents
    assert old.abi_version >= 1
    for name, _ in _ffi.qk_api._fields_[2:]:
        if name == "pack_weights":
            break
        assert (ctypes.cast(getattr(old, name), ctypes.c_void_p).value
                == ctypes.cast(getattr(lib, "qk_" + name), ctypes.c_void_p).value), name
    assert not lib.qk_get_api(3) and not lib.qk_get_api(0)


def test_kernel_variant_string_is_static():
    lib = _ffi.lib()
    first = lib.qk_matmul_kernel_variant()
    assert first and first == lib.qk_matmul_kernel_variant()


# ---- raw calls ----

class Pack:
    """Arguments of one qk_pack_weights call that a test may break before calling."""

    def __init__(self, qt=QT, n=N, k=K):
        self.qt = qt
        self.params = qt.params.to_c()
        self.quantized = qt._c_struct()
        self.options = _ffi.new_struct(_ffi.qk_pack_options)
        self.n, self.k = n, k
        self.out = _ffi.qk_packed_matrix_p(SENTINEL)

    def call(self, params=True, weights=True, options=True, out=True):
        return _ffi.lib().qk_pack_weights(B(self.params) if params else None, self.n, self.k,
                                          B(self.quantized) if weights else None,
                                          B(self.options) if options else None,
                                          B(self.out) if out else None)

    def release(self):
        if self.out.value and self.out.value != SENTINEL:
            _ffi.lib().qk_packed_matrix_release(self.out)


def _set(obj, **fields):
    for name, value in fields.items():
        setattr(obj, name, value)
    return obj


PACK_BREAKAGES = {
    "params NULL": (Status.NULL_POINTER, lambda c: c.call(params=False)),
    "weights NULL": (Status.NULL_POINTER, lambda c: c.call(weights=False)),
    "out NULL": (Status.NULL_POINTER, lambda c: c.call(out=False)),
    "data NULL": (Status.NULL_POINTER, lambda c: (_set(c.quantized, data=None), c.call())[1]),
    "scales NULL": (Status.NULL_POINTER, lambda c: (_set(c.quantized, scales=None), c.call())[1]),
    "zero points NULL": (Status.NULL_POINTER, lambda c: (_set(c.quantized, zero_points=None), c.call())[1]),
    "data too small": (Status.BUFFER_TOO_SMALL,
                       lambda c: (_set(c.quantized, data_bytes=QT.data.nbytes - 1), c.call())[1]),
    "scales too small": (Status.BUFFER_TOO_SMALL,
                         lambda c: (_set(c.quantized, scales_bytes=4), c.call())[1]),
    "n larger than the buffers": (Status.BUFFER_TOO_SMALL, lambda c: (_set(c, n=N + 1), c.call())[1]),
    "n negative": (Status.INVALID_ARGUMENT, lambda c: (_set(c, n=-1), c.call())[1]),
    "k negative": (Status.INVALID_ARGUMENT, lambda c: (_set(c, k=-77), c.call())[1]),
    "params.struct_size 0": (Status.VERSION, lambda c: (_set(c.params, struct_size=0), c.call())[1]),
    "weights.struct_size 8": (Status.VERSION, lambda c: (_set(c.quantized, struct_size=8), c.call())[1]),
    "options.struct_size 0": (Status.VERSION, lambda c: (_set(c.options, struct_size=0), c.call())[1]),
    "options.struct_size 4097": (Status.VERSION, lambda c: (_set(c.options, struct_size=4097), c.call())[1]),
    "orientation 2": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, orientation=2), c.call())[1]),
    "orientation -1": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, orientation=-1), c.call())[1]),
    "num_threads -1": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, num_threads=-1), c.call())[1]),
    "format 0": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, format=0), c.call())[1]),
    "layout 9": (Status.INVALID_ARGUMENT, lambda c: (_set(c.params, layout=9), c.call())[1]),
}


@pytest.mark.parametrize("name", PACK_BREAKAGES)
def test_broken_pack_call(name):
    status, call = PACK_BREAKAGES[name]
    c = Pack()
    got = call(c)
    c.release()
    assert got == status, (name, got, _ffi.lib().qk_last_error())
    assert _ffi.lib().qk_last_error().decode()
    assert c.out.value == SENTINEL, "header: on error, out-parameters are left untouched"


def test_pack_with_null_options_is_nk():
    c = Pack()
    assert c.call(options=False) == 0
    info = _ffi.new_struct(_ffi.qk_packed_matrix_info)
    assert _ffi.lib().qk_packed_matrix_get_info(c.out, B(info)) == 0
    assert (info.n, info.k, info.format) == (N, K, qk.Format.UINT4)
    c.release()


@pytest.mark.parametrize("what, shape, kw, orientation", [
    ("blocked along N of [N, K]", (N, K), {"block_size": 32, "axis": 0}, "nk"),
    ("blocked along N of [K, N]", (K, N), {"block_size": 32, "axis": 1}, "kn"),
    ("per input channel of [N, K]", (N, K), {"axis": 1}, "nk"),
    ("block 20 (power-of-two factor 4)", (N, K), {"block_size": 20}, "nk"),
    ("block 12", (N, K), {"block_size": 12}, "nk"),
])
def test_layouts_the_kernels_do_not_serve(what, shape, kw, orientation):
    w = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    qt = qk.quantize(w, "int4", **kw)
    with pytest.raises(qk.QuantKitError) as info:
        qk.pack_weights(qt, orientation)
    assert info.value.status == Status.UNSUPPORTED, (what, info.value)


def test_matmulnbits_layout_is_nk_only():
    qt = qk.quantize(W, "int4", layout="matmulnbits", block_size=32, rounding="half_away")
    c = Pack(qt)
    c.options.orientation = qk.WeightOrientation.KN
    c.n, c.k = K, N
    got = c.call()
    c.release()
    assert got in (Status.UNSUPPORTED, Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH,
                   Status.BUFFER_TOO_SMALL), got


def test_newer_pack_options():
    class Newer(ctypes.Structure):
        _fields_ = [("base", _ffi.qk_pack_options), ("tail", ctypes.c_uint8 * 16)]
    holder = Newer()
    holder.base.struct_size = ctypes.sizeof(Newer)
    ptr = ctypes.cast(B(holder), P(_ffi.qk_pack_options))
    lib = _ffi.lib()
    out = _ffi.qk_packed_matrix_p(SENTINEL)
    params, q = QT.params.to_c(), QT._c_struct()
    assert lib.qk_pack_weights(B(params), N, K, B(q), ptr, B(out)) == 0
    lib.qk_packed_matrix_release(out)
    holder.tail[5] = 1
    out = _ffi.qk_packed_matrix_p(SENTINEL)
    assert lib.qk_pack_weights(B(params), N, K, B(q), ptr, B(out)) == Status.VERSION
    assert out.value == SENTINEL


@pytest.fixture(scope="module")
def handle():
    c = Pack()
    assert c.call() == 0
    yield c.out
    c.release()


def test_release_null_is_ignored():
    _ffi.lib().qk_packed_matrix_release(None)


def test_get_info(handle):
    lib = _ffi.lib()
    info = _ffi.new_struct(_ffi.qk_packed_matrix_info)
    assert lib.qk_packed_matrix_get_info(handle, B(info)) == 0
    assert (info.format, info.n, info.k, info.int8_compute) == (qk.Format.UINT4, N, K, 1)
    assert info.block_size >= 1 and info.packed_bytes > 0
    assert info.struct_size == ctypes.sizeof(_ffi.qk_packed_matrix_info)
    assert lib.qk_packed_matrix_get_info(None, B(info)) == Status.NULL_POINTER
    assert lib.qk_packed_matrix_get_info(handle, None) == Status.NULL_POINTER
    small = _ffi.new_struct(_ffi.qk_packed_matrix_info)
    small.struct_size = 8
    small.n = 12345
    assert lib.qk_packed_matrix_get_info(handle, B(small)) == Status.VERSION
    assert small.n == 12345 and small.struct_size == 8  # untouched

    class Newer(ctypes.Structure):
        _fields_ = [("base", _ffi.qk_packed_matrix_info), ("tail", ctypes.c_uint8 * 24)]
    holder = Newer()
    holder.base.struct_size = ctypes.sizeof(Newer)
    for i in range(24):
        holder.tail[i] = 0xCD
    assert lib.qk_packed_matrix_get_info(handle, ctypes.cast(B(holder), P(_ffi.qk_packed_matrix_info))) == 0
    assert set(holder.tail) == {0} and holder.base.n == N
    assert holder.base.struct_size == ctypes.sizeof(Newer)


class Mul:
    """Arguments of one qk_matmul call, y poisoned with 7.0."""

    def __init__(self, handle, x=X, n=N, y_shape=None, bias=None):
        self.handle = handle
        self.xv = TensorView(x, "x")
        self.x = self.xv.struct
        self.y_arr = np.full(y_shape or (x.shape[0], n), 7.0, np.float32)
        self.yv = TensorView(self.y_arr, "y", writable=True)
        self.y = self.yv.struct
        self.bias_arr = bias
        self.bv = TensorView(bias, "bias") if bias is not None else None
        self.options = _ffi.new_struct(_ffi.qk_matmul_options)

    def call(self, w=True, x=True, y=True, options=True):
        return _ffi.lib().qk_matmul(self.handle if w else None, B(self.x) if x else None,
                                    B(self.bv.struct) if self.bv else None, B(self.y) if y else None,
                                    B(self.options) if options else None)


MUL_BREAKAGES = {
    "w NULL": (Status.NULL_POINTER, lambda c: c.call(w=False)),
    "x NULL": (Status.NULL_POINTER, lambda c: c.call(x=False)),
    "y NULL": (Status.NULL_POINTER, lambda c: c.call(y=False)),
    "x.data NULL": (Status.NULL_POINTER, lambda c: (_set(c.x, data=None), c.call())[1]),
    "y.data NULL": (Status.NULL_POINTER, lambda c: (_set(c.y, data=None), c.call())[1]),
    "x.shape NULL": (Status.NULL_POINTER, lambda c: (_set(c.x, shape=None), c.call())[1]),
    "x.dtype 0": (Status.INVALID_ARGUMENT, lambda c: (_set(c.x, dtype=0), c.call())[1]),
    "x.dtype I32": (Status.UNSUPPORTED, lambda c: (_set(c.x, dtype=7), c.call())[1]),
    "y.dtype I8": (Status.UNSUPPORTED, lambda c: (_set(c.y, dtype=5), c.call())[1]),
    "x.ndim 0": (Status.INVALID_ARGUMENT, lambda c: (_set(c.x, ndim=0), c.call())[1]),
    "x.ndim 9": (Status.INVALID_ARGUMENT, lambda c: (_set(c.x, ndim=9), c.call())[1]),
    "wrong K": (Status.SHAPE_MISMATCH, "x76"),
    "wrong N in y": (Status.SHAPE_MISMATCH, "y32"),
    "wrong M in y": (Status.SHAPE_MISMATCH, "y-rows"),
    "bias length 32": (Status.SHAPE_MISMATCH, "bias32"),
    "options.struct_size 0": (Status.VERSION, lambda c: (_set(c.options, struct_size=0), c.call())[1]),
    "compute 2": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, compute=2), c.call())[1]),
    "compute -1": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, compute=-1), c.call())[1]),
    "num_threads -3": (Status.INVALID_ARGUMENT, lambda c: (_set(c.options, num_threads=-3), c.call())[1]),
}


@pytest.mark.parametrize("name", MUL_BREAKAGES)
def test_broken_matmul_call(handle, name):
    status, how = MUL_BREAKAGES[name]
    if how == "x76":
        c = Mul(handle, x=np.ones((3, 76), np.float32))
    elif how == "y32":
        c = Mul(handle, n=32)
    elif how == "y-rows":
        c = Mul(handle, y_shape=(4, N))
    elif how == "bias32":
        c = Mul(handle, bias=np.zeros(32, np.float32))
    else:
        c = Mul(handle)
    got = c.call() if isinstance(how, str) else how(c)
    assert got == status, (name, got, _ffi.lib().qk_last_error())
    assert _ffi.lib().qk_last_error().decode()
    assert (c.y_arr == 7.0).all(), "header: on error, outputs are left untouched"


def test_bias_of_another_dtype_is_refused(handle):
    c = Mul(handle, bias=np.zeros(N, np.float16))
    assert c.call() in (Status.UNSUPPORTED, Status.INVALID_ARGUMENT)
    assert (c.y_arr == 7.0).all()


def test_null_options_compute_float(handle):
    c = Mul(handle)
    assert c.call(options=False) == 0
    with qk.pack_weights(QT) as packed:
        np.testing.assert_array_equal(c.y_arr, qk.matmul(X, packed, compute="float"))


def test_newer_matmul_options(handle):
    class Newer(ctypes.Structure):
        _fields_ = [("base", _ffi.qk_matmul_options), ("tail", ctypes.c_uint8 * 20)]
    holder = Newer()
    holder.base.struct_size = ctypes.sizeof(Newer)
    holder.base.compute = qk.Compute.INT8
    c = Mul(handle)
    lib = _ffi.lib()
    ptr = ctypes.cast(B(holder), P(_ffi.qk_matmul_options))
    assert lib.qk_matmul(handle, B(c.x), None, B(c.y), ptr) == 0
    with qk.pack_weights(QT) as packed:
        np.testing.assert_array_equal(c.y_arr, qk.matmul(X, packed, compute="int8"))
    holder.tail[19] = 1
    c = Mul(handle)
    assert lib.qk_matmul(handle, B(c.x), None, B(c.y), ptr) == Status.VERSION
    assert (c.y_arr == 7.0).all()


def test_strides_past_the_address_space(handle):
    c = Mul(handle)
    strides = (ctypes.c_int64 * 2)(2 ** 62, 1)
    c.x.strides = ctypes.cast(strides, P(ctypes.c_int64))
    assert c.call() in (Status.OVERFLOW, Status.INVALID_ARGUMENT)
    assert (c.y_arr == 7.0).all()


# ---- qk_matmul_integer ----

_I = {np.dtype(np.uint8): qk._constants.DType.U8, np.dtype(np.int8): qk._constants.DType.I8,
      np.dtype(np.int32): qk._constants.DType.I32, np.dtype(np.float32): qk._constants.DType.F32}


def _view(array, writable=False):
    return TensorView(array, "t", writable=writable, dtypes=_I)


def test_matmul_integer_raw_checks():
    lib = _ffi.lib()
    a = _view(np.ones((3, 8), np.uint8))
    b = _view(np.ones((8, 5), np.int8))
    y_arr = np.full((3, 5), 7, np.int32)
    y = _view(y_arr, writable=True)

    def call(a=a, azp=None, b=b, bzp=None, sa=None, sb=None, bias=None, y=y, threads=0):
        r = lambda v: B(v.struct) if v is not None else None  # noqa: E731
        return lib.qk_matmul_integer(r(a), r(azp), r(b), r(bzp), r(sa), r(sb), r(bias), r(y), threads)

    assert call(a=None) == Status.NULL_POINTER
    assert call(b=None) == Status.NULL_POINTER
    assert call(y=None) == Status.NULL_POINTER
    assert call(b=_view(np.ones((7, 5), np.int8))) == Status.SHAPE_MISMATCH
    assert call(y=_view(np.zeros((3, 4), np.int32), writable=True)) == Status.SHAPE_MISMATCH
    assert call(azp=_view(np.zeros(2, np.uint8))) == Status.SHAPE_MISMATCH
    assert call(threads=-1) == Status.INVALID_ARGUMENT
    bad = _view(np.ones((3, 8), np.float32))
    assert call(a=bad) in (Status.UNSUPPORTED, Status.INVALID_ARGUMENT)
    # zero point of another dtype than its matrix
    assert call(azp=_view(np.zeros((), np.int8))) in (Status.INVALID_ARGUMENT, Status.UNSUPPORTED)
    # one scale without the other, and a bias without scales
    one = _view(np.ones((), np.float32))
    assert call(sa=one) in (Status.INVALID_ARGUMENT, Status.NULL_POINTER)
    assert call(bias=_view(np.zeros(5, np.float32))) == Status.INVALID_ARGUMENT
    # scales given but y is I32
    assert call(sa=one, sb=one) in (Status.INVALID_ARGUMENT, Status.UNSUPPORTED)
    assert (y_arr == 7).all(), "outputs untouched on failure"
    assert call() == 0 and (y_arr == 8).all()
