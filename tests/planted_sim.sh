#!/usr/bin/env bash
# Shows that the simulator's checks have teeth: for each planted protocol bug, builds corum
# with it (`CORUM_PLANT=NAME`, see build.rs and the `corum_plant` cfgs in src/) and runs the
# sweep until a seed fails (`tests/sim.rs::planted_bug_is_caught`), printing how many seeds
# that took and what the checkers saw. Exits non-zero if a bug survives 10,000 seeds.
# Run from anywhere: `bash tests/planted_sim.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."

plants=(
    accept-below-promise
    ignore-accepted-values
    quorum-too-small
    commit-without-majority
    skip-noop-fill
    skip-dedup
    floor-word-off-by-one
    recover-first-value
    ballot-round-only
    leader-keeps-leading
    volatile-promise
    handover-skips-phase-1
    sparse-log-drops-last
    snapshot-drops-exactly-once
    floor-skips-in-flight
    watermark-after-apply
    put-off-slots-dropped
    read-one-short
    read-moves-without-watermark
    read-watermark-applied
    board-idle-post-unlisted
)

survived=0
for plant in "${plants[@]}"; do
    log=$(mktemp)
    CORUM_PLANT="$plant" CARGO_TARGET_DIR=target/plant-sim \
        cargo test -q --release --test sim -- --exact planted_bug_is_caught --nocapture >"$log" 2>&1
    if grep -q "^planted bug caught" "$log"; then
        echo "$plant: $(grep -m1 '^planted bug caught' "$log" | cut -c 1-220)"
    else
        echo "$plant: NOT CAUGHT"
        grep -E "survived|error" "$log" | head -n 5
        survived=1
    fi
    rm -f "$log"
done
exit $survived
