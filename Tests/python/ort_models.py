"""One-node com.microsoft models (MatMulNBits, MatMulBnb4) built from QuantKit buffers, run in ORT."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _run(node, initializers, a, n):
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [a.shape[0], n])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21),
                                                    helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"A": a})[0]


def run_matmulnbits(a, qt, k, n, bits, block_size):
    """Y = A @ B.T with B given by a QuantKit "matmulnbits" QuantizedTensor of shape [N, K]."""
    kblocks = (k + block_size - 1) // block_size
    inits = [
        numpy_helper.from_array(qt.data.reshape(n, kblocks, block_size * bits // 8), "B"),
        numpy_helper.from_array(qt.scales.astype(np.float32).reshape(n, kblocks), "scales"),
    ]
    inputs = ["A", "B", "scales"]
    if qt.zero_points is not None:
        inits.append(numpy_helper.from_array(qt.zero_points.reshape(n, -1), "zero_points"))
        inputs.append("zero_points")
    node = helper.make_node("MatMulNBits", inputs, ["Y"], domain="com.microsoft",
                            K=k, N=n, bits=bits, block_size=block_size, accuracy_level=0)
    return _run(node, inits, a, n)


def run_matmulbnb4(a, qt, k, n, block_size, quant_type):
    """Y = A @ B.T with B a QuantKit "bnb4" QuantizedTensor of shape [N, K] (quant_type 0 FP4, 1 NF4)."""
    inits = [numpy_helper.from_array(qt.data, "B"),
             numpy_helper.from_array(qt.scales.astype(np.float32).reshape(-1), "absmax")]
    node = helper.make_node("MatMulBnb4", ["A", "B", "absmax"], ["Y"], domain="com.microsoft",
                            K=k, N=n, block_size=block_size, quant_type=quant_type)
    return _run(node, inits, a, n)
