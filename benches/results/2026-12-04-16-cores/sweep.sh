#!/bin/bash
# Run from the repository root with OUT set to an empty folder for the results, after
# copying stripped release builds into .device/: scaling_old (examples/scaling built at
# ff41128), scaling_new and faults_new (examples/scaling and examples/faults of this build).
# tables.py beside this file turns the results into BENCHMARKS.md's tables.
# The 16-core sweep: the build before the work-conserving runtime (ff41128) and the current
# build in alternating full sweeps, the leadership section of the faults example, then the
# current build with IdleStrategy::Spin and without helping. Each step is skipped when too
# little of the limit is left for it.
D=$PWD/.device
L=$OUT/log
ARGS=${ARGS:---runs 1 --seconds 0.25 --json}
LIMIT=${LIMIT:-540}
START=$(date +%s)
{ date -u; nproc; lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|NUMA node|MHz"; } > $L 2>&1
step() {
  local name=$1 need=$2; shift 2
  local elapsed=$(( $(date +%s) - START ))
  if (( elapsed + need > LIMIT )); then echo "== $name skipped at ${elapsed} s" >> $L; return; fi
  echo "== $name start at ${elapsed} s" >> $L
  mkdir -p /tmp/w/$name
  (cd /tmp/w/$name && timeout $(( LIMIT - elapsed )) env "$@" $ARGS) > $OUT/$name.jsonl 2> /tmp/w/$name.err
  echo "== $name rc $? took $(( $(date +%s) - START - elapsed )) s" >> $L
  tail -2 /tmp/w/$name.err >> $L
}
step old1 90 $D/scaling_old
step new1 90 $D/scaling_new
echo "== faults --leadership at $(( $(date +%s) - START )) s" >> $L
timeout 60 $D/faults_new --leadership >> $L 2>&1
step new2 90 $D/scaling_new
step old2 90 $D/scaling_old
step spin 90 CORUM_BENCH_IDLE=spin $D/scaling_new
step nohelp 90 CORUM_BENCH_HELP=0 $D/scaling_new
(cd /tmp/w && tar czf $OUT/svg.tgz */scaling.svg) 2>> $L
echo "== done at $(( $(date +%s) - START )) s" >> $L
