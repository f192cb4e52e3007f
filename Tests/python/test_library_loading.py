"""How the binding finds libquantkit, and that every kernel variant gives the same bytes.

Each check runs in a fresh interpreter: the library is loaded once per process.
"""

import os
import subprocess
import sys

import quantkit as qk
from conftest import REPO

BINDING = str(REPO / "Bindings" / "python")


def _python(code, **env):
    full_env = {**os.environ, "PYTHONPATH": BINDING, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env)


def test_env_var_wins():
    run = _python("import quantkit; print(quantkit.library_path())", QUANTKIT_LIBRARY=qk.library_path())
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == qk.library_path()


def test_missing_library_names_every_place_tried():
    run = _python("import quantkit; quantkit.version()", QUANTKIT_LIBRARY="/nonexistent/libquantkit.so")
    assert run.returncode != 0
    assert "LibraryNotFoundError" in run.stderr
    assert "$QUANTKIT_LIBRARY: /nonexistent/libquantkit.so (no such file)" in run.stderr


def test_import_does_not_need_the_library():
    run = _python("import quantkit; print('ok')", QUANTKIT_LIBRARY="/nonexistent/libquantkit.so")
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


DIGEST = """
import hashlib, numpy as np, quantkit as qk
x = np.random.default_rng(9).standard_normal((33, 300)).astype(np.float32)
h = hashlib.sha256()
for fmt, kw in [("int4", {}), ("uint4", {"symmetric": False}), ("int8", {}), ("uint8", {"symmetric": False}),
                ("int4", {"layout": "matmulnbits", "block_size": 32, "rounding": "half_away"}),
                ("uint4", {"layout": "matmulnbits", "block_size": 128, "rounding": "half_away", "symmetric": False}),
                ("int8", {"layout": "matmulnbits", "block_size": 64, "rounding": "half_away"}),
                ("nf4", {}), ("fp8", {}), ("int4", {"block_size": 128, "scale_dtype": "float16"})]:
    for data in (x, x.astype(np.float16)):
        qt = qk.quantize(data, fmt, **kw)
        for part in (qt.data, qt.scales, qt.zero_points, qt.dequantize()):
            if part is not None:
                h.update(part.tobytes())
print(qk.kernel_variant(), h.hexdigest())
"""


def test_kernel_variants_agree():
    results = {}
    for variant in ("scalar", "avx2", "avx512"):
        run = _python(DIGEST, QUANTKIT_KERNELS=variant)
        assert run.returncode == 0, run.stderr
        used, digest = run.stdout.split()
        results[variant] = (used, digest)
    assert results["scalar"][0] == "scalar"
    digests = {digest for _, digest in results.values()}
    assert len(digests) == 1, results
