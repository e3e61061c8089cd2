//! Threaded stress under a seeded fault schedule: client threads run mixed reads and writes
//! on a key-value map while a fault thread pauses, slows, crashes and restarts replicas
//! (never more than a minority at once). The clients' history is checked for
//! linearizability, and at shutdown every replica must hold the same map.
//!
//! `CORUM_STRESS_SEED=S` picks the schedule (default 1); a failure prints it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corum::sim::linearizability::{check, Call, Operation};
use corum::sim::workloads::KvMap;
use corum::sim::{ClientOp, SimRng};
use corum::{Builder, Cluster, Error};

fn seed() -> u64 {
    std::env::var("CORUM_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// Injects faults until `stop`, keeping at most `(n - 1) / 2` replicas faulty at once.
/// Returns how many faults it injected, and how many of them hit the leader of the moment.
fn fault_schedule(cluster: &Cluster<KvMap>, mut rng: SimRng, stop: &AtomicBool) -> (u64, u64) {
    let n = cluster.replicas();
    let minority = (n - 1) / 2;
    // What each replica suffers now: 0 nothing, 1 paused, 2 slowed, 3 crashed.
    let mut fault = vec![0u8; n];
    let mut injected = 0;
    let mut on_leader = 0;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5 + rng.below(20)));
        // A third of the time, aim at the leader: its faults exercise elections and retries.
        let leader = cluster.leader();
        let replica = match leader {
            Some(leader) if rng.chance(1, 3) => leader,
            _ => rng.below(n as u64) as usize,
        };
        let faults = cluster.faults();
        match fault[replica] {
            0 if fault.iter().filter(|&&f| f != 0).count() < minority => {
                let kind = 1 + rng.below(3) as u8;
                match kind {
                    1 => faults.pause(replica),
                    2 => faults.slow(replica, Duration::from_micros(200 + rng.below(2_000))),
                    _ => faults.crash(replica),
                }
                .expect("inject a fault");
                fault[replica] = kind;
                injected += 1;
                on_leader += u64::from(leader == Some(replica));
            }
            1 => {
                faults.resume(replica).expect("resume");
                fault[replica] = 0;
            }
            2 => {
                faults.slow(replica, Duration::ZERO).expect("full speed");
                fault[replica] = 0;
            }
            3 => {
                // A restart needs a running peer to copy from; with a minority down there is one.
                faults.restart(replica).expect("restart");
                fault[replica] = 0;
            }
            _ => {}
        }
    }
    for (replica, kind) in fault.into_iter().enumerate() {
        let faults = cluster.faults();
        match kind {
            1 => faults.resume(replica).expect("resume"),
            2 => faults.slow(replica, Duration::ZERO).expect("full speed"),
            3 => faults.restart(replica).expect("restart"),
            _ => {}
        }
    }
    (injected, on_leader)
}

/// Runs `clients` client threads for `seconds` (at most `ops` operations each) against
/// `replicas` replicas under the fault schedule, then checks.
fn stress(replicas: usize, clients: usize, ops: usize, seconds: f64) {
    let seed = seed();
    let cluster = Builder::new(KvMap::default()).replicas(replicas).build().expect("build");
    let clock = Arc::new(AtomicU64::new(0));
    let history: Arc<Mutex<Vec<Operation<KvMap>>>> = Arc::default();
    let stop = AtomicBool::new(false);
    let (injected, on_leader) = std::thread::scope(|scope| {
        let faults = scope.spawn(|| fault_schedule(&cluster, SimRng::new(seed ^ 0xfa17), &stop));
        let workers: Vec<_> = (0..clients)
            .map(|client| {
                let (handle, clock, history) = (cluster.handle(), Arc::clone(&clock), Arc::clone(&history));
                scope.spawn(move || {
                    let mut rng = SimRng::new(seed.wrapping_mul(1_000_003) ^ client as u64);
                    let until = std::time::Instant::now() + Duration::from_secs_f64(seconds);
                    for _ in 0..ops {
                        if std::time::Instant::now() > until {
                            break;
                        }
                        let op = KvMap::workload(&mut rng, client);
                        // SeqCst: the clock orders invocations and returns of all clients in
                        // real time, which is what linearizability is checked against.
                        let invoked = clock.fetch_add(1, Ordering::SeqCst);
                        let (call, outcome) = match op {
                            ClientOp::Read(read) => (Call::Read(read), handle.execute(read)),
                            ClientOp::Write(write) => (Call::Write(write), handle.execute_mut(write)),
                        };
                        let returned = match outcome {
                            Ok(response) => Some((clock.fetch_add(1, Ordering::SeqCst), response)),
                            // Its outcome is unknown: it may or may not have taken effect.
                            Err(Error::NoQuorum { .. }) => None,
                            Err(error) => panic!("seed {seed}: client {client}: {error}"),
                        };
                        history.lock().unwrap().push(Operation { client, call, invoked, returned });
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("client thread");
        }
        stop.store(true, Ordering::Relaxed);
        faults.join().expect("fault thread")
    });
    // Final reads of every key, after every replica is back.
    let handle = cluster.handle();
    let mut history = Arc::try_unwrap(history).expect("clients done").into_inner().unwrap();
    for key in 0..KvMap::KEYS {
        let read = corum::sim::workloads::KvGet(key);
        let invoked = clock.fetch_add(1, Ordering::SeqCst);
        let response = handle.execute(read).expect("final read");
        let returned = Some((clock.fetch_add(1, Ordering::SeqCst), response));
        history.push(Operation { client: clients, call: Call::Read(read), invoked, returned });
    }
    let stats = cluster.stats();
    let copies = cluster.shutdown().expect("shutdown");
    assert_eq!(copies.len(), replicas, "seed {seed}: every replica is back at shutdown");
    assert!(copies.iter().all(|copy| copy == &copies[0]), "seed {seed}: replicas differ");
    let completed = history.iter().filter(|op| op.returned.is_some()).count();
    println!(
        "stress: {replicas} replicas, seed {seed}: {injected} faults ({on_leader} on the leader), \
         {completed} of {} operations completed, \
         {} leader changes, {} snapshots",
        history.len(),
        stats.iter().map(|s| s.leader_changes).sum::<u64>(),
        stats.iter().map(|s| s.snapshots_installed).sum::<u64>(),
    );
    let started = std::time::Instant::now();
    assert!(on_leader > 0, "seed {seed}: the schedule injected faults on the leader");
    let key = |call: &Call<corum::sim::workloads::KvGet, corum::sim::workloads::KvWrite>| KvMap::key(call);
    if let Err(report) = check(&KvMap::default(), &history, Some(&key)) {
        panic!("seed {seed}: {report}");
    }
    println!("stress: history checked linearizable in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn three_replicas_under_faults_stay_linearizable() {
    stress(3, 4, 50_000, 4.0);
}

#[test]
fn five_replicas_under_faults_stay_linearizable() {
    stress(5, 4, 50_000, 4.0);
}
