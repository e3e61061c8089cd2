#!/usr/bin/env python3
"""The cost-per-operation targets (docs/BENCHMARKS.md, "The targets") from runs of the sweep.

Each argument is the --json output of one run of examples/scaling (`--runs 1`), so that
every ratio is taken between cells of the same run; the table gives each ratio's median
over the runs, and its minimum and maximum.

    for i in 1 2 3 4 5; do
        cargo run --release --example scaling -- --runs 1 --seconds 0.5 --json > sweep-$i.jsonl
    done
    python3 benches/scripts/targets.py sweep-*.jsonl
"""

import json
import statistics
import sys


def load(path):
    cells = {}
    with open(path) as lines:
        for line in lines:
            line = line.strip()
            if not line.startswith("{"):
                continue
            m = json.loads(line)
            key = (m["system"], m["workload"], m["write_pct"], m["replicas"], m["threads"], m["mode"], m["paused"])
            cells[key] = m
    return cells


def corum(cells, workload, pct, replicas, threads, mode):
    return cells.get(("corum", workload, pct, replicas, threads, mode, "none"))


def nr(cells, workload, pct, threads):
    return cells.get(("node-replication", workload, pct, min(2, threads), threads, "sync", "none"))


def sequential(cells, workload, pct):
    return cells.get(("sequential", workload, pct, 1, 1, "sync", "none"))


def ratio_to_nr(workload, pct, replicas, threads, mode):
    def measure(cells):
        mine, theirs = corum(cells, workload, pct, replicas, threads, mode), nr(cells, workload, pct, threads)
        if mine is None or theirs is None:
            return None
        return mine["ops_per_sec"] / theirs["ops_per_sec"]

    return measure


def p50_us(workload, pct, replicas, threads, mode):
    def measure(cells):
        mine = corum(cells, workload, pct, replicas, threads, mode)
        return None if mine is None else mine["p50_ns"] / 1000

    return measure


def cpu_per_write_vs_sequential(cells):
    """Time per pipelined write on 1 replica from 1 thread over the sequential object's time
    per operation: an upper bound on the CPU ratio, since the replica's thread runs too."""
    mine, plain = corum(cells, "kv", 100, 1, 1, "pipelined"), sequential(cells, "kv", 100)
    if mine is None or plain is None:
        return None
    return plain["ops_per_sec"] / mine["ops_per_sec"]


TARGETS = [
    ("kv 100 %, pipelined, 3 replicas, 1 thread / NR", ratio_to_nr("kv", 100, 3, 1, "pipelined"), ">= 1.0"),
    ("kv 100 %, pipelined, 3 replicas, 2 threads / NR", ratio_to_nr("kv", 100, 3, 2, "pipelined"), ">= 1.0"),
    ("kv 100 %, pipelined, 1 replica, 1 thread / NR", ratio_to_nr("kv", 100, 1, 1, "pipelined"), ">= 1.0"),
    ("kv 100 %, pipelined, 1 replica, 2 threads / NR", ratio_to_nr("kv", 100, 1, 2, "pipelined"), ">= 1.5"),
    ("kv 100 %, one at a time, 3 replicas, 1 thread / NR", ratio_to_nr("kv", 100, 3, 1, "sync"), ">= 0.3"),
    ("kv 100 %, one at a time, 3 replicas, 1 thread: p50 us", p50_us("kv", 100, 3, 1, "sync"), "<= 0.5"),
    ("kv 10 %, 3 replicas, 2 threads, pipelined / NR", ratio_to_nr("kv", 10, 3, 2, "pipelined"), ">= 1.0"),
    ("kv 10 %, 3 replicas, 2 threads, synchronous / NR", ratio_to_nr("kv", 10, 3, 2, "sync"), ">= 0.5"),
    ("kv 0 %, 1 replica, 2 threads / NR", ratio_to_nr("kv", 0, 1, 2, "sync"), ">= 0.9"),
    ("kv 0 %, 3 replicas, 2 threads / NR", ratio_to_nr("kv", 0, 3, 2, "sync"), ">= 1.0"),
    ("counter 100 %, pipelined, 3 replicas, 1 thread / NR", ratio_to_nr("counter", 100, 3, 1, "pipelined"), ">= 1.0"),
    ("counter 100 %, pipelined, 3 replicas, 2 threads / NR", ratio_to_nr("counter", 100, 3, 2, "pipelined"), ">= 1.0"),
    ("stack 100 %, pipelined, 3 replicas, 1 thread / NR", ratio_to_nr("stack", 100, 3, 1, "pipelined"), ">= 1.0"),
    ("stack 100 %, pipelined, 3 replicas, 2 threads / NR", ratio_to_nr("stack", 100, 3, 2, "pipelined"), ">= 1.0"),
    ("time per pipelined write (1 replica, 1 thread) / sequential op", cpu_per_write_vs_sequential, "<= 2.0"),
]


def holds(value, target):
    op, bound = target.split()
    return value >= float(bound) if op == ">=" else value <= float(bound)


def main(paths):
    runs = [load(path) for path in paths]
    print(f"| target | median of {len(runs)} runs | min | max | goal | status |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    for name, measure, goal in TARGETS:
        values = [v for v in (measure(cells) for cells in runs) if v is not None]
        if not values:
            print(f"| {name} | not measured | | | {goal} | |")
            continue
        median = statistics.median(values)
        if holds(median, goal):
            status = "holds"
        else:
            bound = float(goal.split()[1])
            gap = bound / median if goal.startswith(">=") else median / bound
            status = f"missed by {gap:.2f}x"
        print(f"| {name} | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {goal} | {status} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    main(sys.argv[1:])
