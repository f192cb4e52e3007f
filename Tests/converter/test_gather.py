"""Embedding Gather → com.microsoft::GatherBlockQuantized: the rows ONNX Runtime gathers equal the
numpy dequantization of the stored table exactly, the table is close to the original, and a
MiniLM-like model runs."""

import json

import pytest

from _bnb_helpers import (TensorProto, convert, helper, initializers, make_model, np, numpy_helper, onnx, run,
                          save, tensor, weights)

ROWS, DIM = 50, 40


def gather_model(rows, dim, dtype=np.float32):
    t = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    nodes = [helper.make_node("Gather", ["table", "ids"], ["E"], name="emb")]
    return make_model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
                      [helper.make_tensor_value_info("E", t, [2, 3, dim])],
                      [tensor("table", weights((rows, dim), 7).astype(dtype))])


def recipe(tmp_path, fmt, block, scheme):
    """A rule for the Gather. FP8/FP4 go to QDQ by default, whose Gather stays standard
    (DequantizeLinear + Gather): naming another target sends them to GatherBlockQuantized."""
    path = tmp_path / "recipe.json"
    rule = {"pattern": "emb", "format": fmt, "block_size": block, "scheme": scheme}
    if fmt.startswith("fp"):
        rule["target"] = "quantkit"
    path.write_text(json.dumps({"format": "int4", "rules": [rule]}))
    return str(path)


def codes_of(t):
    """Stored codes as integers (int4/uint4 unpacked by onnx), or float values for fp8/fp4."""
    a = numpy_helper.to_array(t)
    if t.data_type in (TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E5M2, TensorProto.FLOAT4E2M1):
        return a.astype(np.float32)
    return a.astype(np.int32)


def dequantize(model, node):
    """numpy: (code − zero point) · scale, blocks of `block_size` along the last axis, as the
    operator's documentation defines it (uint8 data: default zero point 2^(bits−1))."""
    inits = initializers(model)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    block = attrs["block_size"]
    data = inits[node.input[0]]
    codes = codes_of(data)
    scales = numpy_helper.to_array(inits[node.input[2]])
    if len(node.input) > 3:
        zp = codes_of(inits[node.input[3]])
    elif data.data_type == TensorProto.UINT8:
        zp = np.full(scales.shape, 1 << (attrs["bits"] - 1), np.int32)
    else:
        zp = np.zeros(scales.shape, np.int32)
    dim = codes.shape[1]
    scale_full = np.repeat(scales.astype(np.float32), block, axis=1)[:, :dim]
    zp_full = np.repeat(zp, block, axis=1)[:, :dim]
    return ((codes - zp_full).astype(np.float32) * scale_full).astype(scales.dtype)


CASES = [("int4", 16, "symmetric"), ("int4", 32, "symmetric"), ("uint4", 16, "asymmetric"), ("int4", 64, "asymmetric"),
         ("int8", 16, "symmetric"), ("uint8", 32, "asymmetric"), ("int8", 16, "asymmetric"), ("uint4", 0, "symmetric"),
         ("fp8-e4m3", 16, "symmetric"), ("fp8-e5m2", 32, "symmetric"), ("fp4-e2m1", 16, "symmetric")]


@pytest.mark.parametrize("fmt,block,scheme", CASES)
@pytest.mark.parametrize("dim", [DIM, 37])
def test_gathered_rows_equal_numpy_dequantization(tmp_path, fmt, block, scheme, dim):
    src = save(gather_model(ROWS, dim), str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    code, report, err = convert(src, dst, "--recipe", recipe(tmp_path, fmt, block, scheme))
    assert code == 0, err
    layer = report["report"]["layers"][0]
    assert layer.get("skipped") is None, layer
    out = onnx.load(dst)
    onnx.checker.check_model(out, full_check=True)
    (node,) = out.graph.node
    assert node.op_type == "GatherBlockQuantized" and node.domain == "com.microsoft"

    table = dequantize(out, node)
    ids = np.array([[0, 5, ROWS - 1], [-1, 17, 5]], np.int64)
    (got,) = run(dst, {"ids": ids})
    np.testing.assert_array_equal(got, table[ids])

    original = numpy_helper.to_array(initializers(onnx.load(src))["table"])
    err_max = np.abs(table - original).max()
    bound = {"int4": 0.3, "uint4": 0.3, "int8": 0.02, "uint8": 0.02, "fp8-e4m3": 0.15, "fp8-e5m2": 0.3, "fp4-e2m1": 0.6}[fmt]
    assert err_max < bound, (fmt, err_max)


def test_float16_table(tmp_path):
    src = save(gather_model(ROWS, DIM, np.float16), str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    code, _, err = convert(src, dst, "--recipe", recipe(tmp_path, "int8", 16, "symmetric"))
    assert code == 0, err
    out = onnx.load(dst)
    (node,) = out.graph.node
    assert initializers(out)[node.input[2]].data_type == TensorProto.FLOAT16
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    (got,) = run(dst, {"ids": ids})
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, dequantize(out, node)[ids])


def test_formats_without_a_kernel_are_skipped_with_a_reason(tmp_path):
    src = save(gather_model(ROWS, DIM), str(tmp_path / "in.onnx"))
    code, report, err = convert(src, str(tmp_path / "out.onnx"), "--recipe", recipe(tmp_path, "nf4", 32, "symmetric"))
    assert code == 0, err
    assert "GatherBlockQuantized" in report["report"]["layers"][0]["skipped"]


def minilm_like(vocab=120, d=64, heads_ff=128, seq=7):
    """Word + position embeddings, LayerNorm, a feed-forward block with 3-D activations and a Gemm
    pooler with transB and bias: the shape of a MiniLM sentence encoder, small."""
    rng = np.random.default_rng(11)
    f = lambda *s: (rng.standard_normal(s) * 0.1).astype(np.float32)
    inits = [tensor("word_emb", f(vocab, d)), tensor("pos_emb", f(32, d)), tensor("ln_g", 1 + f(d)), tensor("ln_b", f(d)),
             tensor("w_in", f(d, heads_ff)), tensor("b_in", f(heads_ff)), tensor("w_out", f(heads_ff, d)),
             tensor("pool_w", f(d, d)), tensor("pool_b", f(d)), tensor("pos_ids", np.arange(seq, dtype=np.int64).reshape(1, seq)),
             tensor("cls_starts", np.array([0], np.int64)), tensor("cls_ends", np.array([1], np.int64)),
             tensor("cls_axes", np.array([1], np.int64)), tensor("flat", np.array([-1, d], np.int64))]
    nodes = [helper.make_node("Gather", ["word_emb", "input_ids"], ["we"], name="word_embeddings"),
             helper.make_node("Gather", ["pos_emb", "pos_ids"], ["pe"], name="position_embeddings"),
             helper.make_node("Add", ["we", "pe"], ["e"]),
             helper.make_node("LayerNormalization", ["e", "ln_g", "ln_b"], ["h"], axis=-1),
             helper.make_node("MatMul", ["h", "w_in"], ["u"], name="ff_in"),
             helper.make_node("Add", ["u", "b_in"], ["ub"]),
             helper.make_node("Relu", ["ub"], ["a"]),
             helper.make_node("MatMul", ["a", "w_out"], ["v"], name="ff_out"),
             helper.make_node("Add", ["v", "h"], ["hidden"]),
             helper.make_node("Slice", ["hidden", "cls_starts", "cls_ends", "cls_axes"], ["cls"]),
             helper.make_node("Reshape", ["cls", "flat"], ["cls2"]),
             helper.make_node("Gemm", ["cls2", "pool_w", "pool_b"], ["p"], name="pooler", transB=1),
             helper.make_node("Tanh", ["p"], ["pooled"])]
    return make_model(nodes, [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", seq])],
                      [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["batch", seq, d]),
                       helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", d])], inits)


@pytest.mark.parametrize("args", [["--format", "int4"], ["--format", "nf4"], ["--format", "int4", "--embedding-bits", "4"]])
def test_minilm_like_model_runs(tmp_path, args):
    src = save(minilm_like(), str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    code, report, err = convert(src, dst, *args)
    assert code == 0, err
    out = onnx.load(dst)
    onnx.checker.check_model(out, full_check=True)
    ops = [n.op_type for n in out.graph.node]
    assert ops.count("GatherBlockQuantized") == 2 and "Gather" not in ops
    ids = np.random.default_rng(3).integers(0, 120, (3, 7)).astype(np.int64)
    ref_hidden, ref_pooled = run(src, {"input_ids": ids})
    hidden, pooled = run(dst, {"input_ids": ids})
    assert hidden.shape == ref_hidden.shape and pooled.shape == ref_pooled.shape
    for a, b in ((hidden, ref_hidden), (pooled, ref_pooled)):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97  # 4-bit weights


@pytest.mark.parametrize("target", ["qdq", "dynamic-int8"])
def test_reduce_range_leaves_embeddings_at_8_bits(tmp_path, target):
    # --reduce-range serves the int8 matmul kernels: the MatMul/Gemm weights go to 7 bits (-64...64),
    # the embedding tables keep the full 8-bit range.
    src = save(minilm_like(), str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    code, report, err = convert(src, dst, "--target", target, "--format", "int8", "--block-size", "0", "--reduce-range")
    assert code == 0, err
    layers = {l["node"]: l for l in report["report"]["layers"]}
    for name in ("word_embeddings", "position_embeddings"):
        assert "7-bit" not in layers[name]["settings"], layers[name]
    for name in ("ff_in", "ff_out", "pooler"):
        assert "7-bit" in layers[name]["settings"], layers[name]

    out = onnx.load(dst)
    inits = initializers(out)
    consumers = {i: n.op_type for n in out.graph.node for i in n.input}

    def levels(name):  # |level| of the stored codes (uint8 tables hold level + 128)
        t = inits[name]
        return np.abs(codes_of(t) - (128 if t.data_type == TensorProto.UINT8 else 0))

    matmul, tables = [], []
    for n in out.graph.node:
        if n.op_type == "MatMulInteger":
            matmul.append(levels(n.input[1]))
        elif n.op_type == "GatherBlockQuantized":
            tables.append(levels(n.input[0]))
        elif n.op_type == "DequantizeLinear":
            (tables if consumers[n.output[0]] == "Gather" else matmul).append(levels(n.input[0]))
    assert len(matmul) == 3 and len(tables) == 2
    assert all(m.max() == 64 for m in matmul)
    assert all(t.max() >= 127 for t in tables)
    ids = np.random.default_rng(4).integers(0, 120, (3, 7)).astype(np.int64)
    for a, b in zip(run(dst, {"input_ids": ids}), run(src, {"input_ids": ids})):
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
