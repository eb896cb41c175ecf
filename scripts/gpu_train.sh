#!/usr/bin/env bash
# Trains cw on a lent GPU machine (no Rust toolchain there) for a fixed wall-clock budget.
#
# Prepare here:
#   1. the CUDA binary: see shared notes (CUDA 13.0 from PyPI, link stubs), then
#      CARGO_TARGET_DIR=target-cuda cargo build --release -p lic-train --features cuda
#      xz -T2 -6 -c target-cuda/release/lic-train > gpu-data/lic-train.xz
#   2. the data: python3 scripts/pack_crops.py ../shared/data/train gpu-data/crops 3 256 92
#   3. optionally a starting checkpoint: gpu-data/init.safetensors (e.g. the shipped
#      weights/cw.safetensors); without one the run starts from the PCA transform code
# Run there with carry = [gpu-data]:  bash scripts/gpu_train.sh MINUTES BATCH PATCH LR
# Checkpoints (every minute) and train.log land in $OUT/cw.
# The rnn model: MODEL=rnn bash scripts/gpu_train.sh 6 32 64 5e-4 (starting point
# gpu-data/init-rnn.safetensors if present, else random; output in $OUT/rnn).
set -u
MIN=${1:-8}; BATCH=${2:-16}; PATCH=${3:-256}; LR=${4:-2e-4}; MODEL=${MODEL:-cw}
LIB=$(dirname "$(find / -name 'libcublas.so.13' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}"
nvidia-smi -L
xz -dc gpu-data/lic-train.xz > /tmp/lic-train && chmod +x /tmp/lic-train
mkdir -p "$OUT/$MODEL"
if [ "$MODEL" = rnn ]; then
  INIT=()
  [ -f gpu-data/init-rnn.safetensors ] && INIT=(--init gpu-data/init-rnn.safetensors)
else
  INIT=(--pca-init)
  [ -f gpu-data/init.safetensors ] && INIT=(--init gpu-data/init.safetensors)
fi
# mimalloc keeps freed pages instead of returning them (the kernel re-zeroing them cost a
# quarter of CPU training time).
export MIMALLOC_PURGE_DELAY=-1
/tmp/lic-train train --model "$MODEL" --cuda --data gpu-data/crops --out "$OUT/$MODEL" "${INIT[@]}" --minutes "$MIN" \
  --batch "$BATCH" --patch "$PATCH" --lr "$LR" --ckpt-minutes 1 --val-every 2000 --warmup 0 --log-every 100 2>&1 | tr '\r' '\n' | tail -5
cat "$OUT/$MODEL/train.log"
