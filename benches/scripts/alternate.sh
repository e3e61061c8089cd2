#!/usr/bin/env bash
# Alternating runs of two builds of examples/scaling on the same cells, for a change made
# for speed (or one that must not cost any): old, new, new, old, ... so that both meet the
# same phases of a noisy machine. Prints one JSON line per measurement, prefixed with the
# binary's name and the pair's number; `benches/scripts/compare.py` turns it into ratios.
#
#   cargo build --release --example scaling && cp target/release/examples/scaling /tmp/new
#   (the same at the old commit into /tmp/old)
#   bash benches/scripts/alternate.sh /tmp/old /tmp/new "kv 100% corum" 3 > pairs.txt
#   python3 benches/scripts/compare.py pairs.txt /tmp/old /tmp/new
set -euo pipefail
old=$1 new=$2 only=$3 pairs=${4:-3} seconds=${SECONDS_PER_CELL:-0.5}
for pair in $(seq 1 "$pairs"); do
    if (( pair % 2 )); then order="$old $new"; else order="$new $old"; fi
    for binary in $order; do
        "$binary" --only "$only" --runs 1 --seconds "$seconds" --json 2>/dev/null | sed "s|^|$binary $pair |"
    done
done
