"""QuantKit's "bnb4" layout (NF4 / bitsandbytes FP4) against ONNX Runtime's quantize_matmul_bnb4
and its MatMulBnb4 operator."""

import itertools

import numpy as np
import pytest
from onnxruntime.capi import _pybind_state as ort_c

import quantkit as qk
from quantkit._packing import unpack_high_nibble_first
from ort_models import run_matmulbnb4

# quant_type of MatMulBnb4 / quantize_matmul_bnb4: 0 = FP4, 1 = NF4.
FORMATS = {"fp4-bnb": 0, "nf4": 1}
SHAPES = [(64, 8), (100, 7), (33, 3), (257, 5), (1024, 48)]  # (K, N); K*N odd in two of them
BLOCKS = (16, 32, 64, 128, 256)
CASES = list(itertools.product(FORMATS, SHAPES, BLOCKS))


def _ids(case):
    fmt, (k, n), block = case
    return f"{fmt}-K{k}xN{n}-b{block}"


def _weights(k, n, seed):
    return np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)


def ort_quantize(w, block, quant_type):
    """As onnxruntime.quantization's MatMulBnb4Quantizer: blocks over the flattened W.T ([N, K])."""
    k, n = w.shape
    numel = k * n
    packed = np.zeros((numel + 1) // 2, np.uint8)
    absmax = np.zeros((numel + block - 1) // block, np.float32)
    ort_c.quantize_matmul_bnb4(packed, np.ascontiguousarray(w.T), absmax, block, quant_type, n, k)
    return packed, absmax


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_codes_and_absmax_equal_ort(case):
    fmt, (k, n), block = case
    w = _weights(k, n, k * n + block)
    packed, absmax = ort_quantize(w, block, FORMATS[fmt])
    qt = qk.quantize(np.ascontiguousarray(w.T), fmt, layout="bnb4", block_size=block)
    assert qt.data.shape == packed.shape
    np.testing.assert_array_equal(qt.scales.reshape(-1).view(np.uint32), absmax.view(np.uint32))
    numel = k * n
    np.testing.assert_array_equal(unpack_high_nibble_first(qt.data, numel),
                                  unpack_high_nibble_first(packed, numel))


# Odd element count: the last low nibble holds the code of 0.0 (7 for NF4), as ORT writes.
def test_nf4_padding_nibble_equals_ort():
    w = _weights(33, 3, 0)  # 99 elements
    packed, _ = ort_quantize(w, 32, FORMATS["nf4"])
    qt = qk.quantize(np.ascontiguousarray(w.T), "nf4", layout="bnb4", block_size=32)
    assert qt.data.tobytes() == packed.tobytes()


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matmulbnb4_node_runs_quantkit_weights(case):
    fmt, (k, n), block = case
    w = _weights(k, n, k * n + block)
    qt = qk.quantize(np.ascontiguousarray(w.T), fmt, layout="bnb4", block_size=block)
    a = np.random.default_rng(k).standard_normal((4, k)).astype(np.float32)
    dequantized = qt.dequantize().astype(np.float64)
    expected = a.astype(np.float64) @ dequantized.T
    got = run_matmulbnb4(a, qt, k, n, block, FORMATS[fmt])
    scale = np.abs(a).astype(np.float64) @ np.abs(dequantized).T
    np.testing.assert_array_less(np.abs(got - expected), 1e-5 * scale + 1e-30)


def test_bnb4_dequantize_is_level_times_absmax():
    # The layout's meaning in one line: value = level[code] * absmax of its block.
    w = _weights(64, 4, 7)
    qt = qk.quantize(np.ascontiguousarray(w.T), "nf4", layout="bnb4", block_size=64)
    codes = qt.codes().reshape(-1)
    absmax = np.repeat(qt.scales.reshape(-1), 64)[:codes.size]
    levels = qt.dequantize().reshape(-1) / np.where(absmax == 0, 1, absmax)
    for code in range(16):
        picked = levels[codes == code]
        if picked.size:
            np.testing.assert_allclose(picked, picked[0], rtol=1e-6)
    assert np.isclose(levels[codes == 15].max(initial=1.0), 1.0)
