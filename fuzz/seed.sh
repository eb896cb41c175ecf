#!/usr/bin/env bash
# Seeds the fuzz corpora from the golden vectors: as they are for `container` and `entropy`,
# and behind a mode byte (0: CRCs as they are, 1: CRCs repaired) for `decode`; `crafted`
# from its regression inputs.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/container corpus/decode corpus/entropy corpus/crafted
# crafted takes fields, not files: its regression inputs seed it.
for f in ../tests/fuzz-regressions/crafted/*; do
    case "$f" in *.md) ;; *) cp "$f" corpus/crafted/ ;; esac
done
for f in ../format-spec/golden/*.lic; do
    n=$(basename "$f" .lic)
    cp "$f" "corpus/container/$n"
    cp "$f" "corpus/entropy/$n"
    { printf '\x00'; cat "$f"; } > "corpus/decode/$n-0"
    { printf '\x01'; cat "$f"; } > "corpus/decode/$n-1"
done
# rnn files made with the decode check's fixed rnn weights (fixed, so the seeds outlive rnn weights updates).
(cd .. && cargo test --release --test fuzz_regressions -- --ignored write_rnn_seeds)
