"""The binding itself: versions, runtime settings, the format table, params defaults, and that the
ctypes mirror matches Include/quantkit.h as a C compiler lays it out."""

import ctypes
import shutil
import subprocess

import ml_dtypes
import numpy as np
import pytest

import quantkit as qk
from quantkit import _constants, _ffi
from conftest import REPO

HEADER = REPO / "Include" / "quantkit.h"
STRUCTS = ["qk_tensor", "qk_format_info", "qk_quant_params", "qk_quantized_layout", "qk_quantized",
           "qk_error_stats", "qk_api"]


def test_version_matches_header():
    text = HEADER.read_text()
    assert f'#define QK_VERSION_STRING "{qk.version()}"' in text
    assert qk.version_number() == _constants.HEADER_VERSION_NUMBER
    text = HEADER.read_text()
    assert f"#define QK_VERSION_NUMBER {_constants.HEADER_VERSION_NUMBER}" in text
    assert f"#define QK_ABI_VERSION {_constants.ABI_VERSION}" in text
    assert f"#define QK_MAX_DIMS {_constants.MAX_DIMS}" in text


def test_kernel_variant():
    assert qk.kernel_variant() in ("avx512", "avx2", "scalar")


def test_num_threads_round_trip():
    before = qk.get_num_threads()
    try:
        qk.set_num_threads(3)
        assert qk.get_num_threads() == 3
        qk.set_num_threads(0)  # all cores
        assert qk.get_num_threads() >= 1
    finally:
        qk.set_num_threads(before)


def test_status_names():
    lib = _ffi.lib()
    for status in _constants.Status:
        name = lib.qk_status_string(int(status)).decode()
        expected = "QK_OK" if status == 0 else f"QK_ERROR_{status.name}"
        assert name == expected
    assert lib.qk_status_string(999).decode() == "unknown status"


def test_format_table():
    table = qk.formats()
    assert [f.id for f in table] == [int(f) for f in _constants.Format if f != 0]
    assert len({f.name for f in table}) == len(table)
    for f in table:
        assert qk.format_info(f.name) == f
        assert qk.format_info(f.name.upper()) == f  # case-insensitive
        assert qk.format_info(f.id) == f
        assert f.bits in (2, 3, 4, 8, 16)
        assert f.description
        assert f.scaled == (f.id not in (_constants.Format.FP16, _constants.Format.BF16))
    assert qk.format_info("fp8").id == _constants.Format.FP8_E4M3FN
    assert qk.format_info("fp4").id == _constants.Format.FP4_E2M1
    int4 = qk.format_info("int4")
    assert (int4.code_min, int4.code_max, int4.signed, int4.takes_zero_point) == (-8, 7, True, True)
    assert int4.level_max == 7


def test_float_flag_and_level_max():
    # FLOAT marks levels of a floating-point type; NF4's levels are normal quantiles, not floats.
    F = _constants.Format
    floats = {F.FP4_E2M1, F.FP4_BNB, F.FP8_E4M3FN, F.FP8_E5M2, F.FP16, F.BF16}
    assert {f.id for f in qk.formats() if f.is_float} == floats
    nf4 = qk.format_info("nf4")
    assert not nf4.is_float and nf4.codebook and not nf4.is_integer
    # level_max: the largest value of the type (BF16: 0x7F7F = 3.38953e38, not float32's max).
    assert np.float32(qk.format_info("bf16").level_max) == np.float32(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    assert np.float32(qk.format_info("bf16").level_max) == np.float32(3.38953139e38)
    assert qk.format_info("fp16").level_max == 65504.0
    assert qk.format_info("fp8-e4m3").level_max == 448.0


def test_format_info_reserved_is_zero():
    lib = _ffi.lib()
    for index in range(lib.qk_format_count()):
        info = _ffi.new_struct(_ffi.qk_format_info)
        info.reserved = 0xDEADBEEF  # an output field: the library writes it
        assert lib.qk_format_info_at(index, ctypes.byref(info)) == 0
        assert info.reserved == 0 and info.struct_size == ctypes.sizeof(_ffi.qk_format_info)


def test_params_defaults_follow_library():
    p = qk.make_params("int4")
    assert (p.granularity, p.axis, p.block_size, p.symmetric, p.method, p.rounding, p.layout,
            p.scale_dtype) == ("block", -1, 32, True, "minmax", "half_even", "onnx", "float32")
    assert p.search_steps == 20 and p.min_clip_ratio == 0.5 and abs(p.percentile - 99.99) < 1e-4
    assert qk.make_params("fp8").granularity == "tensor"


def test_granularity_rule():
    assert qk.make_params("int8", axis=0).granularity == "axis"
    assert qk.make_params("int8", block_size=64).granularity == "block"
    assert qk.make_params("int8", axis=0, block_size=64).granularity == "block"
    assert qk.make_params("int8", granularity="tensor").granularity == "tensor"
    assert qk.make_params("int4", layout="matmulnbits").granularity == "block"
    assert qk.make_params("int8", granularity="per_channel", axis=1).granularity == "axis"


def test_api_table_matches_exports():
    lib = _ffi.lib()
    # One append-only table serves every version: a version-1 caller reads its prefix.
    api = lib.qk_get_api(_constants.ABI_VERSION).contents
    assert ctypes.addressof(lib.qk_get_api(1).contents) == ctypes.addressof(api)
    assert api.abi_version == _constants.ABI_VERSION
    assert api.struct_size >= ctypes.sizeof(_ffi.qk_api)
    for field, _ in _ffi.qk_api._fields_[2:]:
        slot = ctypes.cast(getattr(api, field), ctypes.c_void_p).value
        export = ctypes.cast(getattr(lib, "qk_" + field), ctypes.c_void_p).value
        assert slot == export, field
    assert api.version_number() == qk.version_number()
    assert not lib.qk_get_api(0) and not lib.qk_get_api(_constants.ABI_VERSION + 1)
    assert lib.qk_get_extension(b"org.example.does-not-exist.v1") is None


def _c_layout_program():
    lines = ["#include <stdio.h>", "#include <stddef.h>", '#include "quantkit.h"', "int main(void) {",
             # qk_status is typedef int32_t: 4 bytes, signed (ctypes: c_int32).
             'printf("qk_status %zu %d\\n", sizeof(qk_status), (qk_status)-1 < 0);']
    for struct in STRUCTS:
        cls = getattr(_ffi, struct)
        lines.append(f'printf("{struct} %zu\\n", sizeof({struct}));')
        for field, _ in cls._fields_:
            lines.append(f'printf("{struct}.{field} %zu\\n", offsetof({struct}, {field}));')
    lines += ["return 0;", "}"]
    return "\n".join(lines)


def _ctypes_layout():
    out = [f"qk_status {ctypes.sizeof(_ffi.qk_status)} {int(_ffi.qk_status(-1).value < 0)}"]
    for struct in STRUCTS:
        cls = getattr(_ffi, struct)
        out.append(f"{struct} {ctypes.sizeof(cls)}")
        out += [f"{struct}.{field} {getattr(cls, field).offset}" for field, _ in cls._fields_]
    return out


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc) to lay out the header")
def test_ctypes_structs_match_c_compiler(tmp_path):
    source = tmp_path / "layout.c"
    source.write_text(_c_layout_program())
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-std=c99", "-I", str(HEADER.parent), str(source), "-o", str(exe)], check=True)
    c_layout = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    assert [line for line in c_layout if line] == _ctypes_layout()


def test_explicit_padding_fields():
    # The header spells out every padding word as `reserved`; pin where they sit (LP64 offsets) so
    # a field added in the wrong place shows up even without a C compiler.
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        pytest.skip("offsets pinned for 64-bit platforms")
    pins = {
        _ffi.qk_format_info: (48, {"level_max": 40, "reserved": 44}),
        _ffi.qk_quantized: (56, {"reserved": 4, "data": 8, "zero_points_bytes": 48}),
        _ffi.qk_error_stats: (56, {"reserved": 4, "count": 8, "signal_rms": 48}),
    }
    for cls, (size, offsets) in pins.items():
        assert ctypes.sizeof(cls) == size, cls.__name__
        for field, offset in offsets.items():
            assert getattr(cls, field).offset == offset, (cls.__name__, field)
    for cls in (_ffi.qk_format_info, _ffi.qk_quantized, _ffi.qk_error_stats):
        assert _ffi.new_struct(cls).reserved == 0
    header = HEADER.read_text()
    assert "typedef int32_t qk_status;" in header


def test_ctypes_mirrors_every_header_function():
    text = HEADER.read_text()
    import re
    declared = set(re.findall(r"^\w[\w\s\*]*?\b(qk_\w+)\(", text, flags=re.M))
    assert declared == set(_ffi.PROTOTYPES) | {"qk_get_api"}


def _poisoned_call(x, params, function="qk_quantize", scales=None):
    """Calls `function` on 0xA5-poisoned buffers; returns (status, data, scales, zero points)."""
    layout = qk.layout_for(params, x.shape)
    data = np.full(layout.data_bytes, 0xA5, np.uint8)
    if scales is None:
        scales = np.full(layout.scales_bytes, 0xA5, np.uint8)
    zps = np.full(layout.zero_points_bytes, 0xA5, np.uint8)
    q = _ffi.new_struct(_ffi.qk_quantized)
    q.data, q.data_bytes = data.ctypes.data, data.nbytes
    q.scales, q.scales_bytes = (scales.ctypes.data if scales.size else None), scales.nbytes
    q.zero_points, q.zero_points_bytes = (zps.ctypes.data if zps.size else None), zps.nbytes
    from quantkit._tensor import TensorView
    view = TensorView(x, "x")
    status = getattr(_ffi.lib(), function)(ctypes.byref(params.to_c()), view.ref(), ctypes.byref(q))
    return status, data, scales, zps


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_quantize_leaves_scales_untouched(bad):
    # Header: NaN/Inf in qk_quantize is the one exception to "outputs untouched on failure":
    # output->data may be partly written; scales and zero points are still untouched.
    x = np.random.default_rng(7).standard_normal((64, 256)).astype(np.float32)
    x[40, 100] = bad
    status, data, scales, zps = _poisoned_call(x, qk.make_params("uint4", symmetric=False))
    assert status == qk.Status.NON_FINITE
    assert (scales == 0xA5).all() and (zps == 0xA5).all()


def test_non_finite_quantize_with_scales_writes_nothing():
    # qk_quantize_with_scales is not the exception: NaN/Inf inputs or scales -> nothing written.
    x = np.ones((4, 32), np.float32)
    params = qk.make_params("uint8", granularity="tensor", symmetric=False)
    bad_x = x.copy()
    bad_x[2, 5] = np.nan
    status, data, _, _ = _poisoned_call(bad_x, params, "qk_quantize_with_scales",
                                        scales=np.array([0.1], np.float32))
    assert status == qk.Status.NON_FINITE and (data == 0xA5).all()
    status, data, _, _ = _poisoned_call(x, params, "qk_quantize_with_scales",
                                        scales=np.array([np.inf], np.float32))
    assert status == qk.Status.NON_FINITE and (data == 0xA5).all()


@pytest.mark.parametrize("fmt, bad, scale_dtype", [("fp16", 1e6, "float32"), ("bf16", 3.4e38, "float32"),
                                                   ("int8", 1e7, "float16"), ("nf4", 3.4e38, "bfloat16")])
def test_overflow_leaves_outputs_untouched(fmt, bad, scale_dtype):
    # QK_ERROR_OVERFLOW is an ordinary failure: every output buffer stays as it was.
    x = np.random.default_rng(8).standard_normal((64, 256)).astype(np.float32)
    x[40, 100] = bad
    gran = "tensor" if fmt == "int8" else None
    status, data, scales, zps = _poisoned_call(x, qk.make_params(fmt, granularity=gran,
                                                                 scale_dtype=scale_dtype))
    assert status == qk.Status.OVERFLOW
    assert (data == 0xA5).all() and (scales == 0xA5).all() and (zps == 0xA5).all()


def test_quantize_writes_every_byte():
    # The binding zero-fills its buffers; the library must not rely on that. Poisoned buffers
    # filled by the C call directly must equal the binding's result.
    x = np.random.default_rng(5).standard_normal((5, 77)).astype(np.float32)
    for fmt in ("int4", "uint3", "int2", "nf4", "fp4", "fp8"):
        for sym in (True, False) if qk.format_info(fmt).takes_zero_point else (True,):
            expected = qk.quantize(x, fmt, symmetric=sym)
            params, layout = expected.params, expected.layout
            data = np.full(layout.data_bytes, 0xA5, np.uint8)
            scales = np.full_like(expected.scales, np.nan)
            zps = np.full(layout.zero_points_bytes, 0xA5, np.uint8)
            q = _ffi.new_struct(_ffi.qk_quantized)
            q.data, q.data_bytes = data.ctypes.data, data.nbytes
            q.scales, q.scales_bytes = scales.ctypes.data, scales.nbytes
            if zps.size:
                q.zero_points, q.zero_points_bytes = zps.ctypes.data, zps.nbytes
            from quantkit._tensor import TensorView
            view = TensorView(x, "x")
            status = _ffi.lib().qk_quantize(ctypes.byref(params.to_c()), view.ref(), ctypes.byref(q))
            assert status == 0
            assert data.tobytes() == expected.data.tobytes(), (fmt, sym)
            assert scales.tobytes() == expected.scales.tobytes(), (fmt, sym)
            if zps.size:
                assert zps.tobytes() == expected.zero_points.tobytes(), (fmt, sym)
