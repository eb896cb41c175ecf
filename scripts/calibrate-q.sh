#!/usr/bin/env bash
# Fits lic's -q scale (lic_format::rate::CW_RATE_KNOTS) for the shipped cw weights on 24
# colour photographs of the training set (every 10th colour, non-SIPI image by name; never
# Kodak), and writes kodak-bench/results/calibration.md with the table and the constant.
# Usage: scripts/calibrate-q.sh [TRAIN_DIR] [extra kodak-bench flags, e.g. --weights F]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
train=${1:-$root/../shared/data/train}
shift || true
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$train" "$dir" <<'PY'
import csv, os, sys
train, out = sys.argv[1], sys.argv[2]
rows = [r for r in csv.DictReader(open(os.path.join(train, "PROVENANCE.csv")))
        if r["grey"] == "0" and r["source_group"] != "sipi"]
rows.sort(key=lambda r: r["file"])
for r in rows[:: len(rows) // 24][:24]:
    os.symlink(os.path.abspath(os.path.join(train, r["file"])), os.path.join(out, r["file"]))
PY
cd "$root"
cargo build --release -p kodak-bench
out=$(mktemp -d)
target/release/kodak-bench "$dir" --calibrate --calibrate-points 25 --out "$out" "$@"
sed "s#$dir#TRAIN_PHOTOS#" "$out/calibration.md" > kodak-bench/results/calibration.md
cp "$out/calibration.csv" kodak-bench/results/calibration.csv
echo "wrote kodak-bench/results/calibration.{md,csv}; paste the constant into crates/lic-format/src/rate.rs"
echo "(another margin without measuring again: kodak-bench --refit kodak-bench/results/calibration.csv --margin-db M)"
