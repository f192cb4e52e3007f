"""Helpers for the QDQ / dynamic-int8 converter tests: build small models, convert them with the
CLI, run them in ONNX Runtime."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
CLI = Path(os.environ.get("QUANTKIT_CLI", REPO / ".build" / "debug" / "quantkit-cli"))


def convert(model, tmp_path, *args, expect_rc=0):
    """Saves `model`, runs `quantkit convert` on it with `args`; returns (model, JSON report) or,
    for a failure, (None, stderr)."""
    src, dst = tmp_path / "in.onnx", tmp_path / "out.onnx"
    onnx.save(model, src)
    run = subprocess.run([str(CLI), "convert", str(src), "-o", str(dst), "--force", "--json", "-q", *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == expect_rc, f"rc {run.returncode}\n{run.stdout}\n{run.stderr}"
    if expect_rc != 0:
        return None, run.stderr
    return onnx.load(dst), json.loads(run.stdout)["report"]


def session(model):
    options = ort.SessionOptions()
    # Without this ORT fuses DequantizeLinear + MatMul into MatMulNBits with int8 activations.
    options.add_session_config_entry("session.qdq_matmulnbits_accuracy_level", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run(model, feeds):
    return session(model).run(None, feeds)


def relative_error(got, want):
    """RMS of the error relative to the reference output's RMS."""
    want = np.asarray(want, np.float64)
    return float(np.sqrt(np.mean((np.asarray(got, np.float64) - want) ** 2) / np.mean(want ** 2)))


def make_model(nodes, inputs, outputs, initializers, opset, ir_version=None):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    onnx.checker.check_model(model, full_check=True)
    return model


def matmul_model(k, n, a_shape, rng, opset=17):
    """Y = Relu(A · W); the Relu keeps the MatMul from being the output projection (kept at 8 bits)."""
    w = rng.standard_normal((k, n)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["A", "W"], ["mm"], name="proj"), helper.make_node("Relu", ["mm"], ["Y"])]
    return make_model(nodes, [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)],
                      [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(a_shape[:-1]) + [n])],
                      [numpy_helper.from_array(w, "W")], opset)


def dequantize_nodes(model):
    return [n for n in model.graph.node if n.op_type == "DequantizeLinear"]


def initializer(model, name):
    for t in model.graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)
