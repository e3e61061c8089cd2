#!/usr/bin/env bash
# The scaling sweep on a lent many-core machine, within its time limit: full sweeps of two
# builds of examples/scaling in alternation (old, new, new, old), then the new build with
# IdleStrategy::Spin and without helping, each step skipped when too little of the limit is
# left for it. Results are JSON lines in $OUT (one file per step) and a log.
#
#   OLD=/path/to/old/scaling NEW=/path/to/new/scaling OUT=/some/empty/dir LIMIT=540 \
#       bash benches/scripts/device-sweep.sh
#   python3 benches/scripts/tables.py $OUT/new1.jsonl $OUT/new2.jsonl   # the new build's tables
#   python3 benches/scripts/tables.py $OUT/old1.jsonl $OUT/old2.jsonl   # the old build's
#
# ARGS overrides the sweep's arguments (default: one run of 0.25 s per cell).
set -uo pipefail
: "${OLD:?the old build of examples/scaling}" "${NEW:?the new build}" "${OUT:?a folder for the results}"
ARGS=${ARGS:---runs 1 --seconds 0.25 --json}
LIMIT=${LIMIT:-540}
START=$(date +%s)
LOG=$OUT/log
{ date -u; nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node"; } > "$LOG" 2>&1
step() {
    local name=$1 need=$2; shift 2
    local elapsed=$(( $(date +%s) - START ))
    if (( elapsed + need > LIMIT )); then echo "== $name skipped at ${elapsed} s" >> "$LOG"; return; fi
    echo "== $name started at ${elapsed} s" >> "$LOG"
    mkdir -p "/tmp/device-sweep/$name"
    # shellcheck disable=SC2086 # ARGS is a list of arguments
    (cd "/tmp/device-sweep/$name" && timeout $(( LIMIT - elapsed )) env "$@" $ARGS) > "$OUT/$name.jsonl" 2>> "$LOG"
    echo "== $name ended with $? after $(( $(date +%s) - START - elapsed )) s" >> "$LOG"
}
step old1 90 "$OLD"
step new1 90 "$NEW"
step new2 90 "$NEW"
step old2 90 "$OLD"
step spin 90 CORUM_BENCH_IDLE=spin "$NEW"
step nohelp 90 CORUM_BENCH_HELP=0 "$NEW"
echo "== done at $(( $(date +%s) - START )) s" >> "$LOG"
