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
    out, _ = convert(model, tmp_path, "--target", "dynamic-int8", "--format", "uint8", "--block-size", "0")
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
