#!/bin/bash
# usage: ab2.sh OLD NEW ONLY PAIRS OUT
old=$1; new=$2; only=$3; pairs=$4; out=$5; : > $out
for p in $(seq 1 $pairs); do
  if (( p % 2 )); then order="$old $new"; else order="$new $old"; fi
  for b in $order; do ./$b --only "$only" --runs 1 --seconds 0.5 --json 2>/dev/null | sed "s/^/$b $p /" >> $out; done
done
