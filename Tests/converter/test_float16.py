"""Whole-model fp16/bf16 (weight-only): float32 initializers stored as halves behind a Cast to
float32. Checked: the checker passes, stored values equal numpy's / ml_dtypes' round-to-nearest-even
casts bit for bit, integer tensors untouched, the outputs equal the float model run on the rounded
weights and stay within half-precision rounding of the original, the file is about half."""

import os

import ml_dtypes
import pytest

from _bnb_helpers import (TensorProto, convert_half, helper, initializers, make_model, np, numpy_helper, onnx, run,
                          save, tensor, weights)

HALF = {"fp16": (np.float16, TensorProto.FLOAT16), "bf16": (ml_dtypes.bfloat16, TensorProto.BFLOAT16)}


def mixed_model():
    """Gather, MatMul on 3-D activations, Gemm transB with bias, Conv, Reshape (int64 shape),
    a tiny scalar, and a value beyond the fp16 range (kept in float32 for fp16)."""
    k, n, vocab = 64, 96, 200
    inits = [tensor("emb", weights((vocab, k), 1)), tensor("W", weights((k, n), 2) * 0.1),
             tensor("Wt", weights((n, k), 3) * 0.1), tensor("b", weights((n,), 4)),
             tensor("conv_w", weights((4, 1, 3), 5)), tensor("conv_b", weights((4,), 6)),
             tensor("shape", np.array([-1, 1, k], np.int64)), tensor("half", np.array(0.5, np.float32)),
             tensor("mask", np.full((k,), -1e9, np.float32))]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="emb_gather"),
             helper.make_node("MatMul", ["e", "W"], ["m"], name="mm"),
             helper.make_node("Relu", ["m"], ["r"]),
             helper.make_node("MatMul", ["r", "Wt"], ["back"], name="mm_t"),  # uses Wt as [n, k]
             helper.make_node("Mul", ["back", "half"], ["hm"]),
             helper.make_node("Max", ["hm", "mask"], ["masked"]),
             helper.make_node("Reshape", ["masked", "shape"], ["flat"]),
             helper.make_node("Conv", ["flat", "conv_w", "conv_b"], ["c"], pads=[1, 1]),
             helper.make_node("Shape", ["e"], ["s"]),
             helper.make_node("Gemm", ["e2", "Wt", "b"], ["g"], name="gemm", transB=1),
             helper.make_node("Flatten", ["e"], ["e2"], axis=2)]
    # Flatten feeds the Gemm: keep topological order.
    nodes = nodes[:-2] + [nodes[-1], nodes[-2]]
    return make_model(nodes, [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 3])],
                      [helper.make_tensor_value_info("c", TensorProto.FLOAT, [6, 4, 64]),
                       helper.make_tensor_value_info("g", TensorProto.FLOAT, [6, 96]),
                       helper.make_tensor_value_info("s", TensorProto.INT64, [3])], inits)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_weights_stored_as_halves_behind_casts(tmp_path, fmt):
    half_type, onnx_type = HALF[fmt]
    model = mixed_model()
    src = save(model, str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    convert_half(src, dst, fmt)
    out = onnx.load(dst)
    onnx.checker.check_model(out, full_check=True)

    before, after = initializers(model), initializers(out)
    converted = {"emb", "W", "Wt", "b"} | ({"mask"} if fmt == "bf16" else set())
    for name in converted:
        stored = after[f"{name}_{fmt}"]
        assert stored.data_type == onnx_type
        expected = numpy_helper.to_array(before[name]).astype(half_type)
        assert numpy_helper.to_array(stored).view(np.uint16).tobytes() == expected.view(np.uint16).tobytes(), name
        assert name not in after
    # Tiny (conv_w has 12 values, half and conv_b fewer than 16), integer, and out-of-range tensors stay.
    for name in ["conv_w", "conv_b", "shape", "half"] + (["mask"] if fmt == "fp16" else []):
        assert after[name].SerializeToString() == before[name].SerializeToString(), name
    casts = [n for n in out.graph.node if n.op_type == "Cast"]
    assert sorted(n.output[0] for n in casts) == sorted(converted)

    ids = np.array([[0, 5, 199], [7, 7, 100]], np.int64)
    ref = run(src, {"ids": ids})
    got = run(dst, {"ids": ids})
    # Exactly the float model run on the rounded weights (optimizations off: no refolding).
    rounded = onnx.load(src)
    for t in rounded.graph.initializer:
        if t.name in converted:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(half_type).astype(np.float32), t.name))
    rounded_path = save(rounded, str(tmp_path / "rounded.onnx"))
    exact = run(rounded_path, {"ids": ids}, disable_optimizations=True)
    for a, b in zip(run(dst, {"ids": ids}, disable_optimizations=True), exact):
        np.testing.assert_array_equal(a, b)
    # Within half-precision rounding of the float32 model.
    eps = 2.0 ** -11 if fmt == "fp16" else 2.0 ** -8
    for a, b in zip(got[:2], ref[:2]):
        assert np.abs(a - b).max() <= 8 * eps * (np.abs(b).max() + 1)
    np.testing.assert_array_equal(got[2], ref[2])


def test_file_is_about_half(tmp_path):
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h"], name="a"), helper.make_node("MatMul", ["h", "W2"], ["Y"], name="b")]
    model = make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 256])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 3, 256])],
                       [tensor("W1", weights((256, 512), 1)), tensor("W2", weights((512, 256), 2))])
    src = save(model, str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    convert_half(src, dst, "fp16")
    ratio = os.path.getsize(dst) / os.path.getsize(src)
    assert 0.49 < ratio < 0.52, ratio
    x = weights((1, 3, 256), 3)
    (a,), (b,) = run(src, {"X": x}), run(dst, {"X": x})
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-3 * np.abs(a).max())


def test_subgraph_reads_outer_weight(tmp_path):
    """An If branch reads an outer initializer: the Cast in the outer graph keeps its name."""
    then_graph = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["t"])], "then", [],
                                   [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 32])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["X"], ["f"])], "else", [],
                                   [helper.make_tensor_value_info("f", TensorProto.FLOAT, [2, 32])])
    model = make_model([helper.make_node("If", ["cond"], ["Y"], then_branch=then_graph, else_branch=else_graph)],
                       [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 32]),
                        helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 32])], [tensor("W", weights((32, 32), 1))])
    src = save(model, str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    convert_half(src, dst, "fp16")
    onnx.checker.check_model(onnx.load(dst), full_check=True)
    x = weights((2, 32), 2)
    (got,) = run(dst, {"X": x, "cond": np.array(True)})
    w16 = numpy_helper.to_array(initializers(model)["W"]).astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, x @ w16, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_external_input_gives_the_inline_conversion(tmp_path, fmt):
    """A model with its weights in a side file: the halves go to the output's side file as they
    are made, and equal, bit for bit, those of the same model converted from an inline file."""
    model = mixed_model()
    inline_src = save(model, str(tmp_path / "inline.onnx"))
    os.makedirs(tmp_path / "ext")
    ext_src = str(tmp_path / "ext" / "in.onnx")
    onnx.save(model, ext_src, save_as_external_data=True, all_tensors_to_one_file=True, location="in.onnx.data",
              size_threshold=64)
    inline_dst, ext_dst = str(tmp_path / "inline_out.onnx"), str(tmp_path / "out" / "out.onnx")
    os.makedirs(tmp_path / "out")
    convert_half(inline_src, inline_dst, fmt)
    convert_half(ext_src, ext_dst, fmt)
    assert sorted(os.listdir(tmp_path / "out")) == ["out.onnx", "out.onnx.data"]
    stored = onnx.load(ext_dst, load_external_data=False)
    assert any(t.data_location == TensorProto.EXTERNAL for t in stored.graph.initializer if t.name.endswith(fmt))
    onnx.checker.check_model(ext_dst, full_check=True)
    expected, got = initializers(onnx.load(inline_dst)), initializers(onnx.load(ext_dst))
    assert sorted(expected) == sorted(got)
    for name, t in expected.items():
        a, b = numpy_helper.to_array(got[name]), numpy_helper.to_array(t)
        assert got[name].data_type == t.data_type and a.shape == b.shape and a.tobytes() == b.tobytes(), name
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    for a, b in zip(run(ext_dst, {"ids": ids}), run(inline_dst, {"ids": ids})):
        np.testing.assert_array_equal(a, b)
