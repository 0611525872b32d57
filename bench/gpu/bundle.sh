#!/usr/bin/env bash
# `make gpu-bundle`: builds, here, what `make gpu-check` runs on a GPU machine that has no Rust
# toolchain: the model tool and the model's parity and launch-count test binaries, release,
# with CUDA, linked against the CUDA 13.0 libraries (run from deploy/cuda-check.mk, which sets
# the CUDA environment). Stripped and compressed (xz: ~18 MB for the three, mostly candle's PTX),
# they travel as the one directory OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-target/gpu-check}
# A fresh directory: an earlier bundle's .xz files would stop strip and xz.
rm -rf "$OUT"
mkdir -p "$OUT"
cargo build --release --features oneword-model/cuda -p oneword-model --bin oneword-model
cp target/release/oneword-model "$OUT/"
# The test binaries' paths are in cargo's JSON messages.
cargo test --release --features oneword-model/cuda -p oneword-model --test parity --test launches \
    --no-run --message-format=json |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])' |
    while read -r name path; do cp "$path" "$OUT/$name"; done
strip "$OUT"/oneword-model "$OUT"/parity "$OUT"/launches
xz -f -T0 "$OUT"/oneword-model "$OUT"/parity "$OUT"/launches
ls -l "$OUT" >&2
echo "gpu-bundle: $OUT ($(du -sh "$OUT" | cut -f1)); on the GPU machine: make gpu-check" >&2
