"""When `quantkit convert` forces its output to disk: always with --sync, and whenever the output
replaces a file (so a power cut leaves the old file or the new one); a new output is left to the
kernel's writeback, as cp leaves its copies. Seen through strace (installed by scripts/setup.sh)."""

import shutil
import subprocess

import pytest

import conftest
from conftest import linear_model, quantkit, save


def syncs(tmp_path, *args):
    """Runs `quantkit convert` under strace; returns its fsync/fdatasync/sync_file_range calls."""
    quantkit("--version")  # resolves conftest.CLI
    log = tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e", "trace=fsync,fdatasync,sync_file_range",
                    str(conftest.CLI), "convert", *map(str, args), "--quiet"], check=True)
    return [line for line in log.read_text().splitlines() if "sync" in line]


@pytest.fixture
def model(tmp_path):
    if shutil.which("strace") is None or subprocess.run(["strace", "-qq", "-o", "/dev/null", "true"]).returncode != 0:
        pytest.skip("strace is missing or cannot trace here (scripts/setup.sh installs it)")
    return save(linear_model(k=64, n=32), tmp_path / "in.onnx")


def test_new_output_is_left_to_writeback(tmp_path, model):
    assert syncs(tmp_path, model, "-o", tmp_path / "new.onnx") == []


def test_sync_flag_syncs_a_new_output(tmp_path, model):
    calls = syncs(tmp_path, model, "-o", tmp_path / "new.onnx", "--sync")
    assert any(call.split("(")[0].endswith("fsync") for call in calls), calls
    assert (tmp_path / "new.onnx").read_bytes() == _plain_output(tmp_path, model)


def test_replacing_a_file_syncs_it(tmp_path, model):
    out = tmp_path / "out.onnx"
    out.write_bytes(b"precious")
    calls = syncs(tmp_path, model, "-o", out, "--force")
    assert any(call.split("(")[0].endswith("fsync") for call in calls), calls
    assert out.read_bytes() == _plain_output(tmp_path, model)


def test_replacing_only_the_side_file_syncs_both(tmp_path, model):
    (tmp_path / "out.onnx.data").write_bytes(b"precious")
    calls = syncs(tmp_path, model, "-o", tmp_path / "out.onnx", "--force", "--external-data", "external")
    assert sum(call.split("(")[0].endswith("fsync") for call in calls) >= 2, calls  # the model and its side file


def _plain_output(tmp_path, model):
    """The bytes of the same conversion written without syncing."""
    plain = tmp_path / "plain.onnx"
    quantkit("convert", model, "-o", plain, "--quiet")
    return plain.read_bytes()
