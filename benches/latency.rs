//! Latency of one operation at a time from one client thread: corum's synchronous writes
//! (`Handle::execute_mut`) with 1, 3 and 5 replicas and its linearizable reads
//! (`Handle::execute`), next to `parking_lot` locks around the same counter, to the same
//! write's message pattern relayed naively over crossbeam channels, and to a core-to-core
//! round trip. After the criterion groups, a summary measures the p50s again with an HDR
//! histogram in the same run and prints the latency targets' ratios.
//!
//! `cargo bench --bench latency`

mod common;

use std::time::{Duration, Instant};

use common::{histogram, record, Object, Read, Write};
use corum::Builder;
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};

fn cluster(replicas: usize) -> corum::Cluster<Object> {
    Builder::new(Object::Counter(0)).replicas(replicas).build().expect("build")
}

fn writes(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_latency/counter");
    group.throughput(Throughput::Elements(1));
    let mutex = parking_lot::Mutex::new(Object::Counter(0));
    group.bench_function(BenchmarkId::new("mutex", "threads=1"), |b| b.iter(|| mutex.lock().write(Write::Add(1))));
    group.bench_function(BenchmarkId::new("crossbeam_relay", "threads=1"), |b| {
        b.iter_custom(|n| common::crossbeam_relay(n, None))
    });
    for replicas in [1, 3, 5] {
        let cluster = cluster(replicas);
        let handle = cluster.handle();
        group.bench_function(BenchmarkId::new(format!("corum/replicas={replicas}"), "threads=1"), |b| {
            b.iter(|| handle.execute_mut(Write::Add(1)).expect("write"))
        });
        cluster.shutdown().expect("shutdown");
    }
    group.finish();
}

fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_latency/counter");
    group.throughput(Throughput::Elements(1));
    let lock = parking_lot::RwLock::new(Object::Counter(0));
    group.bench_function(BenchmarkId::new("rwlock", "threads=1"), |b| b.iter(|| lock.read().read(Read::Count)));
    for replicas in [1, 3] {
        let cluster = cluster(replicas);
        let handle = cluster.handle();
        handle.execute_mut(Write::Add(1)).expect("write");
        group.bench_function(BenchmarkId::new(format!("corum/replicas={replicas}"), "threads=1"), |b| {
            b.iter(|| handle.execute(Read::Count).expect("read"))
        });
        cluster.shutdown().expect("shutdown");
    }
    group.finish();
}

/// The latency targets, measured in one run: corum's synchronous write p50 (3 replicas)
/// against the relay's p50, and against the core-to-core round trip.
fn summary() {
    const WRITES: u64 = 20_000;
    let round_trip = common::atomic_ping_pong(1_000_000) / 1_000_000;
    let mut relay = histogram();
    common::crossbeam_relay(WRITES, Some(&mut relay));
    let cluster = cluster(3);
    let handle = cluster.handle();
    let mut corum = histogram();
    for _ in 0..WRITES {
        let begin = Instant::now();
        std::hint::black_box(handle.execute_mut(Write::Add(1)).expect("write"));
        record(&mut corum, begin);
    }
    cluster.shutdown().expect("shutdown");
    let us = |nanos: u64| Duration::from_nanos(nanos).as_secs_f64() * 1e6;
    let (corum_p50, relay_p50) = (corum.value_at_quantile(0.5), relay.value_at_quantile(0.5));
    println!("\nlatency summary ({} usable cores, {WRITES} writes each, one client thread)", corum::available_cores());
    println!("  core-to-core round trip (atomic ping-pong, mean): {:>8.3} us", round_trip.as_secs_f64() * 1e6);
    println!(
        "  crossbeam relay of a write's messages:  p50 {:>8.3} us  p99 {:>8.3} us",
        us(relay_p50),
        us(relay.value_at_quantile(0.99))
    );
    println!(
        "  corum write, 3 replicas (execute_mut):  p50 {:>8.3} us  p99 {:>8.3} us",
        us(corum_p50),
        us(corum.value_at_quantile(0.99))
    );
    println!(
        "  corum p50 / relay p50: {:.2}x (target where threads outnumber cores: at most 0.2x)",
        corum_p50 as f64 / relay_p50 as f64
    );
    println!(
        "  corum p50 / round trip: {:.1}x (target where every thread has a core: at most 10x)",
        corum_p50 as f64 / round_trip.as_nanos().max(1) as f64
    );
}

criterion_group!(benches, writes, reads);

fn main() {
    benches();
    if !std::env::args().any(|arg| arg == "--list") {
        summary();
    }
    criterion::Criterion::default().configure_from_args().final_summary();
}
