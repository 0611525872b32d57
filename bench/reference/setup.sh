#!/usr/bin/env bash
# Installs the reference systems of `make bench` into WORK (default bench/.work), once:
#  - a Python venv with PyTorch and Hugging Face transformers (and llama.cpp's GGUF converter),
#  - llama.cpp, built from the llama-cpp-python source package on PyPI (its vendored copy),
#    CPU only, for this machine's instruction set (AMX left out), just llama-batched-bench and
#    llama-bench.
# Set BENCH_PYTHON to a Python that already has torch and transformers to skip the venv.
set -euo pipefail

WORK=${1:-bench/.work}
LLAMA_CPP_PYTHON=0.3.36
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
echo "bench: installing the reference systems into $WORK" >&2

if [ -z "${BENCH_PYTHON:-}" ] && [ ! -f "$WORK/venv/installed" ]; then
    python3 -m venv "$WORK/venv"
    "$WORK/venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 \
        numpy==2.4.6 tqdm pyyaml requests
    touch "$WORK/venv/installed"
fi

SRC="$WORK/llama_cpp_python-$LLAMA_CPP_PYTHON/vendor/llama.cpp"
if [ ! -d "$SRC" ]; then
    python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python \
        "llama-cpp-python==$LLAMA_CPP_PYTHON" -d "$WORK/sdist"
    tar xzf "$WORK/sdist/llama_cpp_python-$LLAMA_CPP_PYTHON.tar.gz" -C "$WORK"
fi

BUILD="$WORK/llama-build"
# This machine's instruction set minus AMX: -march=native turns on llama.cpp's AMX q8_0 kernels
# wherever the CPU advertises AMX, and they die with SIGILL where the kernel or the hypervisor does
# not grant the tile state (seen on a virtualised Xeon). Neither side of the comparison uses AMX.
cpu_options() {
    local flags option
    flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
    for option in sse4_2:SSE42 f16c:F16C fma:FMA bmi2:BMI2 avx:AVX avx2:AVX2 avx_vnni:AVX_VNNI \
        avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
        case "$flags" in
            *" ${option%%:*} "*) echo "-DGGML_${option#*:}=ON" ;;
            *) echo "-DGGML_${option#*:}=OFF" ;;
        esac
    done
}
OPTIONS="$(cpu_options | tr '\n' ' ')"
if [ ! -x "$BUILD/bin/llama-batched-bench" ] || [ ! -x "$BUILD/bin/llama-bench" ] ||
    [ "$(cat "$BUILD/options" 2>/dev/null)" != "$OPTIONS" ]; then
    # cmake from PyPI into a venv of its own when the machine has none: a `--user` install lands
    # where PATH may not reach on a fresh machine.
    if ! command -v cmake >/dev/null; then
        [ -x "$WORK/tools/bin/cmake" ] || {
            python3 -m venv "$WORK/tools" && "$WORK/tools/bin/pip" install --quiet cmake ninja; }
        export PATH="$WORK/tools/bin:$PATH"
    fi
    rm -rf "$BUILD"
    # shellcheck disable=SC2086 # one option per word
    cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF $OPTIONS \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
    nice -n 10 cmake --build "$BUILD" --target llama-batched-bench llama-bench -j "$(nproc)" >/dev/null
    echo "$OPTIONS" > "$BUILD/options"
fi
echo "bench: reference systems ready" >&2
