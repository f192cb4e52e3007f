"""Shared fixtures for the converter tests: the `quantkit` binary, a runner, and small models."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "Tests"))  # Tests/models: the real-model builders


def _cli_path():
    for candidate in (os.environ.get("QUANTKIT_CLI"), REPO / "dist/bin/quantkit", REPO / ".build/debug/quantkit-cli"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    pytest.exit("quantkit CLI not found: run scripts/build.sh or set QUANTKIT_CLI", returncode=2)


CLI = None


def quantkit(*args, check=True):
    """Runs the CLI; returns the CompletedProcess (stdout/stderr as text)."""
    global CLI
    CLI = CLI or _cli_path()
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"quantkit {' '.join(map(str, args))} failed ({result.returncode}):\n{result.stderr}")
    return result


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def linear_model(k=64, n=48, seed=0, opset=17, gemm=False, trans_b=False, alpha=1.0, beta=1.0, bias=False, rank=3):
    """One MatMul (or Gemm) with a constant weight, A of rank `rank` (Gemm: 2)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W")]
    if gemm:
        inputs = ["A", "W"]
        if bias:
            inits.append(numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "C"))
            inputs.append("C")
        node = helper.make_node("Gemm", inputs, ["Y"], name="gemm", alpha=alpha, beta=beta, transB=int(trans_b))
        a_shape, y_shape = ["M", k], ["M", n]
    else:
        node = helper.make_node("MatMul", ["A", "W"], ["Y"], name="proj/MatMul")
        a_shape = ["B", "S", k][-rank:]
        y_shape = ["B", "S", n][-rank:]
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, a_shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def run(path, feed, **options):
    import onnxruntime as ort
    so = ort.SessionOptions()
    for key, value in options.items():
        so.add_session_config_entry(key, value)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feed)


def initializers(path):
    model = onnx.load(str(path))
    return {t.name: t for t in model.graph.initializer}
