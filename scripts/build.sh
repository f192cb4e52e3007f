#!/usr/bin/env bash
# Builds the release library and CLI, and lays them out as an install tree in dist/:
#   dist/lib/libquantkit.so   dist/include/quantkit.h   dist/bin/quantkit
set -euo pipefail
cd "$(dirname "$0")/.."
swift build -c release --product quantkit
swift build -c release --product quantkit-cli
bin=$(swift build -c release --show-bin-path)
mkdir -p dist/lib dist/include dist/bin
install -m 755 "$bin/libquantkit.so" dist/lib/libquantkit.so
install -m 644 Include/quantkit.h dist/include/quantkit.h
install -m 755 "$bin/quantkit-cli" dist/bin/quantkit
echo "build: dist/lib/libquantkit.so, dist/include/quantkit.h, dist/bin/quantkit ($(dist/bin/quantkit --version))"
