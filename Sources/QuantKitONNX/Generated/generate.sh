#!/usr/bin/env bash
# Regenerates onnx.pb.swift, the Swift code for the ONNX protobuf schema, from the `onnx.proto`
# that the installed `onnx` Python package ships (the Debian libonnx-dev schema is IR 8 and too old:
# no INT4/UINT4). Run it again after upgrading the `onnx` package, then commit onnx.pb.swift and
# update README.md here with the new version.
#
#   Sources/QuantKitONNX/Generated/generate.sh
#
# Steps:
#   1. protoc from Debian's `protobuf-compiler` (installed if missing).
#   2. protoc-gen-swift built from swift-protobuf 1.39.0, the version Package.swift pins exactly
#      (generated code and runtime must match), in a temporary folder outside the repository.
#      Set PROTOC_GEN_SWIFT=/path/to/protoc-gen-swift to use one already built from 1.39.0.
#   3. The schema from the onnx package: onnx-ml.proto, the one the package's own ModelProto is
#      compiled from (onnx/onnx_pb.py imports onnx_ml_pb2). It declares `package onnx;`, proto2,
#      and differs from onnx.proto only in a comment. Types come out as Onnx_ModelProto, ...
#   4. protoc --swift_opt=Visibility=Public, output renamed to onnx.pb.swift.
# Environment: PYTHON (default: .venv/bin/python, then python3) must import onnx.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
swift_protobuf_version=1.39.0

python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

# 1. protoc
if ! command -v protoc >/dev/null; then
    echo "generate: installing protobuf-compiler (protoc)"
    sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    $sudo_cmd apt-get install -y -qq protobuf-compiler >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 2. protoc-gen-swift
plugin="${PROTOC_GEN_SWIFT:-}"
if [ -z "$plugin" ]; then
    echo "generate: building protoc-gen-swift $swift_protobuf_version (about 1.5 minutes on 2 cores)"
    git clone -q https://github.com/apple/swift-protobuf "$work/swift-protobuf"
    git -C "$work/swift-protobuf" -c advice.detachedHead=false checkout -q "$swift_protobuf_version"
    (cd "$work/swift-protobuf" && swift build -c release --product protoc-gen-swift >/dev/null)
    plugin="$(cd "$work/swift-protobuf" && swift build -c release --show-bin-path)/protoc-gen-swift"
fi
plugin_version="$("$plugin" --version)"
case "$plugin_version" in
    *"$swift_protobuf_version"*) ;;
    *) echo "generate: $plugin is '$plugin_version', expected $swift_protobuf_version"; exit 1 ;;
esac

# 3. The schema
onnx_dir="$("$python" -c 'import os, onnx; print(os.path.dirname(onnx.__file__))')"
onnx_version="$("$python" -c 'import onnx; print(onnx.__version__)')"
"$python" - <<'PY'
import onnx
name = onnx.ModelProto.DESCRIPTOR.file.name
assert name == "onnx/onnx-ml.proto", f"onnx.ModelProto now comes from {name}: update generate.sh"
PY
mkdir -p "$work/proto"
cp "$onnx_dir/onnx-ml.proto" "$work/proto/onnx-ml.proto"
grep -q '^syntax = "proto2";' "$work/proto/onnx-ml.proto"
grep -q '^package onnx;' "$work/proto/onnx-ml.proto"

# 4. Generate
mkdir -p "$work/out"
protoc --plugin=protoc-gen-swift="$plugin" -I "$work/proto" \
    --swift_opt=Visibility=Public --swift_out="$work/out" onnx-ml.proto
mv "$work/out/onnx-ml.pb.swift" "$here/onnx.pb.swift"
echo "generate: $here/onnx.pb.swift from onnx $onnx_version (onnx-ml.proto, $(protoc --version), $plugin_version)"
