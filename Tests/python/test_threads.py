"""Eight Python threads calling QuantKit at once get exactly the single-threaded results.

ctypes releases the GIL during each C call, so the calls really overlap inside the library
(its own worker threads included). Errors raised on one thread must carry that thread's message.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import quantkit as qk

THREADS = 8
JOBS = [("int4", {}), ("uint4", {"symmetric": False}), ("int8", {"axis": 0}), ("nf4", {}),
        ("fp8", {}), ("int3", {"method": "mse"}), ("int4", {"layout": "matmulnbits", "block_size": 32,
                                                            "rounding": "half_away"}),
        ("fp4-bnb", {"layout": "bnb4", "block_size": 64})]


def _work(seed):
    x = np.random.default_rng(seed).standard_normal((64, 512)).astype(np.float32)
    out = []
    for fmt, kw in JOBS:
        qt = qk.quantize(x, fmt, num_threads=2, **kw)
        stats = qk.error(x, qt)
        zp = b"" if qt.zero_points is None else qt.zero_points.tobytes()
        out.append((qt.data.tobytes(), qt.scales.tobytes(), zp, qt.dequantize().tobytes(), stats))
    return out


def test_parallel_calls_equal_serial():
    seeds = list(range(THREADS))
    serial = [_work(s) for s in seeds]
    start = threading.Barrier(THREADS)

    def run(seed):
        start.wait()  # release all threads together
        return [_work(seed) for _ in range(3)]

    with ThreadPoolExecutor(THREADS) as pool:
        parallel = list(pool.map(run, seeds))
    for seed, runs in zip(seeds, parallel):
        for result in runs:
            assert result == serial[seed], f"thread for seed {seed} differs"


def test_error_messages_are_per_thread():
    start = threading.Barrier(THREADS)

    def run(i):
        x = np.ones((4, 32), np.float32)
        start.wait()
        for _ in range(50):
            if i % 2:
                try:
                    qk.quantize(x, f"bogus{i}")
                except qk.QuantKitError as err:
                    assert f"bogus{i}" in err.message, err.message
                else:
                    raise AssertionError("no error")
            else:
                bad = x.copy()
                bad[1, i] = np.nan
                try:
                    qk.quantize(bad, "int4")
                except qk.QuantKitError as err:
                    assert err.status == qk.Status.NON_FINITE, err
                else:
                    raise AssertionError("no error")
        return True

    with ThreadPoolExecutor(THREADS) as pool:
        assert all(pool.map(run, range(THREADS)))
