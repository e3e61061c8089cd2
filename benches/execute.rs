//! `Handle::execute_mut` and `Handle::execute` from one client thread, with 1 and 3
//! replicas, next to `parking_lot::Mutex` around the same counter in the same run.
//!
//! `cargo bench --bench execute`

use corum::{Builder, Dispatch};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

#[derive(Clone, Default)]
struct Counter(u64);

impl Dispatch for Counter {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;
    fn dispatch(&self, _: &()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.0 += add;
        self.0
    }
}

fn execute_mut(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute_mut/counter");
    group.throughput(Throughput::Elements(1));
    let mutex = parking_lot::Mutex::new(Counter::default());
    group.bench_function("mutex/threads=1", |b| {
        b.iter(|| {
            let mut counter = mutex.lock();
            counter.dispatch_mut(&1)
        })
    });
    for replicas in [1, 3] {
        let cluster = Builder::new(Counter::default()).replicas(replicas).build().expect("build");
        let handle = cluster.handle();
        group.bench_function(format!("corum/replicas={replicas}/threads=1/sync"), |b| {
            b.iter(|| handle.execute_mut(1).expect("write"))
        });
        group.bench_function(format!("corum/replicas={replicas}/threads=1/pipelined=64"), |b| {
            b.iter_custom(|iterations| {
                let started = std::time::Instant::now();
                let mut left = iterations;
                while left > 0 {
                    let burst = left.min(64);
                    let tickets: Vec<_> = (0..burst).map(|_| handle.submit(1).expect("submit")).collect();
                    for ticket in tickets {
                        ticket.wait().expect("write");
                    }
                    left -= burst;
                }
                started.elapsed()
            })
        });
        cluster.shutdown().expect("shutdown");
    }
    group.finish();
}

fn execute(c: &mut Criterion) {
    let mut group = c.benchmark_group("execute/counter");
    group.throughput(Throughput::Elements(1));
    let lock = parking_lot::RwLock::new(Counter::default());
    group.bench_function("rwlock/threads=1", |b| b.iter(|| lock.read().dispatch(&())));
    for replicas in [1, 3] {
        let cluster = Builder::new(Counter::default()).replicas(replicas).build().expect("build");
        let handle = cluster.handle();
        handle.execute_mut(1).expect("write");
        group.bench_function(format!("corum/replicas={replicas}/threads=1"), |b| {
            b.iter(|| handle.execute(()).expect("read"))
        });
        cluster.shutdown().expect("shutdown");
    }
    group.finish();
}

criterion_group!(benches, execute_mut, execute);
criterion_main!(benches);
