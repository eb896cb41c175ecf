#!/usr/bin/env bash
# One prepared run on a lent GPU machine (no Rust toolchain there): cw and rnn trained side
# by side on the one GPU for MINUTES of wall clock (both together kept an H200 98 % busy),
# then their checkpoints packed into $OUT as pieces of at most 15 MB (what comes back from
# that machine is at most 8 files of 16 MiB).
#
# Prepare here, in gpu-data/ (ignored by git; the run carries it, 64 MiB in all):
#   1. the CUDA binary (../shared/notes/CUDA_BUILD.md: CUDA 13.0 from PyPI, link stubs), then
#      CARGO_TARGET_DIR=target-cuda cargo build --release -p lic-train --features cuda
#      xz -T2 -6 -c target-cuda/release/lic-train > gpu-data/lic-train.xz
#   2. the data: python3 scripts/pack_crops.py ../shared/data/train gpu-data/crops 3 256 92
#      (needs Pillow: pip install pillow)
#   3. the starting points: gpu-data/cw/ckpt.safetensors + step.txt (a cw checkpoint, e.g.
#      ~/.cache/lic/RUN's) or gpu-data/init.safetensors (any cw weights file); the same for
#      rnn in gpu-data/rnn/ or gpu-data/init-rnn.safetensors. A model with neither starts
#      fresh (cw from the PCA transform code, rnn from random weights).
# There (the device tool's run, carry ["gpu-data"], timeout 600):
#      bash scripts/gpu_train.sh 7
# It first times both ways of running convolutions for PROBE seconds each (default 30; 0
# skips it and keeps candle's conv2d) and trains each model with the faster (probe.txt).
# Back here: cat FILES/res.tar.xz.* | xz -dc | tar x -C ~/.cache/lic/gpu, then export,
# refit the post-filter and check as weights/README.md describes before shipping.
#
# Test the whole script here first, on the CPU and a small budget (no crops needed):
#      CPU=1 PROBE=10 OUT=/tmp/gpu-out bash scripts/gpu_train.sh 1
#
# Per-model settings can be overridden with CW_ARGS / RNN_ARGS.
set -u
MIN=${1:-7}
: "${OUT:?OUT must name the folder for the results}"
cd "$(dirname "$0")/.."
CW_ARGS=${CW_ARGS:---batch 32 --patch 192 --lr 3e-5 --ste --ema 0.998 --warmup 0}
RNN_ARGS=${RNN_ARGS:---batch 32 --patch 64 --lr 5e-4 --warmup 0}
WORK=${WORK:-/tmp/gpu-train}
rm -rf "$WORK" && mkdir -p "$WORK/cw" "$WORK/rnn" "$OUT"
if [ "${CPU:-0}" = 1 ]; then
  BIN=target/release/lic-train DEV=()
  [ -x "$BIN" ] || cargo build --release -p lic-train
  DATA=gpu-data/crops; [ -d "$DATA" ] || DATA=../shared/data/train
else
  LIB=$(dirname "$(find / -name 'libcublas.so.13' -not -path '/proc/*' 2>/dev/null | head -1)")
  export LD_LIBRARY_PATH="$LIB:${LD_LIBRARY_PATH:-}"
  echo "cublas in $LIB"; nvidia-smi -L
  BIN=$WORK/lic-train DEV=(--cuda)
  xz -dc gpu-data/lic-train.xz > "$BIN" && chmod +x "$BIN"
  DATA=gpu-data/crops
fi
# mimalloc keeps freed pages instead of returning them (the kernel re-zeroing them cost a
# quarter of CPU training time).
export MIMALLOC_PURGE_DELAY=-1

# A checkpoint in gpu-data/MODEL resumes (step count and all); else --init FILE; else fresh.
start() {
  local model=$1 init=$2 fresh=$3
  if [ -f "gpu-data/$model/ckpt.safetensors" ]; then
    cp gpu-data/$model/* "$WORK/$model/"; echo ""
  elif [ -f "$init" ]; then echo "--init $init"
  else echo "$fresh"; fi
}
CW_START=$(start cw gpu-data/init.safetensors --pca-init)
RNN_START=$(start rnn gpu-data/init-rnn.safetensors "")
run() {
  local model=$1 minutes=$2; shift 2
  # shellcheck disable=SC2068
  "$BIN" train --model "$model" "${DEV[@]}" --data "$DATA" --out "$WORK/$model" $@ \
    --minutes "$minutes" --ckpt-minutes 2 --val-every 500 --log-every 100 \
    > "$WORK/$model/stdout.txt" 2>&1
  echo "$model rc $?" >> "$WORK/$model/stdout.txt"
}
# Which convolution trains faster on this GPU, per model: candle's conv2d (its backward runs
# conv_transpose2d and a conv2d with a picture-sized kernel) or im2col by copies and a matmul
# (`--gpu-conv unfolded`). Both models side by side, as in the run, PROBE seconds each way;
# steps per second from the first and last logged steps (validation excluded).
rate() {
  awk '/^step /{for(i=1;i<NF;i++) if($i=="t"){t=$(i+1); sub("s","",t); t+=0}
       if(n++==0){s0=$2; t0=t}; s1=$2; t1=t}
       END{if(t1>t0) printf "%.3f\n", (s1-s0)/(t1-t0); else print 0}' "$1"
}
probe() {
  local kind=$1 m pids=()
  for m in cw rnn; do
    local dir=$WORK/probe-$kind/$m start args
    mkdir -p "$dir"; cp "$WORK/$m"/* "$dir/" 2>/dev/null; rm -f "$dir/train.log"
    if [ $m = cw ]; then start=$CW_START args=$CW_ARGS; else start=$RNN_START args=$RNN_ARGS; fi
    # shellcheck disable=SC2086
    "$BIN" train --model $m "${DEV[@]}" --data "$DATA" --out "$dir" $start $args \
      --gpu-conv "$kind" --minutes "$(awk "BEGIN{print $PROBE/60}")" --val-every 1000000 \
      --log-every 5 > "$dir/stdout.txt" 2>&1 &
    pids+=($!)
  done
  wait "${pids[@]}"
  for m in cw rnn; do echo "$m $kind $(rate "$WORK/probe-$kind/$m/train.log")"; done
}
PROBE=${PROBE:-30}
CW_CONV=native RNN_CONV=native
if [ "$PROBE" != 0 ]; then
  probe native > "$WORK/probe.txt"; probe unfolded >> "$WORK/probe.txt"
  cat "$WORK/probe.txt"; cp "$WORK/probe.txt" "$OUT/"
  pick() { awk -v m="$1" '$1==m{r[$2]=$3} END{print (r["unfolded"]>r["native"]) ? "unfolded" : "native"}' "$WORK/probe.txt"; }
  CW_CONV=$(pick cw) RNN_CONV=$(pick rnn)
  echo "steps/s above; cw trains with $CW_CONV, rnn with $RNN_CONV convolutions"
fi
# shellcheck disable=SC2086
run cw "$MIN" $CW_START $CW_ARGS --gpu-conv $CW_CONV & P1=$!
# shellcheck disable=SC2086
run rnn "$MIN" $RNN_START $RNN_ARGS --gpu-conv $RNN_CONV & P2=$!
[ "${CPU:-0}" = 1 ] || { sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv; }
wait $P1 $P2
for m in cw rnn; do
  echo "== $m"; tr '\r' '\n' < "$WORK/$m/stdout.txt" | grep -v '^\s*$' | tail -3
  tail -n 30 "$WORK/$m/train.log"; cp "$WORK/$m/train.log" "$OUT/$m-train.log"
done
# The f32 checkpoints (to resume from) and cw's weight average (to export), xz-packed.
(cd "$WORK" && tar cf - cw/ckpt.safetensors cw/ema.safetensors cw/step.txt \
   rnn/ckpt.safetensors rnn/step.txt) | xz -T0 -1 > "$WORK/res.tar.xz"
split -b 15M -d "$WORK/res.tar.xz" "$OUT/res.tar.xz."
ls -la "$OUT"
