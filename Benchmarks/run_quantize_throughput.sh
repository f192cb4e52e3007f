#!/usr/bin/env bash
# Builds Benchmarks/quantize_throughput.c and runs it once per kernel variant.
#
#   Benchmarks/run_quantize_throughput.sh [--quick] [--runs N]
#
# Each run prints memcpy bandwidth and QuantKit throughput measured in the same process, so the
# "/memcpy" ratios compare like with like; compare absolute numbers only within one run.
# A variant the CPU lacks falls back to a lower one: the table header shows the one in use.
# Build the library first: swift build -c release --product quantkit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lib_dir="$root/.build/release"
out="$root/.build/benchmarks"
mkdir -p "$out"

if [[ ! -f "$lib_dir/libquantkit.so" ]]; then
    echo "missing $lib_dir/libquantkit.so: run 'swift build -c release --product quantkit' first" >&2
    exit 2
fi

"${CC:-gcc}" -std=c99 -O2 -Wall -Wextra -I"$root/Include" "$root/Benchmarks/quantize_throughput.c" \
    -L"$lib_dir" -Wl,-rpath,"$lib_dir" -lquantkit -lm -o "$out/quantize_throughput"

for variant in scalar avx2 avx512; do
    QUANTKIT_KERNELS="$variant" "$out/quantize_throughput" "$@"
done
