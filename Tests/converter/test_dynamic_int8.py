"""--target dynamic-int8: DynamicQuantizeLinear + MatMulInteger, compared with fp32 and with ONNX
Runtime's own quantize_dynamic."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator
from onnxruntime.quantization import QuantType, quantize_dynamic

from _qdq_helpers import convert, initializer, make_model, matmul_model, relative_error, run


def ort_dynamic(model, tmp_path):
    src, dst = tmp_path / "ort_in.onnx", tmp_path / "ort_out.onnx"
    onnx.save(model, src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True)
    return onnx.load(dst)


def test_matmul_3d(tmp_path):
    rng = np.random.default_rng(11)
    model = matmul_model(64, 48, [2, 5, 64], rng, opset=13)
    out, report = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "int8", "--block-size", "0")
    onnx.checker.check_model(out, full_check=True)
    ops = [n.op_type for n in out.graph.node]
    assert ops == ["DynamicQuantizeLinear", "MatMulInteger", "Cast", "Mul", "Mul", "Relu"], ops
    integer = out.graph.node[1]
    assert initializer(out, integer.input[1]).dtype == np.int8 and len(integer.input) == 3  # symmetric: no w zero point
    # Full-range int8 weights saturate ONNX Runtime's kernel on CPUs without VNNI: the summary says so.
    assert len(report["notes"]) == 1 and "--reduce-range" in report["notes"][0] and "1 MatMulInteger layer holds" in report["notes"][0]
    a = rng.standard_normal((2, 5, 64)).astype(np.float32)
    want = run(model, {"A": a})[0]
    # The graph's own arithmetic (the onnx package's reference evaluator, exact integer math).
    assert relative_error(ReferenceEvaluator(out).run(None, {"A": a})[0], want) < 1.5e-2
    # In ONNX Runtime the error depends on the CPU: without VNNI its uint8 x int8 kernel saturates
    # 16-bit pair sums (3.8% here on an AMD Zen 3, against 1.0% exact). Same operators, same
    # activation quantization as ORT's quantizer, so errors of the same size as its output.
    ours = relative_error(run(out, {"A": a})[0], want)
    theirs = relative_error(run(ort_dynamic(model, tmp_path), {"A": a})[0], want)
    assert ours < 2 * theirs + 1e-3, (ours, theirs)


def test_uint8_weights_are_exact_in_onnxruntime_on_every_cpu(tmp_path):
    # The README's advice for CPUs without VNNI: uint8 weights (zero point 128) hold the same codes
    # as int8 ones, and ORT's uint8 x uint8 kernel does not saturate.
    rng = np.random.default_rng(11)
    model = matmul_model(64, 48, [2, 5, 64], rng, opset=13)
    signed, _ = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "int8", "--block-size", "0")
    out, report = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "uint8", "--block-size", "0")
    assert report["notes"] == []
    integer = next(n for n in out.graph.node if n.op_type == "MatMulInteger")
    codes = initializer(out, integer.input[1])
    assert codes.dtype == np.uint8 and np.all(initializer(out, integer.input[3]) == 128)
    signed_codes = initializer(signed, next(n for n in signed.graph.node if n.op_type == "MatMulInteger").input[1])
    assert np.array_equal(codes.astype(np.int16) - 128, signed_codes)
    a = rng.standard_normal((2, 5, 64)).astype(np.float32)
    exact = ReferenceEvaluator(out).run(None, {"A": a})[0]
    got = run(out, {"A": a})[0]
    assert relative_error(got, exact) < 1e-6
    assert relative_error(got, run(model, {"A": a})[0]) < 1.5e-2


def test_gemm_bias_asymmetric_uint8(tmp_path):
    rng = np.random.default_rng(12)
    w_nk = rng.standard_normal((32, 48)).astype(np.float32)
    c = rng.standard_normal(32).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["A", "B", "C"], ["g"], name="fc", alpha=0.5, beta=2.0, transB=1),
             helper.make_node("Relu", ["g"], ["Y"])]
    model = make_model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, [4, 48])],
                       [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [4, 32])],
                       [numpy_helper.from_array(w_nk, "B"), numpy_helper.from_array(c, "C")], 13)
    out, _ = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "uint8", "--block-size", "0", "--asymmetric")
    onnx.checker.check_model(out, full_check=True)
    integer = next(n for n in out.graph.node if n.op_type == "MatMulInteger")
    assert len(integer.input) == 4 and initializer(out, integer.input[3]).shape == (32,)
    a = rng.standard_normal((4, 48)).astype(np.float32)
    assert relative_error(run(out, {"A": a})[0], run(model, {"A": a})[0]) < 1.5e-2


def test_block_size_is_refused(tmp_path):
    model = matmul_model(32, 8, [2, 32], np.random.default_rng(13))
    _, stderr = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "int8", "--block-size", "32", expect_rc=64)
    assert "per output channel" in stderr


def _dynamic_weight(model):
    """(int8 codes [K, N], scales [N]) of the model's one MatMulInteger."""
    integer = next(n for n in model.graph.node if n.op_type == "MatMulInteger")
    codes = initializer(model, integer.input[1])
    scale = next(initializer(model, i) for n in model.graph.node if n.op_type == "Mul" for i in n.input
                 if any(t.name == i for t in model.graph.initializer))
    return codes, scale


def test_reduce_range_writes_what_onnxruntimes_quantize_dynamic_writes(tmp_path):
    # ONNX Runtime's advice for CPUs without VNNI: 7-bit weights (-64...64), which its uint8 x int8
    # kernel multiplies without saturating. The same codes and scales as its own quantizer.
    rng = np.random.default_rng(21)
    model = matmul_model(96, 40, [3, 96], rng, opset=13)
    out, report = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "int8", "--block-size", "0", "--reduce-range")
    onnx.checker.check_model(out, full_check=True)
    assert "7-bit" in report["layers"][0]["settings"], report["layers"][0]
    assert report["notes"] == []
    codes, scales = _dynamic_weight(out)
    assert codes.dtype == np.int8 and codes.min() >= -64 and codes.max() <= 64
    assert np.all(np.abs(codes).max(axis=0) == 64)  # every column reaches the range's end

    src, dst = tmp_path / "ort_in.onnx", tmp_path / "ort_out.onnx"
    onnx.save(model, src)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    theirs_codes, theirs_scales = _dynamic_weight(onnx.load(dst))
    np.testing.assert_array_equal(codes, theirs_codes)
    np.testing.assert_array_equal(scales, theirs_scales)

    # Exact in ONNX Runtime on this CPU, whatever its ISA: the same bits as the onnx package's
    # reference evaluator (exact integer arithmetic), and about as close to fp32 as 8 bits.
    a = rng.standard_normal((3, 96)).astype(np.float32)
    got = run(out, {"A": a})[0]
    assert relative_error(got, ReferenceEvaluator(out).run(None, {"A": a})[0]) < 1e-6
    assert relative_error(got, run(model, {"A": a})[0]) < 3e-2


def test_reduce_range_for_qdq_int8(tmp_path):
    rng = np.random.default_rng(22)
    model = matmul_model(64, 24, [2, 64], rng, opset=13)
    out, _ = convert(model, tmp_path, "--target", "qdq", "--format", "int8", "--block-size", "0", "--reduce-range")
    dq = next(n for n in out.graph.node if n.op_type == "DequantizeLinear")
    codes = initializer(out, dq.input[0])
    assert codes.dtype == np.int8 and codes.min() >= -64 and codes.max() <= 64 and np.abs(codes).max() == 64
    a = rng.standard_normal((2, 64)).astype(np.float32)
    assert relative_error(run(out, {"A": a})[0], run(model, {"A": a})[0]) < 3e-2


def test_reduce_range_is_refused_where_it_does_not_apply(tmp_path):
    model = matmul_model(64, 16, [2, 64], np.random.default_rng(23))
    _, stderr = convert(model, tmp_path, "--format", "int8", "--reduce-range", expect_rc=4)
    assert "dynamic-int8 and qdq" in stderr
    _, stderr = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "uint8", "--block-size", "0", "--asymmetric",
                        "--reduce-range", expect_rc=4)
    assert "symmetric int8 or uint8" in stderr
    _, stderr = convert(model, tmp_path, "--target", "qdq", "--format", "int4", "--reduce-range", expect_rc=4)
    assert "symmetric int8 or uint8" in stderr


def test_reduce_range_from_a_recipe(tmp_path):
    import json
    model = matmul_model(64, 16, [2, 64], np.random.default_rng(24))
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"target": "dynamic-int8", "format": "int8", "block_size": 0, "reduce_range": True}))
    out, report = convert(model, tmp_path, "--recipe", str(recipe))
    codes, _ = _dynamic_weight(out)
    assert np.abs(codes).max() == 64 and report["notes"] == []
    recipe.write_text(json.dumps({"target": "dynamic-int8", "format": "int8", "block_size": 0, "reduce_range": "yes"}))
    _, stderr = convert(model, tmp_path, "--recipe", str(recipe), expect_rc=64)
    assert "reduce_range" in stderr
