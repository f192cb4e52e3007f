"""quantkit.matmul / pack_weights / matmul_integer (quantkit.h "Fused low-bit matrix multiplication",
since ABI 2) against float64 references built from the binding's own dequantize.

Tolerances, named once:
  * compute="float": the header promises X . dequant(W)^T "up to float rounding". Each output is
    allowed FLOAT_RTOL times the sum of the magnitudes of its terms, |x| @ (|W| + |offset|)^T, where
    offset is what a zero code dequantizes to (-zero_point * scale): a kernel may apply the zero point
    and the scale once per block instead of per element, and those terms are summed too.
  * compute="int8": the header's bound, per block of packed.block_size along K:
    sum over blocks of (max|x_block| / 127 / 2) * sum |w_block|, plus the float allowance above.
These run under every QUANTKIT_KERNELS variant (scripts/test.sh).
"""

import gc
import os
import sys
import threading
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import pytest

import quantkit as qk
from quantkit import Status

FLOAT_RTOL = 1e-5
TINY = 1e-30
MS = (1, 2, 3, 4, 5, 17, 64, 70)


# ---- cases ----

@dataclass(frozen=True)
class Case:
    name: str
    fmt: str
    kw: dict = field(default_factory=dict)   # qk.quantize keywords for the stored tensor
    orientation: str = "nk"
    shapes: tuple = ((77, 33), (13, 7), (257, 67))  # (K, N): odd, not multiples of 16 or the block

    def __hash__(self):
        return hash(self.name)


def _block_shapes(block):
    # bnb4 blocks run over the flattened [N, K] tensor: K must be a multiple of the block.
    return ((block, 7), (3 * block, 33))


CASES = []
for _fmt in ("int4", "uint4"):
    for _sym in (True, False):
        for _block in (16, 32, 64, 128, 256):
            CASES.append(Case(f"{_fmt}-{'sym' if _sym else 'asym'}-b{_block}", _fmt,
                              {"block_size": _block, "symmetric": _sym}))
CASES += [
    Case("int8-per-channel", "int8", {"axis": 0}),
    Case("uint8-asym-per-channel", "uint8", {"axis": 0, "symmetric": False}),
    Case("int8-b32", "int8", {"block_size": 32}),
    Case("uint8-asym-b64", "uint8", {"block_size": 64, "symmetric": False}),
    Case("int8-per-tensor", "int8", {"granularity": "tensor"}),
    Case("int4-per-channel", "int4", {"axis": 0}),
    Case("int3-sym-b32", "int3", {"block_size": 32}),
    Case("int3-asym-b64", "int3", {"block_size": 64, "symmetric": False}),
    Case("uint3-asym-b16", "uint3", {"block_size": 16, "symmetric": False}),
    Case("int2-sym-b32", "int2", {"block_size": 32}),
    Case("int2-asym-b16", "int2", {"block_size": 16, "symmetric": False}),
    Case("uint2-asym-b128", "uint2", {"block_size": 128, "symmetric": False}),
    Case("nf4-bnb4-b64", "nf4", {"layout": "bnb4", "block_size": 64}, shapes=_block_shapes(64)),
    Case("fp4bnb-bnb4-b32", "fp4-bnb", {"layout": "bnb4", "block_size": 32}, shapes=_block_shapes(32)),
    Case("nf4-bnb4-b256", "nf4", {"layout": "bnb4", "block_size": 256}, shapes=_block_shapes(256)),
    Case("nf4-onnx-b32", "nf4", {"block_size": 32}),
    Case("fp4bnb-onnx-b64", "fp4-bnb", {"block_size": 64}),
    Case("fp4-e2m1-b32", "fp4", {"block_size": 32}),
    Case("log4-b32", "log4", {"block_size": 32}),
    Case("fp8-e4m3-tensor", "fp8-e4m3", {}),
    Case("fp8-e5m2-tensor", "fp8-e5m2", {}),
    Case("fp8-e4m3-per-channel", "fp8-e4m3", {"axis": 0}),
    Case("int4-b32-f16scales", "int4", {"block_size": 32, "scale_dtype": "float16"}),
    Case("uint4-asym-b64-bf16scales", "uint4", {"block_size": 64, "symmetric": False,
                                               "scale_dtype": "bfloat16"}),
    Case("int4-mse-b32", "int4", {"block_size": 32, "method": "mse"}),
    # Header: a block size with a power-of-two factor of at least 8 is served.
    Case("int4-b24", "int4", {"block_size": 24}),
    Case("uint4-asym-b96", "uint4", {"block_size": 96, "symmetric": False}),
]
for _bits, _block, _sym in ((4, 32, True), (4, 128, False), (4, 16, True), (4, 256, False),
                            (2, 16, False), (2, 64, True), (8, 64, True), (8, 32, False)):
    CASES.append(Case(f"matmulnbits-int{_bits}-b{_block}-{'sym' if _sym else 'asym'}", f"int{_bits}",
                      {"layout": "matmulnbits", "block_size": _block, "symmetric": _sym,
                       "rounding": "half_away"}))
# [K, N] weights (ONNX MatMul's B, QDQ): blocks along axis 0, per-channel along axis 1.
CASES += [
    Case("kn-int4-b32", "int4", {"block_size": 32, "axis": 0}, "kn"),
    Case("kn-uint4-asym-b128", "uint4", {"block_size": 128, "axis": 0, "symmetric": False}, "kn"),
    Case("kn-int4-b16", "int4", {"block_size": 16, "axis": 0}, "kn"),
    Case("kn-int8-per-channel", "int8", {"axis": 1}, "kn"),
    Case("kn-uint8-asym-per-channel", "uint8", {"axis": 1, "symmetric": False}, "kn"),
    Case("kn-int8-per-tensor", "int8", {"granularity": "tensor"}, "kn"),
    Case("kn-nf4-b64", "nf4", {"block_size": 64, "axis": 0}, "kn"),
    Case("kn-fp8-e4m3-tensor", "fp8-e4m3", {}, "kn"),
    Case("kn-int2-asym-b32", "int2", {"block_size": 32, "axis": 0, "symmetric": False}, "kn"),
]
# 7-bit weights: int8 codes -64...64 per channel, as ONNX Runtime's quantize_dynamic(reduce_range=True)
# writes them (packed as narrow byte codes, which AVX2 multiplies without the sign transfer).
CASES += [
    Case("int8-7bit-per-channel", "int8", {"axis": 0, "reduce_range": True}),
    Case("kn-int8-7bit-per-channel", "int8", {"axis": 1, "reduce_range": True}, "kn"),
]
CASE_BY_NAME = {c.name: c for c in CASES}
assert len(CASE_BY_NAME) == len(CASES)


def _weights(k, n, seed):
    """[N, K] weights with a few outliers and one all-zero row (a zero scale)."""
    w = np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)
    w[0, : min(k, 5)] *= 8.0
    if n > 2:
        w[2] = 0.0
    return w


def quantize_case(case, k, n, seed=0):
    """(QuantizedTensor in the case's orientation, dequantized W [N, K] as float64)."""
    w = _weights(k, n, seed + k * 31 + n)
    stored = w if case.orientation == "nk" else np.ascontiguousarray(w.T)
    if case.kw.get("reduce_range"):
        axis = case.kw["axis"]
        absmax = np.abs(stored).max(axis=1 - axis)
        scales = (np.where(absmax > 0, absmax, 1.0) / 64).astype(np.float32)
        qt = qk.quantize_with_scales(stored, scales, format=case.fmt, axis=axis)
        codes = qt.codes().astype(np.int16)
        assert codes.min() >= -64 and codes.max() <= 64 and codes.max() - codes.min() > 120
    else:
        qt = qk.quantize(stored, case.fmt, **case.kw)
    deq = qt.dequantize().astype(np.float64)
    return qt, (deq if case.orientation == "nk" else deq.T)


def offset_of(qt, orientation):
    """What code 0 dequantizes to, per element ([N, K] float64): -zero_point * scale for integer
    formats; the float allowance counts it as a term the kernel may sum separately."""
    zero = qk.QuantizedTensor(np.zeros_like(qt.data), qt.scales, qt.zero_points, qt.shape, qt.params)
    off = zero.dequantize().astype(np.float64)
    return off if orientation == "nk" else off.T


def activations(m, k, seed, dtype=np.float32):
    x = np.random.default_rng(seed).standard_normal((m, k)).astype(np.float32)
    if m >= 2:
        x[1, : min(k, 40)] = 0.0   # an all-zero block: activation scale 0 under compute="int8"
    if m >= 3:
        x[2] *= 50.0               # a large row
    if m >= 4:
        x[3, k // 2] = 30.0        # one outlier
    return x.astype(dtype)


def float_allowance(x, w_mag):
    return FLOAT_RTOL * (np.abs(x.astype(np.float64)) @ w_mag.T) + TINY


def int8_allowance(x, w, block):
    """The header's bound for compute="int8" (per block of `block` along K) plus the float one."""
    x = x.astype(np.float64)
    k = x.shape[-1]
    bound = np.zeros((x.shape[0], w.shape[0]))
    for start in range(0, k, block):
        xs = np.abs(x[:, start:start + block]).max(axis=1) / 127.0
        bound += np.outer(xs / 2.0, np.abs(w[:, start:start + block]).sum(axis=1))
    return bound * (1 + 1e-5)


def assert_close(got, ref, allowance, what):
    got = got.astype(np.float64)
    diff = np.abs(got - ref)
    bad = ~(diff <= allowance)  # NaN fails too
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} outputs off; first at {i}: got {got[i]!r}, "
                    f"expected {ref[i]!r} (diff {diff[i]:.3g}, allowed {allowance[i]:.3g})")


def _is_integer_format(fmt):
    return qk.format_info(fmt).is_integer


# ---- the main comparison ----

@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_matmul_matches_dequantized_reference(case):
    for k, n in case.shapes:
        qt, w = quantize_case(case, k, n)
        mag = np.abs(w) + np.abs(offset_of(qt, case.orientation))
        with qk.pack_weights(qt, case.orientation) as packed:
            assert (packed.n, packed.k) == (n, k)
            if case.kw.get("layout") == "matmulnbits":  # int and uint give the same bytes there
                assert packed.format.lstrip("u") == qk.format_info(case.fmt).name.lstrip("u")
            else:
                assert packed.format == qk.format_info(case.fmt).name
            assert packed.block_size >= 1 and packed.packed_bytes > 0
            assert packed.int8_compute == _is_integer_format(case.fmt), \
                "header: QK_COMPUTE_INT8 is served for the integer formats"
            for m in MS:
                x = activations(m, k, seed=m * 7 + k)
                ref = x.astype(np.float64) @ w.T
                y = qk.matmul(x, packed)
                assert y.shape == (m, n) and y.dtype == np.float32
                assert_close(y, ref, float_allowance(x, mag), f"{case.name} K={k} N={n} M={m} float")
                y8 = qk.matmul(x, packed, compute="int8")
                if packed.int8_compute:
                    allowed = int8_allowance(x, w, packed.block_size) + float_allowance(x, mag)
                    assert_close(y8, ref, allowed, f"{case.name} K={k} N={n} M={m} int8")
                else:  # header: the other formats compute as FLOAT
                    np.testing.assert_array_equal(y8, y, err_msg=f"{case.name} M={m}: int8 on a "
                                                  "non-integer format must compute as float")


# Model-sized shapes, so the vectorized main loops (not only the edges) are compared too.
BIG = [("int4-sym-b32", 1024, 96), ("uint4-asym-b128", 2048, 40), ("int8-per-channel", 1000, 130),
       ("matmulnbits-int4-b32-sym", 4096, 24), ("matmulnbits-int4-b128-asym", 1536, 72),
       ("nf4-bnb4-b64", 1024, 33), ("kn-int4-b32", 1056, 48), ("int3-sym-b32", 777, 65),
       ("fp8-e4m3-tensor", 640, 80), ("kn-int8-per-channel", 513, 129), ("int8-7bit-per-channel", 1000, 130)]


@pytest.mark.parametrize("name, k, n", BIG, ids=[f"{b[0]}-K{b[1]}-N{b[2]}" for b in BIG])
def test_matmul_model_sized(name, k, n):
    case = CASE_BY_NAME[name]
    qt, w = quantize_case(case, k, n, seed=5)
    mag = np.abs(w) + np.abs(offset_of(qt, case.orientation))
    with qk.pack_weights(qt, case.orientation) as packed:
        for m in (1, 4, 33, 129):
            x = activations(m, k, seed=m + 100)
            ref = x.astype(np.float64) @ w.T
            assert_close(qk.matmul(x, packed), ref, float_allowance(x, mag), f"{name} M={m} float")
            if packed.int8_compute:
                allowed = int8_allowance(x, w, packed.block_size) + float_allowance(x, mag)
                assert_close(qk.matmul(x, packed, compute="int8"), ref, allowed, f"{name} M={m} int8")


# ---- outputs: every element written, nothing else ----

POISON_CASES = ["int4-sym-b32", "uint4-asym-b64", "int8-per-channel", "nf4-bnb4-b64", "fp8-e5m2-tensor",
                "matmulnbits-int4-b128-asym", "kn-int4-b32", "int3-asym-b64"]


@pytest.mark.parametrize("name", POISON_CASES)
@pytest.mark.parametrize("compute", ["float", "int8"])
def test_poisoned_outputs_are_fully_written(name, compute):
    case = CASE_BY_NAME[name]
    k, n = case.shapes[-1]
    qt, _ = quantize_case(case, k, n)
    with qk.pack_weights(qt, case.orientation) as packed:
        for m in (1, 3, 17, 70):
            x = activations(m, k, seed=m)
            fresh = qk.matmul(x, packed, compute=compute)
            out = np.full((m, n), np.nan, np.float32)
            assert qk.matmul(x, packed, compute=compute, out=out) is out
            assert not np.isnan(out).any(), f"{name} M={m}: some outputs were never written"
            np.testing.assert_array_equal(out, fresh)
            # A strided view of a poisoned buffer: the view is written, the gaps are not.
            wide = np.full((m, 2 * n + 1), np.nan, np.float32)
            qk.matmul(x, packed, compute=compute, out=wide[:, 1::2])
            np.testing.assert_array_equal(wide[:, 1::2], fresh)
            assert np.isnan(wide[:, 0::2]).all(), "wrote outside the output view"
            # Negative strides.
            flipped = np.full((m, n), np.nan, np.float32)
            qk.matmul(x, packed, compute=compute, out=flipped[::-1, ::-1])
            np.testing.assert_array_equal(flipped[::-1, ::-1], fresh)
            # Column-major output.
            fortran = np.full((n, m), np.nan, np.float32)
            qk.matmul(x, packed, compute=compute, out=fortran.T)
            np.testing.assert_array_equal(fortran.T, fresh)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_half_precision_outputs(dtype):
    case = CASE_BY_NAME["int4-sym-b32"]
    qt, _ = quantize_case(case, 257, 67)
    with qk.pack_weights(qt) as packed:
        for m in (1, 5, 64):
            x = activations(m, 257, seed=m)
            y32 = qk.matmul(x, packed)
            out = np.full((m, 67), np.nan, dtype)
            qk.matmul(x, packed, out=out)
            assert not np.isnan(out.astype(np.float32)).any()
            # One rounding of the float32 result (round to nearest even).
            np.testing.assert_array_equal(out.astype(np.float32), y32.astype(dtype).astype(np.float32))
            y = qk.matmul(x, packed, out_dtype=dtype)
            assert y.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(y.astype(np.float32), out.astype(np.float32))


# ---- threads and kernel variants ----

@pytest.mark.parametrize("name", ["int4-sym-b32", "uint4-asym-b128", "int8-per-channel", "nf4-bnb4-b64",
                                  "matmulnbits-int4-b32-sym", "kn-uint4-asym-b128", "fp8-e4m3-tensor"])
def test_results_do_not_depend_on_thread_count(name):
    case = CASE_BY_NAME[name]
    k = 3 * 256 if case.kw.get("layout") == "bnb4" else 517
    qt, _ = quantize_case(case, k, 301)
    with qk.pack_weights(qt, case.orientation, num_threads=1) as p1, \
            qk.pack_weights(qt, case.orientation, num_threads=2) as p2:
        assert p1.packed_bytes == p2.packed_bytes
        for m in (1, 2, 17, 64):
            x = activations(m, k, seed=m)
            for compute in ("float", "int8"):
                ref = qk.matmul(x, p1, compute=compute, num_threads=1)
                for packed in (p1, p2):
                    for threads in (1, 2, 3, 0):
                        got = qk.matmul(x, packed, compute=compute, num_threads=threads)
                        assert got.tobytes() == ref.tobytes(), (name, m, compute, threads)


def test_python_threads_share_one_handle():
    case = CASE_BY_NAME["uint4-asym-b64"]
    qt, _ = quantize_case(case, 1000, 64)
    xs = [activations(m, 1000, seed=m) for m in (1, 3, 17, 5, 64, 2)]
    with qk.pack_weights(qt) as packed:
        expected = [qk.matmul(x, packed, compute=c).tobytes() for x in xs for c in ("float", "int8")]
        results, errors = {}, []
        start = threading.Barrier(6)

        def run(i):
            try:
                start.wait()
                for _ in range(5):
                    results[i] = [qk.matmul(x, packed, compute=c, num_threads=2).tobytes()
                                  for x in xs for c in ("float", "int8")]
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    assert all(results[i] == expected for i in range(6))


VARIANT_SCRIPT = """
import hashlib, sys, numpy as np
sys.path.insert(0, {tests!r})
import quantkit as qk
from test_matmul import CASE_BY_NAME, activations, quantize_case
digest = hashlib.sha256()
for name in {names!r}:
    case = CASE_BY_NAME[name]
    k = 3 * 64 if case.kw.get("layout") == "bnb4" else 301
    qt, _ = quantize_case(case, k, 45)
    with qk.pack_weights(qt, case.orientation) as packed:
        for m in (1, 4, 19):
            x = activations(m, k, seed=m)
            for compute in ("float", "int8"):
                digest.update(qk.matmul(x, packed, compute=compute).tobytes())
print(qk.matmul_kernel_variant(), digest.hexdigest())
"""
VARIANT_NAMES = ["int4-sym-b32", "uint4-asym-b128", "int8-per-channel", "uint8-asym-b64", "int3-asym-b64",
                 "nf4-bnb4-b64", "fp4-e2m1-b32", "fp8-e5m2-tensor", "matmulnbits-int2-b16-asym",
                 "kn-int4-b32", "int8-7bit-per-channel"]


def test_results_identical_across_kernel_variants():
    # Header: "bit-identical across ... the kernel variant". One fresh interpreter per variant.
    import subprocess
    import sys
    from conftest import REPO
    tests = str(REPO / "Tests" / "python")
    script = VARIANT_SCRIPT.format(tests=tests, names=VARIANT_NAMES)
    seen = {}
    for variant in ("scalar", "avx2", "avx2-vnni", "avx512"):
        env = {**os.environ, "QUANTKIT_KERNELS": variant,
               "PYTHONPATH": str(REPO / "Bindings" / "python") + os.pathsep + tests}
        run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
        assert run.returncode == 0, run.stderr[-3000:]
        kernels, digest = run.stdout.split()
        seen[kernels] = digest
    assert "scalar" in seen
    assert len(set(seen.values())) == 1, f"results differ between matmul kernel variants: {seen}"


def test_matmul_kernel_variant():
    variant = qk.matmul_kernel_variant()
    assert variant in ("avx512-vnni", "avx2-vnni", "avx2", "scalar")
    asked = os.environ.get("QUANTKIT_KERNELS", "")
    if asked == "scalar":
        assert variant == "scalar"
    elif asked == "avx2":
        assert variant in ("avx2", "scalar")  # "avx2" asks for plain AVX2 (header)
    elif asked == "avx2-vnni":
        assert variant in ("avx2-vnni", "avx2", "scalar")


# ---- inputs: dtypes, strides, shapes, bias ----

@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("name", ["int4-sym-b32", "uint4-asym-b64", "nf4-bnb4-b64", "kn-int8-per-channel"])
def test_half_precision_activations(dtype, name):
    case = CASE_BY_NAME[name]
    k, n = case.shapes[-1]
    qt, w = quantize_case(case, k, n)
    mag = np.abs(w) + np.abs(offset_of(qt, case.orientation))
    with qk.pack_weights(qt, case.orientation) as packed:
        for m in (1, 4, 17):
            x = activations(m, k, seed=m, dtype=dtype)
            x64 = x.astype(np.float64)
            ref = x64 @ w.T
            assert_close(qk.matmul(x, packed), ref, float_allowance(x64, mag), f"{name} {dtype} float")
            if packed.int8_compute:
                allowed = int8_allowance(x64, w, packed.block_size) + float_allowance(x64, mag)
                assert_close(qk.matmul(x, packed, compute="int8"), ref, allowed, f"{name} {dtype} int8")


@pytest.mark.parametrize("compute", ["float", "int8"])
def test_strided_activations_equal_contiguous(compute):
    case = CASE_BY_NAME["uint4-asym-b64"]
    k, n = 257, 67
    qt, _ = quantize_case(case, k, n)
    base = activations(40, 2 * k + 3, seed=9)
    views = {
        "every other column": base[:17, 1:2 * k + 1:2],
        "every third row": base[::3, :k],
        "negative strides": base[:5, k - 1::-1],
        "column-major": np.asfortranarray(base[:33, :k]),
        "one row of a matrix": base[7, 3:k + 3],
        "3-D transposed batch": base[:12, :k].reshape(3, 4, k).transpose(1, 0, 2),
    }
    with qk.pack_weights(qt) as packed:
        for what, x in views.items():
            assert x.shape[-1] == k, what
            got = qk.matmul(x, packed, compute=compute)
            expected = qk.matmul(np.ascontiguousarray(x), packed, compute=compute)
            assert got.shape == x.shape[:-1] + (n,), what
            np.testing.assert_array_equal(got, expected, err_msg=what)


def _read_only(array):
    view = array.view()
    view.flags.writeable = False
    return view


@pytest.mark.parametrize("compute", ["float", "int8"])
def test_dense_fast_path_equals_general_path(compute):
    """Dense, writable float32 arguments take matmul()'s fast path (per-thread ctypes structs);
    read-only ones take the general path. Both must give the same bits for every argument mix."""
    from quantkit import _dense_call

    case = CASE_BY_NAME["int4-sym-b32"]
    k, n = 77, 33
    qt, _ = quantize_case(case, k, n)
    bias = np.random.default_rng(4).standard_normal(n).astype(np.float32)
    calls = []
    real = _dense_call.try_dense_matmul

    def counting(*args):
        y = real(*args)
        calls.append(y is not None)
        return y

    with qk.pack_weights(qt) as packed, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules["quantkit.matmul"], "try_dense_matmul", counting)
        for x in (activations(1, k, seed=5), activations(9, k, seed=6), activations(1, k, seed=7)[0]):
            for b in (None, bias):
                calls.clear()
                fast = qk.matmul(x, packed, b, compute=compute)
                general = qk.matmul(_read_only(x), packed, None if b is None else _read_only(b), compute=compute)
                assert calls == [True, False], "the first call must take the fast path, the second not"
                np.testing.assert_array_equal(fast, general)
                out = np.full(fast.shape, np.nan, np.float32)
                assert qk.matmul(x, packed, b, compute=compute, out=out) is out
                np.testing.assert_array_equal(out, general)


def test_fast_path_errors_and_reentry(int4_packed):
    from quantkit import _dense_call

    x = activations(2, 77, seed=8)
    x[1, 5] = np.nan
    with pytest.raises(qk.QuantKitError, match="NON_FINITE"):
        qk.matmul(x, int4_packed, compute="int8")
    x[1, 5] = 0
    expected = qk.matmul(x, int4_packed)
    # A call that arrives while this thread's structs are in use (a signal handler running between
    # the fill and the C call) must not overwrite them: it takes the general path.
    structs = _dense_call._local.structs
    structs.busy = True
    try:
        assert _dense_call.try_dense_matmul(x, int4_packed, None, "float", 0, None, np.float32) is None
        np.testing.assert_array_equal(qk.matmul(x, int4_packed), expected)
    finally:
        structs.busy = False


def test_batch_dimensions_and_vectors():
    case = CASE_BY_NAME["int4-sym-b32"]
    k, n = 77, 33
    qt, w = quantize_case(case, k, n)
    with qk.pack_weights(qt) as packed:
        x = activations(6, k, seed=1).reshape(2, 3, k)
        for compute in ("float", "int8"):
            y = qk.matmul(x, packed, compute=compute)
            assert y.shape == (2, 3, n)
            np.testing.assert_array_equal(y.reshape(6, n), qk.matmul(x.reshape(6, k), packed, compute=compute))
            # Rank 1: one row.
            v = qk.matmul(x[0, 0], packed, compute=compute)
            assert v.shape == (n,)
            np.testing.assert_array_equal(v, qk.matmul(x[0, :1], packed, compute=compute)[0])
            # Rank 5.
            x5 = activations(12, k, seed=2).reshape(2, 1, 3, 2, k)
            y5 = qk.matmul(x5, packed, compute=compute)
            assert y5.shape == (2, 1, 3, 2, n)
            np.testing.assert_array_equal(y5.reshape(12, n), qk.matmul(x5.reshape(12, k), packed,
                                                                       compute=compute))
        # No rows at all.
        assert qk.matmul(np.zeros((0, k), np.float32), packed).shape == (0, n)
        assert qk.matmul(np.zeros((2, 0, k), np.float32), packed).shape == (2, 0, n)


@pytest.mark.parametrize("name", ["int4-sym-b32", "uint4-asym-b64", "int8-per-channel", "nf4-onnx-b32",
                                  "kn-uint4-asym-b128"])
def test_bias(name):
    case = CASE_BY_NAME[name]
    k, n = 257, 67
    qt, w = quantize_case(case, k, n)
    mag = np.abs(w) + np.abs(offset_of(qt, case.orientation))
    bias = np.random.default_rng(3).standard_normal(n).astype(np.float32) * 10
    with qk.pack_weights(qt, case.orientation) as packed:
        for m in (1, 5, 64):
            x = activations(m, k, seed=m)
            ref = x.astype(np.float64) @ w.T + bias
            allowance = float_allowance(x, mag) + FLOAT_RTOL * np.abs(bias)
            assert_close(qk.matmul(x, packed, bias), ref, allowance, f"{name} bias float")
            y8 = qk.matmul(x, packed, bias, compute="int8")
            if packed.int8_compute:
                allowance = allowance + int8_allowance(x, w, packed.block_size)
            assert_close(y8, ref, allowance, f"{name} bias int8")
            # A float16 or float64 bias is converted to float32 by the binding.
            np.testing.assert_array_equal(qk.matmul(x, packed, bias.astype(np.float64)),
                                          qk.matmul(x, packed, bias))


def test_k_smaller_than_one_block_and_tiny_shapes():
    for fmt, kw in (("int4", {"block_size": 256}), ("uint4", {"block_size": 128, "symmetric": False}),
                    ("int8", {"block_size": 64})):
        for k, n in ((1, 1), (3, 2), (15, 9), (17, 1)):
            w = _weights(k, n, seed=k + n)
            qt = qk.quantize(w, fmt, **kw)
            deq = qt.dequantize().astype(np.float64)
            mag = np.abs(deq) + np.abs(offset_of(qt, "nk"))
            with qk.pack_weights(qt) as packed:
                for m in (1, 3, 70):
                    x = activations(m, k, seed=m)
                    ref = x.astype(np.float64) @ deq.T
                    assert_close(qk.matmul(x, packed), ref, float_allowance(x, mag), f"{fmt} K={k} N={n}")
                    allowed = int8_allowance(x, deq, packed.block_size) + float_allowance(x, mag)
                    assert_close(qk.matmul(x, packed, compute="int8"), ref, allowed, f"{fmt} K={k} int8")


def test_zero_activations_and_zero_weights():
    qt = qk.quantize(np.zeros((9, 70), np.float32), "uint4", symmetric=False)
    with qk.pack_weights(qt) as packed:
        x = activations(5, 70, seed=1)
        for compute in ("float", "int8"):
            assert not qk.matmul(x, packed, compute=compute).any()
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 70, 9)
    with qk.pack_weights(qt) as packed:
        for compute in ("float", "int8"):
            y = qk.matmul(np.zeros((3, 70), np.float32), packed, compute=compute)
            assert not y.any()


def test_pack_matmulnbits_equals_pack_weights():
    w = _weights(300, 21, seed=4)
    for bits, block, sym in ((4, 32, True), (4, 64, False), (2, 16, False), (8, 128, True)):
        qt = qk.quantize(w, f"int{bits}", layout="matmulnbits", block_size=block, symmetric=sym,
                         rounding="half_away")
        kblocks = qt.scales.shape[1]
        blob = qt.data.reshape(21, kblocks, block * bits // 8)
        zp = None if qt.zero_points is None else qt.zero_points.reshape(21, -1)
        x = activations(5, 300, seed=bits)
        with qk.pack_weights(qt) as a, qk.pack_matmulnbits(blob, qt.scales, zp, k=300, n=21, bits=bits,
                                                            block_size=block) as b:
            assert (b.n, b.k) == (21, 300)
            for compute in ("float", "int8"):
                np.testing.assert_array_equal(qk.matmul(x, a, compute=compute), qk.matmul(x, b, compute=compute))
        # float16 scales (an fp16 model's MatMulNBits)
        with qk.pack_matmulnbits(blob, qt.scales.astype(np.float16), zp, k=300, n=21, bits=bits,
                                 block_size=block) as h:
            deq16 = qk.QuantizedTensor(qt.data, qt.scales.astype(np.float16), qt.zero_points, qt.shape,
                                       qt.params.replace(scale_dtype="float16")).dequantize().astype(np.float64)
            ref = x.astype(np.float64) @ deq16.T
            mag = np.abs(deq16) + np.abs(offset_of(qk.QuantizedTensor(
                qt.data, qt.scales.astype(np.float16), qt.zero_points, qt.shape,
                qt.params.replace(scale_dtype="float16")), "nk"))
            assert_close(qk.matmul(x, h), ref, float_allowance(x, mag), f"fp16 scales {bits} bits")


# ---- the handle ----

def test_packed_matrix_properties_and_lifetime():
    qt, _ = quantize_case(CASE_BY_NAME["uint4-asym-b64"], 257, 67)
    packed = qk.pack_weights(qt)
    assert packed.shape == (67, 257) and packed.orientation == "nk"
    info = packed.info()
    assert info == {"format": "uint4", "n": 67, "k": 257, "block_size": packed.block_size,
                    "int8_compute": True, "packed_bytes": packed.packed_bytes}
    assert "uint4" in repr(packed) and not packed.closed
    x = activations(2, 257, seed=0)
    y = qk.matmul(x, packed)
    packed.close()
    assert packed.closed and "closed" in repr(packed)
    packed.close()  # a second close does nothing
    with pytest.raises(ValueError, match="closed"):
        qk.matmul(x, packed)
    with pytest.raises(ValueError, match="closed"):
        packed.info()
    with pytest.raises(ValueError, match="closed"):
        with packed:
            pass
    assert packed.n == 67  # the description stays readable
    with qk.pack_weights(qt) as again:
        np.testing.assert_array_equal(qk.matmul(x, again), y)
    with pytest.raises(ValueError, match="closed"):
        qk.matmul(x, again)


def test_weights_are_copied_at_pack_time():
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 257, 67)
    x = activations(3, 257, seed=0)
    with qk.pack_weights(qt) as packed:
        before = qk.matmul(x, packed)
        qt.data[:] = 0x77
        qt.scales[:] = 123.0
        np.testing.assert_array_equal(qk.matmul(x, packed), before)
    qt2, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 257, 67)
    packed = qk.pack_weights(qt2)
    del qt2
    gc.collect()
    np.testing.assert_array_equal(qk.matmul(x, packed), before)
    packed.close()


def test_handles_are_released_exactly_once():
    import copy
    import pickle
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 77, 33)
    packed = qk.pack_weights(qt)
    for dup in (copy.copy, copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError):
            dup(packed)
    with pytest.raises(TypeError):
        qk.PackedMatrix()
    # Many handles made and dropped (garbage collection frees them; a double free would crash).
    for _ in range(200):
        qk.pack_weights(qt)
    gc.collect()
    packed.close()
    del packed
    gc.collect()


def test_close_while_another_thread_multiplies():
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 4096, 128, seed=1)
    packed = qk.pack_weights(qt)
    x = activations(16, 4096, seed=1)
    expected = qk.matmul(x, packed, num_threads=1)
    started = threading.Event()
    results, errors = [], []

    def worker():
        try:
            started.set()
            for _ in range(20):
                results.append(qk.matmul(x, packed, num_threads=1))
        except ValueError as exc:  # closed between two calls: the expected way out
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    started.wait()
    packed.close()  # the running call keeps the handle until it returns
    t.join()
    assert packed.closed
    for r in results:
        np.testing.assert_array_equal(r, expected)
    assert all("closed" in str(e) for e in errors)


# ---- bad input: clear errors, outputs untouched ----

def _raises_status(status, fn, *args, **kwargs):
    with pytest.raises(qk.QuantKitError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.status == status, err
    assert err.name == f"QK_ERROR_{status.name}"
    assert err.message, "the library gave no qk_last_error() message"
    return err


@pytest.fixture(scope="module")
def int4_packed():
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 77, 33)
    with qk.pack_weights(qt) as packed:
        yield packed


def test_wrong_k(int4_packed):
    with pytest.raises(ValueError, match="K = 77"):
        qk.matmul(np.ones((2, 76), np.float32), int4_packed)
    with pytest.raises(ValueError, match="K = 77"):
        qk.matmul(np.ones((2, 77, 3), np.float32), int4_packed)
    with pytest.raises(ValueError):
        qk.matmul(np.array(1.0, np.float32), int4_packed)


@pytest.mark.parametrize("dtype", [np.float64, np.int8, np.uint8, np.int32, bool, np.complex64])
def test_wrong_activation_dtype(int4_packed, dtype):
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        qk.matmul(np.ones((2, 77), dtype), int4_packed)


def test_not_arrays(int4_packed):
    with pytest.raises(TypeError):
        qk.matmul([[1.0] * 77], int4_packed)
    with pytest.raises(TypeError, match="PackedMatrix"):
        qk.matmul(np.ones((2, 77), np.float32), np.ones((33, 77), np.float32))
    with pytest.raises(TypeError, match="QuantizedTensor"):
        qk.pack_weights(np.ones((33, 77), np.float32))


def test_bad_bias(int4_packed):
    x = np.ones((2, 77), np.float32)
    with pytest.raises(ValueError, match=r"\(33,\)"):
        qk.matmul(x, int4_packed, np.zeros(32, np.float32))
    with pytest.raises(ValueError, match=r"\(33,\)"):
        qk.matmul(x, int4_packed, np.zeros((1, 33), np.float32))
    with pytest.raises(TypeError):
        qk.matmul(x, int4_packed, np.zeros(33, np.int32))


def test_bad_outputs(int4_packed):
    x = np.ones((2, 77), np.float32)
    with pytest.raises(ValueError, match=r"\(2, 33\)"):
        qk.matmul(x, int4_packed, out=np.zeros((2, 32), np.float32))
    with pytest.raises(TypeError):
        qk.matmul(x, int4_packed, out=np.zeros((2, 33), np.float64))
    ro = np.zeros((2, 33), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        qk.matmul(x, int4_packed, out=ro)
    shared = np.ones((2, 77 + 33), np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        qk.matmul(shared[:, :77], int4_packed, out=shared[:, 10:43])
    with pytest.raises(TypeError):
        qk.matmul(x, int4_packed, out_dtype=np.float64)


def test_bad_options(int4_packed):
    x = np.ones((2, 77), np.float32)
    with pytest.raises(ValueError, match="must be one of"):
        qk.matmul(x, int4_packed, compute="int4")
    with pytest.raises(ValueError, match="32-bit"):
        qk.matmul(x, int4_packed, num_threads=2 ** 31)
    _raises_status(Status.INVALID_ARGUMENT, qk.matmul, x, int4_packed, num_threads=-1)
    qt, _ = quantize_case(CASE_BY_NAME["int4-sym-b32"], 77, 33)
    with pytest.raises(ValueError, match="must be one of"):
        qk.pack_weights(qt, orientation="nkk")
    _raises_status(Status.INVALID_ARGUMENT, qk.pack_weights, qt, num_threads=-1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_non_finite_activations_with_int8_compute(int4_packed, bad, dtype):
    x = activations(5, 77, seed=1).astype(dtype)
    x[3, 40] = bad
    out = np.full((5, 33), 7.0, np.float32)
    _raises_status(Status.NON_FINITE, qk.matmul, x, int4_packed, compute="int8", out=out)
    assert (out == 7.0).all(), "header: on error, outputs are left untouched"


@pytest.mark.parametrize("fmt", ["fp16", "bf16"])
def test_unsupported_weight_formats(fmt):
    qt = qk.quantize(_weights(64, 8, 0), fmt)
    _raises_status(Status.UNSUPPORTED, qk.pack_weights, qt)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fmt, kw", [("int4", {}), ("uint4", {"symmetric": False}), ("nf4", {}),
                                     ("int8", {"axis": 0}), ("fp8", {})])
def test_non_finite_scale_at_pack_time(fmt, kw, bad):
    qt = qk.quantize(_weights(64, 8, 0), fmt, **kw)
    qt.scales.reshape(-1)[qt.scales.size // 2] = bad
    _raises_status(Status.NON_FINITE, qk.pack_weights, qt)


def test_fp8_nan_code_at_pack_time():
    qt = qk.quantize(_weights(64, 8, 0), "fp8-e4m3")
    qt.data[17] = 0x7F  # E4M3FN NaN
    _raises_status(Status.NON_FINITE, qk.pack_weights, qt)
    qt = qk.quantize(_weights(64, 8, 0), "fp8-e5m2")
    qt.data[17] = 0x7E  # E5M2 NaN
    _raises_status(Status.NON_FINITE, qk.pack_weights, qt)


def test_pack_weights_shape_checks():
    qt = qk.quantize(np.ones((2, 3, 32), np.float32), "int4")
    with pytest.raises(ValueError, match="2-D"):
        qk.pack_weights(qt)
    # bnb4 needs K to be a multiple of the block (header); the library says so.
    qt = qk.quantize(_weights(48, 4, 0), "nf4", layout="bnb4", block_size=32)
    with pytest.raises(qk.QuantKitError) as info:
        qk.pack_weights(qt)
    assert info.value.status in (Status.UNSUPPORTED, Status.INVALID_ARGUMENT, Status.SHAPE_MISMATCH)


def test_pack_matmulnbits_argument_checks():
    blob = np.zeros((4, 2, 16), np.uint8)
    scales = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match="bits"):
        qk.pack_matmulnbits(blob, scales, k=64, n=4, bits=3)
    with pytest.raises(ValueError, match="power of two"):
        qk.pack_matmulnbits(blob, scales, k=64, n=4, block_size=24)
    with pytest.raises(TypeError):
        qk.pack_matmulnbits(blob, scales.astype(np.float64), k=64, n=4)
    with pytest.raises(TypeError, match="uint8"):
        qk.pack_matmulnbits(blob, scales, np.zeros((4, 1), np.float32), k=64, n=4)
    with pytest.raises(ValueError, match="bytes"):
        qk.pack_matmulnbits(blob[:, :1], scales, k=64, n=4)
    with pytest.raises(ValueError):
        qk.pack_matmulnbits(blob, scales[:, :1], k=64, n=4)
    with qk.pack_matmulnbits(blob, scales, k=64, n=4) as packed:  # all codes 0: -8 * scale
        y = qk.matmul(np.ones((1, 64), np.float32), packed)
        np.testing.assert_array_equal(y, np.full((1, 4), -8.0 * 64, np.float32))


# ---- matmul_integer ----

def _int_matrix(rng, shape, dtype):
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, size=shape, dtype=np.int64).astype(dtype)


def _zp(rng, kind, length, dtype):
    if kind is None:
        return None
    info = np.iinfo(dtype)
    if kind == "scalar":
        return dtype(rng.integers(info.min, info.max + 1))
    return _int_matrix(rng, (length,), dtype)


def _integer_reference(a, b, azp, bzp):
    a64 = a.astype(np.int64) - (0 if azp is None else np.asarray(azp, np.int64).reshape(-1, 1)
                                if np.ndim(azp) else int(azp))
    b64 = b.astype(np.int64) - (0 if bzp is None else np.asarray(bzp, np.int64).reshape(1, -1)
                                if np.ndim(bzp) else int(bzp))
    return a64 @ b64


INT_TYPES = [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.uint8), (np.int8, np.int8)]


@pytest.mark.parametrize("adt, bdt", INT_TYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("zps", [(None, None), ("scalar", "scalar"), ("vector", "vector"),
                                 ("scalar", "vector"), (None, "vector")], ids=str)
def test_matmul_integer_exact(adt, bdt, zps):
    rng = np.random.default_rng(11)
    for m, k, n in ((1, 7, 5), (3, 300, 33), (17, 64, 130), (64, 129, 1), (70, 1, 9)):
        a = _int_matrix(rng, (m, k), adt)
        b = _int_matrix(rng, (k, n), bdt)
        azp, bzp = _zp(rng, zps[0], m, adt), _zp(rng, zps[1], n, bdt)
        ref = _integer_reference(a, b, azp, bzp)
        assert np.abs(ref).max() < 2 ** 31
        got = qk.matmul_integer(a, b, azp, bzp)
        assert got.dtype == np.int32 and got.shape == (m, n)
        np.testing.assert_array_equal(got, ref, err_msg=f"M={m} K={k} N={n}")


@pytest.mark.parametrize("adt, bdt", INT_TYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("scales", ["scalar", "vector"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matmul_integer_rescaled(adt, bdt, scales, with_bias):
    rng = np.random.default_rng(12)
    for m, k, n in ((1, 7, 5), (3, 300, 33), (17, 64, 130)):
        a = _int_matrix(rng, (m, k), adt)
        b = _int_matrix(rng, (k, n), bdt)
        azp, bzp = _zp(rng, "vector", m, adt), _zp(rng, "scalar", n, bdt)
        if scales == "scalar":
            a_scale, b_scale = np.float32(0.013), np.float32(0.0021)
        else:
            a_scale = rng.uniform(0.001, 0.1, m).astype(np.float32)
            b_scale = rng.uniform(0.001, 0.1, n).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32) if with_bias else None
        acc = _integer_reference(a, b, azp, bzp).astype(np.float64)
        sa = np.asarray(a_scale, np.float64).reshape(-1, 1) if np.ndim(a_scale) else float(a_scale)
        sb = np.asarray(b_scale, np.float64).reshape(1, -1) if np.ndim(b_scale) else float(b_scale)
        ref = acc * sa * sb + (0 if bias is None else bias.astype(np.float64))
        got = qk.matmul_integer(a, b, azp, bzp, a_scale, b_scale, bias)
        assert got.dtype == np.float32 and got.shape == (m, n)
        allowance = 1e-6 * (np.abs(acc * sa * sb) + (0 if bias is None else np.abs(bias))) + TINY
        assert_close(got, ref, allowance, f"rescaled M={m} K={k} N={n}")


def test_matmul_integer_strides_threads_and_python_scalars():
    rng = np.random.default_rng(13)
    a = _int_matrix(rng, (40, 600), np.uint8)
    bt = _int_matrix(rng, (150, 300), np.int8)   # weights stored [N, K]: b is a transposed view
    a_view, b_view = a[::2, 1::2], bt.T
    azp, bzp = np.uint8(128), _int_matrix(rng, (150,), np.int8)
    ref = _integer_reference(a_view, b_view, azp, bzp)
    for threads in (1, 2, 0):
        got = qk.matmul_integer(a_view, b_view, azp, bzp, num_threads=threads)
        np.testing.assert_array_equal(got, ref)
    # Python ints as zero points, Python floats as scales.
    np.testing.assert_array_equal(qk.matmul_integer(a_view, b_view, 128, bzp), ref)
    y = qk.matmul_integer(a_view, b_view, 128, bzp, 0.5, 0.25)
    np.testing.assert_array_equal(y, (ref * 0.125).astype(np.float32))
    one = qk.matmul_integer(a_view, b_view, np.array([128], np.uint8), bzp)  # [1] = scalar
    np.testing.assert_array_equal(one, ref)


def test_matmul_integer_bad_input():
    a = np.zeros((3, 8), np.uint8)
    b = np.zeros((8, 5), np.int8)
    with pytest.raises(TypeError, match="uint8 or int8"):
        qk.matmul_integer(a.astype(np.float32), b)
    with pytest.raises(TypeError, match="uint8 or int8"):
        qk.matmul_integer(a, b.astype(np.int16))
    with pytest.raises(ValueError, match="rows"):
        qk.matmul_integer(a, np.zeros((7, 5), np.int8))
    with pytest.raises(ValueError, match="2-D"):
        qk.matmul_integer(a.reshape(-1), b)
    with pytest.raises(ValueError, match="both"):
        qk.matmul_integer(a, b, a_scale=1.0)
    with pytest.raises(ValueError, match="bias"):
        qk.matmul_integer(a, b, bias=np.zeros(5, np.float32))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        qk.matmul_integer(a, b, None, None, 1.0, 1.0, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        qk.matmul_integer(a, b, np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match=r"\(5,\)"):
        qk.matmul_integer(a, b, None, None, 1.0, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="dtype of its matrix"):
        qk.matmul_integer(a, b, np.int8(0))
    with pytest.raises(ValueError, match=r"\[-128, 127\]"):
        qk.matmul_integer(a, b, None, 200)
    _raises_status(Status.INVALID_ARGUMENT, qk.matmul_integer, a, b, num_threads=-1)



# ---- scales held as fp16 ----

def test_scales_that_are_exact_fp16_values_are_held_as_fp16():
    """Weights rounded to bf16 (as a bf16 checkpoint's are) give MatMulNBits scales (absmax / -8) that
    are exactly fp16 values: the packed matrix then holds them in 2 bytes instead of 4 and computes
    the same bits. A matrix with one scale nudged off the fp16 grid keeps fp32 scales; every output
    row but the nudged one must come out bit for bit the same from both."""
    k, n, block = 517, 67, 32
    blocks, n_padded = -(-k // block), -(-n // 16) * 16
    w = np.random.default_rng(5).standard_normal((n, k)).astype(ml_dtypes.bfloat16).astype(np.float32)
    qt = qk.quantize(w, "int4", layout="matmulnbits", block_size=block, symmetric=True, rounding="half_away")
    scales = np.asarray(qt.scales, np.float32).reshape(n, blocks)
    assert np.array_equal(scales.astype(np.float16).astype(np.float32), scales)
    nudged = scales.copy()
    nudged[3, 5] *= np.float32(1 + 2.0 ** -14)  # 15 significant bits: no longer an fp16 value
    assert nudged[3, 5].astype(np.float16).astype(np.float32) != nudged[3, 5]
    kw = dict(k=k, n=n, bits=4, block_size=block)
    with qk.pack_matmulnbits(qt.data, scales, **kw) as halves, \
            qk.pack_matmulnbits(qt.data, nudged, **kw) as floats, \
            qk.pack_matmulnbits(qt.data, scales.astype(np.float16), **kw) as from_fp16:
        assert floats.packed_bytes - halves.packed_bytes == n_padded * blocks * 2
        assert from_fp16.packed_bytes == halves.packed_bytes
        others = np.arange(n) != 3
        for m in (1, 3, 17):
            x = activations(m, k, seed=m)
            for compute in ("float", "int8"):
                y = qk.matmul(x, halves, compute=compute)
                assert qk.matmul(x, from_fp16, compute=compute).tobytes() == y.tobytes(), (m, compute)
                y_floats = qk.matmul(x, floats, compute=compute)
                assert y_floats[:, others].tobytes() == y[:, others].tobytes(), (m, compute)
                assert not np.array_equal(y_floats[:, 3], y[:, 3]), (m, compute)
