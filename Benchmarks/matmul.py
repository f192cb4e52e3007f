#!/usr/bin/env python3
"""Fused low-bit matmul, side by side (a benchmark, not a test): QuantKit's quantkit.matmul against
ONNX Runtime and numpy, in one process, on the same weights and shapes.

    .venv/bin/python Benchmarks/matmul.py                 # full run (several minutes)
    .venv/bin/python Benchmarks/matmul.py --quick         # one shape, fewer repeats (< 2 minutes)
    .venv/bin/python Benchmarks/matmul.py --shapes 4096x4096,4096x11008 --threads 1,2 --ms 1,16
    Benchmarks/run_matmul.sh [args]                       # the same, with the repository's venv

The library is the one the binding finds ($QUANTKIT_LIBRARY, else .build/release of this checkout:
`swift build -c release --product quantkit` first).

What runs, for each weight shape (K, N), batch M and thread count:
  * numpy fp32 x @ W (OpenBLAS; threads via threadpoolctl when installed, else OpenBLAS's own
    set_num_threads found in the loaded library);
  * INT4 weights, symmetric, blocks of 32 and 128 along K, quantized once by QuantKit in the
    MatMulNBits layout (byte for byte what ONNX Runtime's MatMulNBitsQuantizer writes; the tests
    prove it) and used by both sides:
      ORT  com.microsoft::MatMulNBits accuracy_level 0 (float) and 4 (int8 activations),
      QK   quantkit.matmul compute="float" and compute="int8" on pack_matmulnbits of those bytes;
  * the same at block 32 on W rounded to bf16 first, as a bf16 checkpoint's weights are ("b32 bf16",
    int8 activations only): MatMulNBits scales (absmax / -8) are then exactly fp16 values, and
    QuantKit holds them as fp16 (the same results from 10% fewer bytes); ORT gets the same fp32
    scales as ever;
  * W8A8: int8 per-channel weights (QuantKit's codes and scales, the same bytes on both sides):
      ORT  DynamicQuantizeLinear + MatMulInteger + rescale (what quantize_dynamic emits; ORT fuses it
           into DynamicQuantizeMatMul), intra_op_num_threads = threads; and "u8", the same codes as
           uint8 with zero point 128 (quantize_dynamic's weight_type=QUInt8): on CPUs without VNNI
           ORT's int8-weight kernel saturates 16-bit pair sums (see its max|err|), the uint8 one does not;
      QK   quantkit.matmul compute="int8" on the packed int8 weights;
  * W7A8: the same with 7-bit per-channel codes, -64...64 (scale max|w| / 64), as ONNX Runtime's
    quantize_dynamic(reduce_range=True) writes int8 weights, its advice for CPUs without VNNI: its
    u8 x s8 kernel is exact on them, and QuantKit multiplies such codes without the sign transfer.
Columns: median ms over repeats (after warm-up), GFLOP/s (2*M*K*N / time), weight GB/s (bytes of
the weights as each method stores them / time: MatMulNBits codes and fp32 scales for ONNX Runtime,
the packed matrix's packed_bytes for QuantKit), QK/peer = QuantKit's time / the peer's time
(below 1: QuantKit is faster), and max|err| of the first rows against a float64 product with the
same (dequantized) weights -- the arithmetic's error, not the quantization's.

For M = 1 with one thread, a hot read probe (numpy max over a buffer of the INT4 b128 weights'
size, which stays in cache between calls as the weights do) gives the GB/s a plain read loop
streams from there, and each method's share of it (%hot read): the ceiling of a decode step.

Then a memory-bandwidth probe (single-thread reads of a buffer much larger than L3) and a cold
decode (INT4 blocks of 32 and of 128, `--cold-blocks`): M = 1 through L distinct 4096x4096 INT4 layers in turn (each output feeds the next layer;
ORT runs them as one chained model, so one thread pool), L chosen so the layers exceed L3 (at least
16), reported as weight GB/s and as a share of the best single-thread bandwidth of a probe run
again just before each cold decode (this VM's memory bandwidth drifts over a run of minutes).

The machine is shared: run it when nothing else is busy, and compare ratios, not absolute times.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Bindings" / "python"))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import quantkit as qk  # noqa: E402

# ---- thread control for numpy's BLAS ----


class BlasThreads:
    """Sets the BLAS thread count: threadpoolctl if installed, else OpenBLAS's set_num_threads."""

    def __init__(self):
        self.how = "not controlled"
        self._set = None
        try:
            from threadpoolctl import threadpool_limits
            self._set = lambda n: threadpool_limits(limits=n, user_api="blas")
            self.how = "threadpoolctl"
            return
        except ImportError:
            pass
        np.ones((64, 64), np.float32) @ np.ones((64, 64), np.float32)  # make sure BLAS is loaded
        for path in self._loaded_libraries():
            if "openblas" not in os.path.basename(path).lower():
                continue
            lib = ctypes.CDLL(path)
            for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                         "openblas_set_num_threads64_", "openblas_set_num_threads"):
                fn = getattr(lib, name, None)
                if fn is not None:
                    fn.argtypes, fn.restype = [ctypes.c_int], None
                    self._set = fn
                    self.how = f"{name} in {os.path.basename(path)}"
                    return

    @staticmethod
    def _loaded_libraries():
        try:
            with open("/proc/self/maps") as maps:
                return sorted({line.split()[-1] for line in maps if ".so" in line})
        except OSError:
            return []

    def set(self, n):
        if self._set is not None:
            self._set(n)


# ---- timing ----


def measure(fn, target_s, min_reps=3, max_reps=200, warmup=2):
    """Median seconds of fn() over repeats (after warm-up), repeating until ~target_s elapsed.
    Starts with a pause, so the worker threads of the previous method go idle: ORT's intra-op
    workers were measured spinning for about 60 ms after a session's last run."""
    time.sleep(0.1)
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < target_s and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---- ONNX Runtime models ----


def _model_bytes(nodes, inits, inputs, k, n, extra_opsets=(), outputs=None):
    graph = helper.make_graph(
        nodes, "bench",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k]), *inputs],
        outputs or [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), *extra_opsets])
    model.ir_version = 10
    return model.SerializeToString()


def open_session(model_bytes, threads):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _session(nodes, inits, inputs, k, n, threads, extra_opsets=(), outputs=None):
    return open_session(_model_bytes(nodes, inits, inputs, k, n, extra_opsets, outputs), threads)


def matmulnbits_model(qt, k, n, block, accuracy_level):
    kblocks = (k + block - 1) // block
    inits = [numpy_helper.from_array(qt.data.reshape(n, kblocks, block // 2), "B"),
             numpy_helper.from_array(qt.scales.astype(np.float32).reshape(n, kblocks), "scales")]
    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
                            K=k, N=n, bits=4, block_size=block, accuracy_level=accuracy_level)
    return _model_bytes([node], inits, [], k, n, [helper.make_opsetid("com.microsoft", 1)])


def ort_matmulnbits(qt, k, n, block, accuracy_level, threads):
    return open_session(matmulnbits_model(qt, k, n, block, accuracy_level), threads)


def dynamic_int8_model(codes_kn, scales_n, k, n, unsigned=False):
    """DynamicQuantizeLinear + MatMulInteger + Cast + Mul(a_scale * w_scale), as quantize_dynamic writes;
    `unsigned`: the same codes as uint8 with zero point 128 (its weight_type=QUInt8)."""
    if unsigned:
        codes, zeros = (codes_kn.astype(np.int16) + 128).astype(np.uint8), np.full(n, 128, np.uint8)
    else:
        codes, zeros = codes_kn, np.zeros(n, np.int8)
    inits = [numpy_helper.from_array(codes, "Wq"),
             numpy_helper.from_array(zeros, "Wzp"),
             numpy_helper.from_array(scales_n.astype(np.float32), "Ws")]
    nodes = [helper.make_node("DynamicQuantizeLinear", ["A"], ["Aq", "As", "Azp"]),
             helper.make_node("MatMulInteger", ["Aq", "Wq", "Azp", "Wzp"], ["Yi"]),
             helper.make_node("Cast", ["Yi"], ["Yf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["As", "Ws"], ["S"]),
             helper.make_node("Mul", ["Yf", "S"], ["Y"])]
    return _model_bytes(nodes, inits, [], k, n)


def ort_dynamic_int8(codes_kn, scales_n, k, n, threads, unsigned=False):
    return open_session(dynamic_int8_model(codes_kn, scales_n, k, n, unsigned), threads)


# ---- one shape ----


# INT4 weight sets: name -> (block, W rounded to bf16 first, ORT accuracy levels run).
INT4_SETS = {"b32": (32, False, (0, 4)), "b128": (128, False, (0, 4)), "b32 bf16": (32, True, (4,))}
QK_COMPUTE = {0: "float", 4: "int8"}  # the QuantKit mode compared with each ORT accuracy level


def bf16_rounded(w):
    """w rounded to the nearest bf16 values (ties to even), still as float32."""
    u = w.view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)


class Weights:
    """Everything made from one fp32 W [K, N]: the INT4 sets and int8 per-channel."""

    def __init__(self, k, n, seed):
        rng = np.random.default_rng(seed)
        self.k, self.n = k, n
        self.w = (rng.standard_normal((k, n), dtype=np.float32) / np.float32(math.sqrt(k)))
        wt = np.ascontiguousarray(self.w.T)  # [N, K]
        self.int4 = {}
        for name, (block, bf16, _) in INT4_SETS.items():
            qt = qk.quantize(bf16_rounded(wt) if bf16 else wt, "int4", layout="matmulnbits", block_size=block,
                             symmetric=True, rounding="half_away")
            packed = qk.pack_matmulnbits(qt.data, qt.scales, None, k=k, n=n, bits=4, block_size=block)
            self.int4[name] = (qt, packed)
        self.q8 = qk.quantize(wt, "int8", axis=0)  # per output channel, symmetric
        self.q8_packed = qk.pack_weights(self.q8)
        self.q8_codes_kn = np.ascontiguousarray(self.q8.codes().astype(np.int8).T)
        scale7 = (np.abs(wt).max(axis=1) / np.float32(64)).astype(np.float32)
        codes7 = np.clip(np.rint(wt / scale7[:, None]), -64, 64).astype(np.int8)
        self.q7 = qk.from_codes(codes7, scale7, axis=0)
        self.q7_packed = qk.pack_weights(self.q7)
        self.q7_codes_kn = np.ascontiguousarray(codes7.T)
        self._deq = {}

    def dequantized(self, which):
        """float64 [N, K] of the weights a method really multiplies by."""
        if which not in self._deq:
            if which == "fp32":
                self._deq[which] = self.w.T.astype(np.float64)
            elif which == "int8":
                self._deq[which] = self.q8.dequantize().astype(np.float64)
            elif which == "int7":
                self._deq[which] = self.q7.dequantize().astype(np.float64)
            else:
                self._deq[which] = self.int4[which][0].dequantize().astype(np.float64)
        return self._deq[which]

    def close(self):
        for _, packed in self.int4.values():
            packed.close()
        self.q8_packed.close()
        self.q7_packed.close()


def int4_bytes(k, n, block):
    return n * ((k + block - 1) // block) * (block // 2 + 4)  # codes + f32 scales, as MatMulNBits holds them


def bench_shape(k, n, ms, threads_list, blas, target_s, err_rows, rows_out):
    t0 = time.perf_counter()
    wts = Weights(k, n, seed=k * 7 + n)
    print(f"  [{k}x{n}] weights quantized and packed in {time.perf_counter() - t0:.1f} s", flush=True)
    fp32_bytes = 4 * k * n
    q8_bytes = n * k + 4 * n
    for threads in threads_list:
        sessions = {}
        for name, (block, _, levels) in INT4_SETS.items():
            for acc in levels:
                sessions[(name, acc)] = ort_matmulnbits(wts.int4[name][0], k, n, block, acc, threads)
        sessions["dyn"] = ort_dynamic_int8(wts.q8_codes_kn, wts.q8.scales.reshape(-1), k, n, threads)
        sessions["dyn u8"] = ort_dynamic_int8(wts.q8_codes_kn, wts.q8.scales.reshape(-1), k, n, threads, unsigned=True)
        sessions["dyn 7"] = ort_dynamic_int8(wts.q7_codes_kn, wts.q7.scales.reshape(-1), k, n, threads)
        blas.set(threads)
        for m in ms:
            x = np.random.default_rng(m).standard_normal((m, k), dtype=np.float32)
            xr = x[:err_rows].astype(np.float64)
            y_qk = np.empty((m, n), np.float32)
            results = {}

            def record(name, seconds, weight_bytes, y, which):
                err = float(np.abs(y[:err_rows].astype(np.float64) - xr @ wts.dequantized(which).T).max())
                results[name] = (seconds, weight_bytes, err)

            y = x @ wts.w
            record("numpy fp32", measure(lambda: x @ wts.w, target_s), fp32_bytes, y, "fp32")
            for name, (block, _, levels) in INT4_SETS.items():
                qt, packed = wts.int4[name]
                for acc in levels:
                    s = sessions[(name, acc)]
                    y = s.run(None, {"A": x})[0]
                    record(f"ORT int4 {name} acc{acc}", measure(lambda: s.run(None, {"A": x}), target_s),
                           int4_bytes(k, n, block), y, name)
                for compute in (QK_COMPUTE[acc] for acc in levels):
                    def call():
                        qk.matmul(x, packed, compute=compute, num_threads=threads, out=y_qk)
                    call()
                    record(f"QK int4 {name} {compute}", measure(call, target_s), packed.packed_bytes, y_qk.copy(), name)
            def ort_int8(name, s, which):
                y = s.run(None, {"A": x})[0]
                record(name, measure(lambda: s.run(None, {"A": x}), target_s), q8_bytes, y, which)

            def qk_int8(name, packed, which):
                def call():
                    qk.matmul(x, packed, compute="int8", num_threads=threads, out=y_qk)
                call()
                record(name, measure(call, target_s), q8_bytes, y_qk.copy(), which)

            ort_int8("ORT W8A8 dynamic", sessions["dyn"], "int8")
            ort_int8("ORT W8A8 dynamic u8", sessions["dyn u8"], "int8")
            qk_int8("QK W8A8 int8", wts.q8_packed, "int8")
            ort_int8("ORT W7A8 dynamic", sessions["dyn 7"], "int7")
            qk_int8("QK W7A8 int8", wts.q7_packed, "int7")
            rows_out.append((k, n, m, threads, results))
            hot = hot_read_probe(int4_bytes(k, n, 128), target_s) if m == 1 and threads == 1 else None
            print_group(k, n, m, threads, results, hot)
        del sessions
    wts.close()


PEERS = {  # QuantKit row -> the peer its QK/peer column is against
    "QK int4 b32 float": "ORT int4 b32 acc0", "QK int4 b32 int8": "ORT int4 b32 acc4",
    "QK int4 b128 float": "ORT int4 b128 acc0", "QK int4 b128 int8": "ORT int4 b128 acc4",
    "QK int4 b32 bf16 int8": "ORT int4 b32 bf16 acc4", "QK W8A8 int8": "ORT W8A8 dynamic",
    "QK W7A8 int8": "ORT W7A8 dynamic",
}
# The summary's columns: every pair above, and W8A8 against ORT with uint8 weights too (exact on
# every CPU; its int8-weight kernel saturates 16-bit pair sums on CPUs without VNNI).
SUMMARY_PAIRS = list(PEERS.items()) + [("QK W8A8 int8", "ORT W8A8 dynamic u8")]
ORDER = ["numpy fp32", "ORT int4 b32 acc0", "QK int4 b32 float", "ORT int4 b32 acc4", "QK int4 b32 int8",
         "ORT int4 b128 acc0", "QK int4 b128 float", "ORT int4 b128 acc4", "QK int4 b128 int8",
         "ORT int4 b32 bf16 acc4", "QK int4 b32 bf16 int8", "ORT W8A8 dynamic", "ORT W8A8 dynamic u8", "QK W8A8 int8",
         "ORT W7A8 dynamic", "QK W7A8 int8"]


def hot_read_probe(nbytes, target_s):
    """GB/s of numpy's max over a uint8 buffer of `nbytes`, read again and again from the cache
    (one thread): what a plain read loop streams from where an M = 1 product finds its weights."""
    buf = np.ones(nbytes, np.uint8)
    seconds = measure(lambda: buf.max(), target_s, min_reps=20)
    return nbytes / seconds / 1e9


def print_group(k, n, m, threads, results, hot=None):
    """hot: GB/s of hot_read_probe over a buffer of the weights' size; adds each method's share."""
    flops = 2.0 * m * k * n
    print(f"\nK={k} N={n} M={m} threads={threads}")
    share = f" {'%hot read':>9}" if hot else ""
    print(f"  {'method':<22} {'ms':>9} {'GFLOP/s':>9} {'wGB/s':>8} {'QK/peer':>8} {'QK/fp32':>8} {'max|err|':>10}{share}")
    fp32 = results["numpy fp32"][0]
    for name in ORDER:
        seconds, wbytes, err = results[name]
        ratio = f"{seconds / results[PEERS[name]][0]:8.2f}" if name in PEERS else " " * 8
        vs_np = f"{seconds / fp32:8.3f}" if name.startswith("QK") else " " * 8
        cell = f" {100 * wbytes / seconds / 1e9 / hot:8.0f}%" if hot else ""
        print(f"  {name:<22} {seconds * 1e3:9.3f} {flops / seconds / 1e9:9.1f} {wbytes / seconds / 1e9:8.1f} "
              f"{ratio} {vs_np} {err:10.2e}{cell}")
    if hot:
        print(f"  hot read probe: numpy max over {int4_bytes(k, n, 128) / 1e6:.1f} MB, read again and again "
              f"from cache by one thread: {hot:.1f} GB/s")
    sys.stdout.flush()


# ---- bandwidth probe and cold decode ----


def l3_bytes():
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    best = 0
    for index in base.glob("index*"):
        try:
            if (index / "level").read_text().strip() != "3":
                continue
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1], 1)
        best = max(best, int(text.rstrip("KMG")) * mult)
    return best or 32 << 20


def bandwidth_probe(blas, gib, target_s):
    """Read GB/s over a buffer of `gib` GiB: numpy's sum and max and BLAS sgemv on one thread (the best
    of them is the single-thread bandwidth the cold decode is compared with), and sgemv on two."""
    buf = np.ones(int(gib * (1 << 30)) // 4, np.float32)
    ones = np.ones(4096, np.float32)
    mat = buf[: buf.size // 4096 * 4096].reshape(-1, 4096)
    blas.set(1)
    t_sum = measure(lambda: buf.sum(), target_s, min_reps=3, warmup=1)
    t_max = measure(lambda: buf.max(), target_s, min_reps=3, warmup=1)
    t_gemv = measure(lambda: mat @ ones, target_s, min_reps=3, warmup=1)
    out = {"numpy sum (1 thread)": buf.nbytes / t_sum / 1e9, "numpy max (1 thread)": buf.nbytes / t_max / 1e9,
           "sgemv (1 BLAS thread)": mat.nbytes / t_gemv / 1e9}
    blas.set(2)
    t2 = measure(lambda: mat @ ones, target_s, min_reps=3, warmup=1)
    out["sgemv (2 BLAS threads)"] = mat.nbytes / t2 / 1e9
    del buf, mat
    return out


def ort_chain(layers, k, block, accuracy_level, threads):
    """One ONNX model: A -> MatMulNBits(layer 0) -> ... -> MatMulNBits(layer L-1) -> Y (square layers)."""
    kblocks = (k + block - 1) // block
    nodes, inits = [], []
    for i, qt in enumerate(layers):
        inits += [numpy_helper.from_array(qt.data.reshape(k, kblocks, block // 2), f"B{i}"),
                  numpy_helper.from_array(qt.scales.astype(np.float32).reshape(k, kblocks), f"S{i}")]
        nodes.append(helper.make_node("MatMulNBits", ["A" if i == 0 else f"H{i}", f"B{i}", f"S{i}"],
                                      ["Y" if i == len(layers) - 1 else f"H{i + 1}"], domain="com.microsoft",
                                      K=k, N=k, bits=4, block_size=block, accuracy_level=accuracy_level))
    return _session(nodes, inits, [], k, k, threads, [helper.make_opsetid("com.microsoft", 1)])


def single_thread_bandwidth(probe):
    return max(v for name, v in probe.items() if "1" in name)


def cold_decode(threads_list, target_s, l3, probe_bandwidth, margin, block):
    """M = 1 through L distinct square INT4 layers of `block` in turn (each layer's output is the
    next one's input, as in decoding), L large enough that the weights do not fit in L3. Shares of
    bandwidth are of `probe_bandwidth()`, called once the layers are ready."""
    k = 4096
    layer = int4_bytes(k, k, block)
    count = max(16, math.ceil(margin * l3 / layer))
    cap = (1800 << 20) // layer  # ORT's chained model must stay under protobuf's 2 GB
    if count > cap:
        print(f"\n(cold decode capped at {cap} layers, {cap * layer / 1e6:.0f} MB: protobuf's 2 GB limit)")
        count = cap
    print(f"\nCold decode: M=1 through {count} distinct {k}x{k} INT4 b{block} layers in turn "
          f"({count * layer / 1e6:.0f} MB of weights; L3 {l3 / 1e6:.0f} MB); ORT runs them as one chained model")
    rng = np.random.default_rng(99)
    base = rng.standard_normal((k, k), dtype=np.float32) / np.float32(math.sqrt(k))
    layers = []
    for i in range(count):
        w = base * np.float32(1 + i / count)  # distinct memory (contents do not matter for bandwidth)
        layers.append(qk.quantize(w, "int4", layout="matmulnbits", block_size=block, rounding="half_away"))
    x = rng.standard_normal((1, k), dtype=np.float32)
    bufs = [np.empty((1, k), np.float32), np.empty((1, k), np.float32)]
    packed = [qk.pack_matmulnbits(qt.data, qt.scales, None, k=k, n=k, bits=4, block_size=block) for qt in layers]
    probe = probe_bandwidth()
    single_bw = single_thread_bandwidth(probe)
    print("  bandwidth probe just before: " + ", ".join(f"{name} {v:.1f} GB/s" for name, v in probe.items()))
    print(f"  {'method':<22} {'threads':>7} {'ms/layer':>9} {'wGB/s':>8} {'% 1-thread BW':>14} {'QK/peer':>8}")
    for threads in threads_list:
        rows = {}
        for compute in ("int8", "float"):
            def sweep():
                h = x
                for i, p in enumerate(packed):
                    h = qk.matmul(h, p, compute=compute, num_threads=threads, out=bufs[i % 2])
            time.sleep(0.05)
            rows[f"QK int4 b{block} {compute}"] = measure(sweep, target_s, min_reps=3, warmup=1) / count
        for acc in (4, 0):
            session = ort_chain(layers, k, block, acc, threads)
            time.sleep(0.05)
            rows[f"ORT int4 b{block} acc{acc}"] = measure(lambda: session.run(None, {"A": x}), target_s,
                                                          min_reps=3, warmup=1) / count
            del session
        peer = {f"QK int4 b{block} int8": f"ORT int4 b{block} acc4", f"QK int4 b{block} float": f"ORT int4 b{block} acc0"}
        for name, seconds in rows.items():
            gbs = layer / seconds / 1e9
            ratio = f"{seconds / rows[peer[name]]:8.2f}" if name in peer else ""
            print(f"  {name:<22} {threads:>7} {seconds * 1e3:9.3f} {gbs:8.1f} {100 * gbs / single_bw:13.0f}% {ratio}")
        sys.stdout.flush()
    for p in packed:
        p.close()


# ---- main ----


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse_list(text, kind=int):
    return [kind(v) for v in text.split(",") if v]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one shape, fewer M and repeats (< 2 minutes)")
    ap.add_argument("--shapes", help="KxN list, e.g. 4096x4096,4096x11008 (default: 4096x4096,4096x11008,11008x4096)")
    ap.add_argument("--threads", help="thread counts, e.g. 1,2 (default 1,2; --quick: 1)")
    ap.add_argument("--ms", help="batch sizes M, e.g. 1,16,128,512 (default; --quick: 1,16,128)")
    ap.add_argument("--err-rows", type=int, default=8, help="rows compared with the float64 reference")
    ap.add_argument("--bw-gib", type=float, default=None, help="bandwidth probe buffer in GiB (default 1; --quick 1)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-decode case")
    ap.add_argument("--cold-blocks", help="INT4 block sizes of the cold decode, e.g. 32,128 (default 32,128; --quick: 32)")
    args = ap.parse_args(argv)

    shapes = ([tuple(int(v) for v in s.lower().split("x")) for s in args.shapes.split(",")] if args.shapes
              else [(4096, 4096)] if args.quick else [(4096, 4096), (4096, 11008), (11008, 4096)])
    threads_list = parse_list(args.threads) if args.threads else ([1] if args.quick else [1, 2])
    ms = parse_list(args.ms) if args.ms else ([1, 16, 128] if args.quick else [1, 16, 128, 512])
    target_s = 0.05 if args.quick else 0.3
    blas = BlasThreads()
    l3 = l3_bytes()

    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs), L3 {l3 / 2**20:.0f} MiB")
    print(f"QuantKit {qk.version()} ({qk.library_path()}), matmul kernels {qk.matmul_kernel_variant()}, "
          f"quantize kernels {qk.kernel_variant()}")
    print(f"ONNX Runtime {ort.__version__}, onnx {onnx.__version__}, numpy {np.__version__} (BLAS threads: {blas.how})")
    print(f"shapes {shapes}, M {ms}, threads {threads_list}, median of repeats over ~{target_s} s after warm-up")
    started = time.perf_counter()

    probe = bandwidth_probe(blas, args.bw_gib or 1.0, target_s)
    print("\nMemory bandwidth probe (buffer >> L3): " +
          ", ".join(f"{name} {v:.1f} GB/s" for name, v in probe.items()))

    rows = []
    for k, n in shapes:
        bench_shape(k, n, ms, threads_list, blas, target_s, args.err_rows, rows)

    if not args.no_cold:
        cold_blocks = parse_list(args.cold_blocks) if args.cold_blocks else ([32] if args.quick else [32, 128])
        for block in cold_blocks:
            cold_decode(threads_list, target_s, l3, lambda: bandwidth_probe(blas, args.bw_gib or 1.0, target_s),
                        margin=1.25 if args.quick else 2.0, block=block)

    print(f"\nSummary: QuantKit time / peer time (below 1 = QuantKit faster); error ratio = QK max|err| / peer's")
    labels = [name if peer == PEERS[name] else f"{name} vs u8" for name, peer in SUMMARY_PAIRS]
    print(f"  {'K':>6} {'N':>6} {'M':>4} {'thr':>3}  " + "  ".join(f"{label:>21}" for label in labels))
    for k, n, m, threads, res in rows:
        cells = []
        for name, peer in SUMMARY_PAIRS:
            t = res[name][0] / res[peer][0]
            e = res[name][2] / res[peer][2] if res[peer][2] else float("inf")
            cells.append(f"{t:6.2f}x  err{e:6.2f}")
        print(f"  {k:>6} {n:>6} {m:>4} {threads:>3}  " + "  ".join(f"{c:>21}" for c in cells))
    print(f"\nTotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
