#!/usr/bin/env bash
# Makes the CUDA libraries from PyPI linkable: candle links cuBLAS, cuBLASLt, cuRAND, NVRTC, the
# runtime (for its MoE kernels) and the driver (cudarc's `dynamic-linking`), and the linker looks
# for unversioned names (libcublas.so) that the wheels do not ship, and for a libcuda.so that
# only a driver install has. So, in ROOT/lib/stubs (a directory cudarc's build script searches
# under CUDA_ROOT):
#  - libX.so links to the wheels' ROOT/lib/libX.so.N;
#  - libcuda.so is a stub whose soname is the driver's (libcuda.so.1) and which defines every
#    driver function cudarc can call, as NVIDIA's own link stub does. At run time the real
#    driver's libcuda.so.1 is loaded instead; the stub is never on a library path.
# Usage: deploy/cuda-libs.sh ROOT CUDARC_SOURCE_DIR
set -euo pipefail

ROOT=$1
CUDARC=$2
STUBS="$ROOT/lib/stubs"
mkdir -p "$STUBS"
for lib in cublas cublasLt curand nvrtc cudart; do
    versioned=$(cd "$ROOT/lib" && ls "lib$lib.so."* | grep -E "^lib$lib\.so\.[0-9]+$" | head -1)
    [ -n "$versioned" ] || { echo "cuda-libs: no lib$lib.so.N in $ROOT/lib" >&2; exit 1; }
    ln -sf "../$versioned" "$STUBS/lib$lib.so"
done

symbols=$(grep -ohE 'pub unsafe fn cu[A-Za-z0-9_]+' "$CUDARC/src/driver/sys/mod.rs" |
    sed 's/.* //' | sort -u)
[ -n "$symbols" ] || { echo "cuda-libs: no driver functions found under $CUDARC" >&2; exit 1; }
source=$(mktemp --suffix .c)
trap 'rm -f "$source"' EXIT
for s in $symbols; do echo "void $s(void) {}"; done > "$source"
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$STUBS/libcuda.so" "$source"
echo "cuda-libs: $(echo "$symbols" | wc -l) driver functions stubbed in $STUBS/libcuda.so" >&2
