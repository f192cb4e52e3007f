"""QuantKit's "matmulnbits" layout against ONNX Runtime: same bytes as ORT's own quantizer, and a
MatMulNBits node fed with QuantKit's buffers computes A @ dequantize(B).T."""

import itertools

import numpy as np
import pytest
from onnxruntime.capi import _pybind_state as ort_c

import quantkit as qk
from quantkit._packing import unpack_lsb
from ort_models import run_matmulnbits

ORT_QUANTIZE = {2: ort_c.quantize_matmul_2bits, 4: ort_c.quantize_matmul_4bits,
                8: ort_c.quantize_matmul_8bits}
KS = (32, 100, 257)          # 100 and 257 are not multiples of any block size below
BLOCKS = (16, 32, 64, 128)
BITS = (2, 4, 8)
N = 7
CASES = [(k, N, block, bits, sym)
         for k, block, bits, sym in itertools.product(KS, BLOCKS, BITS, (True, False))]
# Model-sized weights, so the vectorized kernels (not only edge loops) are compared too.
CASES += [(1024, 64, 32, 4, True), (1024, 64, 128, 4, False), (1536, 48, 64, 8, True),
          (768, 96, 32, 8, False), (768, 96, 16, 2, False), (4096, 16, 128, 4, True)]


def _ids(case):
    k, n, block, bits, sym = case
    return f"K{k}-N{n}-b{block}-{bits}bit-{'sym' if sym else 'asym'}"


def _weights(k, n, block, bits, sym):
    seed = k * 1000 + block * 10 + bits + int(sym)
    return np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)


def ort_quantize(w, block, bits, sym):
    """ORT's quantizer as onnxruntime.quantization calls it (W padded to whole blocks with zeros)."""
    k, n = w.shape
    kblocks = (k + block - 1) // block
    padded = np.pad(w, ((0, kblocks * block - k), (0, 0)))
    packed = np.zeros((n, kblocks, block * bits // 8), np.uint8)
    scales = np.zeros((n, kblocks), np.float32)
    zero_points = np.full((n, (kblocks * bits + 7) // 8), 0xA5, np.uint8)  # untouched when symmetric
    ORT_QUANTIZE[bits](packed, padded, scales, zero_points, block, n, k, sym)
    return packed, scales, zero_points


def _codes(packed, bits, n, kblocks, block):
    return unpack_lsb(packed, bits, n * kblocks * block).reshape(n, kblocks * block)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_bytes_equal_ort_quantizer(case):
    k, n, block, bits, sym = case
    w = _weights(*case)
    packed, scales, zero_points = ort_quantize(w, block, bits, sym)
    qt = qk.quantize(np.ascontiguousarray(w.T), f"int{bits}", layout="matmulnbits", block_size=block,
                     symmetric=sym, rounding="half_away")
    kblocks = scales.shape[1]
    assert qt.data.size == packed.size
    assert qt.scales.shape == scales.shape
    np.testing.assert_array_equal(qt.scales.view(np.uint32), scales.view(np.uint32))
    # Codes of real elements must match exactly. In the byte that holds the last real code of a
    # partial block, ORT's quantizer writes unpredictable bits into the padding (it reads past
    # K), so padding is checked against the header instead: code 0.
    ours = _codes(qt.data, bits, n, kblocks, block)
    theirs = _codes(packed, bits, n, kblocks, block)
    np.testing.assert_array_equal(ours[:, :k], theirs[:, :k])
    assert not ours[:, k:].any(), "header: each block padded by code 0"
    if k % block:  # bytes that hold only padding agree too (both 0)
        first = ((k % block) * bits + 7) // 8
        np.testing.assert_array_equal(qt.data.reshape(n, kblocks, -1)[:, -1, first:],
                                      packed[:, -1, first:])
    if sym:
        assert qt.zero_points is None
    else:
        np.testing.assert_array_equal(qt.zero_points.reshape(zero_points.shape), zero_points)


def test_format_name_does_not_change_bytes():
    # MatMulNBits codes are unsigned; "int4" and "uint4" must give one layout.
    w = _weights(100, N, 32, 4, False)
    a = qk.quantize(w.T.copy(), "int4", layout="matmulnbits", block_size=32, rounding="half_away")
    b = qk.quantize(w.T.copy(), "uint4", layout="matmulnbits", block_size=32, rounding="half_away")
    assert a.data.tobytes() == b.data.tobytes() and a.scales.tobytes() == b.scales.tobytes()


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matmulnbits_node_runs_quantkit_weights(case):
    k, n, block, bits, sym = case
    w = _weights(*case)
    qt = qk.quantize(np.ascontiguousarray(w.T), f"int{bits}", layout="matmulnbits", block_size=block,
                     symmetric=sym, rounding="half_away")
    a = np.random.default_rng(k + block).standard_normal((3, k)).astype(np.float32)
    expected = a.astype(np.float64) @ qt.dequantize().astype(np.float64).T
    got = run_matmulnbits(a, qt, k, n, bits, block)
    assert got.shape == (3, n)
    # fp32 accumulation in another order: relative to the size of the terms summed.
    scale = np.abs(a).astype(np.float64) @ np.abs(qt.dequantize()).astype(np.float64).T
    np.testing.assert_array_less(np.abs(got - expected), 1e-5 * scale + 1e-30)
