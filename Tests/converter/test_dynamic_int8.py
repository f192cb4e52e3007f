"""--target dynamic-int8: DynamicQuantizeLinear + MatMulInteger, compared with fp32 and with ONNX
Runtime's own quantize_dynamic."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
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
    got = run(out, {"A": a})[0]
    ours = relative_error(got, want)
    theirs = relative_error(run(ort_dynamic(model, tmp_path), {"A": a})[0], want)
    assert ours < 1.5e-2, ours
    # Same operators, same activation quantization: errors of the same size as ORT's quantizer.
    assert ours < 2 * theirs + 1e-3, (ours, theirs)


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
