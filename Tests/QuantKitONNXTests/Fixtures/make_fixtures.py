#!/usr/bin/env python3
"""Writes the ONNX fixtures the Swift round-trip tests read (run from anywhere; needs `onnx`):

    .venv/bin/python Tests/QuantKitONNXTests/Fixtures/make_fixtures.py

tiny.onnx: a small model written by Python's `onnx` (onnx.save) that touches most of the schema:
several opset domains, metadata, doc strings, value_info, initializers stored every way ONNX
stores them (packed float_data, raw_data, int32_data with negatives, int64_data, string_data,
int4 raw bytes, float16 bit patterns), every attribute kind, an If with
two subgraphs, a sparse initializer, a local function, and training info.

unknown_fields.onnx: tiny.onnx with fields this schema does not know appended to the ModelProto,
the GraphProto and one NodeProto (a newer producer's fields must survive a load and save).

The outputs are deterministic: running the script again writes the same bytes.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))


def tiny_model() -> onnx.ModelProto:
    X = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 4])
    Y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 3])
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])

    rng = np.random.default_rng(7)
    W = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")  # raw_data
    B = helper.make_tensor("B", TensorProto.FLOAT, [3], [0.5, -1.25, float("inf")])  # float_data (packed)
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])  # int64_data
    ints = helper.make_tensor("ints", TensorProto.INT32, [4], [-1, 0, 2**31 - 1, -(2**31)])  # negative varints
    half = helper.make_tensor("half", TensorProto.FLOAT16, [2], np.array([1.5, -2.0], np.float16).view(np.uint16).tolist())
    names = helper.make_tensor("names", TensorProto.STRING, [2], [b"alpha", "\u00e9t\u00e9".encode()])
    q4 = helper.make_tensor("q4", TensorProto.INT4, [5], [-8, 7, 0, 1, -1])  # packed nibbles
    # (External data has its own fixtures, made by make_external_fixtures.py: saving resolves
    # external references, so a reference to a missing file would not round-trip.)

    then_g = helper.make_graph(
        [helper.make_node("Identity", ["Y0"], ["out_then"])], "then_branch", [],
        [helper.make_tensor_value_info("out_then", TensorProto.FLOAT, ["batch", 3])])
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["Y0"], ["out_else"])], "else_branch", [],
        [helper.make_tensor_value_info("out_else", TensorProto.FLOAT, ["batch", 3])])

    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"], name="matmul0", doc_string="the linear layer"),
        helper.make_node("Add", ["XW", "B"], ["Y0"], name="add0"),
        helper.make_node("If", ["cond"], ["Y"], name="if0", then_branch=then_g, else_branch=else_g),
        helper.make_node(
            "Custom", ["X"], ["unused"], name="custom0", domain="com.example",
            f=0.1, i=-3, s="text", t=helper.make_tensor("t", TensorProto.DOUBLE, [1], [2.0]),
            floats=[1.0, -0.0, float("nan")], ints=[1, -2, 3], strings=["a", "b"],
            tensors=[helper.make_tensor("t1", TensorProto.UINT8, [2], [0, 255])],
            g=helper.make_graph([], "empty", [], [])),
        helper.make_node("Square", ["X"], ["sq"], name="call_fn", domain="local.fn"),
    ]
    graph = helper.make_graph(
        nodes, "tiny", [X, cond], [Y], initializer=[W, B, shape, ints, half, names, q4],
        doc_string="a graph for round-trip tests",
        value_info=[helper.make_tensor_value_info("XW", TensorProto.FLOAT, ["batch", 3])],
        sparse_initializer=[helper.make_sparse_tensor(
            helper.make_tensor("sp_values", TensorProto.FLOAT, [2], [1.0, 2.0]),
            helper.make_tensor("sp_indices", TensorProto.INT64, [2], [1, 5]), [2, 4])])

    square = helper.make_function(
        "local.fn", "Square", ["x"], ["y"], [helper.make_node("Mul", ["x", "x"], ["y"])],
        [helper.make_opsetid("", 21)], doc_string="x*x")

    model = helper.make_model(
        graph, producer_name="quantkit-fixtures", producer_version="1",
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.example", 1),
                       helper.make_opsetid("local.fn", 1), helper.make_opsetid("com.microsoft", 1)],
        functions=[square], doc_string="round-trip fixture", domain="ai.quantkit", model_version=3)
    model.ir_version = 10
    helper.set_model_props(model, {"license": "MIT", "note": "\u2713 unicode"})
    ti = model.training_info.add()
    ti.algorithm.name = "step"
    ti.update_binding.add(key="W", value="W_new")
    return model


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def unknown(field: int, payload: bytes) -> bytes:
    """A length-delimited field with a number the schema does not use."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def main() -> None:
    model = tiny_model()
    path = os.path.join(HERE, "tiny.onnx")
    onnx.save(model, path)
    onnx.checker.check_model(path)

    # Unknown fields, added through the parser so that the bytes are what Python itself writes.
    m = onnx.load(path, load_external_data=False)
    node = onnx.NodeProto()
    node.ParseFromString(m.graph.node[0].SerializeToString() + unknown(900, b"node-extra"))
    m.graph.node[0].CopyFrom(node)
    graph = onnx.GraphProto()
    graph.ParseFromString(m.graph.SerializeToString() + varint(901 << 3 | 0) + varint(12345))
    m.graph.CopyFrom(graph)
    data = m.SerializeToString() + unknown(999, b"model-extra") + varint(1000 << 3 | 5) + b"\x01\x02\x03\x04"
    check = onnx.ModelProto()
    check.ParseFromString(data)
    assert check.SerializeToString() == data, "Python does not reproduce its own unknown fields"
    with open(os.path.join(HERE, "unknown_fields.onnx"), "wb") as f:
        f.write(data)
    for name in ("tiny.onnx", "unknown_fields.onnx"):
        print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


if __name__ == "__main__":
    main()
