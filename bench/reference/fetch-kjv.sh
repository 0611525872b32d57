#!/usr/bin/env bash
# The whole King James text, one verse a line (31,102 verses, ~790k words), for the search
# bench's 1M-vector set: the bundled corpus (crates/ngram/corpus/kjv.txt) holds only four books.
# It comes from the same Debian packages as that file (see its README), unpacked with dpkg -x
# into WORK (no root, nothing installed); the `bible` program decodes its compressed text.
# Prints the file's path.
set -euo pipefail

WORK=${1:-bench/.work}
mkdir -p "$WORK/kjv"
DIR=$(cd "$WORK/kjv" && pwd)
OUT=$DIR/kjv-full.txt
if [ ! -s "$OUT" ]; then
    (cd "$DIR" && apt-get download bible-kjv bible-kjv-text >&2) || {
        echo "bench: apt-get download bible-kjv bible-kjv-text failed (run apt-get update?)" >&2
        exit 1
    }
    for deb in "$DIR"/bible-kjv*.deb; do dpkg -x "$deb" "$DIR/root"; done
    "$DIR/root/usr/bin/bible" -p "$DIR/root/usr/lib" -f Gen1:1-Rev22:21 </dev/null |
        sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' >"$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
