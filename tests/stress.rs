//! Threaded stress under a seeded fault schedule, as a user's program would stress corum:
//! client threads run mixed reads and writes on a key-value map (synchronously, or keeping
//! several pipelined tickets in flight) while a fault thread pauses, slows, crashes and
//! restarts replicas (never more than a minority at once), optionally with eager write
//! retries and with busy threads outside corum on every core. The clients' history is
//! checked for linearizability, and at shutdown every replica must hold the same map and
//! the same exactly-once record.
//!
//! `CORUM_STRESS_SEED=S` picks the schedule (default 1); a failure prints it.
//! `CORUM_STRESS_BUSY=N` runs N busy threads per core in the overload scenario (default 1).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use corum::sim::linearizability::{check, Call, Operation};
use corum::sim::workloads::{KvGet, KvMap, KvWrite};
use corum::sim::{ClientOp, SimRng};
use corum::{Builder, Cluster, Error, Ticket};

/// The deadline of every call: far above what anything needs (see `tests/common`), so that a
/// call that fails with `NoQuorum` while a majority runs shows a lost write, not a loaded
/// machine.
const PATIENCE: Duration = Duration::from_secs(120);

fn seed() -> u64 {
    std::env::var("CORUM_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

/// Which faults the schedule injects.
#[derive(Clone, Copy, PartialEq)]
enum Faults {
    /// Pauses, slowness and crashes with restarts, a third of them on the leader.
    Mixed,
    /// Crashes and restarts only, two thirds of them on the leader.
    LeaderCrashes,
}

/// One stress run's shape.
#[derive(Clone, Copy)]
struct Stress {
    replicas: usize,
    clients: usize,
    seconds: f64,
    /// The operations one client issues (a bound on the linearizability check; a client
    /// goes past it only while the fault schedule has not yet done its part, see `Done`).
    ops: usize,
    /// Writes a client keeps in flight (1: synchronous `execute_mut`).
    pipeline: usize,
    /// `Builder::retry_after`, when not the default.
    retry_after: Option<Duration>,
    /// Busy threads outside corum, one per core, for the whole run.
    overload: bool,
    faults: Faults,
}

impl Default for Stress {
    fn default() -> Self {
        Self {
            replicas: 3,
            clients: 4,
            seconds: 4.0,
            ops: 150_000,
            pipeline: 1,
            retry_after: None,
            overload: false,
            faults: Faults::Mixed,
        }
    }
}

/// What the fault schedule and the leadership mover have done so far, for the clients: they
/// go on past their operations until the schedule has hit the leader and, in the mixed
/// schedule, leadership was moved (on a loaded machine the clients may otherwise finish
/// before the fault thread first runs).
#[derive(Default)]
struct Done {
    on_leader: AtomicU64,
    moved: AtomicU64,
}

impl Done {
    fn enough(&self, kinds: Faults) -> bool {
        // Relaxed: counters the clients only look at to know when to stop.
        self.on_leader.load(Ordering::Relaxed) > 0 && (kinds != Faults::Mixed || self.moved.load(Ordering::Relaxed) > 0)
    }
}

/// Injects faults until `stop`, keeping at most `(n - 1) / 2` replicas faulty at once.
/// Returns how many faults it injected, and how many of them hit the leader of the moment.
fn fault_schedule(
    cluster: &Cluster<KvMap>,
    mut rng: SimRng,
    stop: &AtomicBool,
    kinds: Faults,
    done: &Done,
) -> (u64, u64) {
    let n = cluster.replicas();
    let minority = (n - 1) / 2;
    // What each replica suffers now: 0 nothing, 1 paused, 2 slowed, 3 crashed.
    let mut fault = vec![0u8; n];
    let mut injected = 0;
    let mut on_leader = 0;
    let leader_share = if kinds == Faults::LeaderCrashes { 2 } else { 1 };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(2 + rng.below(10)));
        let leader = cluster.leader();
        let replica = match leader {
            Some(leader) if rng.chance(leader_share, 3) => leader,
            _ => rng.below(n as u64) as usize,
        };
        let faults = cluster.faults();
        match fault[replica] {
            0 if fault.iter().filter(|&&f| f != 0).count() < minority => {
                let kind = if kinds == Faults::LeaderCrashes { 3 } else { 1 + rng.below(3) as u8 };
                match kind {
                    1 => faults.pause(replica),
                    2 => faults.slow(replica, Duration::from_micros(200 + rng.below(2_000))),
                    _ => faults.crash(replica),
                }
                .expect("inject a fault");
                fault[replica] = kind;
                injected += 1;
                on_leader += u64::from(leader == Some(replica));
                done.on_leader.store(on_leader, Ordering::Relaxed);
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

/// Moves leadership to a random replica every few milliseconds until `stop`, racing the
/// fault schedule's crashes and pauses. Returns how many transfers completed, and how many
/// were refused because their target was down (paused or crashed meanwhile).
fn move_leadership(cluster: &Cluster<KvMap>, mut rng: SimRng, stop: &AtomicBool, done: &Done) -> (u64, u64) {
    let (mut moved, mut refused) = (0, 0);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(3 + rng.below(15)));
        let to = rng.below(cluster.replicas() as u64) as usize;
        match cluster.transfer_leadership(to) {
            Ok(()) => {
                moved += 1;
                done.moved.store(moved, Ordering::Relaxed);
            }
            Err(corum::Error::ReplicaDown { .. }) => refused += 1,
            Err(error) => panic!("transfer to {to} with a majority running: {error}"),
        }
    }
    (moved, refused)
}

/// The history the clients record, with the clock that orders it in real time.
struct History {
    clock: AtomicU64,
    operations: Mutex<Vec<Operation<KvMap>>>,
    /// When an operation last completed, and the longest time without one.
    completions: Mutex<(Instant, Duration)>,
    /// Calls that failed with `NoQuorum`.
    no_quorum: AtomicU64,
    /// The longest any call took, from its invocation to its return.
    longest_call: Mutex<Duration>,
}

impl Default for History {
    fn default() -> Self {
        Self {
            clock: AtomicU64::new(0),
            operations: Mutex::default(),
            completions: Mutex::new((Instant::now(), Duration::ZERO)),
            no_quorum: AtomicU64::new(0),
            longest_call: Mutex::new(Duration::ZERO),
        }
    }
}

impl History {
    fn now(&self) -> u64 {
        // SeqCst: the clock orders invocations and returns of all clients in real time,
        // which is what linearizability is checked against.
        self.clock.fetch_add(1, Ordering::SeqCst)
    }

    /// An invocation: its place in the history's order, and when it happened.
    fn invoke(&self) -> (u64, Instant) {
        (self.now(), Instant::now())
    }

    /// Records an operation invoked at `invoked`. Only `NoQuorum` (outcome unknown: the
    /// write may or may not have taken effect) is an acceptable failure.
    fn record(
        &self,
        client: usize,
        call: Call<KvGet, KvWrite>,
        (invoked, started): (u64, Instant),
        outcome: Result<Option<u64>, Error>,
    ) {
        let mut longest = self.longest_call.lock().unwrap();
        *longest = (*longest).max(started.elapsed());
        drop(longest);
        let returned = match outcome {
            Ok(response) => {
                let mut completions = self.completions.lock().unwrap();
                let now = Instant::now();
                completions.1 = completions.1.max(now - completions.0);
                completions.0 = now;
                Some((self.now(), response))
            }
            Err(Error::NoQuorum { .. }) => {
                self.no_quorum.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) => panic!("seed {}: client {client}: {error}", seed()),
        };
        self.operations.lock().unwrap().push(Operation { client, call, invoked, returned });
    }
}

/// One client: synchronous calls, or up to `pipeline` write tickets in flight (a read
/// first waits for them, as a program that reads its own writes must). It stops after
/// `stress.ops` operations or `stress.seconds`, once the schedule has `done` enough (or
/// after [`PATIENCE`], and the test fails).
fn client(handle: corum::Handle<KvMap>, client: usize, stress: Stress, history: &History, done: &Done) {
    let mut rng = SimRng::new(seed().wrapping_mul(1_000_003) ^ client as u64);
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(stress.seconds);
    let mut in_flight: VecDeque<(KvWrite, (u64, Instant), Ticket<KvMap>)> = VecDeque::new();
    // Tickets are waited for in any order, as a program juggling several would.
    let wait_one = |in_flight: &mut VecDeque<(KvWrite, (u64, Instant), Ticket<KvMap>)>, rng: &mut SimRng| {
        let index = rng.below(in_flight.len() as u64) as usize;
        let (write, invoked, ticket) = in_flight.remove(index).expect("a ticket in flight");
        history.record(client, Call::Write(write), invoked, ticket.wait());
    };
    for issued in 0.. {
        if (issued >= stress.ops || Instant::now() >= until)
            && (done.enough(stress.faults) || started.elapsed() >= PATIENCE)
        {
            break;
        }
        match KvMap::workload(&mut rng, client) {
            ClientOp::Read(read) => {
                while !in_flight.is_empty() {
                    wait_one(&mut in_flight, &mut rng);
                }
                let invoked = history.invoke();
                history.record(client, Call::Read(read), invoked, handle.execute(read));
            }
            ClientOp::Write(write) if stress.pipeline <= 1 => {
                let invoked = history.invoke();
                history.record(client, Call::Write(write), invoked, handle.execute_mut(write));
            }
            ClientOp::Write(write) => {
                if in_flight.len() >= stress.pipeline {
                    wait_one(&mut in_flight, &mut rng);
                }
                let invoked = history.invoke();
                match handle.submit(write) {
                    Ok(ticket) => in_flight.push_back((write, invoked, ticket)),
                    Err(error) => history.record(client, Call::Write(write), invoked, Err(error)),
                }
            }
        }
    }
    while !in_flight.is_empty() {
        wait_one(&mut in_flight, &mut rng);
    }
}

/// Runs the clients against a cluster under the fault schedule, then checks the history,
/// the copies and the exactly-once records.
fn stress(stress: Stress) {
    let seed = seed();
    // Digests compared every 16 slots: the map is deterministic, so no copy may ever be
    // found diverged, through crashes, restarts, snapshots and transfers.
    let mut builder = Builder::new(KvMap::default()).replicas(stress.replicas).digest_every(16).deadline(PATIENCE);
    if let Some(retry_after) = stress.retry_after {
        builder = builder.retry_after(retry_after);
    }
    let cluster = builder.build().expect("build");
    let history = History::default();
    let stop = AtomicBool::new(false);
    let busy = AtomicBool::new(stress.overload);
    let done = Done::default();
    let ((injected, on_leader), (moved, refused)) = std::thread::scope(|scope| {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let per_core = std::env::var("CORUM_STRESS_BUSY").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
        for _ in 0..if stress.overload { cores * per_core } else { 0 } {
            scope.spawn(|| {
                while busy.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let faults = scope.spawn(|| fault_schedule(&cluster, SimRng::new(seed ^ 0xfa17), &stop, stress.faults, &done));
        let mover = (stress.faults == Faults::Mixed)
            .then(|| scope.spawn(|| move_leadership(&cluster, SimRng::new(seed ^ 0x1ead), &stop, &done)));
        let workers: Vec<_> = (0..stress.clients)
            .map(|index| {
                let (handle, history, done) = (cluster.handle(), &history, &done);
                scope.spawn(move || client(handle, index, stress, history, done))
            })
            .collect();
        // Every thread must end even when a client panics, or the scope would wait forever:
        // join the clients first, stop the others, and only then pass a panic on.
        let outcomes: Vec<_> = workers.into_iter().map(|worker| worker.join()).collect();
        stop.store(true, Ordering::Relaxed);
        busy.store(false, Ordering::Relaxed);
        let injected = faults.join();
        let moves = mover.map(|mover| mover.join());
        for outcome in outcomes {
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
        let moves = match moves {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            Some(Ok(moves)) => moves,
            None => (0, 0),
        };
        (injected.expect("fault thread"), moves)
    });
    // Final reads of every key, after every replica is back.
    let handle = cluster.handle();
    for key in 0..KvMap::KEYS {
        let read = KvGet(key);
        let invoked = history.invoke();
        history.record(stress.clients, Call::Read(read), invoked, handle.execute(read));
    }
    let stats = cluster.stats();
    assert!(stats.iter().all(|s| s.divergences == 0), "seed {seed}: a deterministic copy found diverged: {stats:#?}");
    let copies = corum::internals::shutdown_with_exactly_once_digests(cluster).expect("shutdown");
    assert_eq!(copies.len(), stress.replicas, "seed {seed}: every replica is back at shutdown");
    assert!(copies.iter().all(|(copy, _)| copy == &copies[0].0), "seed {seed}: the replicas' maps differ");
    let digests: Vec<u64> = copies.iter().map(|&(_, digest)| digest).collect();
    assert!(
        digests.iter().all(|&digest| digest == digests[0]),
        "seed {seed}: exactly-once records differ: {digests:x?}"
    );
    let longest_gap = history.completions.lock().unwrap().1;
    let longest_call = *history.longest_call.lock().unwrap();
    let no_quorum = history.no_quorum.load(Ordering::Relaxed);
    let history = history.operations.into_inner().unwrap();
    let completed = history.iter().filter(|op| op.returned.is_some()).count();
    println!(
        "stress: {} replicas, pipeline {}{}, seed {seed}: {injected} faults ({on_leader} on the leader), \
         {moved} leadership transfers ({refused} refused: target down), {completed} of {} operations completed, longest time without a completion {:.1} ms, \
         longest call {:.1} ms, {} leader changes, {} snapshots",
        stress.replicas,
        stress.pipeline,
        if stress.overload { ", overloaded" } else { "" },
        history.len(),
        longest_gap.as_secs_f64() * 1e3,
        longest_call.as_secs_f64() * 1e3,
        stats.iter().map(|s| s.leader_changes).sum::<u64>(),
        stats.iter().map(|s| s.snapshots_installed).sum::<u64>(),
    );
    let started = Instant::now();
    assert!(on_leader > 0, "seed {seed}: the schedule injected faults on the leader");
    assert!(stress.faults != Faults::Mixed || moved > 0, "seed {seed}: leadership was moved");
    // The schedule never takes a majority away, and the deadline (2 minutes) is thousands of
    // times the longest stall a leader change causes: a call that found no quorum lost its
    // write.
    assert_eq!(no_quorum, 0, "seed {seed}: calls failed with NoQuorum while a majority ran");
    let key = |call: &Call<KvGet, KvWrite>| KvMap::key(call);
    if let Err(report) = check(&KvMap::default(), &history, Some(&key)) {
        panic!("seed {seed}: {report}");
    }
    println!("stress: history checked linearizable in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn three_replicas_under_faults_stay_linearizable() {
    stress(Stress::default());
}

#[test]
fn five_replicas_under_faults_stay_linearizable() {
    stress(Stress { replicas: 5, ..Stress::default() });
}

#[test]
fn pipelined_tickets_across_leader_crashes() {
    stress(Stress { pipeline: 8, ops: 18_000, faults: Faults::LeaderCrashes, ..Stress::default() });
}

#[test]
fn eager_retries_with_crashes_and_restarts() {
    let retry_after = Some(Duration::from_micros(300));
    stress(Stress { pipeline: 4, ops: 18_000, retry_after, faults: Faults::LeaderCrashes, ..Stress::default() });
}

#[test]
fn an_overloaded_machine() {
    stress(Stress { pipeline: 4, ops: 18_000, overload: true, ..Stress::default() });
}

/// Synchronous clients on an overloaded machine: every write is carried through the
/// replicas by the client threads waiting for it, while faults pause, slow, crash and
/// restart replicas.
#[test]
fn an_overloaded_machine_with_synchronous_clients() {
    stress(Stress { ops: 60_000, overload: true, ..Stress::default() });
}
