#!/usr/bin/env bash
# Builds the release library and CLI, and lays them out as an install tree in dist/:
#   dist/lib/libquantkit.so   dist/include/quantkit.h   dist/bin/quantkit
set -euo pipefail
cd "$(dirname "$0")/.."
# --static-swift-stdlib: the CLI then needs no Swift runtime (and binds no Swift symbols at
# start-up: 6 ms instead of 14 for `quantkit --version`); the library links its runtime
# statically anyway (Package.swift), and both builds share one configuration.
swift build -c release --static-swift-stdlib --product quantkit
swift build -c release --static-swift-stdlib --product quantkit-cli
bin=$(swift build -c release --static-swift-stdlib --show-bin-path)
mkdir -p dist/lib dist/include dist/bin
install -m 755 "$bin/libquantkit.so" dist/lib/libquantkit.so
install -m 644 Include/quantkit.h dist/include/quantkit.h
install -m 755 "$bin/quantkit-cli" dist/bin/quantkit
echo "build: dist/lib/libquantkit.so, dist/include/quantkit.h, dist/bin/quantkit ($(dist/bin/quantkit --version))"
