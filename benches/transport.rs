//! The transport on its own: round trips between two threads over one cache line (the
//! floor), over corum's SPSC rings, and over crossbeam's bounded channels; one-way streams
//! through a ring and through a channel of the same capacity; and a corum write's message
//! pattern relayed naively over crossbeam channels; and the cost of a write's trip from its
//! client to the replica that answers it and back, on one thread, through the write board.
//!
//! `cargo bench --bench transport`

mod common;

use std::time::{Duration, Instant};

use corum::internals::{ring, Board, Collector};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// Capacity of the rings and channels compared (corum's default ring capacity).
const CAPACITY: usize = 1024;

fn round_trips(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.bench_function("atomic_ping_pong", |b| b.iter_custom(common::atomic_ping_pong));
    group.bench_function("corum_ring", |b| {
        b.iter_custom(|n| {
            let (mut to_peer, mut peer_inbox) = ring::<u64>(CAPACITY);
            let (mut to_main, mut main_inbox) = ring::<u64>(CAPACITY);
            let peer = std::thread::spawn(move || {
                for _ in 0..n {
                    let value = loop {
                        match peer_inbox.pop() {
                            Some(value) => break value,
                            None => std::hint::spin_loop(),
                        }
                    };
                    to_main.push(value + 1).expect("room");
                }
            });
            let started = Instant::now();
            for i in 0..n {
                to_peer.push(i).expect("room");
                while main_inbox.pop().is_none() {
                    std::hint::spin_loop();
                }
            }
            let elapsed = started.elapsed();
            peer.join().expect("peer");
            elapsed
        })
    });
    group.bench_function("crossbeam_channel", |b| {
        b.iter_custom(|n| {
            let (to_peer, peer_inbox) = crossbeam_channel::bounded::<u64>(CAPACITY);
            let (to_main, main_inbox) = crossbeam_channel::bounded::<u64>(CAPACITY);
            let peer = std::thread::spawn(move || {
                for _ in 0..n {
                    let value = peer_inbox.recv().expect("recv");
                    to_main.send(value + 1).expect("send");
                }
            });
            let started = Instant::now();
            for i in 0..n {
                to_peer.send(i).expect("send");
                main_inbox.recv().expect("recv");
            }
            let elapsed = started.elapsed();
            peer.join().expect("peer");
            elapsed
        })
    });
    group.bench_function("crossbeam_relay_write_pattern", |b| b.iter_custom(|n| common::crossbeam_relay(n, None)));
    group.finish();
}

/// One producer streams `n` values to one consumer; both spin when the ring is full or
/// empty (as replica threads do before they park).
fn stream_ring(n: u64) -> Duration {
    let (mut producer, mut consumer) = ring::<u64>(CAPACITY);
    let peer = std::thread::spawn(move || {
        let mut sum = 0u64;
        for _ in 0..n {
            loop {
                match consumer.pop() {
                    Some(value) => {
                        sum = sum.wrapping_add(value);
                        break;
                    }
                    None => std::hint::spin_loop(),
                }
            }
        }
        sum
    });
    let started = Instant::now();
    for i in 0..n {
        let mut value = i;
        while let Err(back) = producer.push(value) {
            value = back;
            std::hint::spin_loop();
        }
    }
    std::hint::black_box(peer.join().expect("consumer"));
    started.elapsed()
}

fn stream_channel(n: u64) -> Duration {
    let (sender, receiver) = crossbeam_channel::bounded::<u64>(CAPACITY);
    let peer = std::thread::spawn(move || receiver.iter().take(n as usize).fold(0u64, u64::wrapping_add));
    let started = Instant::now();
    for i in 0..n {
        sender.send(i).expect("send");
    }
    std::hint::black_box(peer.join().expect("consumer"));
    started.elapsed()
}

fn streams(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("corum_ring", CAPACITY), |b| b.iter_custom(stream_ring));
    group.bench_function(BenchmarkId::new("crossbeam_channel", CAPACITY), |b| b.iter_custom(stream_channel));
    group.finish();
}

/// Writes in flight at once in the write-path benchmarks: a pipelining client's batch.
const IN_FLIGHT: u64 = 32;

/// A write's trip through the write board on one thread, `IN_FLIGHT` at a time (post them
/// all, collect them, answer each, take each answer): what the mechanism costs a write,
/// without the protocol or the object.
fn write_paths(c: &mut Criterion) {
    let mut group = c.benchmark_group("write_path");
    group.throughput(Throughput::Elements(IN_FLIGHT));
    group.bench_function("board", |b| {
        let board = Board::<(u64, u64), u64>::new(4, 64);
        let mut key = board.claim().expect("a lane");
        let mut collector = Collector::default();
        let mut numbers = Vec::with_capacity(IN_FLIGHT as usize);
        let mut log = Vec::with_capacity(IN_FLIGHT as usize);
        b.iter(|| {
            for i in 0..IN_FLIGHT {
                numbers.push(board.post(&mut key, (7, i)).expect("room"));
            }
            collector.collect(&board, 1, usize::MAX, |address, write| log.push((address, write)));
            // As an applier answers a batch: quietly, then one wake-up per lane.
            for (address, write) in log.drain(..) {
                board.answer_quietly(address, write.1 * 2);
            }
            board.wake(key.lane());
            for &number in &numbers {
                std::hint::black_box(board.take(&mut key, number));
            }
            if let Some(&last) = numbers.last() {
                board.finished_below(&mut key, last + 1);
            }
            numbers.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, round_trips, streams, write_paths);
criterion_main!(benches);
