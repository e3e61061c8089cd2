#!/bin/bash
# Run from the repository root with OUT set to an empty folder for the results, after
# copying stripped release builds into .device/: scaling_old (examples/scaling built at
# ff41128), scaling_new and faults_new (examples/scaling and examples/faults of this build).
# tables.py beside this file turns the results into BENCHMARKS.md's tables.
# Alternating pairs on the cells where the first 16-core sweep of 2026-12-04 left a doubt:
# reads (kv 0 %, every system) and one pipelined client (t=1), the build before the
# work-conserving runtime (ff41128) against the current one.
D=$PWD/.device
LIMIT=${LIMIT:-170}
START=$(date +%s)
one() { # name only-text binary
  local elapsed=$(( $(date +%s) - START ))
  if (( elapsed + 20 > LIMIT )); then echo "skip $1 at $elapsed" >> $OUT/log; return; fi
  $3 --runs 1 --seconds 0.25 --json --only "$2" >> $OUT/$1.jsonl 2>/dev/null
  echo "$1 done at $(( $(date +%s) - START )) s" >> $OUT/log
}
for pair in 1 2 3 4 5; do
  if (( pair % 2 )); then a=old; b=new; else a=new; b=old; fi
  one read_$a "kv 0%" $D/scaling_$a
  one read_$b "kv 0%" $D/scaling_$b
  one t1_$a "t=1 pipelined" $D/scaling_$a
  one t1_$b "t=1 pipelined" $D/scaling_$b
done
