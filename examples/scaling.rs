//! How throughput and latency scale with client threads and replicas: corum with 1, 3 and 5
//! replicas next to `parking_lot::Mutex`, `parking_lot::RwLock`, node-replication 0.1.1 and
//! a single thread applying the same operations to a plain object (the ceiling for writes),
//! on the same workloads in the same run.
//!
//! ```text
//! cargo run --release --example scaling                  # the full sweep
//! cargo run --release --example scaling -- --quick       # a short sweep (under a minute)
//! cargo run --release --example scaling -- --quick --json > results.jsonl
//! cargo run --release --example scaling -- --only "kv 100% corum r=3 t=2 pipelined" --seconds 3
//! CORUM_BENCH_IDLE=spin cargo run --release --example scaling   # corum with IdleStrategy::Spin
//! CORUM_BENCH_HELP=0 cargo run --release --example scaling      # corum with Builder::helping(false)
//! ```
//!
//! Every row gives ops/s, latency percentiles and the maximum from an HDR histogram (of a
//! sample: one operation in 16 of each client thread is timed, so that the clock's cost is
//! not part of the throughput), the
//! process's context switches per completed write (`getrusage`), and the
//! ratio to the Mutex on the same workload and thread count. A last section, the straggler
//! scenario, runs the Mutex with its holder and corum (3 replicas) with a follower or the
//! leader paused 5 ms out of every 50 ms, next to the same runs unpaused. `--json` prints
//! one JSON object per measurement instead of the table. `--only TEXT` runs the cells whose
//! progress line contains TEXT; `--seconds S` sets each one's length. Progress, and for
//! corum the protocol's batches, go to stderr. The cells of one workload and thread count
//! are measured in 3 interleaved rounds (`--runs N`; 1 with `--quick`), so that a cell and
//! its Mutex baseline meet the same phases of a noisy machine; each row is the median.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Budget, Measurement, Straggler, System, Workload, KEYS, PAUSE, PAUSE_PERIOD};

/// The settings of one sweep and its progress.
struct Sweep {
    json: bool,
    only: Option<String>,
    seconds: f64,
    runs: usize,
    started: Instant,
    done: usize,
    total: usize,
}

impl Sweep {
    /// Measures every cell of one group (one workload, one thread count) `runs` times, in
    /// rounds that take each cell once, so that every cell and its Mutex baseline see the
    /// same stretches of the machine's time; prints each cell's median (by throughput, with
    /// that run's latencies) and its ratio to the Mutex's median. Returns the medians'
    /// rates, `None` for cells `--only` skips.
    fn group(&mut self, title: &str, cells: &[System], workload: Workload, threads: usize) -> Vec<Option<f64>> {
        let name = |cell: &System| {
            let paused = match cell.paused() {
                "none" => String::new(),
                who => format!(" {who} paused"),
            };
            format!(
                "{} {}% {} r={} t={threads} {}{paused}",
                workload.name,
                workload.write_pct,
                cell.name(),
                cell.replicas(),
                cell.mode(),
            )
        };
        let selected: Vec<bool> = cells
            .iter()
            .map(|cell| self.only.as_ref().map_or(true, |only| name(cell).contains(only.as_str())))
            .collect();
        let mut measured: Vec<Vec<Measurement>> = cells.iter().map(|_| Vec::new()).collect();
        for round in 0..self.runs {
            for (index, cell) in cells.iter().enumerate() {
                if round == 0 {
                    self.done += 1;
                }
                if !selected[index] {
                    continue;
                }
                eprintln!(
                    "[{}/{} {:.0} s] {} (run {} of {})",
                    self.done,
                    self.total,
                    self.started.elapsed().as_secs_f64(),
                    name(cell),
                    round + 1,
                    self.runs
                );
                // A straggler cell spans at least ten pause periods.
                let seconds = if cell.paused() == "none" { self.seconds } else { self.seconds.max(0.5) };
                let budget = Budget::Time(Duration::from_secs_f64(seconds));
                measured[index].push(cell.measure(workload, threads, budget));
            }
        }
        let medians: Vec<Option<Measurement>> = measured
            .into_iter()
            .map(|mut runs| {
                runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
                (!runs.is_empty()).then(|| runs.swap_remove(runs.len() / 2))
            })
            .collect();
        // With `--only` the Mutex may not have run: then there is no ratio.
        let mutex_rate = cells
            .iter()
            .zip(&medians)
            .find(|(cell, m)| **cell == System::Mutex { holder_paused: false } && m.is_some())
            .and_then(|(_, m)| m.as_ref().map(Measurement::rate));
        if !self.json && selected.iter().any(|&s| s) {
            println!("\n{title}");
            println!(
                "  {:<40} {:>7} {:>13} {:>9} {:>10} {:>10} {:>10} {:>11} {:>9}",
                "system", "threads", "ops/s", "vs mutex", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "csw/write"
            );
        }
        cells
            .iter()
            .zip(&medians)
            .map(|(cell, m)| {
                let m = m.as_ref()?;
                let rate = m.rate();
                let quantile = |q: f64| m.latency.value_at_quantile(q);
                let (p50, p99, p999, max) = (quantile(0.5), quantile(0.99), quantile(0.999), m.latency.max());
                let ratio = mutex_rate.map_or_else(|| "-".to_string(), |mutex| format!("{:.3}x", rate / mutex));
                // Context switches of the whole process per completed write ("-" without writes).
                let switches = m.switches_per_write();
                let switches_text = switches.map_or_else(|| "-".to_string(), |per| format!("{per:.3}"));
                let switches_json = switches.map_or_else(|| "null".to_string(), |per| format!("{per:.4}"));
                if self.json {
                    println!(
                        "{{\"system\":\"{}\",\"workload\":\"{}\",\"write_pct\":{},\"replicas\":{},\
                         \"threads\":{threads},\"mode\":\"{}\",\"paused\":\"{}\",\"ops_per_sec\":{rate:.0},\
                         \"p50_ns\":{p50},\"p99_ns\":{p99},\"p999_ns\":{p999},\"max_ns\":{max},\
                         \"switches_per_write\":{switches_json}}}",
                        cell.name(),
                        workload.name,
                        workload.write_pct,
                        cell.replicas(),
                        cell.mode(),
                        cell.paused()
                    );
                } else {
                    println!(
                        "  {:<40} {threads:>7} {rate:>13.0} {ratio:>9} {p50:>10} {p99:>10} {p999:>10} {max:>11} {switches_text:>9}",
                        cell.label()
                    );
                }
                Some(rate)
            })
            .collect()
    }
}

/// What `--help` prints.
const USAGE: &str = "\
How corum's throughput and latency scale with client threads and replicas, next to
parking_lot's Mutex and RwLock, node-replication and the sequential object, on the same
workloads in the same run.

usage: scaling [--quick] [--json] [--only TEXT] [--seconds S] [--runs N]

  --quick       a short sweep: kv at 10 % and 100 % writes, one run of 0.15 s per cell
  --json        one JSON object per measurement instead of the table
  --only TEXT   only the cells whose progress line contains TEXT,
                for example --only \"kv 100% corum r=3 t=2 pipelined\"
  --seconds S   each measurement's length (default 1; 0.15 with --quick)
  --runs N      interleaved runs per cell, the median reported (default 3; 1 with --quick)
  --help        this text

environment: CORUM_BENCH_IDLE=spin (corum with IdleStrategy::Spin),
             CORUM_BENCH_HELP=0 (corum with Builder::helping(false))
The plot of kv at 10 % writes goes to scaling.svg. docs/BENCHMARKS.md has today's tables.
";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return;
    }
    let known = ["--quick", "--json", "--only", "--seconds", "--runs"];
    let mut rest = args.iter().skip(1);
    while let Some(arg) = rest.next() {
        if !known.contains(&arg.as_str()) {
            eprintln!("scaling: unknown argument {arg:?}\n\n{USAGE}");
            std::process::exit(2);
        }
        if matches!(arg.as_str(), "--only" | "--seconds" | "--runs") {
            rest.next();
        }
    }
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    // `--only TEXT` keeps the measurements whose progress line contains TEXT (for example
    // `--only "kv 100% corum r=3 t=2 pipelined"`, to profile one cell); `--seconds S` sets
    // each measurement's length.
    let value_of = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let only = value_of("--only");
    let seconds = value_of("--seconds")
        .map(|s| s.parse::<f64>().expect("--seconds takes a number"))
        .unwrap_or(if quick { 0.15 } else { 1.0 });
    // `--runs N`: each cell is measured N times and the median (by throughput) reported.
    let runs = value_of("--runs")
        .map(|n| n.parse::<usize>().expect("--runs takes a count"))
        .unwrap_or(if quick { 1 } else { 3 })
        .max(1);
    let cores = corum::available_cores().max(1);
    let workloads: Vec<Workload> = if quick {
        vec![Workload { name: "kv", write_pct: 10 }, Workload { name: "kv", write_pct: 100 }]
    } else {
        common::workloads()
    };
    let thread_counts = common::thread_counts();
    let corum = |replicas, pipelined, straggler| System::Corum { replicas, pipelined, straggler };
    let mutex = System::Mutex { holder_paused: false };
    let mut systems = vec![mutex, System::RwLock];
    for replicas in [1, 3, 5] {
        systems.push(corum(replicas, false, Straggler::None));
        systems.push(corum(replicas, true, Straggler::None));
    }
    systems.push(System::NodeReplication { replicas: 2 });
    systems.push(System::Sequential);
    // The straggler scenario: kv at 10 % writes, every core a client thread, each system
    // unpaused and with one replica (or the lock holder) paused 5 ms out of every 50 ms.
    let straggler_workload = Workload { name: "kv", write_pct: 10 };
    let mut stragglers = vec![mutex, System::Mutex { holder_paused: true }];
    for pipelined in [false, true] {
        for straggler in [Straggler::None, Straggler::Follower, Straggler::Leader, Straggler::LeaderCore] {
            stragglers.push(corum(3, pipelined, straggler));
        }
    }

    if !json {
        println!(
            "scaling sweep: {cores} usable cores, threads {thread_counts:?}, {seconds} s per measurement, \
             median of {runs} interleaved runs, {KEYS} keys for kv"
        );
    }
    let total = workloads.len() * thread_counts.len() * systems.len() + stragglers.len();
    let mut sweep = Sweep { json, only, seconds, runs, started: Instant::now(), done: 0, total };
    let mut plot: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
    for &workload in &workloads {
        for &threads in &thread_counts {
            // The sequential ceiling is one thread; node-replication gets one replica per
            // thread up to two, so that no replica sits idle and fills its log.
            let cells: Vec<System> = systems
                .iter()
                .filter(|&&cell| cell != System::Sequential || threads == 1)
                .map(|&cell| match cell {
                    System::NodeReplication { replicas } => System::NodeReplication { replicas: replicas.min(threads) },
                    cell => cell,
                })
                .collect();
            sweep.done += systems.len() - cells.len();
            let title =
                format!("workload {} at {} % writes, {threads} client threads", workload.name, workload.write_pct);
            let rates = sweep.group(&title, &cells, workload, threads);
            if workload.name == "kv" && workload.write_pct == 10 {
                for (cell, rate) in cells.iter().zip(rates) {
                    if let Some(rate) = rate {
                        // node-replication's replica count follows the threads: one line.
                        let line = match cell {
                            System::NodeReplication { .. } => "node-replication (a replica per thread)".to_string(),
                            _ => cell.label(),
                        };
                        plot.entry(line).or_default().push((threads, rate));
                    }
                }
            }
        }
    }
    let title = format!(
        "straggler: kv at 10 % writes, {cores} client threads, one replica or the lock holder paused {} ms out of \
         every {} ms",
        PAUSE.as_millis(),
        PAUSE_PERIOD.as_millis()
    );
    sweep.group(&title, &stragglers, straggler_workload, cores);
    if let Err(error) = write_svg("scaling.svg", &plot) {
        eprintln!("could not write scaling.svg: {error}");
    } else if !json {
        println!("\nplot of kv at 10 % writes: scaling.svg");
    }
}

/// Writes an SVG line chart of throughput against client threads, one line per system.
fn write_svg(path: &str, series: &BTreeMap<String, Vec<(usize, f64)>>) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let max_threads = series.values().flatten().map(|&(threads, _)| threads).max().unwrap_or(1).max(2) as f64;
    let max_rate = series.values().flatten().map(|&(_, rate)| rate / 1e6).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("kv, 10 % writes: throughput against client threads", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..max_threads, 0f64..max_rate * 1.05)?;
    chart
        .configure_mesh()
        .x_labels(max_threads as usize)
        .x_label_formatter(&|threads| format!("{threads:.0}"))
        .x_desc("client threads")
        .y_desc("million ops/s")
        .draw()?;
    for (index, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(
                LineSeries::new(
                    points.iter().map(|&(threads, rate)| (threads as f64, rate / 1e6)),
                    color.stroke_width(2),
                )
                .point_size(3),
            )?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
