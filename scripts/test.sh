#!/usr/bin/env bash
# The whole test suite: Swift unit tests, the C ABI test, and the Python tests (binding, ONNX
# reference cases, ONNX Runtime compatibility) under every kernel variant this CPU supports.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
export QUANTKIT_LIBRARY="$PWD/dist/lib/libquantkit.so"

echo "== Swift tests"
# The ONNX round-trip test also reads every model the onnx package ships as test data (149 files).
QUANTKIT_ONNX_ROUNDTRIP=$(.venv/bin/python -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data"))')
export QUANTKIT_ONNX_ROUNDTRIP
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! swift test >"$log" 2>&1; then
    grep -E "error|failed" "$log" | head -50
    tail -5 "$log"
    exit 1
fi
grep -E "Executed [0-9]+ tests" "$log" | tail -1

echo "== Exported symbols: only qk_*"
leaked=$(nm -D --defined-only dist/lib/libquantkit.so | awk '$2 ~ /[A-Z]/ && $3 !~ /^qk_/ {print $3}')
[ -z "$leaked" ] || { echo "symbols other than qk_* are exported: $leaked"; exit 1; }
ldd dist/lib/libquantkit.so | grep -q swift && { echo "libquantkit.so needs a Swift runtime"; exit 1; }

echo "== C ABI test"
Tests/c/run.sh

variants=$(dist/bin/quantkit --version | sed -E 's/.*kernels: ([a-z0-9]+).*/\1/')
case "$variants" in
    avx512) variants="scalar avx2 avx512" ;;
    avx2) variants="scalar avx2" ;;
    *) variants="scalar" ;;
esac
echo "== Converter tests (quantkit convert on synthetic and real models, run in ONNX Runtime)"
QUANTKIT_CLI="$PWD/dist/bin/quantkit" .venv/bin/python -m pytest -q Tests/converter

for variant in $variants; do
    echo "== Python tests, QUANTKIT_KERNELS=$variant"
    QUANTKIT_KERNELS=$variant .venv/bin/python -m pytest -q Tests/python
done
# The matmul has one more level, AVX2 with VNNI (it falls back to avx2 on CPUs without AVX-VNNI).
echo "== Python matmul tests, QUANTKIT_KERNELS=avx2-vnni"
QUANTKIT_KERNELS=avx2-vnni .venv/bin/python -m pytest -q Tests/python/test_matmul.py Tests/python/test_matmul_abi.py
