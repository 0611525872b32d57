# `make check-cuda`: type-check the CUDA build on a machine with no GPU and no CUDA toolkit.
#
# Included from the top-level Makefile. It installs NVIDIA's CUDA 13.0 compiler from PyPI into
# .cuda/pip (once, and again only when the pins below change) and runs `cargo check` with the
# `cuda` features on. That builds candle's kernels with nvcc and checks our CUDA-gated code and
# feature wiring without a GPU. Linking needs the CUDA libraries (libcuda, cuBLAS, cuRAND, NVRTC),
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
# Its own target dir: turning `cuda` on changes candle's features, and sharing `target` would make
# the normal build recompile candle after every `make check-cuda`, and the other way round.
CUDA_CHECK_TARGET_DIR ?= target/cuda
CARGO ?= cargo

.PHONY: check-cuda cuda-toolchain

# The crates the `cuda` feature changes: the model and the two services that compute with it.
# Everything else links no candle (`make deps-check`), so checking it again with CUDA on would
# only repeat `make lint`.
CUDA_CRATES := oneword-model oneword-embedder oneword-decoder

## check-cuda: cargo check the crates that compute with tensors, with `--features cuda` (installs nvcc 13.0 the first time)
check-cuda: cuda-toolchain
	CUDA_ROOT="$(CUDA_CHECK_ROOT)" \
	PATH="$(CUDA_CHECK_ROOT)/bin:$$PATH" \
	CUDA_COMPUTE_CAP=$(CUDA_CHECK_COMPUTE_CAP) \
	CARGO_TARGET_DIR=$(CUDA_CHECK_TARGET_DIR) \
		$(CARGO) check --features cuda $(addprefix -p ,$(CUDA_CRATES))

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
