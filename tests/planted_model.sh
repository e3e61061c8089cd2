#!/usr/bin/env bash
# Shows that the deep model check has teeth: for each planted protocol bug, builds corum with
# it (`CORUM_PLANT=NAME`, see build.rs and the `corum_plant` cfgs in src/) and runs the deep
# model (`tests/model_deep.rs`) until it reaches an unsafe state, printing how many actions
# the counterexample takes and how long the search ran. Exits non-zero if a bug survives.
# Run from anywhere: `bash tests/planted_model.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."

# plant : test (the narrowest model that reaches it)
plants=(
    accept-below-promise:elections_and_deliveries
    ignore-accepted-values:elections_and_deliveries
    quorum-too-small:elections_and_deliveries
    commit-without-majority:elections_and_deliveries
    recover-first-value:elections_and_deliveries
    ballot-round-only:elections_and_deliveries
    leader-keeps-leading:elections_and_deliveries
    volatile-promise:elections_deliveries_and_a_restart
)

survived=0
for entry in "${plants[@]}"; do
    IFS=: read -r plant test <<<"$entry"
    log=$(mktemp)
    started=$(date +%s)
    CORUM_PLANT="$plant" CARGO_TARGET_DIR=target/plant-sim \
        cargo test -q --release --test model_deep -- --exact "$test" --nocapture >"$log" 2>&1
    seconds=$(( $(date +%s) - started ))
    if grep -q "^model .* unsafe after [0-9]* actions" "$log"; then
        states=$(grep -m1 -o "[0-9]* states" "$log")
        echo "$plant: caught by $test in ${seconds}s ($states): $(grep -m1 '^model ' "$log" | cut -c 1-240)"
    else
        echo "$plant: NOT CAUGHT by $test"
        grep -E "deep model|error" "$log" | head -n 5
        survived=1
    fi
    rm -f "$log"
done
exit $survived
