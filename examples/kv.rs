//! A replicated `HashMap` under several client threads, next to a `parking_lot::Mutex`
//! around the same map on the same workload, in the same run, through the harness every
//! benchmark uses (`benches/common`).
//!
//! Prints each system's throughput and latency percentiles, then checks that the corum
//! replicas agree with each other at the end.
//!
//! ```text
//! cargo run --release --example kv                     # 3 replicas, 4 threads, 20 % writes
//! cargo run --release --example kv -- --replicas 5 --threads 8 --writes 50 --seconds 3
//! ```

use std::time::Duration;

#[path = "../benches/common/mod.rs"]
mod common;

use common::{Budget, Measurement, Straggler, System, Workload, KEYS};

struct Args {
    replicas: usize,
    threads: usize,
    write_pct: u64,
    seconds: f64,
}

fn parse_args() -> Args {
    let mut args = Args { replicas: 3, threads: 4, write_pct: 20, seconds: 2.0 };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--replicas" => args.replicas = value().parse().expect("--replicas N"),
            "--threads" => args.threads = value().parse().expect("--threads N"),
            "--writes" => args.write_pct = value().parse().expect("--writes PERCENT"),
            "--seconds" => args.seconds = value().parse().expect("--seconds S"),
            other => panic!("unknown flag {other}; flags: --replicas --threads --writes --seconds"),
        }
    }
    args
}

fn report(name: &str, outcome: &Measurement, baseline: Option<f64>) -> f64 {
    let rate = outcome.rate();
    let ratio = baseline.map_or_else(|| "1.00x".to_string(), |base| format!("{:.2}x", rate / base));
    let us = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    println!("{name:<24} {:>12.0} {:>8} {:>10.2} {:>10.2} {:>10.2}", rate, ratio, us(0.5), us(0.99), us(0.999));
    rate
}

fn main() {
    let args = parse_args();
    println!(
        "workload: {} keys, uniform, {} % writes, {} client threads, {:.1} s per system, {} cores usable",
        KEYS,
        args.write_pct,
        args.threads,
        args.seconds,
        corum::available_cores()
    );
    let workload = Workload { name: "kv", write_pct: args.write_pct };
    let budget = Budget::Time(Duration::from_secs_f64(args.seconds));

    println!("{:<24} {:>12} {:>8} {:>10} {:>10} {:>10}", "system", "ops/s", "vs mutex", "p50 us", "p99 us", "p99.9 us");
    let locked = System::Mutex { holder_paused: false }.measure(workload, args.threads, budget);
    let baseline = report("parking_lot::Mutex", &locked, None);

    let corum = System::Corum { replicas: args.replicas, pipelined: false, straggler: Straggler::None };
    let replicated = corum.measure(workload, args.threads, budget);
    report(&format!("corum, {} replicas", args.replicas), &replicated, Some(baseline));

    let agree = replicated.copies_agree == Some(true);
    println!("agreement: the live replicas' copies are {}", if agree { "identical" } else { "DIFFERENT" });
    if !agree {
        std::process::exit(1);
    }
}
