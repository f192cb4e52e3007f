"""QuantKit's "onnx" layout on random tensors against ONNX's reference evaluator.

For each format ONNX has, every granularity and axis, quantize with QuantKit, then
  * DequantizeLinear(codes, scales, zero points) in onnx.reference must equal qt.dequantize(), and
  * QuantizeLinear(x, scales, zero points) in onnx.reference must equal qt's packed bytes.
So the scales QuantKit chose, its packing, and its rounding all read the way ONNX reads them.
"""

import itertools

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

import quantkit as qk

ONNX_TYPES = {  # QuantKit format -> (ONNX element type, numpy dtype of its values)
    "int8": (TensorProto.INT8, np.int8), "uint8": (TensorProto.UINT8, np.uint8),
    "int4": (TensorProto.INT4, ml_dtypes.int4), "uint4": (TensorProto.UINT4, ml_dtypes.uint4),
    "int2": (TensorProto.INT2, ml_dtypes.int2), "uint2": (TensorProto.UINT2, ml_dtypes.uint2),
    "fp8-e4m3": (TensorProto.FLOAT8E4M3FN, ml_dtypes.float8_e4m3fn),
    "fp8-e5m2": (TensorProto.FLOAT8E5M2, ml_dtypes.float8_e5m2),
    "fp4-e2m1": (TensorProto.FLOAT4E2M1, ml_dtypes.float4_e2m1fn),
}
SHAPES = [(6, 10), (3, 5, 7), (16, 256)]  # the last one is big enough for the vector kernels
GRANULARITIES = [("tensor", None), ("axis", None), ("block", 2), ("block", 3), ("block", 4), ("block", 32)]


def _cases():
    for fmt, shape, (gran, block) in itertools.product(ONNX_TYPES, SHAPES, GRANULARITIES):
        axes = [None] if gran == "tensor" else range(len(shape))
        schemes = [True, False] if qk.format_info(fmt).takes_zero_point else [True]
        for axis, sym in itertools.product(axes, schemes):
            yield fmt, shape, gran, block, axis, sym


CASES = list(_cases())


def _id(case):
    fmt, shape, gran, block, axis, sym = case
    return f"{fmt}-{'x'.join(map(str, shape))}-{gran}{block or ''}-ax{axis}-{'sym' if sym else 'asym'}"


def _model(op, x_type, y_type, has_zp, shape, attrs):
    inputs = ["x", "scale"] + (["zp"] if has_zp else [])
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph = helper.make_graph([node], op, [], [helper.make_tensor_value_info("y", y_type, shape)])
    graph.input.extend([helper.make_tensor_value_info("x", x_type, shape)])
    graph.input.extend([helper.make_tensor_value_info("scale", TensorProto.FLOAT, None)])
    if has_zp:
        graph.input.extend([helper.make_tensor_value_info("zp", y_type if op == "QuantizeLinear"
                                                          else x_type, None)])
    return ReferenceEvaluator(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]))


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_against_onnx_reference(case):
    fmt, shape, gran, block, axis, sym = case
    x = np.random.default_rng(len(_id(case))).standard_normal(shape).astype(np.float32) * 3
    kw = {"granularity": gran, "symmetric": sym}
    if axis is not None:
        kw["axis"] = axis
    if block:
        kw["block_size"] = block
    qt = qk.quantize(x, fmt, **kw)
    onnx_type, dtype = ONNX_TYPES[fmt]
    attrs = {"axis": axis if axis is not None else 1}
    if block:
        attrs["block_size"] = block
    feeds = {"scale": qt.scales.astype(np.float32)}
    has_zp = qt.zero_points is not None
    if has_zp:
        feeds["zp"] = qt.zero_point_values().astype(dtype)

    codes = qt.codes().astype(dtype) if not qk.format_info(fmt).is_float else qt.codes()
    deq = _model("DequantizeLinear", onnx_type, TensorProto.FLOAT, has_zp, shape, attrs)
    expected = deq.run(None, {"x": codes, **feeds})[0]
    assert qt.dequantize().tobytes() == expected.astype(np.float32).tobytes()

    if not has_zp:
        attrs["output_dtype"] = onnx_type  # else ONNX defaults to uint8
    quant = _model("QuantizeLinear", TensorProto.FLOAT, onnx_type, has_zp, shape, attrs)
    y = quant.run(None, {"x": x, **feeds})[0]
    assert qt.data.tobytes() == numpy_helper.from_array(np.asarray(y, dtype)).raw_data
