#!/usr/bin/env bash
# Builds and runs the C ABI test against .build/release/libquantkit.so.
#
#   Tests/c/run.sh            compile (C99 and C++11, warnings as errors), run the test and the
#                             ABI fuzz (abi_fuzz.c) under the
#                             default kernels and under each QUANTKIT_KERNELS variant, and compare
#                             the quantized outputs of all variants byte for byte; also build the C
#                             and C++ examples (and run them) and the benchmarks (not run); run
#                             the thread stress (3 s)
#   Tests/c/run.sh --quick    the default kernels only
#
# Build the library first: swift build -c release --product quantkit
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lib_dir="$root/.build/release"
out="${QK_TEST_OUT:-$root/.build/c-tests}"
cc="${CC:-gcc}"
cxx="${CXX:-g++}"
mkdir -p "$out"

if [[ ! -f "$lib_dir/libquantkit.so" ]]; then
    echo "missing $lib_dir/libquantkit.so: run 'swift build -c release --product quantkit' first" >&2
    exit 2
fi

c_flags=(-std=c99 -Wall -Wextra -Werror -pedantic-errors -O1 -g -I"$root/Include")
link=(-L"$lib_dir" -Wl,-rpath,"$lib_dir" -lquantkit -lpthread -lm)

echo "== compile: C99 test"
"$cc" "${c_flags[@]}" "$root/Tests/c/test_abi.c" "${link[@]}" -o "$out/test_abi"

echo "== compile: the header as C++11 (and link, to prove extern \"C\")"
cat > "$out/header_check.cpp" <<'CPP'
// Compiles Include/quantkit.h as C++ and calls through it: the names must link unmangled.
#include "quantkit.h"
#include <cstddef>
#include <cstdio>
#include <type_traits>
static_assert(std::is_same<qk_status, int32_t>::value, "qk_status is int32_t");
static_assert(sizeof(qk_api) == 208, "qk_api layout");
static_assert(sizeof(qk_quant_params) == 56, "qk_quant_params layout");
static_assert(sizeof(qk_format_info) == 48 && offsetof(qk_format_info, reserved) == 44, "qk_format_info layout");
static_assert(offsetof(qk_quantized, reserved) == 4 && offsetof(qk_quantized, data) == 8, "qk_quantized layout");
static_assert(offsetof(qk_error_stats, reserved) == 4 && offsetof(qk_error_stats, count) == 8, "qk_error_stats layout");
int main() {
    const qk_api *api = qk_get_api(QK_ABI_VERSION);
    std::printf("C++: QuantKit %s, table %s\n", qk_version_string(), api ? "found" : "missing");
    return api && qk_version_number() == QK_VERSION_NUMBER ? 0 : 1;
}
CPP
"$cxx" -std=c++11 -Wall -Wextra -Werror -pedantic-errors -I"$root/Include" "$out/header_check.cpp" \
    "${link[@]}" -o "$out/header_check_cpp"
"$out/header_check_cpp"

echo "== examples and benchmark: compile (warnings as errors), run the examples"
"$cc" "${c_flags[@]}" "$root/Examples/c/quantize_weights.c" "${link[@]}" -o "$out/quantize_weights_c"
"$cxx" -std=c++17 -Wall -Wextra -Werror -pedantic-errors -O1 -I"$root/Include" \
    "$root/Examples/cpp/quantize_weights.cpp" "${link[@]}" -o "$out/quantize_weights_cpp"
"$cc" "${c_flags[@]}" "$root/Benchmarks/quantize_throughput.c" "${link[@]}" -o "$out/quantize_throughput"
# C11 for its static asserts; ONNX Runtime is loaded at run time, so only -ldl here.
for program in matmul_threads decode_threads; do
    "$cc" "${c_flags[@]/-std=c99/-std=c11}" "$root/Benchmarks/$program.c" "${link[@]}" -ldl -o "$out/$program"
done
# The AVX2 instruction-form probe links nothing of QuantKit; compiled here so it cannot rot.
"$cc" "${c_flags[@]/-std=c99/-std=c11}" -mavx2 "$root/Benchmarks/int8_dot_forms.c" -o "$out/int8_dot_forms"
"$cc" "${c_flags[@]}" "$root/Tests/c/thread_stress.c" "${link[@]}" -o "$out/thread_stress"
"$cc" "${c_flags[@]}" "$root/Tests/c/abi_fuzz.c" "${link[@]}" -o "$out/abi_fuzz"
"$out/quantize_weights_c" > "$out/quantize_weights_c.txt"
"$out/quantize_weights_cpp" > "$out/quantize_weights_cpp.txt"
echo "examples ran"

status=0
run() { # run LABEL [ENV...]: the test under one kernel setting
    local label="$1"; shift
    echo "== run: $label"
    env "$@" "$out/test_abi" || status=1
}

run "default kernels"
# A fixed seed per run keeps CI reproducible; QK_FUZZ_SEED picks another for a longer campaign.
fuzz() { # fuzz ITERATIONS [ENV...]
    local iterations="$1"; shift
    env "$@" "$out/abi_fuzz" "$iterations" "${QK_FUZZ_SEED:-1}" || status=1
}
echo "== run: ABI fuzz (random parameters and shapes, guarded buffers)"
fuzz 50000
echo "== run: thread stress (qk_matmul of mixed sizes and thread counts, 3 s)"
"$out/thread_stress" 3 || status=1
if [[ "${1:-}" != "--quick" ]]; then
    for variant in scalar avx2 avx512; do
        run "QUANTKIT_KERNELS=$variant" QUANTKIT_KERNELS="$variant"
        fuzz 20000 QUANTKIT_KERNELS="$variant"
    done
    echo "== kernel variants: quantized bytes must be identical"
    for variant in scalar avx2 avx512; do
        QUANTKIT_KERNELS="$variant" "$out/test_abi" --checksums > "$out/checksums.$variant" || status=1
    done
    for variant in avx2 avx512; do
        if diff "$out/checksums.scalar" "$out/checksums.$variant" > "$out/checksums.diff.$variant"; then
            echo "scalar == $variant"
        else
            echo "FAIL: $variant differs from scalar:"; cat "$out/checksums.diff.$variant"; status=1
        fi
    done
fi
exit $status
