#!/usr/bin/env python3
"""Ratios of two builds' throughput per cell from `alternate.sh`'s output.

    python3 benches/scripts/compare.py pairs.txt OLD NEW

Prints, per cell, both builds' median ops/s, the new/old ratio of each pair, and the
median ratio; then the geometric mean of the cells' median ratios."""
import collections
import json
import math
import statistics
import sys

path, old, new = sys.argv[1:4]
cells = collections.defaultdict(lambda: collections.defaultdict(dict))
for line in open(path):
    binary, pair, record = line.split(" ", 2)
    r = json.loads(record)
    key = (r["workload"], r["write_pct"], r["system"], r["replicas"], r["threads"], r["mode"], r["paused"])
    cells[key][binary][pair] = r["ops_per_sec"]
medians = []
for key in sorted(cells):
    o, n = cells[key][old], cells[key][new]
    ratios = [n[p] / o[p] for p in o if p in n]
    if not ratios:
        continue
    median = statistics.median(ratios)
    medians.append(median)
    name = "%s %s%% %s r=%s t=%s %s %s" % key
    print("%-45s old %6.2f M new %6.2f M  pairs %s  median %.2f" % (
        name, statistics.median(o.values()) / 1e6, statistics.median(n.values()) / 1e6,
        " ".join("%.2f" % x for x in ratios), median))
if medians:
    print("cells %d, geometric mean of medians %.3f" % (len(medians), math.exp(sum(map(math.log, medians)) / len(medians))))
