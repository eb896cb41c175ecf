#!/usr/bin/env bash
# A short fuzz run of every target (fuzz/): installs cargo-fuzz if it is missing, seeds the
# corpora, then runs each target for SECONDS (default 60) with libFuzzer. A crash, a
# timeout (an input over 20 s) or an out-of-memory (over 2 GiB) fails the script and leaves
# the input in fuzz/artifacts/<target>/.
#
# cargo-fuzz needs unstable compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them, so a machine with only stable Rust (CI) can run it. Without a sanitizer the
# build is quicker and the targets run faster; memory errors in safe Rust are not what
# this looks for (there is no unsafe code in the decoder).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-60}"
# FUZZ_SEED fixes libFuzzer's seed (CI sets it): on the seed corpus of a fresh checkout the
# mutations are then the same on every run, and a run gets as far as its time allows.
SEED_ARGS=()
if [ -n "${FUZZ_SEED:-}" ]; then
    SEED_ARGS=(-seed="$FUZZ_SEED")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
fuzz/seed.sh >/dev/null
cd fuzz
for t in container entropy decode crafted; do
    cargo fuzz build -O --sanitizer none "$t"
done
for t in container entropy decode crafted; do
    echo "fuzz smoke: $t for ${SECONDS_PER_TARGET}s"
    mkdir -p "corpus/$t"
    rc=0
    cargo fuzz run -O --sanitizer none "$t" -- -max_total_time="$SECONDS_PER_TARGET" \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 ${SEED_ARGS[@]+"${SEED_ARGS[@]}"} \
        >"/tmp/fuzz-smoke-$t.log" 2>&1 || rc=$?
    grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|SUMMARY|==[0-9]+== ERROR)|Test unit written" \
        "/tmp/fuzz-smoke-$t.log" || true
    if [ "$rc" -ne 0 ]; then
        tail -40 "/tmp/fuzz-smoke-$t.log" >&2
        echo "fuzz smoke: $t failed (exit $rc); the input is in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
