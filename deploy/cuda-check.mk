# `make check-cuda`: type-check the CUDA build on a machine with no GPU and no CUDA toolkit.
#
# Included from the top-level Makefile. It installs NVIDIA's CUDA 13.0 compiler from PyPI into
# .cuda/pip (once, and again only when the pins below change) and runs clippy with the `cuda`
# feature on. That builds candle's kernels with nvcc and checks our CUDA-gated code and feature
# wiring without a GPU. Linking needs the CUDA libraries (libcuda, cuBLAS, cuRAND, NVRTC),
# so building binaries stays with the CUDA image.
#
# Nothing else is needed: the wheels' nvcc finds its headers, cicc and libdevice through its own
# nvcc.profile, and cudarc reads the CUDA version from `nvcc --version` on PATH.

# Remember the including Makefile's default goal, so including this file does not change it.
cuda_check_saved_default_goal := $(.DEFAULT_GOAL)

# Pinned together: a newer nvidia-nvvm emits PTX that the 13.0 tools reject.
CUDA_PIP_PACKAGES := \
	nvidia-cuda-nvcc==13.0.88 \
	nvidia-nvvm==13.0.88 \
	nvidia-cuda-runtime==13.0.96 \
	nvidia-cuda-crt==13.0.88 \
	nvidia-cuda-cccl==13.0.85
CUDA_PIP_DIR := .cuda/pip
# Holds the package list it was installed from, so changing a pin reinstalls.
CUDA_PIP_STAMP := $(CUDA_PIP_DIR)/.installed
CUDA_CHECK_ROOT := $(abspath $(CUDA_PIP_DIR))/nvidia/cu13
# With no GPU to ask, the kernels' build scripts need the architecture; 90 is Hopper (H100/H200).
CUDA_CHECK_COMPUTE_CAP ?= 90
# candle's kernels are most of this check's time, and their build uses half the cores by default.
CUDA_CHECK_THREADS ?= $(shell nproc)
CARGO ?= cargo

.PHONY: check-cuda cuda-toolchain

## check-cuda: clippy with `--features oneword-model/cuda` (installs nvcc 13.0 the first time); only what the feature changes is checked again
# The same target directory and the same workspace-wide feature resolution as `make lint`: turning
# CUDA on changes candle's features, so candle, the model and what depends on it (the embedder,
# the decoder, the tests) are checked again, and everything else is what `make lint` left (the
# gateway, the tokenizer and the baseline link no candle at all; see `make deps-check`).
check-cuda: cuda-toolchain
	CUDA_ROOT="$(CUDA_CHECK_ROOT)" \
	CUDAFORGE_THREADS=$(CUDA_CHECK_THREADS) \
	PATH="$(CUDA_CHECK_ROOT)/bin:$$PATH" \
	CUDA_COMPUTE_CAP=$(CUDA_CHECK_COMPUTE_CAP) \
		$(CARGO) clippy --workspace --all-targets --features oneword-model/cuda -- -D warnings

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
