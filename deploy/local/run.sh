#!/usr/bin/env bash
# Starts the five oneword services in the foreground on their default ports; Ctrl-C stops all.
# Usage: deploy/local/run.sh MODEL   (a Hugging Face id such as gpt2, or a model directory)
set -euo pipefail

model=${1:-gpt2}
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
"$bin/oneword-embedder" --model "$dir" --listen 127.0.0.1:50052 --metrics-listen 127.0.0.1:9092 & pids+=($!)
"$bin/oneword-decoder" --model "$dir" --listen 127.0.0.1:50053 --metrics-listen 127.0.0.1:9093 & pids+=($!)
"$bin/oneword-baseline" --model "$dir" --listen 127.0.0.1:50054 --metrics-listen 127.0.0.1:9094 & pids+=($!)
"$bin/oneword-gateway" --listen 127.0.0.1:50050 --http-listen 127.0.0.1:8080 --metrics-listen 127.0.0.1:9090 & pids+=($!)
echo "gateway: gRPC 127.0.0.1:50050, HTTP (OpenAI) 127.0.0.1:8080; metrics on :9090-9094/metrics; Ctrl-C stops all"

# If any service exits, stop the rest rather than serve half a pipeline.
wait -n "${pids[@]}"
echo "a service exited; stopping the others" >&2
exit 1
