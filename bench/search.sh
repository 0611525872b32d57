#!/usr/bin/env bash
# `make bench-search` (and the end of `make bench`): oneword's similarity search against
# sentence-transformers, FAISS and hnswlib, run in the same session on the same data, phase by
# phase (ours, then the reference, for each), on this machine. Data sets are built once into
# bench/.work/search from the bundled corpus and the local all-MiniLM-L6-v2 (nothing from a hub).
# Results: bench/results/<UTC date>-search/report.md and the JSON it was made from.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=bench/.work
DATA=$WORK/search
THREADS=${BENCH_THREADS:-$(nproc)}
OUT=${BENCH_SEARCH_OUT:-bench/results/$(date -u +%Y-%m-%d)-search}
MODEL=${BENCH_TEXT_MODEL:-models/all-MiniLM-L6-v2}
PHASES=${BENCH_SEARCH_PHASES:-embed exact hnsw upsert}
HNSW_RESTART=${BENCH_SEARCH_HNSW_RESTART:-true}

bench/reference/setup-search.sh "$WORK"
PYTHON=${BENCH_SEARCH_PYTHON:-$WORK/venv/bin/python}
[ -f "$MODEL/model.safetensors" ] || deploy/local/fetch-minilm.sh "$MODEL"
"$PYTHON" bench/reference/search_ref.py prepare --data "$DATA" --model "$MODEL" \
    --corpus crates/ngram/corpus/kjv.txt --threads "$THREADS" > /dev/null
cargo build --release -p oneword-bench
mkdir -p "$OUT"
cp "$DATA/datasets.json" "$OUT/datasets.json"
export RAYON_NUM_THREADS=$THREADS RUST_LOG=${RUST_LOG:-warn}

ours() {
    target/release/oneword-search-bench --phase "$1" --data "$DATA" --model "$MODEL" --out "$OUT" \
        --hnsw-restart "$HNSW_RESTART"
}
reference() {
    "$PYTHON" bench/reference/search_ref.py "$1" --data "$DATA" --model "$MODEL" --threads "$THREADS" \
        > "$OUT/reference-$1.json"
}

started=$(date +%s)
for phase in $PHASES; do
    echo "bench-search: $phase" >&2
    ours "$phase"
    # The service's upserts and restarts have no reference here yet (pgvector: see the report).
    [ "$phase" = upsert ] || reference "$phase"
done
echo "bench-search: measured in $(($(date +%s) - started)) s" >&2
python3 bench/search_report.py "$OUT"
