//! A replicated `HashMap` under several client threads, next to a `parking_lot::Mutex`
//! around the same map on the same workload, in the same run.
//!
//! Prints each system's throughput and latency percentiles, then checks that the corum
//! replicas agree with each other at the end.
//!
//! ```text
//! cargo run --release --example kv                     # 3 replicas, 4 threads, 20 % writes
//! cargo run --release --example kv -- --replicas 5 --threads 8 --writes 50 --seconds 3
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corum::{Builder, Dispatch};
use hdrhistogram::Histogram;

const KEYS: u64 = 10_000;

/// The replicated object: a map from key to value.
#[derive(Clone, Default, Debug, PartialEq)]
struct Kv(HashMap<u64, u64>);

#[derive(Debug, Clone, Copy)]
enum Write {
    Put(u64, u64),
}

impl Dispatch for Kv {
    type ReadOp = u64;
    type WriteOp = Write;
    type Response = Option<u64>;

    fn dispatch(&self, key: &u64) -> Option<u64> {
        self.0.get(key).copied()
    }

    fn dispatch_mut(&mut self, op: &Write) -> Option<u64> {
        match *op {
            Write::Put(key, value) => self.0.insert(key, value),
        }
    }
}

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

/// What one system must offer the workload.
trait System: Send + Sync {
    fn read(&self, key: u64) -> Option<u64>;
    fn write(&self, key: u64, value: u64) -> Option<u64>;
}

struct Locked(parking_lot::Mutex<HashMap<u64, u64>>);

impl System for Locked {
    fn read(&self, key: u64) -> Option<u64> {
        self.0.lock().get(&key).copied()
    }
    fn write(&self, key: u64, value: u64) -> Option<u64> {
        self.0.lock().insert(key, value)
    }
}

impl System for corum::Handle<Kv> {
    fn read(&self, key: u64) -> Option<u64> {
        self.execute(key).expect("read")
    }
    fn write(&self, key: u64, value: u64) -> Option<u64> {
        self.execute_mut(Write::Put(key, value)).expect("write")
    }
}

struct Outcome {
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

/// Runs the workload on `systems[i]` from thread `i` for `seconds`.
fn run<S: System + 'static>(systems: Vec<Arc<S>>, write_pct: u64, seconds: f64) -> Outcome {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = systems
        .into_iter()
        .enumerate()
        .map(|(thread, system)| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut rng = 0x2545_f491_4f6c_dd1d_u64 ^ (thread as u64 + 1);
                let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let key = rng % KEYS;
                    let begin = Instant::now();
                    if rng / KEYS % 100 < write_pct {
                        system.write(key, rng);
                    } else {
                        system.read(key);
                    }
                    latency.saturating_record((begin.elapsed().as_nanos() as u64).max(1));
                    ops += 1;
                }
                (ops, latency)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let mut total = Outcome {
        ops: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"),
    };
    for thread in threads {
        let (ops, latency) = thread.join().expect("client thread");
        total.ops += ops;
        total.latency.add(latency).expect("same histogram bounds");
    }
    total.elapsed = started.elapsed();
    total
}

fn report(name: &str, outcome: &Outcome, baseline: Option<f64>) -> f64 {
    let rate = outcome.ops as f64 / outcome.elapsed.as_secs_f64();
    let ratio = baseline.map_or_else(|| "1.00x".to_string(), |base| format!("{:.2}x", rate / base));
    let us = |q: f64| outcome.latency.value_at_quantile(q) as f64 / 1000.0;
    println!("{name:<24} {:>12.0} {:>8} {:>10.2} {:>10.2} {:>10.2}", rate, ratio, us(0.5), us(0.99), us(0.999));
    rate
}

fn main() -> Result<(), corum::Error> {
    let args = parse_args();
    println!(
        "workload: {} keys, uniform, {} % writes, {} client threads, {:.1} s per system, {} cores usable",
        KEYS,
        args.write_pct,
        args.threads,
        args.seconds,
        corum::available_cores()
    );
    let initial: HashMap<u64, u64> = (0..KEYS).map(|key| (key, 0)).collect();

    println!("{:<24} {:>12} {:>8} {:>10} {:>10} {:>10}", "system", "ops/s", "vs mutex", "p50 us", "p99 us", "p99.9 us");
    let mutex = Arc::new(Locked(parking_lot::Mutex::new(initial.clone())));
    let locked = run((0..args.threads).map(|_| Arc::clone(&mutex)).collect(), args.write_pct, args.seconds);
    let baseline = report("parking_lot::Mutex", &locked, None);

    let cluster = Builder::new(Kv(initial)).replicas(args.replicas).build()?;
    let handles = (0..args.threads).map(|_| Arc::new(cluster.handle())).collect();
    let replicated = run(handles, args.write_pct, args.seconds);
    report(&format!("corum, {} replicas", args.replicas), &replicated, Some(baseline));

    let stats = cluster.stats();
    let batches: u64 = stats.iter().map(|s| s.batches_proposed).sum();
    let copies = cluster.shutdown()?;
    let agree = copies.iter().all(|copy| copy == &copies[0]);
    println!(
        "agreement: {} live replicas, {} slots applied, {} batches proposed, copies {}",
        copies.len(),
        stats.iter().map(|s| s.slot_applied.get()).max().unwrap_or(0),
        batches,
        if agree { "identical" } else { "DIFFER" }
    );
    if !agree {
        std::process::exit(1);
    }
    Ok(())
}
