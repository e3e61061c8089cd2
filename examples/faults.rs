//! corum under faults, measured: failover time after a leader crash and the time a
//! leadership transfer takes, both under load; how soon leadership leaves a slowed leader and
//! what throughput comes back; throughput and tail
//! latency while a replica is paused 5 ms out of every 50 ms (next to a `parking_lot::Mutex`
//! whose holder is paused the same way), memory while a replica is paused for 10 s, and
//! writes accepted while one replica sits idle, next to node-replication 0.1.1.
//!
//! ```text
//! cargo run --release --example faults            # about 40 s
//! cargo run --release --example faults -- --quick # about 10 s
//! cargo run --release --example faults -- --leadership # the leadership section alone
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../benches/common/mod.rs"]
mod common;

use common::{next_random, Budget, NrObject, Object, Straggler, System, Workload, Write, KEYS};
use corum::{Builder, Cluster, LeaderPolicy, RoleKind};

/// The map every scenario here replicates: the harness's, empty.
fn empty_map() -> Object {
    Object::Kv(Default::default())
}

/// Resident memory of this process, from /proc (Linux); 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()))
        })
        .unwrap_or(0)
}

/// Prints the median, smallest and largest of `samples`, in milliseconds.
fn summary(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "  {what}: median {:.2} ms, min {:.2} ms, max {:.2} ms over {}",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    );
}

/// Two threads in `scope` writing to random keys of `cluster`, one write at a time, until
/// `stop`, counting their writes in `written`.
fn spawn_writers<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    cluster: &'scope Cluster<Object>,
    stop: &'scope AtomicBool,
    written: &'scope AtomicU64,
) {
    for thread in 0..2u64 {
        let handle = cluster.handle();
        scope.spawn(move || {
            let mut rng = thread + 1;
            while !stop.load(Ordering::Relaxed) {
                let key = next_random(&mut rng) % KEYS;
                handle.execute_mut(Write::Put(key, key)).expect("write");
                written.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// Failover and transfer on one loaded cluster (default timeouts): two client threads
/// write without pause the whole time. The leader is crashed `crashes` times (measured:
/// from the call to `Faults::crash` until a write this thread submits afterwards completes;
/// then the replica restarts), then leadership is moved `transfers` times (measured: the
/// `transfer_leadership` call).
fn leadership_under_load(crashes: usize, transfers: usize) {
    let cluster = Builder::new(empty_map()).replicas(3).build().expect("build");
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    let (mut gaps, mut moves) = (Vec::new(), Vec::new());
    std::thread::scope(|scope| {
        spawn_writers(scope, &cluster, &stop, &written);
        let probe = cluster.handle();
        let leader = || loop {
            if let Some(leader) = cluster.leader() {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        for i in 0..crashes as u64 {
            std::thread::sleep(Duration::from_millis(20));
            let victim = leader();
            let crashed = Instant::now();
            cluster.faults().crash(victim).expect("crash");
            probe.execute_mut(Write::Put(i % KEYS, i)).expect("write after the crash");
            gaps.push(crashed.elapsed());
            cluster.faults().restart(victim).expect("restart");
        }
        for _ in 0..transfers {
            std::thread::sleep(Duration::from_millis(20));
            let to = (leader() + 1) % 3;
            let started = Instant::now();
            cluster.transfer_leadership(to).expect("transfer");
            moves.push(started.elapsed());
        }
        stop.store(true, Ordering::Relaxed);
    });
    let changes: u64 = cluster.stats().iter().map(|s| s.leader_changes).sum();
    let copies = cluster.shutdown().expect("shutdown");
    summary("leader crashed, until the next write completes", &mut gaps);
    summary("transfer_leadership to the next replica", &mut moves);
    println!(
        "  {} writes by the two loading threads, {changes} leader changes, {} copies identical: {}",
        written.load(Ordering::Relaxed),
        copies.len(),
        copies.iter().all(|c| c == &copies[0])
    );
}

/// A leader slowed by `Faults::slow` (2 ms after every round of work, like a thread on a
/// throttled core), under two threads writing without pause: how long until leadership moves
/// (polled every millisecond), and writes per second in `window` before the slowdown and in
/// `window` after the move (or after the slowdown, when leadership stays).
/// With `follower`, a follower is slowed instead: what a slow replica costs where
/// leadership does not move; with `crash` too, that follower is crashed rather than slowed:
/// what running on the two other replicas costs, the most a slow replica should cost.
fn slowed_leader(policy: LeaderPolicy, window: Duration, follower: bool, crash: bool) {
    let cluster = Builder::new(empty_map()).replicas(3).leader_policy(policy).build().expect("build");
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    std::thread::scope(|scope| {
        spawn_writers(scope, &cluster, &stop, &written);
        let rate = || {
            let before = written.load(Ordering::Relaxed);
            std::thread::sleep(window);
            (written.load(Ordering::Relaxed) - before) as f64 / window.as_secs_f64()
        };
        std::thread::sleep(Duration::from_millis(200));
        let unslowed = rate();
        let leader = cluster.leader().expect("a leader");
        let slow = if follower { (leader + 1) % 3 } else { leader };
        let changes = || cluster.stats().iter().map(|s| s.leader_changes).sum::<u64>();
        let changes_before = changes();
        let slowed_at = Instant::now();
        if crash {
            cluster.faults().crash(slow).expect("crash");
        } else {
            cluster.faults().slow(slow, Duration::from_millis(2)).expect("slow");
        }
        let moved = loop {
            if follower || cluster.leader().is_some_and(|leader| leader != slow) {
                break Some(slowed_at.elapsed());
            }
            if slowed_at.elapsed() > window {
                break None;
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let snapshots = || cluster.stats()[slow].snapshots_installed;
        let snapshots_before = snapshots();
        let after = rate();
        let moved = match moved {
            _ if follower => "not asked to move".to_string(),
            Some(after) => format!("moved after {:.1} ms", after.as_secs_f64() * 1e3),
            None => "stayed".to_string(),
        };
        println!(
            "  {}{policy:?}: {unslowed:>9.0} writes/s before, {after:>9.0} after ({:.2}x); leadership {moved}, \
             {} leader change(s); the slowed replica installed {} snapshots meanwhile",
            match (follower, crash) {
                (true, true) => "a follower crashed instead, ",
                (true, false) => "a follower slowed, ",
                _ => "",
            },
            after / unslowed,
            changes() - changes_before,
            snapshots() - snapshots_before
        );
        stop.store(true, Ordering::Relaxed);
    });
    cluster.shutdown().expect("shutdown");
}

/// The straggler scenario through the shared harness: the map at 50 % writes, `threads`
/// clients, for `seconds`; reports throughput against `baseline` and write latencies.
fn straggler(name: &str, system: System, threads: usize, seconds: f64, baseline: Option<f64>) -> f64 {
    let workload = Workload { name: "kv", write_pct: 50 };
    let outcome = system.measure(workload, threads, Budget::Time(Duration::from_secs_f64(seconds)));
    let rate = outcome.rate();
    let us = |q: f64| outcome.write_latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "  {name:<44} {:>11.0} ops/s {:>6.2}x   write p50 {:>8.1} us   p99 {:>8.1} us   p99.9 {:>8.1} us",
        rate,
        rate / baseline.unwrap_or(rate),
        us(0.5),
        us(0.99),
        us(0.999)
    );
    rate
}

/// Memory and log length while a follower is paused under a full pipelined write load.
fn long_pause(steady: Duration, pause: Duration) {
    let cluster: Cluster<Object> = Builder::new(empty_map()).replicas(3).build().expect("build");
    let stop = AtomicBool::new(false);
    let written = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..2u64 {
            let (handle, stop, written) = (cluster.handle(), &stop, &written);
            scope.spawn(move || {
                let mut rng = thread + 1;
                while !stop.load(Ordering::Relaxed) {
                    let tickets: Vec<_> = (0..64)
                        .map(|_| {
                            let key = next_random(&mut rng) % KEYS;
                            handle.submit(Write::Put(key, key)).expect("submit")
                        })
                        .collect();
                    for ticket in tickets {
                        ticket.wait().expect("write");
                    }
                    written.fetch_add(64, Ordering::Relaxed);
                }
            });
        }
        let sample = |until: Instant| {
            let (mut rss, mut log) = (0, 0);
            while Instant::now() < until {
                rss = rss.max(rss_kib());
                log = log.max(cluster.stats().iter().map(|s| s.log_len).max().unwrap_or(0));
                std::thread::sleep(Duration::from_millis(50));
            }
            (rss, log)
        };
        let before = written.load(Ordering::Relaxed);
        let (steady_rss, steady_log) = sample(Instant::now() + steady);
        let steady_writes = written.load(Ordering::Relaxed) - before;
        let follower = cluster.stats().iter().find(|s| s.role == RoleKind::Follower).expect("follower").replica;
        cluster.faults().pause(follower).expect("pause");
        let before = written.load(Ordering::Relaxed);
        let paused_at = Instant::now();
        let (mut paused_rss, mut paused_log) = (0, 0);
        let mut plateau = Vec::new();
        while paused_at.elapsed() < pause {
            let (rss, log) = sample(Instant::now() + pause / 5);
            plateau.push(format!("{rss}"));
            paused_rss = paused_rss.max(rss);
            paused_log = paused_log.max(log);
        }
        let paused_writes = written.load(Ordering::Relaxed) - before;
        cluster.faults().resume(follower).expect("resume");
        stop.store(true, Ordering::Relaxed);
        println!(
            "  steady, {:>4.1} s: {:>9} writes, peak RSS {:>7} KiB, longest log {:>5} entries",
            steady.as_secs_f64(),
            steady_writes,
            steady_rss,
            steady_log
        );
        println!(
            "  paused, {:>4.1} s: {:>9} writes, peak RSS {:>7} KiB, longest log {:>5} entries (log window 4096)",
            pause.as_secs_f64(),
            paused_writes,
            paused_rss,
            paused_log
        );
        println!("  peak RSS in each fifth of the pause, KiB: {}", plateau.join(", "));
    });
    let copies = cluster.shutdown().expect("shutdown");
    println!("  after resuming: {} copies, identical: {}", copies.len(), copies.iter().all(|c| c == &copies[0]));
}

/// Writes completed within `window` through one replica while another sits idle: with
/// node-replication (2 replicas on its default 32 MiB log; the idle replica has a
/// registered thread that never calls in) and with corum (3 replicas, one paused).
fn idle_replica(window: Duration) {
    let progress = Arc::new(AtomicU64::new(0));
    {
        let progress = Arc::clone(&progress);
        // Detached: once the log is full this thread waits for the idle replica forever,
        // and the process ends without it.
        std::thread::spawn(move || {
            let log = Arc::new(node_replication::Log::<Write>::default());
            let busy = node_replication::Replica::<NrObject>::with_data(&log, NrObject(empty_map()));
            let idle = node_replication::Replica::<NrObject>::with_data(&log, NrObject(empty_map()));
            let _idle_thread = idle.register().expect("register on the idle replica");
            let token = busy.register().expect("register on the busy replica");
            for i in 0u64.. {
                busy.execute_mut(Write::Put(i % KEYS, i), token);
                progress.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    std::thread::sleep(window);
    let nr_writes = progress.load(Ordering::Relaxed);
    std::thread::sleep(window);
    let nr_later = progress.load(Ordering::Relaxed);

    let cluster = Builder::new(empty_map()).replicas(3).build().expect("build");
    let handle = cluster.handle();
    handle.execute_mut(Write::Put(0, 0)).expect("warm up");
    let idle = cluster.stats().iter().find(|s| s.role == RoleKind::Follower).expect("follower").replica;
    cluster.faults().pause(idle).expect("pause");
    let started = Instant::now();
    let mut corum_writes = 0u64;
    while started.elapsed() < window {
        // Pipelined like node-replication's log appends: 64 writes in flight.
        let tickets: Vec<_> = (corum_writes..corum_writes + 64)
            .map(|i| handle.submit(Write::Put(i % KEYS, i)).expect("submit"))
            .collect();
        for ticket in tickets {
            ticket.wait().expect("write");
        }
        corum_writes += 64;
    }
    cluster.faults().resume(idle).expect("resume");
    cluster.shutdown().expect("shutdown");
    let verdict = if nr_later == nr_writes { "none in the second: its log is full" } else { "still moving" };
    println!(
        "  node-replication 0.1.1, 2 replicas:   {nr_writes:>9} writes in {:.0} s, {nr_later:>9} after {:.0} s ({verdict})",
        window.as_secs_f64(),
        2.0 * window.as_secs_f64()
    );
    println!("  corum, 3 replicas, one paused:        {corum_writes:>9} writes in {:.0} s", window.as_secs_f64());
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let seconds = if quick { 1.0 } else { 3.0 };
    let threads = 4;
    println!("corum under faults ({} usable cores, {threads} client threads, 50 % writes)", corum::available_cores());

    if std::env::args().any(|arg| arg == "--slow-follower") {
        // For profiling: a follower slowed for 5 s under two writing threads.
        slowed_leader(LeaderPolicy::Any, Duration::from_secs(5), true, false);
        return;
    }
    println!("\nleadership under load: 2 threads writing, the leader crashed then restarted, then moved");
    let (crashes, transfers) = if quick { (5, 5) } else { (25, 25) };
    leadership_under_load(crashes, transfers);
    println!("\na slowed leader: 2 threads writing, the leader slowed by 2 ms per round of work");
    let window = Duration::from_secs_f64(if quick { 0.5 } else { 1.0 });
    slowed_leader(LeaderPolicy::Fastest, window, false, false);
    slowed_leader(LeaderPolicy::Any, window, false, false);
    slowed_leader(LeaderPolicy::Any, window, true, false);
    slowed_leader(LeaderPolicy::Any, window, true, true);
    if std::env::args().any(|arg| arg == "--leadership") {
        return;
    }

    println!("\nstraggler: one replica (or the lock holder) paused 5 ms out of every 50 ms, {seconds} s each");
    let corum = |straggler| System::Corum { replicas: 3, pipelined: false, straggler };
    let baseline =
        Some(straggler("parking_lot::Mutex", System::Mutex { holder_paused: false }, threads, seconds, None));
    straggler("parking_lot::Mutex, holder paused", System::Mutex { holder_paused: true }, threads, seconds, baseline);
    straggler("corum, 3 replicas", corum(Straggler::None), threads, seconds, baseline);
    straggler("corum, 3 replicas, a follower paused", corum(Straggler::Follower), threads, seconds, baseline);
    straggler("corum, 3 replicas, the leader paused", corum(Straggler::Leader), threads, seconds, baseline);
    straggler("corum, 3 replicas, the first leader paused", corum(Straggler::LeaderCore), threads, seconds, baseline);

    let (steady, pause) = if quick { (1, 2) } else { (2, 10) };
    println!("\nmemory: a follower paused for {pause} s under a full pipelined write load");
    long_pause(Duration::from_secs(steady), Duration::from_secs(pause));

    println!("\nan idle replica: writes from one thread while another replica never runs");
    idle_replica(Duration::from_secs(if quick { 1 } else { 2 }));
}
