//! The systems measured: corum in each configuration, `parking_lot` locks, node-replication
//! 0.1.1 and one unsynchronised thread, each hosting the same objects through the same
//! measurement loop ([`super::harness`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corum::Builder;

use super::harness::{closed_loop, measure, Budget, Measurement};
use super::objects::{NrObject, Object, Workload, Write};

/// Who is paused 5 ms out of every 50 ms during a measurement (the straggler scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Straggler {
    None,
    /// A corum replica that does not lead, chosen afresh each period.
    Follower,
    /// The corum replica leading at the start of each period: whichever replica leads is
    /// stopped, so moving leadership cannot escape the pauses.
    Leader,
    /// The corum replica that led when the measurement began, every period: a noisy core,
    /// which leadership can move away from.
    LeaderCore,
}

pub const PAUSE: Duration = Duration::from_millis(5);
pub const PAUSE_PERIOD: Duration = Duration::from_millis(50);

/// One system in one configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// A `parking_lot::Mutex` around the object. With `holder_paused`, client thread 0
    /// sleeps 5 ms out of every 50 ms while it holds the lock.
    Mutex { holder_paused: bool },
    /// A `parking_lot::RwLock` around the object.
    RwLock,
    /// One thread applying the operations to a plain object: the ceiling for writes.
    Sequential,
    /// node-replication 0.1.1, client thread `i` on replica `i % replicas`.
    NodeReplication { replicas: usize },
    /// corum; `pipelined`: up to 64 writes in flight per client thread.
    Corum { replicas: usize, pipelined: bool, straggler: Straggler },
}

impl System {
    /// The system's name, as the reports and benchmark ids print it.
    pub fn name(&self) -> &'static str {
        match self {
            System::Mutex { .. } => "mutex",
            System::RwLock => "rwlock",
            System::Sequential => "sequential",
            System::NodeReplication { .. } => "node-replication",
            System::Corum { .. } => "corum",
        }
    }

    pub fn replicas(&self) -> usize {
        match *self {
            System::NodeReplication { replicas } | System::Corum { replicas, .. } => replicas,
            _ => 1,
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            System::Corum { pipelined: true, .. } => "pipelined",
            _ => "sync",
        }
    }

    /// Who is paused: `none`, `holder`, `follower`, `leader` or `first leader`.
    pub fn paused(&self) -> &'static str {
        match self {
            System::Mutex { holder_paused: true } => "holder",
            System::Corum { straggler: Straggler::Follower, .. } => "follower",
            System::Corum { straggler: Straggler::Leader, .. } => "leader",
            System::Corum { straggler: Straggler::LeaderCore, .. } => "first leader",
            _ => "none",
        }
    }

    /// The report's label: the system, with replicas and mode where they vary, and who is
    /// paused.
    pub fn label(&self) -> String {
        let label = match self {
            System::Corum { .. } | System::NodeReplication { .. } => {
                format!("{} r={} {}", self.name(), self.replicas(), self.mode())
            }
            _ => self.name().to_string(),
        };
        match self.paused() {
            "none" => label,
            who => format!("{label} {who} paused"),
        }
    }

    /// Measures the system on `workload` with `threads` client threads within `budget`.
    pub fn measure(&self, workload: Workload, threads: usize, budget: Budget) -> Measurement {
        match *self {
            System::Mutex { holder_paused } => mutex(workload, threads, budget, holder_paused),
            System::RwLock => rwlock(workload, threads, budget),
            System::Sequential => sequential(workload, budget),
            System::NodeReplication { replicas } => node_replication(workload, threads, budget, replicas),
            System::Corum { replicas, pipelined, straggler } => {
                corum(workload, threads, budget, replicas, pipelined, straggler)
            }
        }
    }
}

fn mutex(workload: Workload, threads: usize, budget: Budget, holder_paused: bool) -> Measurement {
    let object = parking_lot::Mutex::new(workload.object());
    let last_pause = parking_lot::Mutex::new(Instant::now());
    closed_loop(workload, threads, budget, |thread, op| {
        let mut object = object.lock();
        if holder_paused && thread == 0 {
            let mut last = last_pause.lock();
            if last.elapsed() >= PAUSE_PERIOD {
                *last = Instant::now();
                std::thread::sleep(PAUSE);
            }
        }
        match op {
            Ok(write) => object.write(write),
            Err(read) => object.read(read),
        }
    })
}

fn rwlock(workload: Workload, threads: usize, budget: Budget) -> Measurement {
    let object = parking_lot::RwLock::new(workload.object());
    closed_loop(workload, threads, budget, |_, op| match op {
        Ok(write) => object.write().write(write),
        Err(read) => object.read().read(read),
    })
}

/// No synchronisation at all, so not through `closed_loop`, whose object is shared.
fn sequential(workload: Workload, budget: Budget) -> Measurement {
    measure(1, budget, |_, share, latencies| {
        let mut object = workload.object();
        let mut rng = 1;
        let mut ops = 0;
        while share.take(ops, 1) > 0 {
            let op = workload.op(&mut rng);
            let begin = latencies.start();
            match op {
                Ok(write) => std::hint::black_box(object.write(write)),
                Err(read) => std::hint::black_box(object.read(read)),
            };
            latencies.record(begin, op.is_ok());
            ops += 1;
        }
        ops
    })
}

fn node_replication(workload: Workload, threads: usize, budget: Budget, replicas: usize) -> Measurement {
    let log = Arc::new(node_replication::Log::<Write>::new(32 * 1024 * 1024));
    let nr: Vec<_> = (0..replicas)
        .map(|_| node_replication::Replica::<NrObject>::with_data(&log, NrObject(workload.object())))
        .collect();
    // Each client thread registers once, with the replica of its index.
    let tokens: Vec<_> = (0..threads).map(|t| nr[t % nr.len()].register().expect("register")).collect();
    closed_loop(workload, threads, budget, |thread, op| {
        let (replica, token) = (&nr[thread % nr.len()], tokens[thread]);
        match op {
            Ok(write) => replica.execute_mut(write, token),
            Err(read) => replica.execute(read, token),
        }
    })
}

fn corum(
    workload: Workload,
    threads: usize,
    budget: Budget,
    replicas: usize,
    pipelined: bool,
    straggler: Straggler,
) -> Measurement {
    let mut builder = Builder::new(workload.object()).replicas(replicas);
    // `CORUM_BENCH_IDLE=spin` measures corum with `IdleStrategy::Spin` (for machines with a
    // core for every replica and client thread).
    if std::env::var("CORUM_BENCH_IDLE").is_ok_and(|idle| idle == "spin") {
        builder = builder.idle(corum::IdleStrategy::Spin);
    }
    // `CORUM_BENCH_HELP=0` measures corum with `Builder::helping(false)`: only the replicas'
    // own threads run their rounds.
    if std::env::var("CORUM_BENCH_HELP").is_ok_and(|help| help == "0") {
        builder = builder.helping(false);
    }
    let cluster = builder.build().expect("build");
    let handles: Vec<_> = (0..threads).map(|_| cluster.handle()).collect();
    handles[0].execute_mut(workload.op(&mut 7).unwrap_or(Write::Add(0))).expect("warm up");
    let leader_changes = || cluster.stats().iter().map(|replica| replica.leader_changes).sum::<u64>();
    let changes_at_start = leader_changes();
    let pausing = AtomicBool::new(straggler != Straggler::None);
    let mut outcome = std::thread::scope(|scope| {
        if straggler != Straggler::None {
            let (cluster, pausing) = (&cluster, &pausing);
            let first_leader = cluster.leader();
            scope.spawn(move || {
                while pausing.load(Ordering::Relaxed) {
                    std::thread::sleep(PAUSE_PERIOD - PAUSE);
                    let leader = cluster.leader();
                    let target = match straggler {
                        Straggler::Leader => leader,
                        Straggler::LeaderCore => first_leader,
                        _ => (0..cluster.replicas()).find(|&r| Some(r) != leader),
                    };
                    let Some(target) = target else { continue };
                    cluster.faults().pause(target).expect("pause");
                    std::thread::sleep(PAUSE);
                    cluster.faults().resume(target).expect("resume");
                }
            });
        }
        let outcome = corum_clients(&handles, workload, pipelined, threads, budget);
        pausing.store(false, Ordering::Relaxed);
        outcome
    });
    let batches: u64 = cluster.stats().iter().map(|replica| replica.batches_proposed).sum();
    let writes = outcome.ops * workload.write_pct / 100;
    if matches!(budget, Budget::Time(_)) {
        eprintln!(
            "    {batches} batches, about {} writes per batch, {} leader changes after start-up",
            writes / batches.max(1),
            leader_changes() - changes_at_start
        );
    }
    drop(handles);
    let copies = cluster.shutdown().expect("shutdown");
    outcome.copies_agree = Some(copies.iter().all(|copy| copy == &copies[0]));
    outcome
}

/// Client threads on a corum cluster: synchronous, or up to 64 writes in flight per thread.
fn corum_clients(
    handles: &[corum::Handle<Object>],
    workload: Workload,
    pipelined: bool,
    threads: usize,
    budget: Budget,
) -> Measurement {
    measure(threads, budget, |thread, share, latencies| {
        let handle = &handles[thread];
        let mut rng = thread as u64 + 1;
        let mut ops = 0;
        let mut tickets = Vec::with_capacity(if pipelined { 64 } else { 0 });
        loop {
            let burst = share.take(ops, if pipelined { 64 } else { 1 });
            if burst == 0 {
                break;
            }
            if pipelined {
                // Up to 64 writes in flight; reads in between are synchronous.
                for _ in 0..burst {
                    match workload.op(&mut rng) {
                        Ok(write) => tickets.push((latencies.start(), handle.submit(write).expect("submit"))),
                        Err(read) => {
                            let begin = latencies.start();
                            std::hint::black_box(handle.execute(read).expect("read"));
                            latencies.record(begin, false);
                            ops += 1;
                        }
                    }
                }
                for (begin, ticket) in tickets.drain(..) {
                    std::hint::black_box(ticket.wait().expect("write"));
                    latencies.record(begin, true);
                    ops += 1;
                }
            } else {
                let op = workload.op(&mut rng);
                let begin = latencies.start();
                match op {
                    Ok(write) => std::hint::black_box(handle.execute_mut(write).expect("write")),
                    Err(read) => std::hint::black_box(handle.execute(read).expect("read")),
                };
                latencies.record(begin, op.is_ok());
                ops += 1;
            }
        }
        ops
    })
}
