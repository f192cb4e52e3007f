"""--target qdq: DequantizeLinear + MatMul models made by `quantkit convert`, checked with the onnx
checker, the onnx reference (QuantizeLinear/DequantizeLinear) and ONNX Runtime against fp32."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from _qdq_helpers import (convert, dequantize_nodes, initializer, make_model, matmul_model, relative_error, run,
                          session)


def opset_of(model):
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def check_weight_exact(model, dq, w_kn, model_feeds):
    """The codes are what the onnx reference QuantizeLinear makes of the (alpha-folded) weight with
    the same scales, and ORT's DequantizeLinear gives exactly the reference's values."""
    attrs = {a.name: helper.get_attribute_value(a) for a in dq.attribute}
    inputs = [initializer(model, name) for name in dq.input]
    codes, scale = inputs[0], inputs[1]
    zp = inputs[2] if len(inputs) > 2 else None
    opset = opset_of(model)
    # A zero point always (zeros of the codes' type when the model stores none): it sets the type.
    zq = zp if zp is not None else np.zeros(scale.shape, codes.dtype)
    q_node = helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"], **attrs)
    feeds = {"x": w_kn.astype(np.float32), "s": scale, "z": zq}
    q_graph = helper.make_graph([q_node], "q", [], [helper.make_tensor_value_info("y", TensorProto.UNDEFINED, None)])
    q_model = helper.make_model(q_graph, opset_imports=[helper.make_opsetid("", max(19, opset))])
    (ref_codes,) = ReferenceEvaluator(q_model).run(None, feeds)
    np.testing.assert_array_equal(ref_codes.astype(np.float32), codes.astype(np.float32))

    # Dequantized weights: ORT (the DequantizeLinear output exposed as a graph output) vs reference.
    (ref_w,) = ReferenceEvaluator(dq_only_model(model, dq)).run(None, {})
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(helper.make_tensor_value_info(dq.output[0], TensorProto.FLOAT, None))
    ort_w = session(exposed).run([dq.output[0]], model_feeds)[0]
    np.testing.assert_array_equal(ort_w, ref_w)
    return ref_w


def dq_only_model(model, dq):
    inits = [t for t in model.graph.initializer if t.name in dq.input]
    graph = helper.make_graph([dq], "dq", [], [helper.make_tensor_value_info(dq.output[0], TensorProto.FLOAT, None)], inits)
    # The reference implements DequantizeLinear from opset 19 (same meaning as 13 for these inputs).
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(19, opset_of(model)))])


def convert_and_compare(model, tmp_path, feeds, w_kn, bound, *args, fake_quant):
    """Converts, checks, compares with fp32 (within `bound`) and with `fake_quant(dequantized W)`,
    the fp32 computation with the reference's dequantized weight (float rounding only)."""
    out, report = convert(model, tmp_path, "--target", "qdq", *args)
    onnx.checker.check_model(out, full_check=True)
    assert not any(n.op_type in ("MatMul", "Gemm") and n.input[1] in ("W", "B") for n in out.graph.node)
    assert all(n.domain in ("", "ai.onnx") for n in out.graph.node)
    want = run(model, feeds)[0]
    got = run(out, feeds)[0]
    assert got.shape == want.shape
    err = relative_error(got, want)
    assert err < bound, err
    dqs = dequantize_nodes(out)
    assert len(dqs) == 1
    ref_w = check_weight_exact(out, dqs[0], w_kn, feeds)
    np.testing.assert_allclose(got, fake_quant(ref_w), rtol=1e-4, atol=1e-4 * np.abs(want).max())
    return out, report, ref_w, err


@pytest.mark.parametrize("fmt, block, extra, bound, opset", [
    ("int4", 32, [], 0.15, 21),
    ("uint4", 32, ["--asymmetric"], 0.15, 21),
    ("int8", 0, [], 1e-2, 17),       # per-channel int8 needs no new opset
    ("uint8", 0, [], 1e-2, 17),
    ("int8", 32, [], 1e-2, 21),      # blocked int8
    ("fp8-e4m3", 0, [], 0.1, 19),
    ("fp8-e5m2", 0, [], 0.2, 19),
])
def test_matmul_3d(tmp_path, fmt, block, extra, bound, opset):
    rng = np.random.default_rng(1)
    model = matmul_model(64, 48, [2, 5, 64], rng)
    w = numpy_helper.to_array(model.graph.initializer[0])
    a = rng.standard_normal((2, 5, 64)).astype(np.float32)
    out, report, ref_w, err = convert_and_compare(model, tmp_path, {"A": a}, w, bound,
                                                  "--format", fmt, "--block-size", str(block), *extra,
                                                  fake_quant=lambda wq: np.maximum(a @ wq, 0))
    assert opset_of(out) == opset
    assert report["opsetAfter"] == opset
    # Dequantized weights sit within half a step of the original (integer formats).
    if fmt.startswith(("int", "uint")):
        assert np.max(np.abs(ref_w - w)) <= np.max(np.abs(w)) / (7 if "4" in fmt else 127)


def test_k_not_multiple_of_block(tmp_path):
    rng = np.random.default_rng(2)
    model = matmul_model(40, 24, [3, 40], rng)
    w = numpy_helper.to_array(model.graph.initializer[0])
    a = rng.standard_normal((3, 40)).astype(np.float32)
    out, *_ = convert_and_compare(model, tmp_path, {"A": a}, w, 0.15, "--format", "int4", "--block-size", "32",
                                  fake_quant=lambda wq: np.maximum(a @ wq, 0))
    dq = dequantize_nodes(out)[0]
    assert initializer(out, dq.input[1]).shape == (2, 24)  # ceil(40/32) blocks × N


def gemm_model(rng, k=48, n=32):
    w_nk = rng.standard_normal((n, k)).astype(np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["A", "B", "C"], ["g"], name="fc", alpha=0.5, beta=2.0, transB=1),
             helper.make_node("Relu", ["g"], ["Y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, [4, k])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, n])],
                       [numpy_helper.from_array(w_nk, "B"), numpy_helper.from_array(bias, "C")], 17)
    return model, (0.5 * w_nk).T


@pytest.mark.parametrize("fmt, block, bound", [("int8", 0, 1e-2), ("int4", 16, 0.15)])
def test_gemm_trans_b_alpha_beta_bias(tmp_path, fmt, block, bound):
    rng = np.random.default_rng(3)
    model, w_kn = gemm_model(rng)
    a = rng.standard_normal((4, 48)).astype(np.float32)
    c = numpy_helper.to_array(model.graph.initializer[1])
    out, report, *_ = convert_and_compare(model, tmp_path, {"A": a}, w_kn, bound, "--format", fmt, "--block-size", str(block),
                                          fake_quant=lambda wq: np.maximum(a @ wq + 2 * c, 0))
    ops = [n.op_type for n in out.graph.node]
    assert ops == ["DequantizeLinear", "MatMul", "Add", "Relu"], ops
    bias = initializer(out, out.graph.node[2].input[1])
    np.testing.assert_array_equal(bias, 2.0 * numpy_helper.to_array(model.graph.initializer[1]))
    assert {t.name for t in out.graph.initializer}.isdisjoint({"B", "C"})


def test_matmul_inside_if(tmp_path):
    rng = np.random.default_rng(4)
    w = rng.standard_normal((32, 16)).astype(np.float32)
    then_graph = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["t"], name="inner")], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 16])])
    else_graph = helper.make_graph([helper.make_node("Identity", ["Z"], ["e"])], "else", [],
                                   [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2, 16])])
    nodes = [helper.make_node("If", ["cond"], ["r"], then_branch=then_graph, else_branch=else_graph),
             helper.make_node("Relu", ["r"], ["Y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2, 32]),
                               helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 16])],
                       [numpy_helper.from_array(w, "W"), numpy_helper.from_array(np.zeros((2, 16), np.float32), "Z")], 17)
    out, report = convert(model, tmp_path, "--target", "qdq", "--format", "int4", "--block-size", "32")
    onnx.checker.check_model(out, full_check=True)
    assert opset_of(out) == 21 and report["layers"][0]["depth"] == 1
    then_out = next(a.g for a in out.graph.node[0].attribute if a.name == "then_branch")
    assert [n.op_type for n in then_out.node] == ["DequantizeLinear", "MatMul"]
    feeds = {"A": rng.standard_normal((2, 32)).astype(np.float32), "cond": np.array(True)}
    assert relative_error(run(out, feeds)[0], run(model, feeds)[0]) < 0.15


def rmsnorm_model(rng, hidden=64, n=48):
    """Opset 17 RMSNorm (ReduceMean with an axes attribute) before a projection: the case where
    ONNX Runtime's quantizer raises the opset to 21 and leaves an invalid ReduceMean."""
    nodes = [
        helper.make_node("Pow", ["X", "two"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["ms"], name="rms_mean", axes=[-1], keepdims=1),
        helper.make_node("Add", ["ms", "eps"], ["mse"]),
        helper.make_node("Sqrt", ["mse"], ["rms"]),
        helper.make_node("Div", ["X", "rms"], ["xn"]),
        helper.make_node("Mul", ["xn", "gamma"], ["h"]),
        helper.make_node("MatMul", ["h", "W"], ["mm"], name="q_proj"),
        helper.make_node("Relu", ["mm"], ["Y"]),
    ]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
             numpy_helper.from_array(rng.uniform(0.5, 1.5, hidden).astype(np.float32), "gamma"),
             numpy_helper.from_array(rng.standard_normal((hidden, n)).astype(np.float32), "W")]
    return make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 7, hidden])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 7, n])], inits, 17, ir_version=8)


def test_rmsnorm_opset17_upgraded_to_21(tmp_path):
    rng = np.random.default_rng(5)
    model = rmsnorm_model(rng)
    out, report = convert(model, tmp_path, "--target", "qdq", "--format", "int4", "--block-size", "32")
    onnx.checker.check_model(out, full_check=True)
    assert opset_of(out) == 21 and out.ir_version >= 10
    assert report["opsetBefore"] == 17 and report["upgradedNodes"] == ["rms_mean"]
    mean = next(n for n in out.graph.node if n.op_type == "ReduceMean")
    assert not any(a.name == "axes" for a in mean.attribute)
    assert initializer(out, mean.input[1]).tolist() == [-1] and initializer(out, mean.input[1]).dtype == np.int64
    x = rng.standard_normal((2, 7, 64)).astype(np.float32)
    assert relative_error(run(out, {"X": x})[0], run(model, {"X": x})[0]) < 0.15


def old_opset_model(rng):
    """Opset 9: operators whose attributes became inputs by opset 21 (ORT still runs opset 9)."""
    nodes = [
        helper.make_node("Unsqueeze", ["X"], ["u"], axes=[0]),                      # [1, 4, 32]
        helper.make_node("Squeeze", ["u"], ["s"], axes=[0]),                        # [4, 32]
        helper.make_node("Split", ["s"], ["p1", "p2"], axis=1, split=[16, 16]),
        helper.make_node("Split", ["s"], ["q1", "q2"], axis=1),                     # equal parts
        helper.make_node("Concat", ["p2", "p1"], ["c"], axis=1),
        helper.make_node("Add", ["q1", "q2"], ["qs"]),
        helper.make_node("Clip", ["c"], ["cl"], min=-1.5, max=1.5),
        helper.make_node("Pad", ["cl"], ["pd"], pads=[0, 2, 0, 2], value=0.25),     # [4, 36]
        helper.make_node("Slice", ["pd"], ["sl"], starts=[1], ends=[33], axes=[1]),  # [4, 32]
        helper.make_node("ReduceSum", ["qs"], ["rs"], axes=[1], keepdims=1),
        helper.make_node("ReduceMax", ["qs"], ["rm"], axes=[1], keepdims=1),
        helper.make_node("TopK", ["qs"], ["top", "top_i"], k=3, axis=1),
        helper.make_node("ReduceMean", ["top"], ["tm"], axes=[1], keepdims=1),
        helper.make_node("Add", ["sl", "rs"], ["t"]),
        helper.make_node("Sub", ["t", "rm"], ["t2"]),
        helper.make_node("Add", ["t2", "tm"], ["h"]),
        helper.make_node("Dropout", ["h"], ["pre"], ratio=0.3),
        helper.make_node("MatMul", ["pre", "W"], ["mm"], name="proj"),
        helper.make_node("Relu", ["mm"], ["Y"]),
    ]
    inits = [numpy_helper.from_array(rng.standard_normal((32, 24)).astype(np.float32), "W")]
    return make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 32])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 24])], inits, 9, ir_version=4)


def test_opset9_attributes_become_inputs(tmp_path):
    rng = np.random.default_rng(6)
    model = old_opset_model(rng)
    out, report = convert(model, tmp_path, "--target", "qdq", "--format", "int4", "--block-size", "32")
    onnx.checker.check_model(out, full_check=True)
    assert opset_of(out) == 21 and out.ir_version >= 10
    names = {n.name or n.output[0] for n in out.graph.node}
    assert set(report["upgradedNodes"]) <= names and len(report["upgradedNodes"]) == 12, report["upgradedNodes"]
    for node in out.graph.node:
        assert not {a.name for a in node.attribute} & {"axes", "split", "pads", "value", "starts", "ends", "min", "max", "k", "ratio"}, node
    x = rng.standard_normal((4, 32)).astype(np.float32) * 2
    want = run(model, {"X": x})[0]
    assert relative_error(run(out, {"X": x})[0], want) < 0.15
    # The upgrade alone changes nothing: the value before the MatMul is bit-identical.
    for m in (model, out):
        m.graph.output.append(helper.make_tensor_value_info("pre", TensorProto.FLOAT, None))
    np.testing.assert_array_equal(session(out).run(["pre"], {"X": x})[0], session(model).run(["pre"], {"X": x})[0])


def test_softmax_axis_change_is_refused(tmp_path):
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Softmax", ["X"], ["s"], name="attn_softmax", axis=1),
             helper.make_node("MatMul", ["s", "W"], ["mm"]), helper.make_node("Relu", ["mm"], ["Y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [4, 32])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 8])],
                       [numpy_helper.from_array(rng.standard_normal((32, 8)).astype(np.float32), "W")], 11)
    _, stderr = convert(model, tmp_path, "--target", "qdq", "--format", "int4", expect_rc=4)
    assert "attn_softmax" in stderr and "axis" in stderr
    assert not (tmp_path / "out.onnx").exists()


def test_unsupported_format_is_refused(tmp_path):
    model = matmul_model(32, 8, [2, 32], np.random.default_rng(8))
    _, stderr = convert(model, tmp_path, "--target", "qdq", "--format", "nf4", expect_rc=4)
    assert "DequantizeLinear" in stderr
