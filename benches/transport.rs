//! Round trips between two threads: the floor every corum write pays twice (a spinning
//! `AtomicU64` ping-pong, one cache line bouncing between cores) and the same exchange over
//! crossbeam's bounded channels, the naive alternative to corum's own rings. (The rings
//! themselves are crate-internal; their benchmark comes with the scaling suite.)
//!
//! `cargo bench --bench transport`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Core-to-core round trip: two threads bounce a counter through one cache line.
fn ping_pong_atomic(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("atomic_ping_pong", |b| {
        b.iter_custom(|iterations| {
            let line = Arc::new(AtomicU64::new(0));
            let peer = {
                let line = Arc::clone(&line);
                std::thread::spawn(move || {
                    for i in 0..iterations {
                        while line.load(Ordering::Acquire) != 2 * i + 1 {
                            std::hint::spin_loop();
                        }
                        line.store(2 * i + 2, Ordering::Release);
                    }
                })
            };
            let started = std::time::Instant::now();
            for i in 0..iterations {
                line.store(2 * i + 1, Ordering::Release);
                while line.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
            let elapsed = started.elapsed();
            peer.join().expect("peer");
            elapsed
        })
    });
    group.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|iterations| {
            let (to_peer, peer_rx) = crossbeam_channel::bounded::<u64>(16);
            let (to_main, main_rx) = crossbeam_channel::bounded::<u64>(16);
            let peer = std::thread::spawn(move || {
                for _ in 0..iterations {
                    let value = peer_rx.recv().expect("recv");
                    to_main.send(value + 1).expect("send");
                }
            });
            let started = std::time::Instant::now();
            for i in 0..iterations {
                to_peer.send(i).expect("send");
                main_rx.recv().expect("recv");
            }
            let elapsed = started.elapsed();
            peer.join().expect("peer");
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, ping_pong_atomic);
criterion_main!(benches);
