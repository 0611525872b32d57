# `make check-cuda`: type-check and link the CUDA build on a machine with no GPU and no CUDA
# toolkit; `make gpu-bundle` / `make gpu-check`: the binaries a GPU machine runs, and the check
# it runs with them; `make gpu-rehearsal`: that check's script on the CPU.
#
# Included from the top-level Makefile. It installs NVIDIA's CUDA 13.0 compiler and the libraries
# candle links (cuBLAS, cuBLASLt, cuRAND, NVRTC) from PyPI into .cuda/pip (once, and again only
# when the pins below change), plus unversioned names for those libraries and a link stub for the
# driver library (deploy/cuda-libs.sh). check-cuda runs clippy with the `cuda` feature on (which
# builds candle's kernels with nvcc), then builds and links the decoder with CUDA and loads it:
# every library it needs resolves and every symbol binds, against the stub in place of a driver.
#
# Nothing else is needed: the wheels' nvcc finds its headers, cicc and libdevice through its own
# nvcc.profile, and cudarc reads the CUDA version from `nvcc --version` on PATH.

# Remember the including Makefile's default goal, so including this file does not change it.
cuda_check_saved_default_goal := $(.DEFAULT_GOAL)

# Pinned together, all of the CUDA 13.0 line (the image's and the H200 driver's): a newer
# nvidia-nvvm emits PTX that the 13.0 tools reject.
CUDA_PIP_PACKAGES := \
	nvidia-cuda-nvcc==13.0.88 \
	nvidia-nvvm==13.0.88 \
	nvidia-cuda-runtime==13.0.96 \
	nvidia-cuda-crt==13.0.88 \
	nvidia-cuda-cccl==13.0.85 \
	nvidia-cublas==13.0.2.14 \
	nvidia-curand==10.4.0.35 \
	nvidia-cuda-nvrtc==13.0.88
CUDA_PIP_DIR := .cuda/pip
# Holds the package list it was installed from, so changing a pin reinstalls.
CUDA_PIP_STAMP := $(CUDA_PIP_DIR)/.installed
CUDA_CHECK_ROOT := $(abspath $(CUDA_PIP_DIR))/nvidia/cu13
# With no GPU to ask, the kernels' build scripts need the architecture; 90 is Hopper (H100/H200).
CUDA_CHECK_COMPUTE_CAP ?= 90
# candle's kernels are most of this check's time, and their build uses half the cores by default.
CUDA_CHECK_THREADS ?= $(shell nproc)
CARGO ?= cargo

# What cargo needs to build with CUDA here: cudarc searches CUDA_ROOT's lib/stubs for the
# libraries (see deploy/cuda-libs.sh).
CUDA_ENV := CUDA_ROOT="$(CUDA_CHECK_ROOT)" \
	CUDAFORGE_THREADS=$(CUDA_CHECK_THREADS) \
	PATH="$(CUDA_CHECK_ROOT)/bin:$$PATH" \
	CUDA_COMPUTE_CAP=$(CUDA_CHECK_COMPUTE_CAP)
CUDA_LINK_STUB := $(CUDA_CHECK_ROOT)/lib/stubs/libcuda.so
# The same stub under the driver's own name, alone in a directory: what a CUDA binary loads here
# in place of a driver (check-cuda, gpu-rehearsal), on the run-time library path below only.
CUDA_DRIVER_STUB := $(CUDA_CHECK_ROOT)/lib/driver-stub/libcuda.so.1
CUDA_RUN_LIBRARY_PATH := $(CUDA_CHECK_ROOT)/lib:$(CUDA_CHECK_ROOT)/lib/driver-stub

.PHONY: check-cuda cuda-toolchain gpu-bundle gpu-check gpu-rehearsal

## check-cuda: clippy with `--features oneword-model/cuda` (installs CUDA 13.0 from PyPI the first time), then the decoder built and linked with CUDA and loaded with every symbol bound
# The same target directory and the same workspace-wide feature resolution as `make lint`: turning
# CUDA on changes candle's features, so candle, the model and what depends on it (the embedder,
# the decoder, the tests) are checked again, and everything else is what `make lint` left (the
# gateway, the tokenizer and the baseline link no candle at all; see `make deps-check`). The
# loaded binary finds the stub as libcuda.so.1 (CUDA_DRIVER_STUB).
check-cuda: cuda-toolchain $(CUDA_DRIVER_STUB)
	$(CUDA_ENV) $(CARGO) clippy --workspace --all-targets --features oneword-model/cuda -- -D warnings
	$(CUDA_ENV) $(CARGO) build -p oneword-decoder --features oneword-decoder/cuda
	@LD_BIND_NOW=1 LD_LIBRARY_PATH="$(CUDA_RUN_LIBRARY_PATH)" \
		target/debug/oneword-decoder --help >/dev/null && \
	echo "check-cuda: target/debug/oneword-decoder is linked against CUDA 13.0 and loads"

$(CUDA_LINK_STUB): $(CUDA_PIP_STAMP)
	deploy/cuda-libs.sh "$(CUDA_CHECK_ROOT)" "$$($(CARGO) metadata --format-version 1 \
		--features oneword-model/cuda | python3 -c 'import json, os, sys; \
		print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] \
		if p["name"] == "cudarc"))')"

$(CUDA_DRIVER_STUB): $(CUDA_LINK_STUB)
	mkdir -p "$(@D)" && ln -sf ../stubs/libcuda.so "$@"

## gpu-bundle: the release CUDA binaries `make gpu-check` runs (the model tool, the model's parity and launch-count tests), stripped and xz-compressed, in target/gpu-check
gpu-bundle: cuda-toolchain $(CUDA_LINK_STUB)
	$(CUDA_ENV) bench/gpu/bundle.sh target/gpu-check

## gpu-check: on a machine with an NVIDIA GPU, its driver and the CUDA 13.0 libraries (no Rust needed): the parity tests on the GPU in f32/f16/bf16, launches per pass, and decode/prefill speed of GPT-2-small shapes, from target/gpu-check; report in bench/results/<date>-gpu/
gpu-check:
	bench/gpu/check.sh target/gpu-check

## gpu-rehearsal: `make gpu-check`'s script run here on the CPU, with the bundle and the driver's link stub (small sizes, report in target/gpu-rehearsal): proves the script before a GPU is lent
gpu-rehearsal: gpu-bundle $(CUDA_DRIVER_STUB)
	LD_LIBRARY_PATH="$(CUDA_RUN_LIBRARY_PATH)" GPU_CHECK_DEVICE=cpu \
		GPU_CHECK_OUT=target/gpu-rehearsal GPU_CHECK_STREAMS=1,4 GPU_CHECK_PREFILL=64 \
		bench/gpu/check.sh target/gpu-check

# `--no-deps`: nvcc's wheel depends on the nvvm, runtime and crt wheels unpinned; they are all
# pinned above, and must not be resolved again.
cuda-toolchain:
	@if [ "$$(cat $(CUDA_PIP_STAMP) 2>/dev/null)" != "$(CUDA_PIP_PACKAGES)" ]; then \
		echo "installing the CUDA 13.0 compiler into $(CUDA_PIP_DIR)" && \
		rm -rf $(CUDA_PIP_DIR) && \
		python3 -m pip install --quiet --disable-pip-version-check --no-deps \
			--target $(CUDA_PIP_DIR) $(CUDA_PIP_PACKAGES) && \
		echo "$(CUDA_PIP_PACKAGES)" > $(CUDA_PIP_STAMP); \
	fi

.DEFAULT_GOAL := $(cuda_check_saved_default_goal)
