#!/usr/bin/env bash
# Builds the side-by-side C benchmarks and runs one: QuantKit next to ONNX Runtime, in one C
# process, at 1, 2, 4, 8, 16 threads (those up to the core count).
#
#   Benchmarks/run_matmul_threads.sh [options]           matmul_threads.c: products of three shapes at
#                                                        M = 1, 16, 512 (e.g. --shapes 4096x4096 --ms 1,16)
#   Benchmarks/run_matmul_threads.sh --decode [options]  decode_threads.c: M = 1 through layers that
#                                                        stream from DRAM, next to a DRAM read probe
#   Benchmarks/run_matmul_threads.sh --bundle DIR        a folder to copy to another machine
#
# ONNX Runtime is the library inside the onnxruntime wheel (.venv, as scripts/setup.sh installs
# it), or the one named by ORT_LIBRARY. --bundle puts both programs, a stripped libquantkit.so and
# that ONNX Runtime library in DIR (about 45 MB), the programs finding both next to themselves: run
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
programs=(matmul_threads decode_threads)
if [[ "${1:-}" == "--bundle" ]]; then
    dir="${2:?--bundle needs a folder}"
    mkdir -p "$dir"
    strip -o "$dir/libquantkit.so" "$lib_dir/libquantkit.so"
    cp "$ort" "$dir/"
    for program in "${programs[@]}"; do
        "${CC:-gcc}" "${flags[@]}" "$root/Benchmarks/$program.c" -L"$dir" -Wl,-rpath,'$ORIGIN' -lquantkit -ldl -lm -pthread \
            -o "$dir/$program"
    done
    echo "bundle in $dir: $dir/matmul_threads --ort $dir/$(basename "$ort") (or decode_threads)"
    exit 0
fi

program=matmul_threads
if [[ "${1:-}" == "--decode" ]]; then
    program=decode_threads
    shift
fi
"${CC:-gcc}" "${flags[@]}" "$root/Benchmarks/$program.c" -L"$lib_dir" -Wl,-rpath,"$lib_dir" -lquantkit -ldl -lm -pthread \
    -o "$out/$program"
exec "$out/$program" --ort "$ort" "$@"
