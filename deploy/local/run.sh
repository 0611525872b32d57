#!/usr/bin/env bash
# Starts the six oneword services in the foreground on their default ports; Ctrl-C stops all.
# Usage: deploy/local/run.sh MODEL [TEXT_MODEL]
#   MODEL: a Hugging Face id such as gpt2, or a model directory
#   TEXT_MODEL: the sentence-embedding model (a directory or an id; default: the one
#   deploy/local/fetch-minilm.sh puts in models/)
# The index keeps its collections in DATA_DIR (default data/index).
set -euo pipefail

model=${1:-gpt2}
text_model=${2:-models/all-MiniLM-L6-v2}
data_dir=${DATA_DIR:-data/index}
bin=${BIN:-target/release}

# Resolve (and, for a hub id, download with a progress bar) once, before any service starts, so
# the services do not race to download the same files.
dir=$("$bin/oneword-model" fetch "$model")
echo "model: $model ($dir)"

pids=()
stop() {
  trap - INT TERM EXIT
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

"$bin/oneword-tokenizer" --model "$dir" --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9091 & pids+=($!)
"$bin/oneword-embedder" --model "$dir" --text-model "$text_model" --listen 127.0.0.1:50052 --metrics-listen 127.0.0.1:9092 & pids+=($!)
"$bin/oneword-decoder" --model "$dir" --listen 127.0.0.1:50053 --metrics-listen 127.0.0.1:9093 & pids+=($!)
"$bin/oneword-baseline" --model "$dir" --listen 127.0.0.1:50054 --metrics-listen 127.0.0.1:9094 & pids+=($!)
"$bin/oneword-index" --data-dir "$data_dir" --listen 127.0.0.1:50055 --metrics-listen 127.0.0.1:9095 & pids+=($!)
"$bin/oneword-gateway" --listen 127.0.0.1:50050 --http-listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:9090 & pids+=($!)
echo "gateway: gRPC 127.0.0.1:50050, HTTP (OpenAI) 127.0.0.1:8080; metrics on :9090-9095/metrics; Ctrl-C stops all"

# If any service exits, stop the rest rather than serve half a pipeline.
wait -n "${pids[@]}"
echo "a service exited; stopping the others" >&2
exit 1
