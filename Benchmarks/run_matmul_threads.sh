#!/usr/bin/env bash
# Builds Benchmarks/matmul_threads.c and runs it: QuantKit's fused matmul next to ONNX Runtime's,
# in one C process, at 1, 2, 4, 8, 16 threads (those up to the core count).
#
#   Benchmarks/run_matmul_threads.sh [matmul_threads options]   e.g. --shapes 4096x4096 --ms 1,16
#   Benchmarks/run_matmul_threads.sh --bundle DIR               a folder to copy to another machine
#
# ONNX Runtime is the library inside the onnxruntime wheel (.venv, as scripts/setup.sh installs
# it), or the one named by ORT_LIBRARY. --bundle puts the program, a stripped libquantkit.so and
# that ONNX Runtime library in DIR (about 45 MB), the program finding both next to itself: run
# DIR/matmul_threads --ort DIR/libonnxruntime.so.* there (needs glibc 2.34 and libstdc++).
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
ort="${ORT_LIBRARY:-}"
if [[ -z "$ort" ]]; then
    ort=$(ls "$root"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* 2>/dev/null | head -1 || true)
fi
if [[ -z "$ort" || ! -f "$ort" ]]; then
    echo "no ONNX Runtime library: run scripts/setup.sh (the onnxruntime wheel) or set ORT_LIBRARY" >&2
    exit 2
fi

flags=(-std=c11 -O2 -Wall -Wextra -I"$root/Include")
if [[ "${1:-}" == "--bundle" ]]; then
    dir="${2:?--bundle needs a folder}"
    mkdir -p "$dir"
    strip -o "$dir/libquantkit.so" "$lib_dir/libquantkit.so"
    cp "$ort" "$dir/"
    "${CC:-gcc}" "${flags[@]}" "$root/Benchmarks/matmul_threads.c" -L"$dir" -Wl,-rpath,'$ORIGIN' -lquantkit -ldl -lm \
        -o "$dir/matmul_threads"
    echo "bundle in $dir: $dir/matmul_threads --ort $dir/$(basename "$ort")"
    exit 0
fi

"${CC:-gcc}" "${flags[@]}" "$root/Benchmarks/matmul_threads.c" -L"$lib_dir" -Wl,-rpath,"$lib_dir" -lquantkit -ldl -lm \
    -o "$out/matmul_threads"
exec "$out/matmul_threads" --ort "$ort" "$@"
