#!/usr/bin/env bash
# Fused-matmul benchmark (QuantKit vs ONNX Runtime vs numpy), with the repository's venv and the
# release library of this checkout: Benchmarks/run_matmul.sh [--quick] [--shapes KxN,...] [--threads 1,2]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[[ -f "$root/.build/release/libquantkit.so" ]] || { echo "run 'swift build -c release --product quantkit' first" >&2; exit 2; }
export QUANTKIT_LIBRARY="${QUANTKIT_LIBRARY:-$root/.build/release/libquantkit.so}"
exec "$root/.venv/bin/python" "$root/Benchmarks/matmul.py" "$@"
