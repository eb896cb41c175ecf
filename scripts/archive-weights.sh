#!/usr/bin/env bash
# Writes every shipped cw weights set that this version of lic runs (weights/shipped.csv,
# "yes") from the repository's history into DIR (default weights/archive, which lic searches
# when built from this checkout), as cw-ID.safetensors, checking each file's id.
# usage: scripts/archive-weights.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-weights/archive}"
mkdir -p "$dir"
grep -v '^#' weights/shipped.csv | while IFS=, read -r id date commit channels runs; do
    [ "$runs" = yes ] || continue
    out="$dir/cw-$id.safetensors"
    if [ ! -s "$out" ]; then
        git show "$commit:weights/cw.safetensors" > "$out.tmp"
        mv "$out.tmp" "$out"
    fi
    got=$(sha256sum "$out" | cut -c1-16)
    if [ "$got" != "$id" ]; then
        echo "archive-weights: $out holds weights $got, not $id" >&2
        exit 1
    fi
    echo "$out ($date, $commit)"
done
