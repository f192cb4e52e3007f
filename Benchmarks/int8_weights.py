#!/usr/bin/env python3
"""W8A8 and W7A8 side by side in interleaved rounds (a benchmark, not a test): QuantKit's
quantkit.matmul(compute="int8") and ONNX Runtime's dynamic int8 path (DynamicQuantizeLinear +
MatMulInteger), on the same per-channel weights: full-range int8 codes, the same codes as uint8
(zero point 128), and 7-bit codes -64...64 (ONNX Runtime's reduce_range).

    .venv/bin/python Benchmarks/int8_weights.py [--shapes 4096x4096] [--ms 1,16,128,512] [--threads 1] [--rounds 8]

Each round runs every method once (after a pause, so that the previous method's worker threads go
idle, and one warm-up call), so the VM's slow drifts hit all of them alike; the table gives the
best time of each method over the rounds, then the ratios. Benchmarks/matmul.py has the full
comparison with every other format and peer; this one exists for ratios that noise would swamp
there. The library is the one the binding finds (see Benchmarks/matmul.py).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matmul as bench  # noqa: E402  (its weights, ORT graphs and imports of quantkit)

qk = bench.qk
RATIOS = [("QK W7A8", "QK W8A8"), ("QK W7A8", "ORT W7A8"), ("QK W8A8", "ORT W8A8"), ("QK W8A8", "ORT W8A8 u8")]


def methods(w, k, n, threads, x, y):
    s8 = bench.ort_dynamic_int8(w.q8_codes_kn, w.q8.scales.reshape(-1), k, n, threads)
    su = bench.ort_dynamic_int8(w.q8_codes_kn, w.q8.scales.reshape(-1), k, n, threads, unsigned=True)
    s7 = bench.ort_dynamic_int8(w.q7_codes_kn, w.q7.scales.reshape(-1), k, n, threads)
    return {"QK W8A8": lambda: qk.matmul(x, w.q8_packed, compute="int8", num_threads=threads, out=y),
            "QK W7A8": lambda: qk.matmul(x, w.q7_packed, compute="int8", num_threads=threads, out=y),
            "ORT W8A8": lambda: s8.run(None, {"A": x}), "ORT W8A8 u8": lambda: su.run(None, {"A": x}),
            "ORT W7A8": lambda: s7.run(None, {"A": x})}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="4096x4096", help="KxN list (default 4096x4096)")
    ap.add_argument("--ms", default="1,16,128,512")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    print(f"CPU: {bench.cpu_model()}; QuantKit {qk.version()}, matmul kernels {qk.matmul_kernel_variant()}; "
          f"ONNX Runtime {bench.ort.__version__}; best of {args.rounds} interleaved rounds")
    print(f"{'K':>6} {'N':>6} {'M':>4} {'thr':>3}  " + "  ".join(f"{a + ' / ' + b:>22}" for a, b in RATIOS))
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.lower().split("x"))
        w = bench.Weights(k, n, seed=k * 7 + n)
        for threads in bench.parse_list(args.threads):
            for m in bench.parse_list(args.ms):
                x = np.random.default_rng(m).standard_normal((m, k), dtype=np.float32)
                y = np.empty((m, n), np.float32)
                fns = methods(w, k, n, threads, x, y)
                calls = max(1, round(0.02 / max(1e-5, 2 * m * k * n / 100e9)))  # about 20 ms a sample
                best = {name: float("inf") for name in fns}
                for _ in range(args.rounds):
                    for name, fn in fns.items():
                        time.sleep(0.1)
                        fn()
                        start = time.perf_counter()
                        for _ in range(calls):
                            fn()
                        best[name] = min(best[name], (time.perf_counter() - start) / calls)
                print(f"{k:>6} {n:>6} {m:>4} {threads:>3}  " + "  ".join(f"{best[a] / best[b]:>22.2f}" for a, b in RATIOS),
                      flush=True)
        w.close()


if __name__ == "__main__":
    main()
