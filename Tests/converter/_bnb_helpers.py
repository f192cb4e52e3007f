"""Shared pieces of test_bnb4.py, test_gather.py and test_float16.py: paths, running the converter,
building small models with onnx.helper, running them in ONNX Runtime."""

import json
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, ".build", "debug", "quantkit-cli")


def convert(src, dst, *args):
    """`quantkit convert SRC -o DST ARGS --json --force`; returns (exit code, parsed JSON or None, stderr)."""
    proc = subprocess.run([CLI, "convert", src, "-o", dst, "--json", "--force", *args],
                          capture_output=True, text=True, timeout=600)
    report = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, report, proc.stderr


def convert_half(src, dst, fmt):
    """Whole-model fp16/bf16 through `quantkit convert --format fp16|bf16`."""
    code, _, err = convert(src, dst, "--format", fmt)
    assert code == 0, err
    assert any(n.op_type == "Cast" for n in onnx.load(dst).graph.node)


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def make_model(nodes, inputs, outputs, initializers, opset=17, ir=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


def run(path, feeds, disable_optimizations=False):
    so = ort.SessionOptions()
    if disable_optimizations:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def initializers(model):
    return {t.name: t for t in model.graph.initializer}


def weights(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def tensor(name, array):
    return numpy_helper.from_array(array, name)


__all__ = ["ROOT", "CLI", "convert", "convert_half", "save", "make_model", "run", "initializers", "weights",
           "tensor", "TensorProto", "helper", "numpy_helper", "onnx", "np"]
