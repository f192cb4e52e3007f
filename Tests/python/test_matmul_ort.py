"""quantkit.matmul on weights made by ONNX Runtime's own quantizers gives what ONNX Runtime computes.

  * quantize_matmul_{2,4,8}bits (the C++ quantizer behind MatMulNBitsQuantizer): its padding bits past
    K are unpredictable, so pack_matmulnbits must ignore them;
  * MatMulNBitsQuantizer on a one-MatMul fp32 model: the initializers of the MatMulNBits node it
    writes, packed with pack_matmulnbits, against running that model (accuracy_level 0, float);
  * ORT's dynamic int8 path (DynamicQuantizeLinear + MatMulInteger) against matmul_integer.
"""

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi import _pybind_state as ort_c

import quantkit as qk
from ort_models import run_matmulnbits

ORT_QUANTIZE = {2: ort_c.quantize_matmul_2bits, 4: ort_c.quantize_matmul_4bits,
                8: ort_c.quantize_matmul_8bits}
FLOAT_RTOL = 1e-5


def ort_quantize(w, block, bits, sym):
    """ORT's quantizer on W [K, N] as onnxruntime.quantization calls it (W padded to whole blocks)."""
    k, n = w.shape
    kblocks = (k + block - 1) // block
    padded = np.pad(w, ((0, kblocks * block - k), (0, 0)))
    packed = np.zeros((n, kblocks, block * bits // 8), np.uint8)
    scales = np.zeros((n, kblocks), np.float32)
    zero_points = np.zeros((n, (kblocks * bits + 7) // 8), np.uint8)
    ORT_QUANTIZE[bits](packed, padded, scales, zero_points, block, n, k, sym)
    return packed, scales, None if sym else zero_points


def dequantized(blob, scales, zero_points, k, n, bits, block):
    params = qk.make_params(f"uint{bits}", layout="matmulnbits", block_size=block,
                            symmetric=zero_points is None, rounding="half_away")
    qt = qk.QuantizedTensor(blob.reshape(-1), scales, zero_points, (n, k), params)
    zero = qk.QuantizedTensor(np.zeros_like(qt.data), scales, zero_points, (n, k), params)
    return qt, qt.dequantize().astype(np.float64), np.abs(zero.dequantize().astype(np.float64))


def check(got, expected, a, w, offset, what):
    allowance = FLOAT_RTOL * (np.abs(a).astype(np.float64) @ (np.abs(w) + offset).T) + 1e-30
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    assert (diff <= allowance).all(), f"{what}: max diff {diff.max():.3g} (allowed {allowance.min():.3g}..)"


CASES = [(k, block, bits, sym) for k, block, bits, sym in itertools.product(
    (100, 257), (16, 32, 64, 128), (2, 4, 8), (True, False))]
CASES += [(1024, 32, 4, True), (2048, 128, 4, False), (1536, 64, 8, False)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"K{c[0]}-b{c[1]}-{c[2]}bit-{'sym' if c[3] else 'asym'}")
def test_ort_quantized_weights_run_like_matmulnbits(case):
    k, block, bits, sym = case
    n = 19
    w = np.random.default_rng(k + block + bits).standard_normal((k, n)).astype(np.float32)
    blob, scales, zp = ort_quantize(w, block, bits, sym)
    qt, wq, offset = dequantized(blob, scales, zp, k, n, bits, block)
    with qk.pack_matmulnbits(blob, scales, zp, k=k, n=n, bits=bits, block_size=block) as packed:
        for m in (1, 3, 17):
            a = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
            theirs = run_matmulnbits(a, qt, k, n, bits, block)  # ORT, accuracy_level 0
            ours = qk.matmul(a, packed)
            check(ours, theirs, a, wq, offset, f"{case} M={m}")
            check(ours, a.astype(np.float64) @ wq.T, a, wq, offset, f"{case} M={m} vs float64")


def _one_matmul_model(k, n, seed):
    w = np.random.default_rng(seed).standard_normal((k, n)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"], name="mm")], "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        initializer=[numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


@pytest.mark.parametrize("bits, block, sym", [(4, 32, True), (4, 32, False), (4, 128, False), (4, 16, True),
                                              (8, 64, False), (2, 32, False)])
def test_matmulnbits_quantizer_model(bits, block, sym):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    k, n = 333, 45
    model = _one_matmul_model(k, n, seed=bits * block)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=sym, accuracy_level=0)
    quantizer.process()
    qmodel = quantizer.model.model
    nodes = [node for node in qmodel.graph.node if node.op_type == "MatMulNBits"]
    assert len(nodes) == 1
    node = nodes[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert (attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"]) == (k, n, bits, block)
    assert attrs.get("accuracy_level", 0) == 0
    inits = {t.name: numpy_helper.to_array(t) for t in qmodel.graph.initializer}
    blob, scales = inits[node.input[1]], inits[node.input[2]]
    zp = inits[node.input[3]] if len(node.input) > 3 and node.input[3] else None
    assert (zp is None) == sym
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(qmodel.SerializeToString(), options, providers=["CPUExecutionProvider"])
    _, wq, offset = dequantized(blob, scales, zp, k, n, bits, block)
    with qk.pack_matmulnbits(blob, scales, zp, k=k, n=n, bits=bits, block_size=block) as packed:
        for m in (1, 4, 33):
            a = np.random.default_rng(m).standard_normal((m, k)).astype(np.float32)
            theirs = session.run(None, {"A": a})[0]
            check(qk.matmul(a, packed), theirs, a, wq, offset, f"{bits}bit b{block} M={m}")


def _dynamic_int8_session(k, n):
    """DynamicQuantizeLinear(A) + MatMulInteger(A_q, W_q) in ORT, with W_q int8 per column (given)."""
    nodes = [helper.make_node("DynamicQuantizeLinear", ["A"], ["Aq", "As", "Azp"]),
             helper.make_node("MatMulInteger", ["Aq", "Wq", "Azp", "Wzp"], ["Y"])]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k]),
         helper.make_tensor_value_info("Wq", TensorProto.INT8, [k, n]),
         helper.make_tensor_value_info("Wzp", TensorProto.INT8, [n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, ["M", n]),
         helper.make_tensor_value_info("Aq", TensorProto.UINT8, ["M", k]),
         helper.make_tensor_value_info("As", TensorProto.FLOAT, []),
         helper.make_tensor_value_info("Azp", TensorProto.UINT8, [])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_matmul_integer_equals_ort_matmulinteger():
    k, n = 300, 37
    session = _dynamic_int8_session(k, n)
    rng = np.random.default_rng(5)
    # On CPUs without VNNI, ORT's uint8 x int8 kernel sums pairs of products in 16 bits with
    # saturation, so full-range weights differ there from MatMulInteger's exact sums. Weights in
    # [-64, 63] keep every pair sum within int16 (2 * 255 * 64 < 32768): ORT is exact on every CPU.
    wq_ort = rng.integers(-64, 64, (k, n), dtype=np.int64).astype(np.int8)
    wq_full = rng.integers(-128, 128, (k, n), dtype=np.int64).astype(np.int8)
    wzp = rng.integers(-3, 4, n, dtype=np.int64).astype(np.int8)
    for m in (1, 5, 64):
        a = rng.standard_normal((m, k)).astype(np.float32)
        y, aq, a_scale, azp = session.run(None, {"A": a, "Wq": wq_ort, "Wzp": wzp})
        np.testing.assert_array_equal(qk.matmul_integer(aq, wq_ort, azp, wzp), y)
        exact = (aq.astype(np.int64) - int(azp)) @ (wq_full.astype(np.int64) - wzp.astype(np.int64))
        ours = qk.matmul_integer(aq, wq_full, azp, wzp)
        np.testing.assert_array_equal(ours, exact)
        # Rescaled form (W8A8 with per-column weight scales): acc * a_scale * w_scale.
        w_scale = rng.uniform(0.001, 0.01, n).astype(np.float32)
        ours_f = qk.matmul_integer(aq, wq_full, azp, wzp, a_scale, w_scale)
        expected = exact.astype(np.float64) * float(a_scale) * w_scale.astype(np.float64)
        assert (np.abs(ours_f - expected) <= 1e-6 * np.abs(expected) + 1e-30).all()
