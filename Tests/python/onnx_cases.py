"""ONNX backend node test cases for the quantization operators, replayed with QuantKit.

Each case in onnx.backend.test.case.node has .model (one node, or an expanded function body) and
.data_sets [(inputs, outputs)]. Sub-byte and FP8 tensors come as TensorProto; their raw_data is
already ONNX's packed byte layout, which QuantKit's "onnx" layout must equal byte for byte.
"""

import warnings

import numpy as np
import onnx
from onnx import numpy_helper

import quantkit as qk

PREFIXES = ("test_quantizelinear", "test_dequantizelinear", "test_dynamicquantizelinear",
            "test_matmulinteger", "test_qlinearmatmul")

# Cases not reproduced, with the reason (printed by the test module).
OUT_OF_SCOPE = {
    "test_quantizelinear_uint16": "16-bit integer codes: QuantKit has no uint16 format",
    "test_quantizelinear_int16": "16-bit integer codes: QuantKit has no int16 format",
    "test_dequantizelinear_uint16": "16-bit integer codes: QuantKit has no uint16 format",
    "test_dequantizelinear_int16": "16-bit integer codes: QuantKit has no int16 format",
}

# Cases reproduced in a documented, slightly different form.
ADAPTED = {
    "test_quantizelinear_blocked_symmetric":
        "output_dtype int16 re-run as int8: every expected code lies in [-128, 127], so saturation "
        "cannot differ; compared as code values",
}

# Cases where QuantKit differs from the ONNX data on purpose or pending a decision; the test checks
# that nothing else differs.
# Cases QuantKit does not reproduce exactly, with the reason (none at present: FP4's -0 became +0
# as ONNX's reference computes it).
KNOWN_DEVIATIONS: dict = {}

# How MatMulInteger / QLinearMatMul are reproduced (no QuantKit GEMM yet).
NOTES = {
    "test_matmulinteger": "A, B dequantized by QuantKit with scale 1 and their zero points, then an "
                          "exact float64 matmul in numpy",
    "test_qlinearmatmul": "same integer matmul, then QuantKit QuantizeLinear of C*a_scale*b_scale "
                          "with y_scale, y_zero_point",
}


def collect():
    """The in-scope-prefix cases, sorted by name (onnx prints warnings while building them)."""
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases("")
    return sorted((c for c in cases if c.name.startswith(PREFIXES)), key=lambda c: c.name)


def status_table(cases):
    rows = []
    for case in cases:
        name = case.name
        if name in OUT_OF_SCOPE:
            rows.append((name, "out of scope", OUT_OF_SCOPE[name]))
        elif name in ADAPTED:
            rows.append((name, "adapted", ADAPTED[name]))
        elif name in KNOWN_DEVIATIONS:
            rows.append((name, "known deviation", KNOWN_DEVIATIONS[name]))
        else:
            note = next((v for k, v in NOTES.items() if name.startswith(k)), "")
            rows.append((name, "bit-exact", note))
    width = max(len(r[0]) for r in rows)
    lines = [f"{'case'.ljust(width)}  {'status':16}  reason / how"]
    lines += [f"{n.ljust(width)}  {s:16}  {r}" for n, s, r in rows]
    return "\n".join(lines)


# ---- tensors ----

def array(x):
    return numpy_helper.to_array(x) if isinstance(x, onnx.TensorProto) else np.asarray(x)


def onnx_bytes(x):
    """The bytes ONNX stores for a tensor (packed for sub-byte types)."""
    if isinstance(x, onnx.TensorProto):
        return x.raw_data or numpy_helper.from_array(numpy_helper.to_array(x)).raw_data
    return numpy_helper.from_array(np.asarray(x)).raw_data


def _attrs(case):
    node = case.model.graph.node[0]
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def op_type(case):
    """The operator a case tests (expanded cases list the body's first node instead)."""
    name = case.name.removeprefix("test_")
    for op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
               "QLinearMatMul"):
        if name.startswith(op.lower()):
            return op
    raise KeyError(case.name)


def _optional(inputs, i):
    return array(inputs[i]) if len(inputs) > i and inputs[i] is not None else None


# ---- replays: each returns [(label, ours, expected)] to compare exactly ----

def quantize_linear(case, inputs, outputs):
    attrs = _attrs(case)
    assert attrs.get("saturate", 1) == 1, "saturate=0 is not in QuantKit's scope"
    x, scale, zp = array(inputs[0]), array(inputs[1]), _optional(inputs, 2)
    fmt = None
    if zp is None and "output_dtype" in attrs:
        fmt = onnx.helper.tensor_dtype_to_np_dtype(attrs["output_dtype"]).name
    if case.name in ADAPTED:
        fmt = "int8"
    qt = qk.quantize_with_scales(x, scale, zp, format=fmt, axis=attrs.get("axis", 1),
                                 block_size=attrs.get("block_size") or None)
    if case.name in ADAPTED:
        return [("codes", qt.codes().astype(np.int64), array(outputs[0]).astype(np.int64))]
    return [("y bytes", qt.data.tobytes(), onnx_bytes(outputs[0]))]


def dequantize_linear(case, inputs, outputs):
    attrs = _attrs(case)
    x, scale, zp = array(inputs[0]), array(inputs[1]), _optional(inputs, 2)
    qt = qk.from_codes(x, scale, zp, axis=attrs.get("axis", 1),
                       block_size=attrs.get("block_size") or None)
    expected = array(outputs[0])
    return [("y", qt.dequantize(expected.dtype), expected)]


def dynamic_quantize_linear(case, inputs, outputs):
    x = array(inputs[0])
    qt = qk.quantize(x, "uint8", granularity="tensor", symmetric=False, method="minmax",
                     rounding="half_even")
    return [("y bytes", qt.data.tobytes(), onnx_bytes(outputs[0])),
            ("y_scale", qt.scales.reshape(()), array(outputs[1])),
            ("y_zero_point", qt.zero_point_values().reshape(()), array(outputs[2]))]


def _integer_values(codes, zero_point):
    """codes - zero_point as exact float64, computed by QuantKit's DequantizeLinear with scale 1."""
    qt = qk.from_codes(codes, np.float32(1.0), zero_point)
    return qt.dequantize(np.float32).astype(np.float64)


def matmul_integer(case, inputs, outputs):
    a, b = array(inputs[0]), array(inputs[1])
    a_zp, b_zp = _optional(inputs, 2), _optional(inputs, 3)
    c = _integer_values(a, a_zp) @ _integer_values(b, b_zp)
    return [("y", c.astype(np.int32), array(outputs[0]))]


def qlinear_matmul(case, inputs, outputs):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = (array(v) for v in inputs)
    c = _integer_values(a, a_zp) @ _integer_values(b, b_zp)
    real = (c * (a_scale.astype(np.float64) * b_scale.astype(np.float64))).astype(np.float32)
    qt = qk.quantize_with_scales(real, y_scale.astype(np.float32), y_zp)
    return [("y bytes", qt.data.tobytes(), onnx_bytes(outputs[0]))]


REPLAY = {
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
    "DynamicQuantizeLinear": dynamic_quantize_linear,
    "MatMulInteger": matmul_integer,
    "QLinearMatMul": qlinear_matmul,
}
