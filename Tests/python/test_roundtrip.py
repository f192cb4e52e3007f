"""Every format quantizes and dequantizes within its bound, from every input dtype and layout."""

import ml_dtypes
import numpy as np
import pytest

import quantkit as qk

BF16 = np.dtype(ml_dtypes.bfloat16)
FORMATS = [f.name for f in qk.formats()]
SCALED = [f.name for f in qk.formats() if f.scaled]
INTEGER = [f.name for f in qk.formats() if f.is_integer]

# SQNR floors (dB) for N(0,1) data with the default granularity; a few dB under what a correct
# min-max quantizer gets, so a wrong scale, packing, or level table falls well below.
SQNR_FLOOR = {"int8": 44, "uint8": 44, "int4": 19, "uint4": 19, "int3": 12, "uint3": 12,
              "int2": 3, "uint2": 3, "nf4": 20, "fp4-e2m1": 19, "fp8-e4m3": 30, "fp8-e5m2": 24,
              "fp16": 70, "bf16": 50, "log4": 13, "fp4-bnb": 18}


def _data(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def expand_scales(qt):
    """One scale per element (ONNX layout), following the params' granularity."""
    p = qt.params
    scales = qt.scales.astype(np.float32)
    if p.granularity == "tensor":
        return np.broadcast_to(scales.reshape(()), qt.shape)
    axis = p.axis % len(qt.shape)
    if p.granularity == "axis":
        shape = [1] * len(qt.shape)
        shape[axis] = qt.shape[axis]
        return np.broadcast_to(scales.reshape(shape), qt.shape)
    return np.repeat(scales, p.block_size, axis=axis).take(range(qt.shape[axis]), axis=axis)


def unit_levels(fmt):
    """The values of every code with scale 1 and zero point 0, from the library's DequantizeLinear."""
    info = qk.format_info(fmt)
    codes = np.arange(2 ** info.bits, dtype=np.uint8)
    if info.is_integer:
        return np.arange(info.code_min, info.code_max + 1, dtype=np.float32)
    params = qk.make_params(fmt, granularity="tensor")
    data = np.packbits(np.unpackbits(codes[:, None], axis=1, bitorder="little")[:, :info.bits]
                       .reshape(-1), bitorder="little")
    qt = qk.QuantizedTensor(data, np.ones((), np.float32), None, codes.shape, params)
    levels = qt.dequantize()
    return np.unique(levels[np.isfinite(levels)])


@pytest.mark.parametrize("fmt", FORMATS)
def test_sqnr_floor(fmt):
    x = _data((16, 256))
    qt = qk.quantize(x, fmt)
    stats = qk.error(x, qt)
    assert stats.count == x.size
    assert stats.sqnr_db > SQNR_FLOOR[fmt], stats
    # The library's statistics agree with numpy's on its own dequantization.
    err = np.abs(qt.dequantize().astype(np.float64) - x)
    assert np.isclose(stats.max_abs_error, err.max(), rtol=1e-6)
    assert np.isclose(stats.rmse, np.sqrt((err ** 2).mean()), rtol=1e-5)


@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("fmt", INTEGER)
def test_integer_error_at_most_half_a_step(fmt, sym):
    x = _data((6, 100), seed=1)  # 100: the last block of 32 is partial
    qt = qk.quantize(x, fmt, symmetric=sym)
    err = np.abs(qt.dequantize() - x)
    bound = 0.5 * expand_scales(qt) * (1 + 1e-5) + 1e-7
    assert (err <= bound).all(), float((err - bound).max())


@pytest.mark.parametrize("fmt", [f for f in SCALED if f not in INTEGER])
def test_float_and_codebook_formats_pick_nearest_level(fmt):
    x = _data((6, 100), seed=2)
    qt = qk.quantize(x, fmt)
    scale = expand_scales(qt)
    scaled = np.where(scale > 0, x / np.where(scale > 0, scale, 1), 0)
    ours = np.where(scale > 0, qt.dequantize() / np.where(scale > 0, scale, 1), 0)
    levels = unit_levels(fmt)
    nearest = np.abs(scaled[..., None] - levels).min(axis=-1)
    # Our level is one of the levels, and no level is closer (ties may go either way).
    tol = 1e-5 * np.maximum(1, np.abs(ours))
    assert (np.abs(ours[..., None] - levels).min(axis=-1) <= tol).all()
    assert (np.abs(scaled - ours) <= nearest + 1e-5 * np.maximum(1, np.abs(scaled))).all()


def test_fp16_bf16_are_plain_conversions():
    x = _data((3, 50)) * 1000
    assert qk.quantize(x, "fp16").dequantize().tobytes() == x.astype(np.float16).astype(np.float32).tobytes()
    assert qk.quantize(x, "bf16").dequantize().tobytes() == x.astype(BF16).astype(np.float32).tobytes()


@pytest.mark.parametrize("dtype", [np.float16, BF16])
@pytest.mark.parametrize("fmt", ["int4", "uint8", "nf4", "fp8-e4m3", "fp16"])
def test_half_inputs_read_exactly(fmt, dtype):
    # float16/bfloat16 widen to float32 exactly, so both must quantize identically.
    x = _data((4, 64)).astype(dtype)
    a = qk.quantize(x, fmt)
    b = qk.quantize(x.astype(np.float32), fmt)
    assert a.data.tobytes() == b.data.tobytes() and a.scales.tobytes() == b.scales.tobytes()


@pytest.mark.parametrize("dtype", [np.float16, BF16])
def test_dequantize_to_half_rounds_float32_result(dtype):
    x = _data((4, 64))
    qt = qk.quantize(x, "int8")
    assert qt.dequantize(dtype).dtype == dtype
    assert qt.dequantize(dtype).tobytes() == qt.dequantize(np.float32).astype(dtype).tobytes()


@pytest.mark.parametrize("scale_dtype", ["float16", "bfloat16"])
def test_half_scales(scale_dtype):
    x = _data((4, 64))
    qt = qk.quantize(x, "int4", scale_dtype=scale_dtype)
    assert qt.scales.dtype.name == scale_dtype
    err = np.abs(qt.dequantize() - x)
    # The stored (rounded) scale defines the grid; values near max|x| may clip by the rounding.
    assert (err <= 0.5 * expand_scales(qt) + 0.01 * np.abs(x) + 1e-6).all()


def test_strided_inputs_match_contiguous_copies():
    x = _data((12, 128))
    for view in (x[:, ::2], x.T, x[::3, 5:100], x[::-1], x[:, ::-2]):
        assert not view.flags.c_contiguous
        a = qk.quantize(view, "int4")
        b = qk.quantize(np.ascontiguousarray(view), "int4")
        assert a.data.tobytes() == b.data.tobytes() and a.scales.tobytes() == b.scales.tobytes()
        assert qk.error(view, a) == qk.error(np.ascontiguousarray(view), b)


def test_granularities_and_scale_shapes():
    x = _data((7, 100))
    assert qk.quantize(x, "int8", granularity="tensor").scales.shape == ()
    assert qk.quantize(x, "int8", axis=0).scales.shape == (7,)
    assert qk.quantize(x, "int8", axis=1).scales.shape == (100,)
    assert qk.quantize(x, "int4", block_size=32).scales.shape == (7, 4)
    assert qk.quantize(x, "int4", block_size=4, axis=0).scales.shape == (2, 100)
    qt = qk.quantize(x, "int8", axis=0)
    np.testing.assert_allclose(qt.scales, np.abs(x).max(axis=1) / 127, rtol=1e-6)


def test_sizes_and_bits_per_weight():
    x = _data((8, 256))
    qt = qk.quantize(x, "int4", block_size=32)
    assert qt.data.nbytes == x.size // 2 and qt.scales.nbytes == x.size // 32 * 4
    assert qt.bits_per_weight == 5.0
    qt = qk.quantize(x, "uint4", block_size=128, symmetric=False)
    assert qt.zero_points.nbytes == x.size // 128 // 2
    assert qt.bits_per_weight == 4 + 32 / 128 + 4 / 128
    assert qk.quantize(x, "int3", block_size=64).data.nbytes == x.size * 3 // 8


def test_asymmetric_zero_points_in_range_and_exact_zero():
    x = np.abs(_data((4, 64))) + 0.5  # all positive: min(x, 0) = 0, so zero point = code_min
    qt = qk.quantize(x, "uint4", symmetric=False)
    assert (qt.zero_point_values() == 0).all()
    y = _data((4, 64))
    qt = qk.quantize(y, "uint4", symmetric=False)
    zp = qt.zero_point_values()
    assert zp.min() >= 0 and zp.max() <= 15
    # Zero is always exactly representable (the reason for the min(x,0)/max(x,0) rule).
    y[:, 0] = 0
    assert (qk.quantize(y, "uint4", symmetric=False).dequantize()[:, 0] == 0).all()


def test_codes_unpack_to_quantizer_values():
    x = _data((3, 40))
    qt = qk.quantize(x, "int4", block_size=8)
    codes = qt.codes()
    assert codes.dtype == np.int8 and codes.shape == x.shape
    np.testing.assert_array_equal(codes * expand_scales(qt), qt.dequantize())


def test_mse_never_worse_than_minmax():
    x = _data((16, 256)) ** 3  # heavy tails: clipping pays off
    for fmt in ("int4", "int3", "nf4"):
        minmax = qk.error(x, qk.quantize(x, fmt, method="minmax")).rmse
        mse = qk.error(x, qk.quantize(x, fmt, method="mse")).rmse
        assert mse <= minmax + 1e-12


def test_percentile_clips_the_scale():
    x = _data((1, 4096))
    x[0, 0] = 100.0
    full = qk.quantize(x, "int8", granularity="tensor")
    clipped = qk.quantize(x, "int8", granularity="tensor", method="percentile", percentile=99.0)
    assert clipped.scales < full.scales / 10


def test_from_codes_round_trip():
    x = _data((4, 64))
    qt = qk.quantize(x, "uint4", symmetric=False, block_size=16, axis=1)
    again = qk.from_codes(qt.codes().astype(ml_dtypes.uint4), qt.scales,
                          qt.zero_point_values().astype(ml_dtypes.uint4), block_size=16, axis=1)
    assert again.data.tobytes() == qt.data.tobytes()
    assert again.dequantize().tobytes() == qt.dequantize().tobytes()


def test_quantize_with_own_scales_reproduces_quantize():
    x = _data((4, 64))
    qt = qk.quantize(x, "int8", block_size=16, axis=1)
    again = qk.quantize_with_scales(x, qt.scales, np.zeros(qt.scales.shape, np.int8),
                                    block_size=16, axis=1)
    assert again.data.tobytes() == qt.data.tobytes()
