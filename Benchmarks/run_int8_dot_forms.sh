#!/usr/bin/env bash
# Builds Benchmarks/int8_dot_forms.c and runs it: the time of an exact int8 x int8 dot product on
# AVX2 without VNNI in four instruction forms, against the saturating form ONNX Runtime uses.
#
#   Benchmarks/run_int8_dot_forms.sh [runs]      (default 3 runs)
#
# Needs no QuantKit build. clang (the Swift toolchain has one) keeps the tiles' accumulators in
# registers; gcc 12 spills some in every form (each ran 1.2-2x slower built by it here).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/.build/benchmarks"
mkdir -p "$out"
cc="${CC:-clang}"
if ! command -v "$cc" >/dev/null; then
    echo "missing $cc: install clang or set CC (gcc spills accumulators here)" >&2
    exit 2
fi
"$cc" -std=c11 -O2 -Wall -Wextra -mavx2 "$root/Benchmarks/int8_dot_forms.c" -o "$out/int8_dot_forms"
for _ in $(seq "${1:-3}"); do
    "$out/int8_dot_forms"
done
