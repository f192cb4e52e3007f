"""`quantkit convert --format nf4|fp4-bnb` (target bnb4) against ONNX Runtime's own
MatMulBnb4Quantizer (same bytes, same names) and its MatMulBnb4 kernel."""

import copy

import pytest
from onnxruntime.capi._pybind_state import quantize_matmul_bnb4
from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer

from _bnb_helpers import (TensorProto, convert, helper, initializers, make_model, np, numpy_helper, onnx, run,
                          save, tensor, weights)

QUANT_TYPE = {"fp4-bnb": 0, "nf4": 1}


def matmul_chain(k1, n1, n2):
    """X [2, 3, k1] → MatMul W1 [k1, n1] → Relu → MatMul W2 [n1, n2] → Tanh → Y (the Tanh keeps
    mm2 from being taken for the output projection, which the policy keeps at 8 bits)."""
    nodes = [helper.make_node("MatMul", ["X", "W1"], ["h"], name="mm1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("MatMul", ["r", "W2"], ["z"], name="mm2"),
             helper.make_node("Tanh", ["z"], ["Y"], name="tanh")]
    return make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3, k1])],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3, n2])],
                      [tensor("W1", weights((k1, n1), 1)), tensor("W2", weights((n1, n2), 2))])


@pytest.mark.parametrize("fmt", ["nf4", "fp4-bnb"])
@pytest.mark.parametrize("block", [16, 64, 256])
@pytest.mark.parametrize("k1,n1,n2", [(37, 9, 5), (64, 48, 16), (100, 33, 7)])
def test_same_bytes_as_ort_quantizer(tmp_path, fmt, block, k1, n1, n2):
    model = matmul_chain(k1, n1, n2)
    src = save(model, str(tmp_path / "in.onnx"))
    ours_path = str(tmp_path / "ours.onnx")
    code, report, err = convert(src, ours_path, "--format", fmt, "--block-size", str(block))
    assert code == 0, err
    assert [l.get("target") for l in report["report"]["layers"]] == ["bnb4", "bnb4"]

    reference = copy.deepcopy(model)
    quantizer = MatMulBnb4Quantizer(reference, QUANT_TYPE[fmt], block)
    quantizer.process()
    theirs = quantizer.model.model

    ours = onnx.load(ours_path)
    onnx.checker.check_model(ours, full_check=True)
    mine, ref = initializers(ours), initializers(theirs)
    assert set(mine) == set(ref) == {"W1_Bnb4", "W1_absmax", "W2_Bnb4", "W2_absmax"}
    for name in ref:
        a, b = mine[name], ref[name]
        assert a.data_type == b.data_type and list(a.dims) == list(b.dims), name
        assert numpy_helper.to_array(a).tobytes() == numpy_helper.to_array(b).tobytes(), name
    for a, b in zip(ours.graph.node, theirs.graph.node):
        assert (a.op_type, a.domain, a.name, list(a.input), list(a.output)) == (b.op_type, b.domain, b.name, list(b.input), list(b.output))
        assert {x.name: helper.get_attribute_value(x) for x in a.attribute} == {x.name: helper.get_attribute_value(x) for x in b.attribute}

    x = weights((2, 3, k1), 3)
    (got,) = run(ours_path, {"X": x})
    ref_path = str(tmp_path / "theirs.onnx")
    onnx.save(theirs, ref_path)
    (expected,) = run(ref_path, {"X": x})
    np.testing.assert_array_equal(got, expected)


def test_gemm_transb_bias_and_3d_activations(tmp_path):
    k, n = 45, 12
    w = weights((n, k), 4)  # transB = 1: stored [N, K]
    c = weights((n,), 5)
    nodes = [helper.make_node("Reshape", ["X", "shape2d"], ["x2"], name="flatten"),
             helper.make_node("Gemm", ["x2", "W", "C"], ["g"], name="fc", transB=1, alpha=0.5, beta=2.0),
             helper.make_node("Reshape", ["g", "shape3d"], ["Y"], name="unflatten")]
    model = make_model(nodes, [helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 3, k])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3, n])],
                       [tensor("W", w), tensor("C", c), tensor("shape2d", np.array([6, k], np.int64)),
                        tensor("shape3d", np.array([2, 3, n], np.int64))])
    src = save(model, str(tmp_path / "in.onnx"))
    dst = str(tmp_path / "out.onnx")
    code, _, err = convert(src, dst, "--format", "nf4", "--block-size", "32", "--lm-head-bits", "float")
    assert code == 0, err
    out = onnx.load(dst)
    onnx.checker.check_model(out, full_check=True)
    assert [n_.op_type for n_ in out.graph.node] == ["Reshape", "MatMulBnb4", "Add", "Reshape"]
    # Bytes equal ORT's quantizer applied to W' = alpha·W (transposed back to [K, N]).
    packed = np.zeros((n * k + 1) // 2, np.uint8)
    absmax = np.zeros((n * k + 31) // 32, np.float32)
    quantize_matmul_bnb4(packed, np.ascontiguousarray(0.5 * w), absmax, 32, 1, n, k)
    inits = initializers(out)
    mm = out.graph.node[1]
    assert numpy_helper.to_array(inits[mm.input[1]]).tobytes() == packed.tobytes()
    assert numpy_helper.to_array(inits[mm.input[2]]).tobytes() == absmax.tobytes()
    np.testing.assert_array_equal(numpy_helper.to_array(inits[out.graph.node[2].input[1]]), 2.0 * c)

    x = weights((2, 3, k), 6)
    (got,) = run(dst, {"X": x})
    # The same product from ORT's kernel fed ORT's bytes, plus the bias.
    ref = make_model([helper.make_node("MatMulBnb4", ["A", "B", "absmax"], ["Y"], domain="com.microsoft",
                                       K=k, N=n, block_size=32, quant_type=1)],
                     [helper.make_tensor_value_info("A", TensorProto.FLOAT, [6, k])],
                     [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [6, n])],
                     [tensor("B", packed), tensor("absmax", absmax)])
    ref.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    ref_path = str(tmp_path / "ref.onnx")
    onnx.save(ref, ref_path)
    (product,) = run(ref_path, {"A": x.reshape(6, k)})
    np.testing.assert_allclose(got.reshape(6, n), product + 2.0 * c, rtol=1e-6, atol=1e-6)
    # And close to the float model (4-bit weights: loose).
    (fp,) = run(src, {"X": x})
    assert np.corrcoef(got.ravel(), fp.ravel())[0, 1] > 0.98


def test_integer_format_with_bnb4_target_is_refused(tmp_path):
    src = save(matmul_chain(32, 8, 4), str(tmp_path / "in.onnx"))
    code, _, err = convert(src, str(tmp_path / "out.onnx"), "--format", "int4", "--target", "bnb4")
    assert code != 0 and "MatMulBnb4" in err
