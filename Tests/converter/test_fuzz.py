"""Mutated models through `quantkit convert` and `inspect`: whatever the damage, the tool ends with
one of its documented exit codes and a message, leaves no output behind, and never changes the
input. The mutations are seeded, so every run checks the same cases; QK_FUZZ_CASES and
QK_FUZZ_SEED run a longer or another campaign (the session that added this ran 20,000 cases with the same mutators; they found one crash, now a test in test_errors.py).

Structural mutations edit the protobuf fields the converter reads (dims, data types, raw data
lengths, attributes, inputs, opsets, external-data keys, op types, names); byte mutations flip,
overwrite, insert, delete and truncate the serialized bytes, mostly near the ends, where the
model's structure sits (the middle is mostly tensor bytes)."""

import copy
import hashlib
import os
import random

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import quantkit

DOCUMENTED_EXIT_CODES = {0, 2, 3, 4, 5, 6, 7, 8, 9}
CASES = int(os.environ.get("QK_FUZZ_CASES", "300"))
SEED = int(os.environ.get("QK_FUZZ_SEED", "1"))

WEIRD_INTS = [0, 1, -1, 2, 3, 7, 16, 17, 255, 65535, 2**31 - 1, -2**31, 2**32, 2**62, -2**62, 2**63 - 1, -2**63]
TARGETS = [[], ["--format", "int8"], ["--target", "qdq"], ["--target", "dynamic-int8", "--format", "int8", "--block-size", "0"],
           ["--format", "nf4"], ["--format", "fp16"], ["--target", "qdq", "--format", "fp8-e4m3"],
           ["--asymmetric", "--block-size", "16"], ["--embedding-bits", "4"], ["--format", "int2"]]


def value_info(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def seed_models():
    """(name, model, external): small models covering each pass's inputs."""
    rng = np.random.default_rng(0)
    weight = lambda *shape: rng.standard_normal(shape).astype(np.float32)  # noqa: E731
    model = lambda nodes, inputs, outputs, inits, opset=17, ir=8: helper.make_model(  # noqa: E731
        helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
    seeds = [
        ("matmul", model([helper.make_node("MatMul", ["A", "W"], ["Y"], name="mm")], [value_info("A", ["M", 64])],
                         [value_info("Y", ["M", 32])], [numpy_helper.from_array(weight(64, 32), "W")]), False),
        ("gemm", model([helper.make_node("Gemm", ["A", "W", "C"], ["Y"], name="gemm", alpha=0.5, beta=2.0, transB=1)],
                       [value_info("A", ["M", 64])], [value_info("Y", ["M", 32])],
                       [numpy_helper.from_array(weight(32, 64), "W"), numpy_helper.from_array(weight(32), "C")], opset=13), False),
        ("gather", model([helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
                          helper.make_node("MatMul", ["h", "W"], ["Y"], name="lm_head")],
                         [value_info("ids", ["B", "S"], TensorProto.INT64)], [value_info("Y", ["B", "S", 16])],
                         [numpy_helper.from_array(weight(100, 48), "E"), numpy_helper.from_array(weight(48, 16), "W")], opset=21, ir=10),
         False),
        ("f16", model([helper.make_node("MatMul", ["A", "W"], ["Y"], name="mm")], [value_info("A", ["M", 64], TensorProto.FLOAT16)],
                      [value_info("Y", ["M", 32], TensorProto.FLOAT16)], [numpy_helper.from_array(weight(64, 32).astype(np.float16), "W")]),
         False),
        # over WireScan's 64 KB: left in the file's mapping at load
        ("large inline", model([helper.make_node("MatMul", ["A", "W"], ["Y"], name="mm")], [value_info("A", ["M", 256])],
                               [value_info("Y", ["M", 80])], [numpy_helper.from_array(weight(256, 80), "W")]), False),
        ("external", model([helper.make_node("MatMul", ["A", "W"], ["Y"], name="mm")], [value_info("A", ["M", 128])],
                           [value_info("Y", ["M", 64])], [numpy_helper.from_array(weight(128, 64), "W")]), True),
    ]
    then_graph = helper.make_graph([helper.make_node("MatMul", ["A", "W"], ["t"], name="inner")], "then", [], [value_info("t", ["M", 32])])
    else_graph = helper.make_graph([helper.make_node("Neg", ["A2"], ["t2"])], "else", [], [value_info("t2", ["M", 32])])
    seeds.append(("if + ReduceMean", model(
        [helper.make_node("MatMul", ["A", "W"], ["A2"], name="outer"),
         helper.make_node("If", ["cond"], ["r"], then_branch=then_graph, else_branch=else_graph, name="if"),
         helper.make_node("ReduceMean", ["r"], ["Y"], axes=[1], keepdims=1, name="rm")],
        [value_info("A", ["M", 64]), value_info("cond", [], TensorProto.BOOL)], [value_info("Y", ["M", 1])],
        [numpy_helper.from_array(weight(64, 32), "W")]), False))
    return seeds


def mutate_structure(model, r):
    graphs = [model.graph] + [a.g for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.GRAPH]
    graph = r.choice(graphs)
    tensor = r.choice(graph.initializer) if len(graph.initializer) else None
    node = r.choice(graph.node) if len(graph.node) else None
    kind = r.randrange(12)
    if kind == 0 and tensor is not None and len(tensor.dims):
        tensor.dims[r.randrange(len(tensor.dims))] = r.choice(WEIRD_INTS)
    elif kind == 1 and tensor is not None:
        tensor.data_type = r.randrange(-1, 30)
    elif kind == 2 and tensor is not None and tensor.raw_data:
        cut = r.randrange(len(tensor.raw_data) + 1)
        tensor.raw_data = tensor.raw_data[:cut] if r.random() < 0.7 else tensor.raw_data + bytes(r.randrange(1, 9))
    elif kind == 3 and tensor is not None and tensor.raw_data and tensor.data_type == TensorProto.FLOAT:
        values = np.frombuffer(tensor.raw_data, np.float32).copy()
        values[r.randrange(values.size)] = r.choice([np.nan, np.inf, -np.inf, 3e38, 1e-45, 65520.0])
        tensor.raw_data = values.tobytes()
    elif kind == 4 and node is not None:
        if len(node.attribute):
            attribute = r.choice(node.attribute)
            if attribute.type == onnx.AttributeProto.INT:
                attribute.i = r.choice(WEIRD_INTS)
            elif attribute.type == onnx.AttributeProto.FLOAT:
                attribute.f = r.choice([float("nan"), float("inf"), 0.0, -1.0, 1e30])
            elif attribute.type == onnx.AttributeProto.INTS and len(attribute.ints):
                attribute.ints[0] = r.choice(WEIRD_INTS)
            else:
                attribute.type = r.randrange(0, 16)
        else:
            node.attribute.append(helper.make_attribute(r.choice(["transA", "transB", "alpha", "axes"]), r.choice(WEIRD_INTS)))
    elif kind == 5 and node is not None and len(node.input):
        node.input[r.randrange(len(node.input))] = r.choice(["", "W", "missing", "A", "Y", "E"])
    elif kind == 6:
        r.choice(model.opset_import).version = r.choice([0, 1, 6, 11, 13, 17, 18, 19, 21, 23, 99, -1, 2**40])
    elif kind == 7:
        model.ir_version = r.choice([0, 1, 3, 4, 7, 11, 99, -1])
    elif kind == 8 and tensor is not None:
        tensor.data_location = TensorProto.EXTERNAL
        del tensor.external_data[:]
        entries = [("location", r.choice(["../../etc/passwd", "/etc/passwd", "w.bin", "", "a/../../b", "."])),
                   ("offset", str(r.choice(WEIRD_INTS))), ("length", str(r.choice(WEIRD_INTS))), ("offset", "abc")]
        for key, value in r.sample(entries, r.randrange(1, 4)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    elif kind == 9 and node is not None:
        node.op_type = r.choice(["MatMul", "Gemm", "Gather", "If", "Loop", "ReduceMean", "Squeeze", "MatMulInteger"])
    elif kind == 10 and tensor is not None:
        tensor.name = r.choice(["", "A", "Y", "W", "E", tensor.name + "_"])
    elif kind == 11 and tensor is not None and len(tensor.dims):
        if r.random() < 0.5:
            del tensor.dims[r.randrange(len(tensor.dims))]
        else:
            tensor.dims.insert(r.randrange(len(tensor.dims) + 1), r.choice([0, 1, 2, -1]))


def mutate_bytes(data, r):
    data = bytearray(data)
    kind = r.randrange(6)
    if kind == 0:
        return bytes(data[: r.randrange(len(data))])
    for _ in range(r.randrange(1, 8)):
        i = r.randrange(len(data))
        if r.random() < 0.6:
            i = r.randrange(min(300, len(data))) if r.random() < 0.5 else max(0, len(data) - 1 - r.randrange(min(600, len(data))))
        if kind == 1:
            data[i] ^= 1 << r.randrange(8)
        elif kind == 2:
            data[i] = r.choice([0, 0xFF, 0x7F, 0x80, 0x01])
        elif kind == 3:
            data[i:i] = bytes(r.randrange(256) for _ in range(r.randrange(1, 5)))
        elif kind == 4:
            del data[i:i + r.randrange(1, 17)]
        else:
            data[i:i] = data[i:i + r.randrange(1, 64)]
    return bytes(data)


def cases():
    r = random.Random(SEED)
    seeds = seed_models()
    for index in range(CASES):
        name, model, external = r.choice(seeds)
        model = copy.deepcopy(model)
        structural = r.random() < 0.6
        byte_level = r.random() < 0.4 or not structural
        mutations = r.randrange(1, 4) if structural else 0
        args = ["inspect"] if r.random() < 0.15 else ["convert", *r.choice(TARGETS)]
        yield pytest.param(model, external, mutations, byte_level, args, r.randrange(2**32), id=f"{index}-{name.replace(' ', '_')}")


def write_case(folder, model, external, mutations, byte_level, r):
    path = folder / "model.onnx"
    if external:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin", size_threshold=0)
        model = onnx.load(str(path), load_external_data=False)
    for _ in range(mutations):
        try:
            mutate_structure(model, r)
        except (ValueError, TypeError, IndexError):
            pass  # the onnx package refused the edit itself
    data = model.SerializeToString()
    if byte_level:
        data = mutate_bytes(data, r)
    path.write_bytes(data)
    if external and r.random() < 0.3:
        side = folder / "w.bin"
        side.write_bytes(mutate_bytes(side.read_bytes(), r))
    return path


def digests(folder):
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in os.listdir(folder)}


@pytest.mark.parametrize("model, external, mutations, byte_level, args, seed", cases())
def test_mutated_model(tmp_path, model, external, mutations, byte_level, args, seed):
    folder = tmp_path / "in"
    folder.mkdir()
    path = write_case(folder, model, external, mutations, byte_level, random.Random(seed))
    before = digests(folder)
    out_folder = tmp_path / "out"
    out_folder.mkdir()
    command = [args[0], path] + (["-o", out_folder / "model.q.onnx"] if args[0] == "convert" else []) + args[1:]
    result = quantkit(*command, check=False)
    assert result.returncode in DOCUMENTED_EXIT_CODES, (result.returncode, result.stderr[-2000:])
    if result.returncode != 0:
        assert result.stderr.startswith("quantkit: error:"), result.stderr[-2000:]
        assert os.listdir(out_folder) == []
    assert digests(folder) == before
