"""`quantkit convert` on models whose tensors live in side files (ONNX external data), checked with
onnx (load, checker) and onnxruntime.

The CLI is found at $QUANTKIT_CLI, else dist/bin/quantkit, else .build/{release,debug}/quantkit-cli
(build it with `swift build --product quantkit-cli`).
"""
import os
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli() -> str:
    candidates = [os.environ.get("QUANTKIT_CLI", ""), os.path.join(ROOT, "dist/bin/quantkit"),
                  os.path.join(ROOT, ".build/release/quantkit-cli"), os.path.join(ROOT, ".build/debug/quantkit-cli")]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.skip("quantkit CLI not built (swift build --product quantkit-cli)")


def convert(src, dst, *args):
    return subprocess.run([cli(), "convert", str(src), "-o", str(dst), "--quiet", *args],
                          capture_output=True, text=True, timeout=300)


def mlp(rng, k=64, n=96) -> onnx.ModelProto:
    """Two MatMuls and a bias: weights big enough for the side file, the bias small."""
    w1 = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((n, k)).astype(np.float32), "w2")
    b = numpy_helper.from_array(rng.standard_normal(n).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h0"], name="mm1"),
             helper.make_node("Add", ["h0", "b"], ["h"], name="add"),
             helper.make_node("MatMul", ["h", "w2"], ["y"], name="mm2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, k])], [w1, w2, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def save_external(model, folder, name="model.onnx", location="model.onnx.data"):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    onnx.save(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location=location,
              size_threshold=1024)
    return path


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def test_unconverted_external_model_round_trips(tmp_path, rng):
    """Nothing quantized: the output's tensors are the input's, now in the output's own side file."""
    src = save_external(mlp(rng), tmp_path / "in")
    dst = tmp_path / "out" / "copy.onnx"
    dst.parent.mkdir()
    result = convert(src, dst, "--exclude", "*")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(dst.parent)) == ["copy.onnx", "copy.onnx.data"]
    onnx.checker.check_model(str(dst))
    original, copy = onnx.load(src), onnx.load(str(dst))
    for a, b in zip(original.graph.initializer, copy.graph.initializer):
        np.testing.assert_array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    stored = onnx.load(str(dst), load_external_data=False)
    assert [t.data_location for t in stored.graph.initializer] == [TensorProto.EXTERNAL, TensorProto.EXTERNAL, TensorProto.DEFAULT]
    x = rng.standard_normal((3, 64)).astype(np.float32)
    np.testing.assert_array_equal(run(dst, x), run(src, x))


def test_quantized_external_model_runs(tmp_path, rng):
    src = save_external(mlp(rng), tmp_path / "in")
    dst = tmp_path / "q.onnx"
    result = convert(src, dst, "--format", "int8")
    assert result.returncode == 0, result.stderr
    assert os.path.exists(str(dst) + ".data"), "external input: the output keeps its weights in a side file"
    onnx.checker.check_model(str(dst))
    x = rng.standard_normal((3, 64)).astype(np.float32)
    expected, got = run(src, x), run(dst, x)
    assert np.abs(got - expected).max() <= 0.02 * np.abs(expected).max()


def test_inline_model_stays_inline(tmp_path, rng):
    src = tmp_path / "inline.onnx"
    onnx.save(mlp(rng), str(src))
    dst = tmp_path / "out.onnx"
    result = convert(src, dst, "--exclude", "*")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["inline.onnx", "out.onnx"]
    assert dst.read_bytes() == src.read_bytes(), "load + save without changes reproduces onnx's bytes"


@pytest.mark.parametrize("location", ["../../etc/passwd", "../secret.data", "/etc/passwd"])
def test_location_outside_the_folder_is_rejected(tmp_path, rng, location):
    src = save_external(mlp(rng), tmp_path / "in")
    model = onnx.load(src, load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    onnx.save(model, src)
    (tmp_path / "secret.data").write_bytes(b"\0" * 65536)
    out = tmp_path / "out"
    out.mkdir()
    before = sorted(os.listdir(tmp_path / "in"))
    result = convert(src, out / "q.onnx")
    assert result.returncode == 5, (result.returncode, result.stderr)
    assert location in result.stderr and "folder" in result.stderr
    assert os.listdir(out) == [], "nothing may be written"
    assert sorted(os.listdir(tmp_path / "in")) == before


def test_symlink_out_of_the_folder_is_rejected(tmp_path, rng):
    src = save_external(mlp(rng), tmp_path / "in", location="link.data")
    os.rename(tmp_path / "in" / "link.data", tmp_path / "outside.data")
    os.symlink(tmp_path / "outside.data", tmp_path / "in" / "link.data")
    result = convert(src, tmp_path / "q.onnx")
    assert result.returncode == 5, (result.returncode, result.stderr)
    assert not os.path.exists(tmp_path / "q.onnx")


def test_missing_side_file_is_reported(tmp_path, rng):
    src = save_external(mlp(rng), tmp_path / "in")
    os.remove(tmp_path / "in" / "model.onnx.data")
    result = convert(src, tmp_path / "q.onnx")
    assert result.returncode == 6, (result.returncode, result.stderr)
    assert "model.onnx.data" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_truncated_side_file_is_an_invalid_model(tmp_path, rng):
    src = save_external(mlp(rng), tmp_path / "in")
    data = tmp_path / "in" / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    result = convert(src, tmp_path / "q.onnx")
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "past the end" in result.stderr
    assert sorted(os.listdir(tmp_path)) == ["in"]


def test_existing_side_file_is_not_replaced_without_force(tmp_path, rng):
    src = save_external(mlp(rng), tmp_path / "in")
    dst = tmp_path / "q.onnx"
    (tmp_path / "q.onnx.data").write_bytes(b"keep me")
    result = convert(src, dst)
    assert result.returncode == 7, (result.returncode, result.stderr)
    assert (tmp_path / "q.onnx.data").read_bytes() == b"keep me"
    assert not dst.exists()
    result = convert(src, dst, "--force")
    assert result.returncode == 0, result.stderr
    onnx.checker.check_model(str(dst))


def test_quantized_tensors_written_during_conversion_equal_an_inline_conversion(tmp_path, rng):
    """With a side file, each quantized weight goes to disk as its layer is done (ExternalDataSpool):
    the tensors must be those of the same conversion written inline at the end."""
    model = mlp(rng)
    inline_src = tmp_path / "inline.onnx"
    onnx.save(model, str(inline_src))
    src = save_external(model, tmp_path / "in")  # (moves the model's tensors to the side file)
    spooled, inline = tmp_path / "spooled.onnx", tmp_path / "inline-q.onnx"
    for a, b in [(src, spooled), (inline_src, inline)]:
        result = convert(a, b)
        assert result.returncode == 0, result.stderr
    assert os.path.exists(str(spooled) + ".data") and not os.path.exists(str(inline) + ".data")
    onnx.checker.check_model(str(spooled))
    ours = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(spooled)).graph.initializer}
    theirs = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(inline)).graph.initializer}
    assert sorted(ours) == sorted(theirs)
    for name, values in theirs.items():
        np.testing.assert_array_equal(ours[name], values, err_msg=name)
    stored = onnx.load(str(spooled), load_external_data=False)
    external = [t.name for t in stored.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    # (the last MatMul is taken for the output projection: 8 bits by default)
    assert sorted(external) == ["w1_Q4", "w2_Q8"], "weights at or over 1 KiB go to the side file, scales stay inline"


def test_failed_conversion_leaves_no_side_file(tmp_path, rng):
    """The first layer's weights are written before the second fails (a NaN): nothing may remain."""
    model = mlp(rng)
    w2 = numpy_helper.to_array(model.graph.initializer[1]).copy()
    w2[5, 7] = np.nan
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(w2, "w2"))
    src = save_external(model, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    result = convert(src, out / "q.onnx")
    assert result.returncode == 3, (result.returncode, result.stderr)
    assert "node 'mm2'" in result.stderr and "nan" in result.stderr
    assert os.listdir(out) == []


def test_write_over_the_file_size_limit_fails_cleanly(tmp_path, rng):
    """A side-file write that fails (here: over `ulimit -f`, EFBIG) on the spool's writer thread is
    reported as a write failure (exit 9), not as a node's error or a signal, and leaves nothing."""
    import resource

    big = mlp(rng, k=512, n=1024)  # 1024 x 512 int4 codes: 256 KiB per weight
    src = save_external(big, tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    limit = 200 << 10

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))

    result = subprocess.run([cli(), "convert", str(src), "-o", str(out / "q.onnx"), "--quiet"],
                            capture_output=True, text=True, timeout=300, preexec_fn=small_files)
    assert result.returncode == 9, (result.returncode, result.stderr)
    assert "File too large" in result.stderr and "node '" not in result.stderr, result.stderr
    assert os.listdir(out) == []


def peak_rss_mb(argv) -> tuple[float, subprocess.CompletedProcess]:
    """Max RSS of a command, from GNU time (a small parent: a child forked from this Python
    process would inherit its high-water mark)."""
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], capture_output=True, text=True, timeout=300)
    return int(result.stderr.strip().splitlines()[-1]) / 1024, result


@pytest.mark.parametrize("fmt, share", [("int4", 0.35), ("fp16", 0.6)])
def test_peak_memory_stays_far_below_the_model(tmp_path, rng, fmt, share):
    """12 weights of 16 MB in a side file (192 MB): the converter maps one weight at a time and
    drops its pages when done, and writes each quantized weight out as it goes, so its peak
    resident memory grows by far less than the model's size. fp16 writes 8 MB per weight (up to
    64 MB of it may wait for the writer thread): measured 55-72 MB over start-up here, against
    160 MB when the halves were all held until the model was saved."""
    if not os.access("/usr/bin/time", os.X_OK):
        pytest.skip("GNU time is missing (scripts/setup.sh installs it)")
    k, n, layers = 1024, 4096, 12
    weights = [numpy_helper.from_array(rng.standard_normal((k, n) if i % 2 == 0 else (n, k)).astype(np.float32), f"w{i}")
               for i in range(layers)]
    nodes = [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"h{i + 1}"], name=f"mm{i}") for i in range(layers)]
    graph = helper.make_graph(nodes, "deep", [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [1, k])],
                              [helper.make_tensor_value_info(f"h{layers}", TensorProto.FLOAT, [1, k])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    src = save_external(model, tmp_path / "in")
    model_mb = os.path.getsize(str(src) + ".data") / 2**20
    baseline, _ = peak_rss_mb([cli(), "--version"])
    peak, result = peak_rss_mb([cli(), "convert", str(src), "-o", str(tmp_path / "q.onnx"), "--format", fmt, "--quiet"])
    assert result.returncode == 0, result.stderr
    assert peak - baseline < share * model_mb, f"peak {peak:.0f} MB, start-up {baseline:.0f} MB, model {model_mb:.0f} MB"
