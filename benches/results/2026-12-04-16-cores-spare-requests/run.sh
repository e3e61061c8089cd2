#!/bin/bash
# A/B/C on 16 cores: base (21b5ef5), new (spare requests), new with CORUM_EXP_SHARED=1
# (clients run every round; replica threads never spin or get woken by clients).
D=$PWD/.device
LIMIT=${LIMIT:-300}
START=$(date +%s)
one() { # name only-text binary env
  local elapsed=$(( $(date +%s) - START ))
  if (( elapsed + 15 > LIMIT )); then echo "skip $1 at $elapsed" >> $OUT/log; return; fi
  env $4 $3 --runs 1 --seconds 0.25 --json --only "$2" >> $OUT/$1.jsonl 2>>$OUT/stderr
  echo "$1 done at $(( $(date +%s) - START )) s" >> $OUT/log
}
nproc >> $OUT/log
one base_mutex "kv 100% mutex" $D/scaling_base X=1
one base_nr "kv 100% node" $D/scaling_base X=1
one base_rw "kv 10% rwlock" $D/scaling_base X=1
for pair in 1 2 3; do
  case $pair in 1) order="a b c";; 2) order="c a b";; 3) order="b c a";; esac
  for w in "kv 100% corum" "kv 10% corum"; do
    tag=$(echo $w | cut -c4-6 | tr -d ' %')
    for v in $order; do
      case $v in
        a) one "w${tag}_base" "$w" $D/scaling_base X=1;;
        b) one "w${tag}_new" "$w" $D/scaling_new X=1;;
        c) one "w${tag}_exp" "$w" $D/scaling_new CORUM_EXP_SHARED=1;;
      esac
    done
  done
done
