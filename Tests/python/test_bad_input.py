"""Bad input from Python: a clear exception every time, never a crash, never a silent wrong answer.

ValueError / TypeError come from the binding's own checks (before any C call); QuantKitError
carries the library's status and message.
"""

import numpy as np
import pytest

import quantkit as qk
from quantkit import Status


def _x(shape=(4, 64)):
    return np.random.default_rng(3).standard_normal(shape).astype(np.float32)


def _raises_status(status, fn, *args, **kwargs):
    with pytest.raises(qk.QuantKitError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.status == status, err
    assert err.name == f"QK_ERROR_{status.name}"
    assert err.message, "the library gave no qk_last_error() message"
    return err


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("fmt", ["int4", "uint8", "nf4", "fp8", "fp16"])
def test_non_finite_input(fmt, bad):
    x = _x()
    x[1, 7] = bad
    err = _raises_status(Status.NON_FINITE, qk.quantize, x, fmt)
    assert "nan" in err.message.lower() or "inf" in err.message.lower()


def test_non_finite_in_half_precision_and_quantize_with_scales():
    x = _x().astype(np.float16)
    x[0, 0] = np.nan
    _raises_status(Status.NON_FINITE, qk.quantize, x, "int8")
    _raises_status(Status.NON_FINITE, qk.quantize_with_scales, x.astype(np.float32), np.float32(0.1))
    _raises_status(Status.NON_FINITE, qk.quantize_with_scales, _x(), np.float32(np.nan))
    _raises_status(Status.NON_FINITE, qk.quantize_with_scales, _x(), np.float32(np.inf))


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int8, np.uint8, np.complex64, bool])
def test_wrong_input_dtype(dtype):
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        qk.quantize(np.ones((4, 32), dtype), "int4")


def test_not_an_array():
    with pytest.raises(TypeError):
        qk.quantize([[1.0, 2.0]], "int4")  # a list becomes float64: asked to convert, not guessed
    with pytest.raises(TypeError):
        qk.quantize("weights", "int4")
    with pytest.raises(TypeError):
        qk.dequantize(np.ones(3, np.float32))


def test_wrong_output_and_scale_dtypes():
    qt = qk.quantize(_x(), "int4")
    with pytest.raises(TypeError):
        qt.dequantize(np.float64)
    with pytest.raises(TypeError):
        qk.quantize(_x(), "int4", scale_dtype="float64")
    with pytest.raises(TypeError):
        qk.quantize_with_scales(_x(), np.array(0.1))  # a float64 array (plain floats are accepted)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("flip", [(slice(None, None, -1),), (slice(None), slice(None, None, -2)),
                                  (slice(None, None, -2), slice(None, None, -1))])
def test_negative_strides_pass_through(flip, dtype):
    # The library takes negative strides (data points at element [0,...,0]); the binding passes
    # them through instead of copying, and the view quantizes exactly like its contiguous copy.
    from quantkit._tensor import TensorView
    x = _x((6, 128)).astype(dtype)
    view = x[flip]
    tv = TensorView(view, "x")
    assert tv.array is view and any(s < 0 for s in tv._strides[:view.ndim])
    copy = np.ascontiguousarray(view)
    for fmt, kw in (("int4", {}), ("uint8", {"symmetric": False, "axis": 0}), ("nf4", {}), ("fp16", {})):
        a, b = qk.quantize(view, fmt, **kw), qk.quantize(copy, fmt, **kw)
        assert a.data.tobytes() == b.data.tobytes() and a.scales.tobytes() == b.scales.tobytes(), fmt
        if b.zero_points is not None:
            assert a.zero_points.tobytes() == b.zero_points.tobytes()
        assert qk.error(view, a) == qk.error(copy, b)
    assert qk.compare(view, copy).max_abs_error == 0
    a = qk.quantize_with_scales(view, np.float32(0.05), np.uint8(128))
    b = qk.quantize_with_scales(copy, np.float32(0.05), np.uint8(128))
    assert a.data.tobytes() == b.data.tobytes()


def test_negative_stride_output():
    qt = qk.quantize(_x(), "int4")
    out = np.full((4, 64), 9.0, np.float32)
    assert qt.dequantize(out=out[::-1, ::-1]) is not None
    np.testing.assert_array_equal(out[::-1, ::-1], qt.dequantize())


@pytest.mark.parametrize("shape", [(0,), (0, 64), (4, 0), (3, 0, 5)])
def test_empty_arrays(shape):
    x = np.zeros(shape, np.float32)
    for kw in ({}, {"granularity": "tensor"}, {"axis": 0}):
        qt = qk.quantize(x, "int8", **kw)
        assert qt.data.size == 0
        assert qt.dequantize().shape == shape
        assert qk.error(x, qt).count == 0


def test_scalar_needs_per_tensor():
    x = np.array(1.5, np.float32)
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, x, "int8")  # blocked default: no axis
    assert qk.quantize(x, "int8", granularity="tensor").dequantize() == np.float32(1.5)


@pytest.mark.parametrize("block", [0, -5, 2 ** 31 - 1])
def test_block_size_out_of_range(block):
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), "int4", block_size=block)


@pytest.mark.parametrize("value", [2 ** 31, 2 ** 40, -(2 ** 31) - 1])
def test_ints_that_do_not_fit_int32(value):
    # ctypes would wrap these silently (2**32 + 32 -> 32); the binding refuses them.
    for kw in ("block_size", "axis", "num_threads", "search_steps"):
        with pytest.raises(ValueError, match="32-bit"):
            qk.quantize(_x(), "int4", **{kw: value})


def test_non_integer_params():
    with pytest.raises(TypeError):
        qk.quantize(_x(), "int4", block_size=32.0)
    with pytest.raises(TypeError):
        qk.quantize(_x(), "int4", block_size=True)


@pytest.mark.parametrize("block", [8, 24, 100])
def test_matmulnbits_block_must_be_power_of_two_at_least_16(block):
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), "int4", layout="matmulnbits", block_size=block)


def test_layout_format_combinations():
    _raises_status(Status.UNSUPPORTED, qk.quantize, _x(), "int3", layout="matmulnbits", block_size=16)
    _raises_status(Status.UNSUPPORTED, qk.quantize, _x(), "int4", layout="bnb4", block_size=16)
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x((2, 3, 32)), "int4", layout="matmulnbits")
    _raises_status(Status.UNSUPPORTED, qk.quantize, _x(), "nf4", symmetric=False)
    _raises_status(Status.UNSUPPORTED, qk.quantize, _x(), "fp8", symmetric=False)


@pytest.mark.parametrize("name", ["int5", "", "float128", "int4 ", "nf5"])
def test_unknown_format_names(name):
    err = _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), name)
    assert "int4" in err.message  # the message lists the known names


def test_bad_format_arguments():
    with pytest.raises(ValueError):
        qk.quantize(_x(), "int4\0junk")
    with pytest.raises(TypeError):
        qk.quantize(_x(), None)
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), 99)
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), 0)


@pytest.mark.parametrize("kw", [{"method": "median"}, {"rounding": "up"}, {"layout": "gguf"},
                                {"granularity": "row"}])
def test_unknown_enum_names(kw):
    with pytest.raises(ValueError, match="must be one of"):
        qk.quantize(_x(), "int4", **kw)


@pytest.mark.parametrize("kw", [{"axis": 2}, {"axis": -3}, {"method": "percentile", "percentile": 0},
                                {"method": "percentile", "percentile": 100.5},
                                {"method": "percentile", "percentile": float("nan")},
                                {"method": "mse", "search_steps": 0},
                                {"method": "mse", "min_clip_ratio": 0.0},
                                {"method": "mse", "min_clip_ratio": 1.5},
                                {"num_threads": -1}])
def test_out_of_range_params(kw):
    _raises_status(Status.INVALID_ARGUMENT, qk.quantize, _x(), "int4", **kw)


def test_too_many_dimensions():
    with pytest.raises(ValueError, match="at most 8"):
        qk.quantize(np.zeros((1,) * 9, np.float32), "int8")


def test_set_num_threads_negative():
    _raises_status(Status.INVALID_ARGUMENT, qk.set_num_threads, -1)


def test_quantize_with_scales_shape_and_zero_point_checks():
    x = _x((4, 6))
    with pytest.raises(ValueError, match="needs"):
        qk.quantize_with_scales(x, np.ones(5, np.float32), axis=1)
    with pytest.raises(ValueError, match="zero_points"):
        qk.quantize_with_scales(x, np.ones(6, np.float32), np.zeros(5, np.uint8), axis=1)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        qk.quantize_with_scales(x, np.ones(6, np.float32), np.full(6, 9), format="int4", axis=1)
    with pytest.raises(ValueError, match="must be 0"):
        qk.quantize_with_scales(x, np.float32(1), np.float32(1), format="fp8")


def test_quantized_tensor_buffer_checks():
    qt = qk.quantize(_x(), "uint4", symmetric=False)
    with pytest.raises(ValueError, match="bytes"):
        qk.QuantizedTensor(qt.data[:-1], qt.scales, qt.zero_points, qt.shape, qt.params)
    with pytest.raises(ValueError, match="scales"):
        qk.QuantizedTensor(qt.data, qt.scales[:, :1], qt.zero_points, qt.shape, qt.params)
    with pytest.raises(ValueError, match="zero points"):
        qk.QuantizedTensor(qt.data, qt.scales, None, qt.shape, qt.params)
    with pytest.raises(TypeError):
        qk.QuantizedTensor(qt.data.astype(np.int32), qt.scales, qt.zero_points, qt.shape, qt.params)
    with pytest.raises(TypeError):
        qk.QuantizedTensor(qt.data, qt.scales.astype(np.float16), qt.zero_points, qt.shape, qt.params)
    with pytest.raises(ValueError, match="negative"):
        qk.QuantizedTensor(qt.data, qt.scales, qt.zero_points, (4, -64), qt.params)


def test_error_shape_mismatch():
    qt = qk.quantize(_x(), "int4")
    with pytest.raises(ValueError, match="shape"):
        qk.error(_x((4, 32)), qt)
    with pytest.raises(ValueError, match="shapes"):
        qk.compare(_x((4, 64)), _x((64, 4)))


# ---- values the scale type cannot hold: an error, never a silent Inf scale / NaN output ----

def test_range_overflow_is_an_error():
    # max(x,0) - min(x,0) = 6e38 overflows float32.
    x = np.array([3e38, -3e38, 1.0], np.float32)
    with pytest.raises(qk.QuantKitError) as err:
        qk.quantize(x, "uint8", granularity="tensor", symmetric=False)
    assert err.value.name == "QK_ERROR_OVERFLOW" and "overflows" in err.value.message


def test_half_scale_overflow_is_an_error():
    # 1e7 / 127 is past float16's 65504.
    x = np.array([1e7, -1.0, 1.0], np.float32)
    with pytest.raises(qk.QuantKitError) as err:
        qk.quantize(x, "int8", granularity="tensor", scale_dtype="float16")
    assert err.value.name == "QK_ERROR_OVERFLOW"


def test_fp16_conversion_overflow_is_an_error():
    with pytest.raises(qk.QuantKitError) as err:
        qk.quantize(np.array([1.0, 7e4], np.float32), "fp16")
    assert err.value.name == "QK_ERROR_OVERFLOW" and "element 1" in err.value.message


# Values that round past the type's largest finite value are outside its range; the largest
# value itself (and what rounds to it) converts.
@pytest.mark.parametrize("fmt, inside, outside", [
    ("fp16", [65504.0, -65504.0, 65519.0], [65520.0, -7e4, 1e6, 3.4e38]),
    ("bf16", [3.38953139e38, -3.38953139e38], [3.4e38, -3.4e38, float(np.finfo(np.float32).max)]),
])
def test_fp16_bf16_range(fmt, inside, outside):
    for value in inside:
        qt = qk.quantize(np.array([1.0, value], np.float32), fmt)
        assert np.isfinite(qt.dequantize()).all(), (fmt, value)
    for value in outside:
        err = _raises_status(Status.OVERFLOW, qk.quantize, np.array([1.0, 2.0, value], np.float32), fmt)
        assert "element 2" in err.message and fmt in err.message


def test_bf16_level_max_is_the_largest_bf16():
    top = np.float32(qk.format_info("bf16").level_max)
    assert qk.quantize(np.array([top], np.float32), "bf16").dequantize()[0] == top


@pytest.mark.parametrize("fmt", ["nf4", "log4", "fp4-bnb"])  # level_max 1: scale = max|x|
@pytest.mark.parametrize("scale_dtype", ["float16", "bfloat16"])
def test_codebook_scale_overflows_half_scale_types(fmt, scale_dtype):
    x = np.array([3.4e38, -1.0, 1.0], np.float32)
    _raises_status(Status.OVERFLOW, qk.quantize, x, fmt, granularity="tensor", scale_dtype=scale_dtype)
    assert qk.quantize(x, fmt, granularity="tensor").scales == np.float32(3.4e38)  # fits float32


def test_half_scale_at_the_edge_fits():
    # 65504 * 127: the scale is float16's largest value exactly.
    qt = qk.quantize(np.array([65504.0 * 127, -1.0], np.float32), "int8", granularity="tensor",
                     scale_dtype="float16")
    assert qt.scales == np.float16(65504)


def test_compare_does_not_hide_nan():
    ref = _x()
    act = ref.copy()
    act[0, 0] = np.nan
    stats = qk.compare(ref, act)
    assert np.isnan(stats.max_abs_error) and np.isnan(stats.rmse)
