"""Bad input to `quantkit convert`: each failure has its own exit code and a clear message, leaves
no output (not even a temporary file), and never touches the input."""

import hashlib
import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import linear_model, quantkit, save


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def model(tmp_path):
    return save(linear_model(k=64, n=32), tmp_path / "in.onnx")


def fails(code, *args, mentioning):
    result = quantkit(*args, check=False)
    assert result.returncode == code, (result.returncode, result.stderr)
    assert mentioning in result.stderr, result.stderr
    assert result.stderr.startswith("quantkit: error:") or code == 64, result.stderr
    return result


def leftovers(folder, keep):
    return sorted(set(os.listdir(folder)) - set(keep))


def test_missing_input(tmp_path):
    fails(2, "convert", tmp_path / "nope.onnx", "-o", tmp_path / "out.onnx", mentioning="no such file")
    assert leftovers(tmp_path, []) == []


def test_truncated_model(tmp_path, model):
    data = open(model, "rb").read()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(data[: len(data) // 2])
    fails(3, "convert", broken, "-o", tmp_path / "out.onnx", mentioning="truncated")
    assert leftovers(tmp_path, ["in.onnx", "broken.onnx"]) == []


def test_not_a_model(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("hello, this is not protobuf\n")
    fails(3, "convert", text, "-o", tmp_path / "out.onnx", mentioning="not")


def test_output_exists_is_kept_unless_forced(tmp_path, model):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"precious")
    fails(7, "convert", model, "-o", out, mentioning="already exists")
    assert out.read_bytes() == b"precious"
    quantkit("convert", model, "-o", out, "--force", "--quiet")
    onnx.checker.check_model(str(out))


def test_output_is_the_input(tmp_path, model):
    before = digest(model)
    fails(64, "convert", model, "-o", model, "--force", mentioning="is the input")
    assert digest(model) == before


def test_target_that_needs_the_plugin(tmp_path, model):
    before = digest(model)
    # A rule, because the policy would keep this single MatMul (it feeds the graph output) at 8 bits.
    recipe = tmp_path / "int3.json"
    recipe.write_text(json.dumps({"rules": [{"pattern": "*", "format": "int3"}]}))
    fails(4, "convert", model, "-o", tmp_path / "out.onnx", "--recipe", recipe, mentioning="plugin")
    assert digest(model) == before
    assert leftovers(tmp_path, ["in.onnx", "int3.json"]) == []


@pytest.mark.parametrize("args,text", [
    (["--format", "int5"], "unknown format"),
    (["--block-size", "24"], "power of two"),
    (["--target", "tensorrt"], "target"),
    (["--lm-head-bits", "3"], "--lm-head-bits"),
    (["--op-types", "Conv"], "--op-types"),
    (["--accuracy-level", "9"], "accuracy_level"),
])
def test_bad_options(tmp_path, model, args, text):
    result = quantkit("convert", model, "-o", tmp_path / "out.onnx", *args, check=False)
    assert result.returncode in (4, 64), result.stderr
    assert text in result.stderr
    assert leftovers(tmp_path, ["in.onnx"]) == []


def test_recipe_with_unknown_key(tmp_path, model):
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"format": "int4", "blocksize": 64}))
    fails(64, "convert", model, "-o", tmp_path / "out.onnx", "--recipe", recipe, mentioning="unknown key 'blocksize'")


def test_recipe_rules(tmp_path):
    rng = np.random.default_rng(0)
    w1, w2 = (rng.standard_normal((64, 64)).astype(np.float32) for _ in range(2))
    nodes = [helper.make_node("MatMul", ["A", "W1"], ["H"], name="layer/up/MatMul"),
             helper.make_node("MatMul", ["H", "W2"], ["Y"], name="layer/down/MatMul")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("A", TensorProto.FLOAT, [2, 64])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 64])],
                              [numpy_helper.from_array(w1, "W1"), numpy_helper.from_array(w2, "W2")])
    src = save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "two.onnx")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({"block_size": 16, "lm_head_bits": "float",
                                  "rules": [{"pattern": "*/up/*", "format": "int8", "block_size": 64}]}))
    out = tmp_path / "two.q.onnx"
    layers = json.loads(quantkit("convert", src, "-o", out, "--recipe", recipe, "--json").stdout)["report"]["layers"]
    by_node = {l["node"]: l for l in layers}
    assert by_node["layer/up/MatMul"]["settings"] == "int8 b64 sym → matmulnbits"
    assert by_node["layer/down/MatMul"]["skipped"] == "the output projection (lm_head) is kept in float"
    recipe.write_text(json.dumps({"exclude": ["*/up/*"]}))
    layers = json.loads(quantkit("convert", src, "-o", out, "--force", "--recipe", recipe, "--json").stdout)["report"]["layers"]
    assert {l["node"]: l.get("skipped") for l in layers}["layer/up/MatMul"] == "excluded by pattern '*/up/*'"


def external_model(tmp_path, location):
    model = linear_model(k=64, n=32)
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(64 * 32 * 4))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path))
    return path


def test_external_data_escaping_the_folder_is_rejected(tmp_path):
    path = external_model(tmp_path, "../../etc/passwd")
    fails(5, "convert", path, "-o", tmp_path / "out.onnx", mentioning="leaves the model's folder")
    assert leftovers(tmp_path, ["ext.onnx"]) == []


def test_external_data_absolute_path_is_rejected(tmp_path):
    fails(5, "convert", external_model(tmp_path, "/etc/passwd"), "-o", tmp_path / "out.onnx", mentioning="relative path")


def test_external_data_symlink_out_of_the_folder_is_rejected(tmp_path):
    os.symlink("/etc/passwd", tmp_path / "weights.bin")
    fails(5, "convert", external_model(tmp_path, "weights.bin"), "-o", tmp_path / "out.onnx", mentioning="outside the model's folder")


def test_missing_external_file(tmp_path):
    fails(6, "convert", external_model(tmp_path, "weights.bin"), "-o", tmp_path / "out.onnx", mentioning="does not exist")


def test_external_file_too_short(tmp_path):
    path = external_model(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(b"\0" * 100)
    fails(3, "convert", path, "-o", tmp_path / "out.onnx", mentioning="truncated")


TARGETS = [[], ["--target", "qdq", "--format", "fp8-e4m3"], ["--target", "dynamic-int8", "--format", "int8", "--block-size", "0"],
           ["--format", "nf4"], ["--format", "fp16"]]


@pytest.mark.parametrize("storage", ["external", "raw", "float_data"])
@pytest.mark.parametrize("args", TARGETS, ids=lambda a: "-".join(a).replace("--", "") or "default")
def test_shape_claiming_more_than_the_stored_values(tmp_path, storage, args):
    """A weight whose dims claim 2^31 - 1 rows over a few KB of values: an invalid model (exit 3),
    found before any buffer of the claimed size is asked for (it used to stop the process)."""
    if storage == "external":
        path = external_model(tmp_path, "weights.bin")
        (tmp_path / "weights.bin").write_bytes(b"\0" * (64 * 32 * 4))
        model = onnx.load(str(path), load_external_data=False)
    else:
        model = linear_model(k=64, n=32)
        if storage == "float_data":
            weight = model.graph.initializer[0]
            values = numpy_helper.to_array(weight).ravel().tolist()
            weight.ClearField("raw_data")
            weight.float_data.extend(values)
    model.graph.initializer[0].dims[0] = 2**31 - 1
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    before = digest(path)
    fails(3, "convert", path, "-o", tmp_path / "out.onnx", *args, mentioning="its shape needs")
    assert leftovers(tmp_path, ["big.onnx", "ext.onnx", "weights.bin"]) == []
    assert digest(path) == before


def test_inspect_reports_candidates(tmp_path, model):
    summary = json.loads(quantkit("inspect", model, "--json").stdout)
    assert summary["operators"] == {"MatMul": 1}
    assert [(c["node"], c["quantizable"], c["shape"]) for c in summary["candidates"]] == [("proj/MatMul", True, [64, 32])]
    assert summary["parameters"][0]["bytes"] == 64 * 32 * 4
