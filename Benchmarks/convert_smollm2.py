#!/usr/bin/env python3
"""Side-by-side conversion benchmark (not a test): SmolLM2-135M fp32 ONNX -> INT4, block 32,
symmetric, MatMulNBits, with QuantKit's CLI and with ONNX Runtime's MatMulNBitsQuantizer; with
--format nf4, NF4 block 64 MatMulBnb4 (bitsandbytes' layout) against ONNX Runtime's MatMulBnb4Quantizer.

Each conversion runs in its own child process, one at a time, so its wall time and peak RSS
(os.wait4's ru_maxrss) are its own. Both input kinds are measured: one .onnx with inline weights,
and .onnx + one external data file (ORT then saves with external data too). Afterwards every
output is loaded in ONNX Runtime and compared with the fp32 model on the fixed text (max |logit
difference|, top-1 agreement, perplexity) and by its greedy answer to "What is the capital of
France?". Times include the child's start-up (Python imports for ORT); with --repeat N the table
shows the fastest run and the largest RSS. ORT's start-up alone (a child that only starts Python
and imports the quantizer, fastest of --repeat runs) is measured too, and the ratio is also printed
without it: the whole-process ratio is what running each tool costs, the other one compares the
conversion work. Before each run the previous output is deleted and
flushed (sync), so that no run shares the CPUs with the writeback of an earlier run's output.

Note: the fp32 weights were dequantized from a Q4_1 GGUF (block 32, asymmetric), so they already
sit on a 4-bit grid; symmetric block-32 INT4 is a different grid, but errors here are smaller than
on a model trained in full precision would be.

    .venv/bin/python Benchmarks/convert_smollm2.py [--format int4|nf4] [--quantkit dist/bin/quantkit] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests"))

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


# --format: (QuantKit's arguments, the operator both write, the title of the table).
FORMATS = {
    "int4": (["--format", "int4", "--block-size", "32", "--target", "matmulnbits"], "MatMulNBits",
             "INT4 block 32 symmetric MatMulNBits"),
    "nf4": (["--format", "nf4", "--block-size", "64", "--target", "bnb4"], "MatMulBnb4", "NF4 block 64 MatMulBnb4"),
}


def ort_import(fmt: str) -> None:
    """ORT's start-up alone, inside a child process: what ort_convert pays before it converts."""
    import logging  # noqa: F401

    if fmt == "nf4":
        from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer  # noqa: F401
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer  # noqa: F401


def ort_convert(src: str, dst: str, external: bool, fmt: str) -> None:
    """The ONNX Runtime half, run inside the child process."""
    import logging

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)  # one INFO line per node
    if fmt == "nf4":
        import onnx
        from onnxruntime.quantization.matmul_bnb4_quantizer import MatMulBnb4Quantizer

        quant = MatMulBnb4Quantizer(onnx.load(src), quant_type=MatMulBnb4Quantizer.NF4, block_size=64)
    else:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quant = MatMulNBitsQuantizer(src, bits=4, block_size=32, is_symmetric=True, accuracy_level=None)
    quant.process()
    quant.model.save_model_to_file(dst, use_external_data_format=external)


def run_child(argv: list[str]) -> tuple[float, float, int, str]:
    """Run argv; return (seconds, max RSS in MB, exit status, last lines of its output).

    The peak RSS comes from GNU time (Debian package `time`), which forks the command from its own
    small process: a child forked straight from this (multi-GB) Python process would report this
    process's resident pages too, since Linux carries the high-water mark across exec."""
    log = tempfile.TemporaryFile()
    rss_file = tempfile.NamedTemporaryFile(suffix=".rss", delete=False)
    rss_file.close()
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *argv], stdout=log, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    rss_kib = int(Path(rss_file.name).read_text().strip().splitlines()[-1] or 0)
    os.unlink(rss_file.name)
    log.seek(0)
    tail = "\n".join(log.read().decode(errors="replace").splitlines()[-5:])
    return seconds, rss_kib / 1024, proc.returncode, tail


def model_mb(path: Path) -> float:
    data = path.with_name(path.name + ".data")
    return (path.stat().st_size + (data.stat().st_size if data.exists() else 0)) / 1e6


def check_output(path: Path, ref_logits, text_ids, op: str) -> dict:
    """Load in ONNX Runtime, count `op` nodes, compare with the fp32 logits on the fixed text
    (max |difference|, how often the top token agrees), perplexity, greedy answer to PROMPT."""
    import numpy as np
    import onnx

    from models import smollm2

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    logits = smollm2.run_logits(path, text_ids)
    return {"nbits": ops.count(op), "matmul": ops.count("MatMul"),
            "diff": float(np.abs(logits - ref_logits).max()),
            "top1": float((logits.argmax(-1) == ref_logits.argmax(-1)).mean()),
            "ppl": smollm2.perplexity_of_logits(logits, text_ids),
            "answer": smollm2.greedy(path, PROMPT, 12)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--format", choices=sorted(FORMATS), default="int4", help="int4 (MatMulNBits) or nf4 (MatMulBnb4)")
    parser.add_argument("--quantkit", type=Path, default=REPO / "dist" / "bin" / "quantkit")
    parser.add_argument("--kinds", default="external,inline", help="input kinds, comma separated")
    parser.add_argument("--repeat", type=int, default=1, help="runs per conversion (fastest is shown)")
    parser.add_argument("--keep", type=Path, help="write outputs here and keep them (default: a temp dir)")
    parser.add_argument("--child-ort", nargs=4, metavar=("IN", "OUT", "EXTERNAL", "FORMAT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-ort-import", metavar="FORMAT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_ort:
        ort_convert(args.child_ort[0], args.child_ort[1], args.child_ort[2] == "1", args.child_ort[3])
        return 0
    if args.child_ort_import:
        ort_import(args.child_ort_import)
        return 0

    from models import smollm2

    kinds = args.kinds.split(",")
    for kind in kinds:  # build (or reuse) outside the timed children
        start = time.perf_counter()
        path = smollm2.get_model(kind)
        print(f"fp32 {kind}: {path} ({model_mb(path):.0f} MB, ready in {time.perf_counter() - start:.1f} s)")
    quantkit = args.quantkit.resolve()
    if not quantkit.exists():
        print(f"QuantKit CLI not found at {quantkit}: skipping the QuantKit rows")

    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="convert_smollm2-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    qk_args, op, title = FORMATS[args.format]
    rows = []
    for kind in kinds:
        src = smollm2.get_model(kind)
        tools = {"onnxruntime": lambda dst: [sys.executable, __file__, "--child-ort", str(src), str(dst),
                                              "1" if kind == "external" else "0", args.format]}
        if quantkit.exists():
            tools["quantkit"] = lambda dst: [str(quantkit), "convert", str(src), "-o", str(dst), *qk_args]
        for tool, argv in tools.items():
            dst = out_dir / f"smollm2-{args.format}-{tool}-{kind}.onnx"
            print(f"converting {kind} with {tool} ...", flush=True)
            runs = []
            for _ in range(args.repeat):
                for f in (dst, dst.with_name(dst.name + ".data")):
                    f.unlink(missing_ok=True)  # QuantKit refuses to overwrite
                # Flush what earlier runs wrote (up to 200 MB): on a 2-core machine the kernel's
                # writeback of the previous output would otherwise compete with this run.
                os.sync()
                runs.append(run_child(argv(dst)))
            seconds, rss = min(r[0] for r in runs), max(r[1] for r in runs)
            code, tail = max(runs, key=lambda r: r[2] != 0)[2:]  # a failure, if any
            row = {"tool": tool, "kind": kind, "s": seconds, "rss": rss, "in_mb": model_mb(src), "code": code}
            if code != 0 or not dst.exists():
                print(f"  failed (exit {code}):\n{tail}")
            else:
                row["out_mb"] = model_mb(dst)
            rows.append((row, dst))

    print("ONNX Runtime's start-up alone (Python + imports) ...", flush=True)
    ort_startup = min(run_child([sys.executable, __file__, "--child-ort-import", args.format])[0] for _ in range(max(args.repeat, 3)))

    print("checking outputs in onnxruntime ...", flush=True)
    text_ids = smollm2.fixed_text_tokens()
    ref = smollm2.get_model(kinds[0])
    ref_logits = smollm2.run_logits(ref, text_ids)
    fp32_ppl = smollm2.perplexity_of_logits(ref_logits, text_ids)
    print(f"fp32 answers: {smollm2.greedy(ref, PROMPT, 12)!r}")
    for row, dst in rows:
        if "out_mb" in row:
            try:
                row.update(check_output(dst, ref_logits, text_ids, op))
            except Exception as exc:  # report it in the table rather than stop
                row["error"] = f"{type(exc).__name__}: {exc}"[:200]
    print_table([r for r, _ in rows], fp32_ppl, len(text_ids), ort_startup, op, title)
    if not args.keep:
        for _, dst in rows:
            for f in (dst, dst.with_name(dst.name + ".data")):
                f.unlink(missing_ok=True)
        out_dir.rmdir()
    return 0


def print_table(rows: list[dict], fp32_ppl: float, n_tokens: int, ort_startup: float, op: str, title: str) -> None:
    print(f"\nSmolLM2-135M fp32 -> {title}; fp32 perplexity {fp32_ppl:.2f} "
          f"on {n_tokens} tokens of Tests/models/fixed_text.txt")
    print(f"| tool | input | seconds | max RSS MB | fp32 model MB | RSS / model | output MB | {op}"
          " (MatMul left) | max abs logit diff | top-1 agree | perplexity |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["code"] != 0 or "out_mb" not in r:
            check = f"failed (exit {r['code']})"
            print(f"| {r['tool']} | {r['kind']} | {r['s']:.2f} | {r['rss']:.0f} | {r['in_mb']:.0f} | "
                  f"{r['rss'] / r['in_mb']:.2f} | - | {check} | - | - | - |")
            continue
        if "error" in r:
            checks = f"does not run: {r['error']} | - | - | -"
        else:
            checks = f"{r['nbits']} ({r['matmul']}) | {r['diff']:.2f} | {r['top1']:.1%} | {r['ppl']:.2f}"
        print(f"| {r['tool']} | {r['kind']} | {r['s']:.2f} | {r['rss']:.0f} | {r['in_mb']:.0f} | "
              f"{r['rss'] / r['in_mb']:.2f} | {r['out_mb']:.0f} | {checks} |")
    by = {(r["tool"], r["kind"]): r for r in rows if r["code"] == 0}
    for kind in dict.fromkeys(r["kind"] for r in rows):
        ort, qk = by.get(("onnxruntime", kind)), by.get(("quantkit", kind))
        if ort and qk:
            print(f"{kind}: ORT time / QuantKit time = {ort['s'] / qk['s']:.2f} (whole processes; without ORT's "
                  f"{ort_startup:.2f} s of Python start-up and imports: {(ort['s'] - ort_startup) / qk['s']:.2f}), "
                  f"ORT RSS / QuantKit RSS = {ort['rss'] / qk['rss']:.2f}")
        else:
            print(f"{kind}: no ratio (a row is missing or failed)")
    for r in rows:
        if "answer" in r:
            print(f"{r['tool']} {r['kind']} answers: {r['answer']!r}")


if __name__ == "__main__":
    sys.exit(main())
