#!/usr/bin/env bash
# The essay's numbers and pictures: runs every instrument of the `oneword` CLI, in the order of
# Wolfram's "What Is ChatGPT Doing … and Why Does It Work?", against MODEL and writes a report
# (markdown and PNGs) into OUT.
#
# Usage: bench/essay.sh MODEL OUT   (MODEL: a Hugging Face id such as gpt2, or a model directory)
# A gateway already answering on ONEWORD_GATEWAY (default 127.0.0.1:50050) is used as it is;
# otherwise the four services are started here for MODEL (deploy/local/run.sh) and stopped after.
set -euo pipefail

model=${1:-gpt2}
out=${2:-bench/results/essay/$(basename "$model")}
bin=${BIN:-target/release}
cli="$(cd "$bin" && pwd)/oneword"
export ONEWORD_GATEWAY=${ONEWORD_GATEWAY:-127.0.0.1:50050}
mkdir -p "$out"

services=
if ! "$cli" info >/dev/null 2>&1; then
  deploy/local/run.sh "$model" >"$out/services.log" 2>&1 &
  services=$!
  trap 'kill $services 2>/dev/null; wait $services 2>/dev/null || true' EXIT
  # Downloading gpt2 and loading it takes a while the first time.
  for _ in $(seq 600); do
    "$cli" info >/dev/null 2>&1 && break
    kill -0 "$services" 2>/dev/null || { cat "$out/services.log" >&2; exit 1; }
    sleep 1
  done
fi

report="$out/README.md"
prompt="The best thing about AI is its ability to"
hello_bye="$(printf 'hello %.0s' {1..16})$(printf 'bye %.0s' {1..5})bye"

# An argument as a shell would need it typed: bare when plain, else in single quotes.
quoted() {
  if [[ $1 =~ ^[A-Za-z0-9_.,=:/-]+$ ]]; then printf ' %s' "$1"; else printf " '%s'" "$1"; fi
}

# Appends a heading, the command, and what it printed, as a section of the report. Commands run
# in OUT, so that their pictures land there under the names the report shows.
section() {
  local title=$1
  shift
  {
    printf '\n## %s\n\n```console\n$ oneword' "$title"
    for arg in "$@"; do quoted "$arg"; done
    printf '\n'
    (cd "$out" && "$cli" --color never "$@" 2>&1)
    printf '```\n'
  } >>"$report"
}
picture() { printf '\n![%s](%s)\n' "$1" "$2" >>"$report"; }

{
  printf '# The essay'"'"'s instruments on `%s`\n\n' "$model"
  printf 'Made by `make essay MODEL=%s` on %s. Each section is a command of the `oneword` CLI\n' "$model" "$(date -u +%F)"
  printf 'and what it printed; the pictures are its `--png` output.\n'
} >"$report"

# The prompt is prefilled once and kept as a client session: the table and the branches continue
# it instead of prefilling it again.
session=$("$cli" session create "$prompt")
section "The next-token table" next --session "$session" --top 5
section "Temperature 0 and 0.8" compare "$prompt" --temperatures 0,0.8 --samples 5 --max-tokens 60 --seed 1
section "What-if branches of the kept prompt" generate --session "$session" -n 3 --temperature 0.8 --max-tokens 30 --seed 2
"$cli" session release "$session" >/dev/null 2>&1 || true
section "Rank and probability" ranks "$prompt" --png "ranks.png"
picture "rank/probability" ranks.png
section "A text scored" score "The best thing about AI is its ability to learn from experience." --top 3
section "Letter frequencies" letters --png "letters.png"
picture "letter frequencies" letters.png
section "Letter pairs" letter-pairs --png "letter-pairs.png"
picture "letter pairs" letter-pairs.png
section "Random words from letter n-grams" random-words --count 8 --seed 1
section "A sentence from word 2-grams" sentence god --n 2 --words 20 --seed 1
section "The n-gram models in the generation loop" generate "The best thing about" --model tokens-3 --max-tokens 30 --seed 1
section "Word embeddings" embed-map alligator crocodile turnip eagle dog cat apple banana --png "embed-map.png"
picture "words in embedding space" embed-map.png
section "Nearest tokens" nearest cat --top 10
section "The embedding module" embedding-module "$hello_bye" --png "embedding-module.png"
picture "embedding module" embedding-module.png
section "Attention of the first block" attention "$hello_bye" --layer 0 --png "attention-layer0.png"
picture "attention heads of block 0" attention-layer0.png
section "The logit lens" lens "$prompt" --top 5
section "A weight matrix" weights --layer 0 --matrix attn.c_proj --png "weights.png"
picture "attn.c_proj of block 0" weights.png
section "The same, smoothed" weights --layer 0 --matrix attn.c_proj --smooth "${SMOOTH:-64}" --png "weights-smoothed.png"
picture "attn.c_proj of block 0, smoothed" weights-smoothed.png
section "Weight values of every block" weights --histogram --png "weight-histograms.png"
picture "weight histograms" weight-histograms.png

echo "wrote $report"
