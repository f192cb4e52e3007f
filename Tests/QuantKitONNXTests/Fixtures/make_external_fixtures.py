#!/usr/bin/env python3
"""Writes the external-data fixtures the Swift tests read (needs `onnx`):

    .venv/bin/python Tests/QuantKitONNXTests/Fixtures/make_external_fixtures.py

external/model.onnx + external/model.onnx.data: a small model saved by `onnx.save(...,
save_as_external_data=True)` into one side file (threshold 1024 bytes): two initializers and a
Constant's tensor attribute go to the side file, a small bias stays inline.

external/inline.onnx: the same model saved inline, written before converting it (onnx's own
`load_external_data` would add an explicit `data_location: DEFAULT`, which a plain save does not).

The outputs are deterministic: running the script again writes the same bytes.
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "external")


def model() -> onnx.ModelProto:
    rng = np.random.default_rng(11)
    W = numpy_helper.from_array(rng.standard_normal((16, 64)).astype(np.float32), "W")  # 4096 bytes
    W2 = numpy_helper.from_array(rng.standard_normal((64, 8)).astype(np.float32), "W2")  # 2048 bytes
    B = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "B")  # 256 bytes: inline
    C = numpy_helper.from_array(rng.standard_normal((8, 40)).astype(np.float32), "C")  # 1280 bytes
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["XW"], name="mm0"),
        helper.make_node("Add", ["XW", "B"], ["H"], name="add0"),
        helper.make_node("MatMul", ["H", "W2"], ["Y0"], name="mm1"),
        helper.make_node("Constant", [], ["C"], name="const0", value=C),
        helper.make_node("MatMul", ["Y0", "C"], ["Y"], name="mm2"),
    ]
    graph = helper.make_graph(
        nodes, "external", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["batch", 40])], initializer=[W, B, W2])
    m = helper.make_model(graph, producer_name="quantkit-fixtures", opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    return m


def main() -> None:
    os.makedirs(HERE, exist_ok=True)
    m = model()
    with open(os.path.join(HERE, "inline.onnx"), "wb") as f:
        f.write(m.SerializeToString())
    data = os.path.join(HERE, "model.onnx.data")
    if os.path.exists(data):
        os.remove(data)  # onnx appends to an existing side file
    onnx.save(m, os.path.join(HERE, "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=1024)
    for name in ("inline.onnx", "model.onnx"):
        onnx.checker.check_model(os.path.join(HERE, name))
    for name in ("inline.onnx", "model.onnx", "model.onnx.data"):
        print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


if __name__ == "__main__":
    main()
