"""The side-by-side benchmark scripts still run (tiny shapes; they measure, these tests only check
that they finish and print their tables, so that a change to the binding cannot leave them broken)."""

import os
import subprocess
import sys

from conftest import REPO


def run_script(*args):
    env = {**os.environ, "PYTHONPATH": str(REPO / "Bindings" / "python")}
    run = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_matmul_benchmark_runs():
    out = run_script(REPO / "Benchmarks" / "matmul.py", "--shapes", "128x80", "--ms", "1,17", "--threads", "1",
                     "--no-cold", "--bw-gib", "0.01")
    assert "QK W7A8 int8" in out and "ORT W7A8 dynamic" in out and "Summary:" in out


def test_int8_weights_benchmark_runs():
    out = run_script(REPO / "Benchmarks" / "int8_weights.py", "--shapes", "128x80", "--ms", "1,9", "--rounds", "1")
    lines = [l.split() for l in out.splitlines() if l.strip().startswith("128")]
    assert len(lines) == 2 and all(len(l) == 8 for l in lines), out
    assert all(float(v) > 0 for l in lines for v in l[4:]), out
