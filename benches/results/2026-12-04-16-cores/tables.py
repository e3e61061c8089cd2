#!/usr/bin/env python3
"""BENCHMARKS.md's 16-core tables of 2026-12-04 from the JSON lines beside this file.

    python3 benches/results/2026-12-04-16-cores/tables.py

sweep-*.jsonl: one full `scaling --runs 1 --seconds 0.25 --json` each, run in the order
old1, new1, new2, old2, spin, nohelp (old = ff41128, the build before the work-conserving
runtime; new = the current build; spin = CORUM_BENCH_IDLE=spin; nohelp = CORUM_BENCH_HELP=0).
pairs-*.jsonl: alternating runs of `--only "kv 0%"` and `--only "t=1 pipelined"`.
"""
import collections
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
THREADS = [1, 2, 4, 8, 16]


def key(row):
    return (row["workload"], row["write_pct"], row["threads"], row["system"], row["replicas"], row["mode"], row["paused"])


def runs_of(path):
    """The runs in one file: a run ends where a cell repeats."""
    runs, current = [], {}
    for line in open(path):
        row = json.loads(line)
        if key(row) in current:
            runs.append(current)
            current = {}
        current[key(row)] = row
    runs.append(current)
    return runs


# A sweep's rows in order: the straggler section at its end measures kv 10 % at 16 threads
# unpaused again, so the same cell appears twice; `last` picks the straggler section's.
sweep = {
    name: [json.loads(line) for line in open(f"{HERE}/sweep-{name}.jsonl")]
    for name in ["old1", "old2", "new1", "new2", "spin", "nohelp"]
}


def cell(rows, workload, pct, threads, system, replicas, mode, paused="none", last=False):
    found = [
        row
        for row in rows
        if key(row)[:4] == (workload, pct, threads, system)
        and (replicas is None or row["replicas"] == replicas)
        and key(row)[5:] == (mode, paused)
    ]
    return (found[-1] if last else found[0]) if found else None


def throughput_table(workload, pct):
    print(f"\n{workload}, {pct} % writes: ops/s in millions (ratio to the Mutex of the same run)\n")
    print("| system | " + " | ".join(f"t={t}" for t in THREADS) + " |")
    print("| --- |" + " ---: |" * len(THREADS))
    rows = [("mutex", 1, "sync", None), ("rwlock", 1, "sync", None), ("node-replication", None, "sync", None)]
    rows += [("corum", r, m, v) for r in (1, 3, 5) for m in ("sync", "pipelined") for v in ("before", "now", "spin", "nohelp")]
    variants = {None: ["old1", "new1", "new2", "old2"], "before": ["old1", "old2"], "now": ["new1", "new2"], "spin": ["spin"], "nohelp": ["nohelp"]}
    for system, replicas, mode, variant in rows:
        cells = []
        for threads in THREADS:
            rates, ratios, switches = [], [], []
            for name in variants[variant]:
                row = cell(sweep[name], workload, pct, threads, system, replicas, mode)
                mutex = cell(sweep[name], workload, pct, threads, "mutex", 1, "sync")
                rates.append(row["ops_per_sec"])
                ratios.append(row["ops_per_sec"] / mutex["ops_per_sec"])
                if row["switches_per_write"] is not None:
                    switches.append(row["switches_per_write"])
            text = f"{statistics.mean(rates) / 1e6:.2f} ({statistics.mean(ratios):.2f}x)"
            if switches and statistics.mean(switches) >= 0.01:
                text += f" {statistics.mean(switches):.2g} csw"
            cells.append(text)
        name = {"node-replication": "node-replication (a replica per thread, up to 2)"}.get(system, system)
        if system == "corum":
            name = f"corum r={replicas} {mode}, {variant}"
        print(f"| {name} | " + " | ".join(cells) + " |")


def paired_summary():
    print("\nnow / before, paired (new1/old1, new2/old2), every thread count: median [quartiles]\n")
    print("| workload | r=1 sync | r=1 pipelined | r=3 sync | r=3 pipelined | r=5 sync | r=5 pipelined |")
    print("| --- |" + " ---: |" * 6)
    for workload, pct in [("kv", 100), ("kv", 50), ("kv", 10), ("kv", 0), ("counter", 100), ("stack", 100)]:
        cells = []
        for replicas in (1, 3, 5):
            for mode in ("sync", "pipelined"):
                ratios = []
                for new, old in (("new1", "old1"), ("new2", "old2")):
                    for threads in THREADS:
                        a = cell(sweep[new], workload, pct, threads, "corum", replicas, mode)
                        b = cell(sweep[old], workload, pct, threads, "corum", replicas, mode)
                        if a and b:
                            ratios.append(a["ops_per_sec"] / b["ops_per_sec"])
                if not ratios:
                    cells.append("-")
                    continue
                q = statistics.quantiles(ratios, n=4)
                cells.append(f"{statistics.median(ratios):.2f} [{q[0]:.2f}-{q[2]:.2f}]")
        print(f"| {workload} {pct} % | " + " | ".join(cells) + " |")


def straggler_table():
    print("\nstraggler: kv 10 %, 16 threads, 3 replicas, ops/s against the same build's unpaused cell\n")
    print("| run | sync: follower | leader | first leader | pipelined: follower | leader | first leader |")
    print("| --- |" + " ---: |" * 6)
    for name in ["old1", "new1", "new2", "old2", "spin", "nohelp"]:
        cells = []
        for mode in ("sync", "pipelined"):
            base = cell(sweep[name], "kv", 10, 16, "corum", 3, mode, last=True)["ops_per_sec"]
            for paused in ("follower", "leader", "first leader"):
                row = cell(sweep[name], "kv", 10, 16, "corum", 3, mode, paused)
                cells.append(f"{row['ops_per_sec'] / base:.2f}" if row else "-")
        print(f"| {name} | " + " | ".join(cells) + " |")


def pairs_summary():
    for kind, title in (("read", 'kv 0 % (`--only "kv 0%"`)'), ("t1", 'one client, pipelined (`--only "t=1 pipelined"`)')):
        old, new = runs_of(f"{HERE}/pairs-{kind}_old.jsonl"), runs_of(f"{HERE}/pairs-{kind}_new.jsonl")
        ratios = collections.defaultdict(list)
        for before, now in zip(old, new):
            for k, row in now.items():
                if k[3] == "corum":
                    ratios[k].append(row["ops_per_sec"] / before[k]["ops_per_sec"])
        every = [r for rs in ratios.values() for r in rs]
        q = statistics.quantiles(every, n=4)
        print(f"\n{title}: {min(len(old), len(new))} alternating pairs, {len(ratios)} corum cells, "
              f"now/before median {statistics.median(every):.3f} [quartiles {q[0]:.2f}-{q[2]:.2f}]")


if __name__ == "__main__":
    for workload, pct in [("kv", 100), ("kv", 10), ("kv", 0)]:
        throughput_table(workload, pct)
    paired_summary()
    straggler_table()
    pairs_summary()
