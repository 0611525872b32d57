#!/usr/bin/env bash
# Installs the reference systems of the search benchmark (`make bench-search`) into WORK (default
# bench/.work), once, into the same venv as `setup.sh`'s (PyTorch is shared):
#  - sentence-transformers (the reference MiniLM encoder, on PyTorch),
#  - FAISS (`faiss-cpu`, the exact IndexFlatIP),
#  - hnswlib (an sdist: compiled here with g++, for this machine),
# all pinned, from PyPI. Set BENCH_SEARCH_PYTHON to a Python that already has them to skip this.
set -euo pipefail

WORK=${1:-bench/.work}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
[ -n "${BENCH_SEARCH_PYTHON:-}" ] && exit 0
if [ ! -f "$WORK/venv/installed-search" ]; then
    echo "bench: installing the search reference systems into $WORK/venv" >&2
    [ -x "$WORK/venv/bin/python" ] || python3 -m venv "$WORK/venv"
    # The versions setup.sh pins for the same packages, so that either script may come first.
    "$WORK/venv/bin/pip" install --quiet torch==2.15.0 transformers==5.24.0 safetensors==0.8.0 \
        numpy==2.4.6 sentence-transformers==6.2.0 faiss-cpu==1.15.1
    # hnswlib ships only a source package; it builds against the numpy above, with g++ and
    # Python's headers (Debian: g++, python3-dev).
    command -v g++ >/dev/null || { echo "bench: hnswlib needs g++ (apt-get install g++)" >&2; exit 1; }
    python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' ||
        { echo "bench: hnswlib needs Python's headers (apt-get install python3-dev)" >&2; exit 1; }
    "$WORK/venv/bin/pip" install --quiet pybind11 setuptools wheel
    nice -n 10 "$WORK/venv/bin/pip" install --quiet --no-build-isolation hnswlib==0.8.0
    touch "$WORK/venv/installed-search"
fi
