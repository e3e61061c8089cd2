#!/usr/bin/env python3
"""Markdown tables of throughput from examples/scaling's JSON lines, as docs/BENCHMARKS.md
shows them.

    cargo run --release --example scaling -- --runs 3 --seconds 0.5 --json > sweep.jsonl
    python3 benches/scripts/tables.py sweep.jsonl [more.jsonl ...] [--workload "kv 100"]

One table per workload: a row per system and configuration, a column per client thread
count, each cell the median ops/s (in millions) over every file and run given, then the
same cells as a ratio to node-replication measured in the same files. Straggler cells (a
replica or the lock holder paused) get a table of their own."""
import collections
import json
import statistics
import sys

args = sys.argv[1:]
only = None
if "--workload" in args:
    at = args.index("--workload")
    only = args[at + 1]
    del args[at:at + 2]

cells = collections.defaultdict(list)
for path in args:
    for line in open(path):
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        workload = "%s %s%%" % (r["workload"], r["write_pct"])
        if only and not workload.startswith(only):
            continue
        if r["system"] == "corum":
            name = "corum r=%d %s" % (r["replicas"], r["mode"])
        elif r["system"] == "node-replication":
            name = "node-replication r=%d" % r["replicas"]
        else:
            name = r["system"]
        if r.get("paused", "none") != "none":
            name += " (%s paused)" % r["paused"]
        cells[(workload, name, r["threads"])].append(r["ops_per_sec"])

ORDER = ["sequential", "mutex", "rwlock", "node-replication", "corum r=1", "corum r=3", "corum r=5"]


def rank(name):
    for i, prefix in enumerate(ORDER):
        if name.startswith(prefix):
            return (i, name)
    return (len(ORDER), name)


workloads = sorted({w for (w, _, _) in cells}, key=lambda w: (w.split()[0], -int(w.split()[1][:-1])))
for workload in workloads:
    names = sorted({n for (w, n, _) in cells if w == workload}, key=rank)
    threads = sorted({t for (w, _, t) in cells if w == workload})
    median = {(n, t): statistics.median(cells[(workload, n, t)]) for n in names for t in threads if (workload, n, t) in cells}
    print("%s, M ops/s (median of %s)\n" % (workload, "runs" if len(args) == 1 else "runs over %d files" % len(args)))
    print("| system | " + " | ".join("%d threads" % t for t in threads) + " |")
    print("| --- |" + " ---: |" * len(threads))
    for n in names:
        print("| %s | " % n + " | ".join("%.2f" % (median[(n, t)] / 1e6) if (n, t) in median else "" for t in threads) + " |")
    nr = {t: v for (n, t), v in median.items() if n.startswith("node-replication")}
    corum = [n for n in names if n.startswith("corum")]
    if nr and corum:
        print("\n%s, corum / node-replication in the same runs\n" % workload)
        print("| system | " + " | ".join("%d threads" % t for t in threads) + " |")
        print("| --- |" + " ---: |" * len(threads))
        for n in corum:
            print("| %s | " % n + " | ".join("%.2fx" % (median[(n, t)] / nr[t]) if (n, t) in median and t in nr else "" for t in threads) + " |")
    print()
