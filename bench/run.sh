#!/usr/bin/env bash
# `make bench`: oneword against Hugging Face transformers and llama.cpp, on one GPT-2-small-shaped
# checkpoint with random weights (speed does not depend on the values) made by our own tool, on
# this machine, with the same number of threads. Results: bench/results/<date>/report.md.
# Then the similarity-search benchmark (bench/search.sh; its own report in
# bench/results/<date>-search/). BENCH_SEARCH=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=bench/.work
THREADS=${BENCH_THREADS:-$(nproc)}
# llama.cpp runs at each of these weight precisions (GGUF conversions of the same checkpoint).
LLAMA_DTYPES=${BENCH_LLAMA_DTYPES:-f32,f16,bf16,q8_0}
# oneword runs in f32 (with the isolation measurements), then at each of these (`--dtype`).
ONEWORD_DTYPES=${BENCH_ONEWORD_DTYPES:-bf16,q8_0}
# and with f32 weights and each of these KV-cache dtypes (`--kv-cache-dtype`; empty skips).
ONEWORD_KV=${BENCH_ONEWORD_KV-f16}
CONCURRENCY=${BENCH_CONCURRENCY:-1,4,16,32}
PREFILL=${BENCH_PREFILL:-128,512,1024}
OUT=${BENCH_OUT:-bench/results/$(date -u +%Y-%m-%d)}
MODEL=$WORK/gpt2-small-random

bench/reference/setup.sh "$WORK"
PYTHON=${BENCH_PYTHON:-$WORK/venv/bin/python}
LLAMA_SRC=$(echo "$WORK"/llama_cpp_python-*/vendor/llama.cpp)
if [ ! -f "$MODEL/model.safetensors" ]; then
    cargo run --release -p oneword-model -- random "$MODEL" --shape gpt2-small \
        --tokenizer tests/fixtures/gpt2-tokenizer
fi
cargo build --release -p oneword-bench
mkdir -p "$OUT"
export RAYON_NUM_THREADS=$THREADS RUST_LOG=${RUST_LOG:-warn}
common=(--model "$MODEL" --concurrency "$CONCURRENCY" --prefill "$PREFILL")

echo "bench: linear-layer kernels (oneword's and PyTorch's BLAS)" >&2
target/release/oneword-kernel-bench --out "$OUT/kernels.json"
"$PYTHON" bench/reference/torch_gemm.py --threads "$THREADS" > "$OUT/kernels-torch.json"
echo "bench: oneword" >&2
target/release/oneword-bench "${common[@]}" --out "$OUT"
for dtype in ${ONEWORD_DTYPES//,/ }; do
    echo "bench: oneword $dtype" >&2
    target/release/oneword-bench "${common[@]}" --dtype "$dtype" --isolation-streams 0 --out "$OUT"
done
for kv in ${ONEWORD_KV//,/ }; do
    echo "bench: oneword kv-$kv" >&2
    target/release/oneword-bench "${common[@]}" --kv-cache-dtype "$kv" --isolation-streams 0 --out "$OUT"
done
for dtype in ${LLAMA_DTYPES//,/ }; do
    echo "bench: llama.cpp $dtype" >&2
    "$PYTHON" bench/reference/llama_bench.py "${common[@]}" --threads "$THREADS" --dtype "$dtype" \
        --llama-src "$LLAMA_SRC" --llama-bin "$WORK/llama-build/bin" --work "$WORK" \
        > "$OUT/llama.cpp-$dtype.json" || {
        # One reference failing (a crash in one of its kernels) leaves its column out of the
        # report instead of losing the whole run; the log above says why.
        echo "bench: llama.cpp $dtype failed; left out of the report" >&2
        rm -f "$OUT/llama.cpp-$dtype.json"
    }
done
echo "bench: transformers" >&2
"$PYTHON" bench/reference/hf_bench.py "${common[@]}" --threads "$THREADS" > "$OUT/transformers.json"
python3 bench/report.py "$OUT"
if [ "${BENCH_SEARCH:-1}" != 0 ]; then
    echo "bench: similarity search" >&2
    bench/search.sh
fi
