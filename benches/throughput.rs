//! Throughput against client threads and replicas, one criterion group per workload (the
//! map at 0, 10, 50 and 100 % writes, the counter, the stack), every system of
//! `examples/scaling.rs` in each: corum with 1, 3 and 5 replicas, synchronous and pipelined
//! (64 writes in flight per thread), `parking_lot::Mutex` and `RwLock`, node-replication
//! 0.1.1 and one unsynchronised thread. Benchmark ids read `system/replicas/mode` and
//! `threads=N`; throughput is in operations. The same code runs the scaling report.
//!
//! `cargo bench --bench throughput`, or `cargo bench --bench throughput -- kv-10pct` for one
//! workload.

mod common;

use std::time::Duration;

use common::{Budget, Straggler, System};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn throughput(c: &mut Criterion) {
    let threads = common::thread_counts();
    let mut systems = vec![System::Mutex { holder_paused: false }, System::RwLock];
    for replicas in [1, 3, 5] {
        for pipelined in [false, true] {
            systems.push(System::Corum { replicas, pipelined, straggler: Straggler::None });
        }
    }
    systems.push(System::NodeReplication { replicas: 2 });
    systems.push(System::Sequential);
    for workload in common::workloads() {
        let mut group = c.benchmark_group(format!("throughput/{}-{}pct-writes", workload.name, workload.write_pct));
        group.throughput(Throughput::Elements(1));
        group.sample_size(10);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        for &threads in &threads {
            for &system in &systems {
                let system = match system {
                    System::Sequential if threads != 1 => continue,
                    // One node-replication replica per thread up to two, as in the scaling report.
                    System::NodeReplication { replicas } => System::NodeReplication { replicas: replicas.min(threads) },
                    system => system,
                };
                let name = format!("{}/replicas={}/{}", system.name(), system.replicas(), system.mode());
                let id = BenchmarkId::new(name, format!("threads={threads}"));
                group.bench_function(id, |b| {
                    b.iter_custom(|ops| system.measure(workload, threads, Budget::Ops(ops)).elapsed)
                });
            }
        }
        group.finish();
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
