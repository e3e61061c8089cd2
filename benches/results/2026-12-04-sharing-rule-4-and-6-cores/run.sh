#!/bin/bash
# The sharing rule (cores <= replicas + 1) on 4 and 6 cores (taskset), old rule vs new,
# 3 alternating pairs; one JSON line per measurement, prefixed "CORES BUILD PAIR".
D=$PWD/.device
LIMIT=${LIMIT:-200}
START=$(date +%s)
one() { # cores only build pair
  local elapsed=$(( $(date +%s) - START ))
  if (( elapsed + 10 > LIMIT )); then echo "skip $* at $elapsed" >> $OUT/log; return; fi
  taskset -c 0-$(( $1 - 1 )) $D/scaling_$3 --runs 1 --seconds 0.25 --json --only "$2" 2>>$OUT/stderr | sed "s/^/$1 $3 $4 /" >> $OUT/all.txt
}
nproc >> $OUT/log
one 4 "kv 100% mutex" old 0
one 4 "kv 10% rwlock" old 0
one 6 "kv 100% mutex" old 0
for pair in 1 2 3; do
  if (( pair % 2 )); then order="old new"; else order="new old"; fi
  for b in $order; do
    one 4 "kv 100% corum r=3" $b $pair
    one 4 "kv 10% corum r=3" $b $pair
    one 4 "kv 0% corum r=3" $b $pair
    one 6 "kv 100% corum r=5" $b $pair
  done
done
echo "done at $(( $(date +%s) - START ))" >> $OUT/log
