#!/usr/bin/env bash
# `make gpu-check`: proves the CUDA decoder path on a machine with an NVIDIA GPU, from the
# binaries `make gpu-bundle` built elsewhere (no Rust toolchain or network needed here; the
# NVIDIA driver, the CUDA 13.0 libraries and python3 are). About 3 minutes on one H200; every
# step has its own time limit, so the whole stays under 8.
#  1. the model's parity tests that hold on any device (GPU_TESTS), on the GPU: f32 against
#     transformers at 1e-4, f16 and bf16 within their stated bounds, cached, forked and batched
#     decoding against one pass;
#  2. the launch-count test on the GPU (candle operations per decode pass, constant per layer);
#  3. `oneword-model speed` on GPT-2-small shapes in f32, f16 and bf16: decode at 1, 16, 64 and
#     256 streams (ms per step, tokens/s, operations per pass), prefill of 512 and 1024 tokens.
# Report: OUT/report.md (default bench/results/<date>-gpu), with the logs and JSON beside it.
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU: a rehearsal of this script where there is
# no GPU (with the driver's link stub as libcuda.so.1 on LD_LIBRARY_PATH: make gpu-rehearsal).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-target/gpu-check}
OUT=${GPU_CHECK_OUT:-bench/results/$(date -u +%Y-%m-%d)-gpu}
STREAMS=${GPU_CHECK_STREAMS:-1,16,64,256}
PREFILL=${GPU_CHECK_PREFILL:-512,1024}
DTYPES=${GPU_CHECK_DTYPES:-f32 f16 bf16}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
# Tests of crates/model/tests/parity.rs that hold on any device (the others check the CPU path).
GPU_TESTS=(matches_transformers cached_step_by_step a_fork_continues a_sequence_batched
    the_tensor_path_in)
mkdir -p "$OUT"
# The bundle's binaries are xz-compressed; they run from a scratch directory.
RUN=$(mktemp -d)
for b in oneword-model parity launches; do
    [ -f "$BIN/$b.xz" ] || { echo "gpu-check: no $BIN/$b.xz; build the bundle with make gpu-bundle" >&2; exit 1; }
    xz -dc "$BIN/$b.xz" > "$RUN/$b" && chmod +x "$RUN/$b"
done
BIN=$RUN

# cuBLAS, cuBLASLt, cuRAND and NVRTC of CUDA 13: a toolkit's, or PyPI's wheels (torch's cu13
# builds bring them), whichever this machine has.
libdirs=()
for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
    $(python3 -c 'import site, glob; print(" ".join(d for p in site.getsitepackages()
        for d in glob.glob(p + "/nvidia/*/lib")))' 2>/dev/null); do
    [ -d "$d" ] && libdirs+=("$d")
done
LD_LIBRARY_PATH=$(IFS=:; echo "${libdirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LD_LIBRARY_PATH
if ldd "$BIN/oneword-model" | grep 'not found'; then
    echo "gpu-check: libraries missing (searched: ${libdirs[*]})" >&2
    exit 1
fi

{
    if [ "$DEVICE" = cpu ]; then
        echo "# GPU check rehearsed on the CPU, $(date -u +%Y-%m-%d)"
        echo
        cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
        echo "$cpu, $(nproc) cores: the script's steps on the CPU; its numbers say nothing"
        echo "about a GPU."
    else
        echo "# GPU check, $(date -u +%Y-%m-%d)"
        echo
        echo '```'
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
        echo '```'
    fi
} > "$OUT/report.md"

status=0
run() { # name, limit in seconds, command...
    local name=$1 limit=$2
    shift 2
    echo "gpu-check: $name" >&2
    if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then
        echo "- $name: passed" >> "$OUT/report.md"
    else
        echo "- $name: **failed** (exit $?; see $name.log)" >> "$OUT/report.md"
        status=1
    fi
}
echo -e "\n## Tests on the device ($DEVICE)\n" >> "$OUT/report.md"
ONEWORD_TEST_DEVICE=$DEVICE run parity 240 "$BIN/parity" --nocapture "${GPU_TESTS[@]}"
ONEWORD_TEST_DEVICE=$DEVICE run launches 60 "$BIN/launches" --nocapture
grep -hE 'max \|Δlogit\||operations per layer' "$OUT/parity.log" "$OUT/launches.log" |
    sed 's/^/    /' >> "$OUT/report.md" || true

MODEL=$(mktemp -d)/gpt2-small-random
"$BIN/oneword-model" random "$MODEL" --shape gpt2-small --tokenizer tests/fixtures/gpt2-tokenizer >/dev/null
for dtype in $DTYPES; do
    run "speed-$dtype" 150 sh -c "'$BIN/oneword-model' speed '$MODEL' --device $DEVICE --dtype $dtype \
        --streams $STREAMS --prefill $PREFILL > '$OUT/speed-$dtype.json'"
done
python3 bench/gpu/report.py "$OUT" "$DEVICE" >> "$OUT/report.md"
cat "$OUT/report.md"
exit $status
