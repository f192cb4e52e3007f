#!/usr/bin/env python3
"""Weight load time side by side (a benchmark, not a test): QuantKit packing a weight for its
kernels (quantkit.pack_matmulnbits / pack_weights) against ONNX Runtime opening a one-node model
of the same weight, which is where it prepacks MatMulNBits and MatMulInteger weights.

    .venv/bin/python Benchmarks/pack_time.py [--shapes 4096x4096,4096x11008,11008x4096] [--threads 1,2] [--rounds 5]

What each side does is not the same work. ONNX Runtime's time also covers reading the weight out
of the serialized model (the bytes are made beforehand, outside the timing) and building its
session; the "ORT empty session" row shows that fixed cost for a graph without weights. QuantKit's
time is the pack call alone, from the caller's arrays. Both are what a model loader pays per layer.
Rounds interleave the methods; the table gives the best time of each, and each QuantKit row's
ratio to the faster ONNX Runtime mode for the same weight. The library is the one the binding
finds (see Benchmarks/matmul.py).
"""

import argparse
import sys
import time
from pathlib import Path

from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import matmul as bench  # noqa: E402  (its weights, ORT graphs and imports of quantkit)

qk = bench.qk
# Each QuantKit row against the faster of ONNX Runtime's rows for the same weight.
PEERS = {"QK pack INT4 b32": ("ORT open MatMulNBits b32 acc4", "ORT open MatMulNBits b32 acc0"),
         "QK pack INT4 b128": ("ORT open MatMulNBits b128 acc4", "ORT open MatMulNBits b128 acc0"),
         "QK pack int8": ("ORT open dynamic int8",)}


def empty_model(k):
    graph = helper.make_graph([helper.make_node("Identity", ["A"], ["Y"])], "bench",
                              [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", k])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model.SerializeToString()


def methods(w, threads):
    k, n = w.k, w.n
    out = {}
    for name in ("b32", "b128"):
        qt, _ = w.int4[name]
        block = bench.INT4_SETS[name][0]
        out[f"QK pack INT4 {name}"] = lambda qt=qt, block=block: qk.pack_matmulnbits(
            qt.data, qt.scales, None, k=k, n=n, bits=4, block_size=block, num_threads=threads).close()
        for acc in (4, 0):
            model = bench.matmulnbits_model(qt, k, n, block, acc)
            out[f"ORT open MatMulNBits {name} acc{acc}"] = lambda model=model: bench.open_session(model, threads)
    out["QK pack int8"] = lambda: qk.pack_weights(w.q8, num_threads=threads).close()
    model = bench.dynamic_int8_model(w.q8_codes_kn, w.q8.scales.reshape(-1), k, n)
    out["ORT open dynamic int8"] = lambda: bench.open_session(model, threads)
    empty = empty_model(k)
    out["ORT empty session"] = lambda: bench.open_session(empty, threads)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="4096x4096,4096x11008,11008x4096", help="KxN,... (default: the three of matmul.py)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU: {bench.cpu_model()}; QuantKit {qk.version()}, matmul kernels {qk.matmul_kernel_variant()}; "
          f"onnxruntime {bench.ort.__version__}")
    for shape in args.shapes.split(","):
        k, n = (int(v) for v in shape.lower().split("x"))
        w = bench.Weights(k, n, seed=7)
        for threads in bench.parse_list(args.threads):
            fns = methods(w, threads)
            best = {name: float("inf") for name in fns}
            for _ in range(args.rounds):
                for name, fn in fns.items():
                    time.sleep(0.05)
                    t = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t)
            print(f"\nK={k} N={n}, {threads} thread(s), best of {args.rounds} interleaved rounds")
            for name, seconds in best.items():
                ratio = f"  QK/ORT {seconds / min(best[p] for p in PEERS[name]):.2f}" if name in PEERS else ""
                print(f"  {name:<32} {seconds * 1e3:8.1f} ms{ratio}")
            sys.stdout.flush()
        w.close()


if __name__ == "__main__":
    main()
