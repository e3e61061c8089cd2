//! A deterministic simulator: N protocol replicas and simulated clients in one thread,
//! every choice derived from one `u64` seed, with faults a real run meets once a year.
//!
//! The simulator drives the same [`protocol::Replica`] the
//! threaded runtime drives, applies committed batches through the same exactly-once table,
//! serves reads the way the runtime does (at a replica that has applied everything
//! committed when the read began), and checks, on every run:
//! - **agreement**: no two replicas apply different batches in a slot;
//! - **validity**: only commands clients submitted (or no-ops) are committed;
//! - **exactly-once**: no client write takes effect twice, across retries and leader changes;
//! - **state**: replicas that applied the same prefix hold equal objects;
//! - **linearizability** of the clients' history, with the object as its own specification;
//! - **liveness**: once faults stop and every replica is back, every operation completes and
//!   the replicas converge within a bounded number of ticks.
//!
//! Faults: message loss, duplication, delay and reordering; replica crashes (the log and
//! every volatile protocol state are lost; the acceptor's promise and accepted values
//! survive, as on an acceptor's stable storage, and so does the replica's copy of the
//! object, which stands for the entries it freed) and restarts (from the newer of its own
//! copy and a peer's snapshot, then by learning), fast restarts while old messages are still
//! in flight, crashes right after a promise; pauses; partitions of a running leader; lost
//! commit notices; simultaneous campaigns; replayed old messages; and clients that retry
//! after a timeout. Each run reports how often it took the protocol's delicate paths
//! ([`Coverage`]).
//!
//! Run your own object through it to test that it is deterministic under faults:
//!
//! ```
//! use corum::sim::{self, ClientOp, SimConfig};
//! use corum::Dispatch;
//!
//! #[derive(Clone, Default, Debug, PartialEq, Eq, Hash)]
//! struct Stack(Vec<u32>);
//!
//! impl Dispatch for Stack {
//!     type ReadOp = ();
//!     type WriteOp = Option<u32>; // Some(x): push x; None: pop
//!     type Response = Option<u32>;
//!     fn dispatch(&self, _: &()) -> Option<u32> { self.0.last().copied() }
//!     fn dispatch_mut(&mut self, op: &Option<u32>) -> Option<u32> {
//!         match op { Some(x) => { self.0.push(*x); None } None => self.0.pop() }
//!     }
//! }
//!
//! for seed in 0..20 {
//!     let workload = |rng: &mut sim::SimRng, _client: usize| match rng.below(3) {
//!         0 => ClientOp::Read(()),
//!         1 => ClientOp::Write(Some(rng.below(100) as u32)),
//!         _ => ClientOp::Write(None),
//!     };
//!     let report = sim::run(seed, &SimConfig::default(), Stack::default(), workload, None)
//!         .unwrap_or_else(|failure| panic!("{failure}"));
//!     assert!(report.operations_completed > 0);
//! }
//! ```

pub mod linearizability;
pub mod workloads;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

use crate::driver::{Driver, Environment};
use crate::protocol::{self, Ballot, Batch, Message, Replica, ReplicaId, Slot};
use crate::session::{ClientId, Outstanding};
use crate::state::{may_serve, Outcome, ReplicaState, Write};
use crate::{Dispatch, Error};
use linearizability::{Call, Operation, Partition, Specification};

/// The simulator's random source: SplitMix64, so a seed replays exactly on every platform.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// What can go wrong, per tick or per message, in permille.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultConfig {
    /// Chance that a message is lost.
    pub loss_permille: u64,
    /// Chance that a message is delivered twice.
    pub duplicate_permille: u64,
    /// Each message is delivered 1 to `1 + delay_max_ticks` ticks after it is sent, so
    /// messages overtake each other.
    pub delay_max_ticks: u64,
    /// Chance per tick that a running replica crashes (never more than a minority down).
    pub crash_permille: u64,
    /// Chance per tick that a crashed replica restarts.
    pub restart_permille: u64,
    /// Chance per tick that a running replica pauses.
    pub pause_permille: u64,
    /// Chance per tick that a paused replica resumes.
    pub resume_permille: u64,
    /// Chance per crash that the replica restarts 1 or 2 ticks later, while messages sent
    /// to it before the crash are still on their way: a restarted acceptor then meets
    /// ballots it promised to ignore before it crashed.
    pub fast_restart_permille: u64,
    /// Chance that a replica crashes right after it sent a promise, and restarts 1 or 2
    /// ticks later: the moment at which the promise, not yet backed by any accepted value,
    /// must survive the crash.
    pub promise_crash_permille: u64,
    /// Chance per tick that a replica (the leader, two times out of three) is cut off from
    /// every peer for up to `partition_ticks_max` ticks. It keeps running, ticking and
    /// proposing; its messages and those sent to it are lost until the partition heals.
    pub partition_permille: u64,
    /// The longest partition, in ticks.
    pub partition_ticks_max: u64,
    /// Chance that a commit notice or heartbeat ([`Message::Commit`]) is lost, on top of
    /// `loss_permille`: followers then learn commits late and new leaders meet values whose
    /// commit nobody reported.
    pub commit_loss_permille: u64,
    /// Chance per tick that two replicas start an election in the same tick, as when their
    /// timers fire together: candidates of one round compete.
    pub campaign_permille: u64,
    /// Chance per tick that a burst of 4 to 16 messages delivered earlier is delivered
    /// again (old ballots, old commit indexes, old promises).
    pub replay_permille: u64,
}

impl FaultConfig {
    /// No faults at all; messages still take 1 to 3 ticks.
    pub fn none() -> Self {
        Self {
            loss_permille: 0,
            duplicate_permille: 0,
            delay_max_ticks: 2,
            crash_permille: 0,
            restart_permille: 0,
            pause_permille: 0,
            resume_permille: 0,
            fast_restart_permille: 0,
            promise_crash_permille: 0,
            partition_permille: 0,
            partition_ticks_max: 0,
            commit_loss_permille: 0,
            campaign_permille: 0,
            replay_permille: 0,
        }
    }
}

impl Default for FaultConfig {
    /// The uniform mix: 5 % loss, 5 % duplication, delays up to 8 ticks, and a crash,
    /// restart, pause or resume every few dozen ticks. No targeted faults; the sweep adds
    /// them on most seeds (see [`sweep_config`]).
    fn default() -> Self {
        Self {
            loss_permille: 50,
            duplicate_permille: 50,
            delay_max_ticks: 8,
            crash_permille: 8,
            restart_permille: 20,
            pause_permille: 8,
            resume_permille: 30,
            ..Self::none()
        }
    }
}

/// The shape of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Replicas in the cluster.
    pub replicas: usize,
    /// Simulated clients, each its own session.
    pub clients: usize,
    /// Operations each client issues.
    pub operations_per_client: usize,
    /// Writes one client may have in flight at once.
    pub pipeline: usize,
    /// Faults during the first `fault_ticks` ticks.
    pub faults: FaultConfig,
    /// Ticks during which faults happen; then every replica is brought back.
    pub fault_ticks: u64,
    /// After the faults stop, every operation must complete and every replica converge
    /// within this many ticks, or the run fails its liveness check.
    pub liveness_ticks: u64,
    /// A client submits a write again after this many ticks without a response.
    pub retry_ticks: u64,
    /// A client gives up on a write after this many ticks without a response, as
    /// `Handle::submit` lets go of a dropped ticket's write past the deadline: it is not
    /// retried any more, its outcome stays unknown (it may still take effect once), and the
    /// session's floor passes it. Each client gives up on one write at most. `None`:
    /// clients wait for every write.
    pub abandon_ticks: Option<u64>,
    /// Protocol timing, in ticks.
    pub protocol: protocol::Config,
}

impl Default for SimConfig {
    fn default() -> Self {
        let mut protocol = protocol::Config::new(3);
        protocol.heartbeat_ticks = 5;
        protocol.election_ticks = 30;
        protocol.election_stagger_ticks = 10;
        protocol.retransmit_ticks = 10;
        protocol.window = 4;
        protocol.batch_max = 8;
        // A short log, so that lagging replicas fall behind it and catch up by snapshot.
        protocol.log_window = 6;
        // Broken invariants fail the run in every build, release sweeps included.
        protocol.check_invariants = true;
        Self {
            replicas: 3,
            clients: 3,
            operations_per_client: 10,
            pipeline: 2,
            faults: FaultConfig::default(),
            fault_ticks: 400,
            liveness_ticks: 3_000,
            retry_ticks: 40,
            abandon_ticks: None,
            protocol,
        }
    }
}

/// What a client asks of the object.
#[derive(Debug, Clone)]
pub enum ClientOp<D: Dispatch> {
    /// A read.
    Read(D::ReadOp),
    /// A write.
    Write(D::WriteOp),
}

/// What happened in a run that passed every check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Ticks simulated.
    pub ticks: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Messages lost (to the network or to a crashed replica).
    pub messages_lost: u64,
    /// Crashes, restarts and pauses injected.
    pub crashes: u64,
    /// Restarts.
    pub restarts: u64,
    /// Pauses.
    pub pauses: u64,
    /// Leaders that stepped down.
    pub step_downs: u64,
    /// Times any replica became leader.
    pub leader_changes: u64,
    /// Snapshots installed by replicas that fell behind what their peers still held.
    pub snapshots: u64,
    /// Client writes submitted again after a timeout.
    pub retries: u64,
    /// Client writes given up on (see [`SimConfig::abandon_ticks`]).
    pub abandoned: u64,
    /// Operations that returned to their clients.
    pub operations_completed: u64,
    /// Slots committed.
    pub slots_committed: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// How often the run took each delicate path.
    pub coverage: Coverage,
}

/// How often a run took each of the protocol's delicate paths: the places where a classic
/// Paxos mistake shows. A sweep that never takes a path cannot catch a bug on it, so the
/// sweep reports these and requires each in a share of its seeds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Phase 1 recovered a value in a slot for which promises reported different values.
    pub recoveries_contested: u64,
    /// A candidate met a higher ballot before it won (competing candidates).
    pub candidacies_preempted: u64,
    /// A leader learned of a higher ballot and stepped down (a stale leader nacked).
    pub leaders_deposed: u64,
    /// An accept reached a restarted acceptor in a ballot below the promise it made before
    /// it crashed.
    pub stale_accepts_after_restart: u64,
    /// A replica installed a snapshot while a client was retrying a write.
    pub snapshots_during_retries: u64,
    /// A client's floor passed a write it had submitted more than once.
    pub floors_past_retried_writes: u64,
}

impl Coverage {
    /// Every path with its name and count, in a fixed order.
    pub fn paths(&self) -> [(&'static str, u64); 6] {
        [
            ("phase 1 chose among different values", self.recoveries_contested),
            ("candidate preempted by a higher ballot", self.candidacies_preempted),
            ("stale leader deposed", self.leaders_deposed),
            ("accept below a restarted acceptor's promise", self.stale_accepts_after_restart),
            ("snapshot installed while a write is retried", self.snapshots_during_retries),
            ("floor passed a retried write", self.floors_past_retried_writes),
        ]
    }

    fn absorb(&mut self, counters: &protocol::Counters) {
        self.recoveries_contested += counters.recoveries_contested;
        self.candidacies_preempted += counters.candidacies_preempted;
        self.leaders_deposed += counters.leaders_deposed;
    }
}

/// A run that broke a check: the seed that replays it and what broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The seed that reproduces the failure.
    pub seed: u64,
    /// The tick at which it was detected.
    pub tick: u64,
    /// What broke.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} failed at tick {}: {}\nreplay: CORUM_SIM_SEED={} cargo test --release --test sim -- --nocapture replay",
            self.seed, self.tick, self.message, self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// A command as the simulated protocol orders it: who, which write, the client's floor,
/// and the operation.
struct Command<D: Dispatch> {
    client: u32,
    sequence: u64,
    floor: u64,
    /// Index into the run's table of submitted writes.
    write: usize,
    op: D::WriteOp,
}

impl<D: Dispatch> Clone for Command<D>
where
    D::WriteOp: Clone,
{
    fn clone(&self) -> Self {
        Self { client: self.client, sequence: self.sequence, floor: self.floor, write: self.write, op: self.op.clone() }
    }
}

impl<D: Dispatch> PartialEq for Command<D> {
    /// Commands are the same write when their numbers are: the operation is the one the
    /// write table holds for `write` (the validity check makes sure of it).
    fn eq(&self, other: &Self) -> bool {
        (self.client, self.sequence, self.floor, self.write) == (other.client, other.sequence, other.floor, other.write)
    }
}

impl<D: Dispatch> fmt::Debug for Command<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{} (floor {}, write {})", self.client, self.sequence, self.floor, self.write)
    }
}

impl<D: Dispatch> Write<D> for Command<D> {
    fn session(&self) -> (ClientId, u64, u64) {
        (ClientId::from(self.client), self.sequence, self.floor)
    }

    fn op(&self) -> &D::WriteOp {
        &self.op
    }
}

/// A simulated replica: the runtime's driver over a protocol core and the runtime's state
/// type, owned here instead of behind a lock.
type SimDriver<D> = Driver<D, Command<D>, ReplicaState<D>>;

struct Node<D: Dispatch> {
    /// The replica: its core, and its state (object, exactly-once table, applied slot).
    /// A crashed replica keeps it for what survives a crash (see [`Driver::restart`]).
    /// `None` only while the replica runs a round (see `Sim::round`).
    driver: Option<SimDriver<D>>,
    crashed: bool,
    paused: bool,
    /// A fast restart scheduled for this tick (see [`FaultConfig::fast_restart_permille`]).
    restart_at: Option<u64>,
    /// The promise this replica had made when it last crashed, once it restarted.
    promise_before_crash: Ballot,
}

impl<D: Dispatch> Node<D> {
    fn driver(&self) -> &SimDriver<D> {
        self.driver.as_ref().expect("a replica's state is not read during its own round")
    }

    /// The replica's protocol core, if it runs (paused or not) and is not in a round.
    fn core(&self) -> Option<&Replica<Command<D>>> {
        self.driver.as_ref().filter(|_| !self.crashed).map(Driver::core)
    }

    fn core_mut(&mut self) -> Option<&mut Replica<Command<D>>> {
        self.driver.as_mut().filter(|_| !self.crashed).map(Driver::core_mut)
    }

    /// Whether it runs and is not paused (nor in a round).
    fn runs(&self) -> bool {
        self.core().is_some() && !self.paused
    }

    fn state(&self) -> &ReplicaState<D> {
        self.driver().state()
    }
}

/// A slot as the first replica to apply it saw it: its batch, the writes that took effect
/// (client, sequence), and a hash of the object afterwards.
type Canonical<D> = (Vec<Command<D>>, Vec<(u32, u64)>, u64);

struct InFlight<D: Dispatch> {
    deliver_at: u64,
    from: ReplicaId,
    to: ReplicaId,
    message: Message<Command<D>>,
}

/// What a replica's round starts from.
enum Input<D: Dispatch> {
    Message(ReplicaId, Message<Command<D>>),
    Tick,
    Campaign,
}

struct PendingWrite {
    write: usize,
    floor: u64,
    operation: usize,
    retry_at: u64,
    /// When the client gives up on it (`u64::MAX`: never).
    abandon_at: u64,
}

/// What a client's session keeps for a write until its outcome is reported.
#[derive(Debug, Default)]
struct SessionWrite {
    /// Submitted more than once.
    retried: bool,
    /// Given up on: the floor may pass it (as the runtime lets a dropped ticket's write go).
    given_up: bool,
}

struct PendingRead<D: Dispatch> {
    replica: usize,
    watermark: Slot,
    op: D::ReadOp,
    operation: usize,
}

struct Client<D: Dispatch> {
    /// The session's writes and floor, kept by the runtime's own type.
    session: Outstanding<SessionWrite>,
    /// The writes the client waits for (its tickets), by number.
    outstanding: BTreeMap<u64, PendingWrite>,
    read: Option<PendingRead<D>>,
    issued: usize,
    /// Whether it gave up on a write already (see [`SimConfig::abandon_ticks`]).
    gave_up: bool,
}

/// Runs one simulation of `initial` under `config` from `seed`, with clients drawing
/// operations from `workload`, and checks it. `partition` maps an operation to the key it
/// touches when the object's keys are independent, which speeds up the linearizability
/// check (see [`linearizability::check`]).
///
/// # Errors
/// A [`Failure`] naming the seed, the tick and the check that broke.
pub fn run<D>(
    seed: u64,
    config: &SimConfig,
    initial: D,
    workload: impl FnMut(&mut SimRng, usize) -> ClientOp<D>,
    partition: Option<Partition<'_, D>>,
) -> Result<Report, Failure>
where
    D: Specification,
    D::ReadOp: Clone + fmt::Debug,
    D::WriteOp: Clone + fmt::Debug,
    D::Response: Clone + PartialEq + fmt::Debug,
{
    let mut sim = Sim::new(seed, config, initial, workload);
    // A panic (a broken protocol invariant) is a failure of this seed like any other.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run())).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(Failure { seed, tick: 0, message: format!("panic: {message}") })
    });
    let tick = sim.tick;
    outcome.and_then(|()| {
        linearizability::check(&sim.initial, &sim.history, partition).map_err(|message| Failure { seed, tick, message })
    })?;
    sim.report.ticks = sim.tick;
    Ok(sim.report)
}

struct Sim<'a, D: Dispatch, W> {
    seed: u64,
    rng: SimRng,
    config: &'a SimConfig,
    initial: D,
    workload: W,
    tick: u64,
    clock: u64,
    nodes: Vec<Node<D>>,
    network: Vec<InFlight<D>>,
    clients: Vec<Client<D>>,
    writes: Vec<(u32, u64, D::WriteOp)>,
    history: Vec<Operation<D>>,
    /// The highest commit index any replica reached: what the runtime's read watermark holds.
    watermark: Slot,
    /// Per slot, the batch, the writes it took effect for, and the object's hash after it,
    /// as the first replica to apply it saw them.
    canonical: BTreeMap<Slot, Canonical<D>>,
    took_effect: HashSet<(u32, u64)>,
    report: Report,
    /// `CORUM_SIM_TRACE` set: print every client-visible event and watermark move.
    trace: bool,
    /// `CORUM_SIM_TRACE=messages`: print every message delivered, too.
    trace_messages: bool,
    /// The replica cut off from its peers, and the tick the partition heals.
    partition: Option<(usize, u64)>,
    /// Recently delivered messages, for replay bursts.
    delivered: Vec<(ReplicaId, ReplicaId, Message<Command<D>>)>,
    /// The first check a replica's round broke (see `Sim::round`).
    failure: Option<Failure>,
}

impl<'a, D, W> Sim<'a, D, W>
where
    D: Specification,
    D::ReadOp: Clone + fmt::Debug,
    D::WriteOp: Clone + fmt::Debug,
    D::Response: Clone + PartialEq + fmt::Debug,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    fn new(seed: u64, config: &'a SimConfig, initial: D, workload: W) -> Self {
        let mut protocol = config.protocol.clone();
        protocol.replicas = config.replicas;
        let nodes = (0..config.replicas)
            .map(|i| Node {
                driver: Some(Driver::new(
                    Replica::new(ReplicaId::new(i), protocol.clone()),
                    ReplicaState::new(initial.clone()),
                )),
                crashed: false,
                paused: false,
                restart_at: None,
                promise_before_crash: Ballot::ZERO,
            })
            .collect();
        let clients = (0..config.clients)
            .map(|_| Client {
                session: Outstanding::default(),
                outstanding: BTreeMap::new(),
                read: None,
                issued: 0,
                gave_up: false,
            })
            .collect();
        Self {
            seed,
            rng: SimRng::new(seed),
            config,
            initial,
            workload,
            tick: 0,
            clock: 0,
            nodes,
            network: Vec::new(),
            clients,
            writes: Vec::new(),
            history: Vec::new(),
            watermark: Slot::ZERO,
            canonical: BTreeMap::new(),
            took_effect: HashSet::new(),
            report: Report { seed, ..Report::default() },
            trace: std::env::var_os("CORUM_SIM_TRACE").is_some(),
            trace_messages: std::env::var("CORUM_SIM_TRACE").is_ok_and(|value| value == "messages"),
            partition: None,
            delivered: Vec::new(),
            failure: None,
        }
    }

    fn fail(&self, message: String) -> Failure {
        Failure { seed: self.seed, tick: self.tick, message }
    }

    fn run(&mut self) -> Result<(), Failure> {
        let deadline = self.config.fault_ticks + self.config.liveness_ticks;
        while self.tick < deadline {
            if self.tick < self.config.fault_ticks {
                self.inject_faults()?;
            } else if self.tick == self.config.fault_ticks {
                self.heal();
            }
            self.clients_act();
            self.deliver()?;
            self.tick_replicas()?;
            self.serve_reads();
            if self.tick > self.config.fault_ticks && self.finished() {
                return self.check_convergence();
            }
            self.tick += 1;
        }
        let waiting: usize = self.clients.iter().map(|c| c.outstanding.len() + usize::from(c.read.is_some())).sum();
        Err(self.fail(format!(
            "liveness: {} ticks after the faults stopped, {waiting} operations still wait; replicas: {}",
            self.config.liveness_ticks,
            self.describe_replicas()
        )))
    }

    fn describe_replicas(&self) -> String {
        let lines: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| match node.core() {
                None => format!("r{i} crashed"),
                Some(core) => format!(
                    "r{i} {:?} {:?} leader {:?} committed {:?} delivered {:?} truncated {:?} log {} snapshot {:?} waiting {}{}",
                    core.role(),
                    core.ballot_promised(),
                    core.leader(),
                    core.slot_committed(),
                    core.slot_delivered(),
                    core.slot_truncated(),
                    core.log_len(),
                    core.snapshot_wanted(),
                    core.commands_waiting() + core.proposals_in_flight(),
                    if node.paused { " paused" } else { "" }
                ),
            })
            .collect();
        format!("\n  {}", lines.join("\n  "))
    }

    // ----- faults -----------------------------------------------------------------------

    fn max_down(&self) -> usize {
        (self.config.replicas - 1) / 2
    }

    fn down(&self) -> usize {
        self.nodes.iter().filter(|n| n.crashed || n.paused).count()
    }

    fn inject_faults(&mut self) -> Result<(), Failure> {
        let faults = &self.config.faults;
        let n = self.nodes.len() as u64;
        let (crash, restart, pause, resume) =
            (faults.crash_permille, faults.restart_permille, faults.pause_permille, faults.resume_permille);
        if self.rng.chance(crash, 1000) && self.down() < self.max_down() {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].runs() {
                self.crash(i);
            }
        }
        if self.rng.chance(restart, 1000) {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].crashed {
                self.restart(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].restart_at.is_some_and(|at| at <= self.tick) && self.nodes[i].crashed {
                self.restart(i);
            }
        }
        self.inject_targeted_faults()?;
        if self.rng.chance(pause, 1000) && self.down() < self.max_down() {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].runs() {
                self.nodes[i].paused = true;
                self.report.pauses += 1;
            }
        }
        if self.rng.chance(resume, 1000) {
            let i = self.rng.below(n) as usize;
            self.nodes[i].paused = false;
        }
        // A leader that finds itself too slow gives up leadership (as the runtime's do).
        if self.rng.chance(pause, 1000) {
            let i = self.rng.below(n) as usize;
            if let Some(core) = self.nodes[i].core_mut().filter(|core| core.is_leader()) {
                core.step_down();
                self.report.step_downs += 1;
            }
        }
        Ok(())
    }

    /// Partitions, simultaneous campaigns and replayed messages: the schedules that bring
    /// competing leaders with different values, which uniform faults almost never do.
    fn inject_targeted_faults(&mut self) -> Result<(), Failure> {
        let faults = &self.config.faults;
        let (partition, partition_max, campaign, replay) =
            (faults.partition_permille, faults.partition_ticks_max, faults.campaign_permille, faults.replay_permille);
        let n = self.nodes.len() as u64;
        match self.partition {
            Some((_, heals)) if heals <= self.tick => self.partition = None,
            None if partition_max > 0 && self.rng.chance(partition, 1000) => {
                let leader = (0..self.nodes.len()).find(|&i| self.nodes[i].core().is_some_and(|c| c.is_leader()));
                let i = match leader {
                    Some(leader) if !self.rng.chance(1, 3) => leader,
                    _ => self.rng.below(n) as usize,
                };
                let heals = self.tick + 1 + self.rng.below(partition_max);
                self.partition = Some((i, heals));
                self.report.partitions += 1;
                if self.trace {
                    println!("tick {} r{i} is cut off until tick {heals}", self.tick);
                }
            }
            _ => {}
        }
        if n >= 2 && self.rng.chance(campaign, 1000) {
            let first = self.rng.below(n) as usize;
            let second = (first + 1 + self.rng.below(n - 1) as usize) % n as usize;
            for i in [first, second] {
                if self.nodes[i].runs() {
                    self.round(i, Input::Campaign)?;
                }
            }
        }
        if self.rng.chance(replay, 1000) && !self.delivered.is_empty() {
            for _ in 0..4 + self.rng.below(13) {
                let index = self.rng.below(self.delivered.len() as u64) as usize;
                let (from, to, message) = self.delivered[index].clone();
                let deliver_at = self.tick + 1 + self.rng.below(self.config.faults.delay_max_ticks + 1);
                self.network.push(InFlight { deliver_at, from, to, message });
            }
        }
        Ok(())
    }

    /// Whether a message between `a` and `b` crosses the partition.
    fn cut(&self, a: ReplicaId, b: ReplicaId) -> bool {
        self.partition.is_some_and(|(i, _)| a.index() == i || b.index() == i)
    }

    fn crash(&mut self, i: usize) {
        let fast = self.rng.chance(self.config.faults.fast_restart_permille, 1000);
        self.crash_then(i, fast);
    }

    /// Crashes replica `i`; if `fast`, schedules its restart 1 or 2 ticks later.
    fn crash_then(&mut self, i: usize, fast: bool) {
        let node = &mut self.nodes[i];
        let core = node.core().expect("crash is only injected on a running replica");
        self.report.leader_changes += core.counters().leader_changes;
        self.report.coverage.absorb(core.counters());
        node.promise_before_crash = core.ballot_promised();
        node.crashed = true;
        // The copy survives, as in the runtime: it stands for the log entries the replica
        // freed, which no peer may hold any more.
        node.restart_at = fast.then(|| self.tick + 1 + self.rng.below(2));
        self.report.crashes += 1;
        if self.trace {
            println!("tick {} r{i} crashes (promised {:?})", self.tick, self.nodes[i].promise_before_crash);
        }
    }

    /// Restarts replica `i` with the runtime's own code ([`Driver::restart`]): its
    /// acceptor's durable state survives, and its state is the newer of its own copy and a
    /// snapshot of the most advanced running peer.
    fn restart(&mut self, i: usize) {
        let mut driver = self.nodes[i].driver.take().expect("not in a round");
        driver.restart(&mut SimEnv { sim: self, i, input: None, promised: false });
        let slot = driver.state().slot_applied;
        let node = &mut self.nodes[i];
        node.driver = Some(driver);
        node.crashed = false;
        node.paused = false;
        node.restart_at = None;
        self.report.restarts += 1;
        self.count_snapshot_during_retries();
        if self.trace {
            println!("tick {} r{i} restarts at {slot:?}", self.tick);
        }
    }

    fn count_snapshot_during_retries(&mut self) {
        if self.clients.iter().any(|client| client.session.iter().any(|(_, write)| write.retried)) {
            self.report.coverage.snapshots_during_retries += 1;
        }
    }

    fn heal(&mut self) {
        self.partition = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].paused = false;
            if self.nodes[i].crashed {
                self.restart(i);
            }
        }
    }

    // ----- clients ----------------------------------------------------------------------

    fn running(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].runs()).collect();
        (!running.is_empty()).then(|| running[self.rng.below(running.len() as u64) as usize])
    }

    fn submit(&mut self, client: usize, sequence: u64) {
        let Some(target) = self.running() else { return };
        let pending = &self.clients[client].outstanding[&sequence];
        let op = self.writes[pending.write].2.clone();
        let command = Command { client: client as u32, sequence, floor: pending.floor, write: pending.write, op };
        self.nodes[target].core_mut().expect("running").propose(command);
    }

    fn clients_act(&mut self) {
        for client in 0..self.clients.len() {
            self.client_acts(client);
        }
    }

    /// Client `client` gives up on a write that took too long, retries those without a
    /// response, and, now and then, issues a new operation.
    fn client_acts(&mut self, client: usize) {
        {
            // A write given up on leaves the session: no retry, and the floor passes it. At
            // most one per client and run: every write that never returns multiplies the
            // orders the linearizability check must try.
            let state = &mut self.clients[client];
            if !state.gave_up {
                let due = state.outstanding.iter().find(|(_, pending)| pending.abandon_at <= self.tick);
                if let Some(sequence) = due.map(|(&sequence, _)| sequence) {
                    state.outstanding.remove(&sequence);
                    if let Some(write) = state.session.get_mut(sequence) {
                        write.given_up = true;
                    }
                    state.gave_up = true;
                    self.report.abandoned += 1;
                }
            }
            // Retries of writes without a response.
            let due: Vec<u64> = self.clients[client]
                .outstanding
                .iter()
                .filter(|(_, pending)| pending.retry_at <= self.tick)
                .map(|(&sequence, _)| sequence)
                .collect();
            for sequence in due {
                let retry_at = self.tick + self.config.retry_ticks;
                let state = &mut self.clients[client];
                state.outstanding.get_mut(&sequence).expect("due").retry_at = retry_at;
                if let Some(write) = state.session.get_mut(sequence) {
                    write.retried = true;
                }
                self.report.retries += 1;
                self.submit(client, sequence);
            }
            // A new operation, now and then.
            let state = &self.clients[client];
            if state.read.is_some() || state.issued >= self.config.operations_per_client || !self.rng.chance(1, 2) {
                return;
            }
            let op = (self.workload)(&mut self.rng, client);
            match op {
                ClientOp::Write(write) => {
                    if self.clients[client].outstanding.len() >= self.config.pipeline {
                        return;
                    }
                    let state = &mut self.clients[client];
                    state.issued += 1;
                    // As `Handle::submit` does: writes given up on leave, then the floor is
                    // the first write whose outcome was not reported.
                    state.session.pop_front_while(|write| write.given_up);
                    let (sequence, floor) = state.session.push(SessionWrite::default());
                    let index = self.writes.len();
                    self.writes.push((client as u32, sequence, write.clone()));
                    let operation = self.history.len();
                    self.history.push(Operation {
                        client,
                        call: Call::Write(write),
                        invoked: self.clock,
                        returned: None,
                    });
                    self.clock += 1;
                    let retry_at = self.tick + self.config.retry_ticks;
                    let abandon_at = self.config.abandon_ticks.map_or(u64::MAX, |ticks| self.tick + ticks);
                    let pending = PendingWrite { write: index, floor, operation, retry_at, abandon_at };
                    self.clients[client].outstanding.insert(sequence, pending);
                    self.submit(client, sequence);
                }
                ClientOp::Read(read) => {
                    if !self.clients[client].outstanding.is_empty() {
                        // Reads wait for the client's writes, as `Handle::execute` after
                        // waiting for its tickets would.
                        return;
                    }
                    let Some(replica) = self.running() else { return };
                    self.clients[client].issued += 1;
                    let operation = self.history.len();
                    self.history.push(Operation {
                        client,
                        call: Call::Read(read.clone()),
                        invoked: self.clock,
                        returned: None,
                    });
                    self.clock += 1;
                    let watermark = self.watermark;
                    self.clients[client].read = Some(PendingRead { replica, watermark, op: read, operation });
                }
            }
        }
    }

    /// Serves pending reads whose replica has applied everything committed when the read
    /// began; moves reads off replicas that stopped running.
    fn serve_reads(&mut self) {
        for client in 0..self.clients.len() {
            let Some(read) = &self.clients[client].read else { continue };
            let node = &self.nodes[read.replica];
            if !node.runs() {
                if let Some(replica) = self.running() {
                    self.clients[client].read.as_mut().expect("pending").replica = replica;
                }
                continue;
            }
            // The runtime's own rule (`Handle::execute`).
            let applied = node.state().slot_applied;
            if !may_serve(applied, read.watermark) {
                continue;
            }
            let response = node.state().object.dispatch(&read.op);
            let operation = read.operation;
            if self.trace {
                println!(
                    "tick {} clock {} r{} serves client {client}'s read (watermark {:?}, applied {applied:?}): {response:?}",
                    self.tick, self.clock, read.replica, read.watermark
                );
            }
            self.history[operation].returned = Some((self.clock, response));
            self.clock += 1;
            self.clients[client].read = None;
            self.report.operations_completed += 1;
        }
    }

    fn finished(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.issued >= self.config.operations_per_client && c.outstanding.is_empty() && c.read.is_none())
    }

    // ----- network and replicas ---------------------------------------------------------

    fn deliver(&mut self) -> Result<(), Failure> {
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            let message = &self.network[index];
            if message.deliver_at <= self.tick && !self.nodes[message.to.index()].paused {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        // Random delivery order within the tick.
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for message in due {
            let to = message.to.index();
            if self.cut(message.from, message.to) {
                self.report.messages_lost += 1;
                continue;
            }
            if let Message::Accept { ballot, .. } = &message.message {
                if *ballot < self.nodes[to].promise_before_crash && self.nodes[to].core().is_some() {
                    self.report.coverage.stale_accepts_after_restart += 1;
                }
            }
            if self.nodes[to].core().is_none() {
                self.report.messages_lost += 1;
                continue;
            }
            if self.config.faults.replay_permille > 0 {
                let entry = (message.from, message.to, message.message.clone());
                if self.delivered.len() < 256 {
                    self.delivered.push(entry);
                } else {
                    let index = self.rng.below(256) as usize;
                    self.delivered[index] = entry;
                }
            }
            if self.trace_messages {
                println!("tick {} {:?} -> r{to}: {:?}", self.tick, message.from, message.message);
            }
            self.report.messages_delivered += 1;
            self.round(to, Input::Message(message.from, message.message))?;
        }
        Ok(())
    }

    fn tick_replicas(&mut self) -> Result<(), Failure> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].runs() {
                self.round(i, Input::Tick)?;
            }
        }
        Ok(())
    }

    /// One round of replica `i`, started by `input`, through the runtime's driver (see
    /// [`SimEnv`]); then, now and then, a crash right after it sent a promise.
    fn round(&mut self, i: usize, input: Input<D>) -> Result<(), Failure> {
        let mut driver = self.nodes[i].driver.take().expect("one round at a time");
        let mut env = SimEnv { sim: self, i, input: Some(input), promised: false };
        driver.round(&mut env);
        let promised = env.promised;
        self.nodes[i].driver = Some(driver);
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let faulty = self.tick < self.config.fault_ticks;
        let promise_crash = if faulty { self.config.faults.promise_crash_permille } else { 0 };
        if promised && self.down() < self.max_down() && self.rng.chance(promise_crash, 1000) {
            self.crash_then(i, true);
        }
        Ok(())
    }

    /// Records the first broken check of a round.
    fn broke(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(self.fail(message));
        }
    }

    /// Once every operation completed: run until every replica applied everything
    /// committed, then compare their states.
    fn check_convergence(&mut self) -> Result<(), Failure> {
        let deadline = self.config.fault_ticks + self.config.liveness_ticks;
        loop {
            let target = self.watermark;
            let converged = self.nodes.iter().all(|n| n.core().is_some_and(|core| core.slot_delivered() >= target));
            if converged {
                break;
            }
            if self.tick >= deadline {
                let delivered: Vec<u64> =
                    self.nodes.iter().map(|n| n.core().map_or(0, |c| c.slot_delivered().get())).collect();
                return Err(self.fail(format!(
                    "liveness: replicas did not converge on {target:?} after the faults stopped: delivered {delivered:?}"
                )));
            }
            self.tick += 1;
            self.deliver()?;
            self.tick_replicas()?;
        }
        let first = &self.nodes[0];
        let delivered = first.core().map(|c| c.slot_delivered());
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            if node.core().map(|c| c.slot_delivered()) == delivered && node.state() != first.state() {
                return Err(self.fail(format!("state: replicas 0 and {i} applied the same prefix but differ")));
            }
        }
        for node in &self.nodes {
            if let Some(core) = node.core() {
                self.report.leader_changes += core.counters().leader_changes;
                self.report.coverage.absorb(core.counters());
            }
        }
        Ok(())
    }
}

/// The simulator's [`Environment`] for replica `i` during one round: the simulated network
/// (with its faults), the simulated watermark, the clients, and the checks that every
/// applied slot must pass.
struct SimEnv<'s, 'a, D: Dispatch, W> {
    sim: &'s mut Sim<'a, D, W>,
    i: usize,
    input: Option<Input<D>>,
    /// Whether the round sent a promise (a crash may follow it).
    promised: bool,
}

impl<D, W> Environment<D, Command<D>> for SimEnv<'_, '_, D, W>
where
    D: Specification,
    D::ReadOp: Clone + fmt::Debug,
    D::WriteOp: Clone + fmt::Debug,
    D::Response: Clone + PartialEq + fmt::Debug,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    fn feed(&mut self, core: &mut Replica<Command<D>>) -> bool {
        match self.input.take() {
            Some(Input::Message(from, message)) => core.step(from, message),
            Some(Input::Tick) => core.tick(),
            Some(Input::Campaign) => {
                core.campaign();
                if self.sim.trace {
                    println!("tick {} r{} campaigns in {:?}", self.sim.tick, self.i, core.ballot_promised());
                }
            }
            None => return false,
        }
        true
    }

    fn publish_committed(&mut self, slot_committed: Slot, leading: bool) {
        let sim = &mut *self.sim;
        if slot_committed > sim.watermark {
            sim.watermark = slot_committed;
            if sim.trace {
                let role = if leading { "leader" } else { "not leading" };
                println!("tick {} r{} ({role}) raises the watermark to {:?}", sim.tick, self.i, sim.watermark);
            }
        }
    }

    /// Puts the messages on the network, losing, duplicating and delaying them as the
    /// fault configuration says.
    fn send(&mut self, messages: &mut Vec<(ReplicaId, Message<Command<D>>)>) -> bool {
        let sim = &mut *self.sim;
        let faulty = sim.tick < sim.config.fault_ticks;
        let (loss, duplicate, delay, commit_loss) = if faulty {
            let f = &sim.config.faults;
            (f.loss_permille, f.duplicate_permille, f.delay_max_ticks, f.commit_loss_permille)
        } else {
            (0, 0, sim.config.faults.delay_max_ticks, 0)
        };
        let from = ReplicaId::new(self.i);
        let any = !messages.is_empty();
        for (to, message) in messages.drain(..) {
            self.promised |= matches!(message, Message::Promise { .. });
            let targeted = matches!(message, Message::Commit { .. }) && sim.rng.chance(commit_loss, 1000);
            if targeted || sim.cut(from, to) || sim.rng.chance(loss, 1000) {
                sim.report.messages_lost += 1;
                continue;
            }
            let copies = if sim.rng.chance(duplicate, 1000) { 2 } else { 1 };
            for _ in 0..copies {
                let deliver_at = sim.tick + 1 + sim.rng.below(delay + 1);
                sim.network.push(InFlight { deliver_at, from, to, message: message.clone() });
            }
        }
        any
    }

    /// Checks the slot just applied: validity (only submitted writes are committed),
    /// agreement (every replica applies the same batch in a slot), exactly-once (no write
    /// takes effect in two slots) and state (the same writes took effect, and the object
    /// is the same, on every replica that applied the slot).
    fn applied_slot(
        &mut self,
        slot: Slot,
        batch: &Batch<Command<D>>,
        outcomes: &[Outcome<D::Response>],
        state: &ReplicaState<D>,
    ) {
        let (sim, i) = (&mut *self.sim, self.i);
        let commands = batch.commands();
        for command in commands {
            let valid = sim
                .writes
                .get(command.write)
                .is_some_and(|(client, sequence, _)| *client == command.client && *sequence == command.sequence);
            if !valid {
                sim.broke(format!("validity: replica {i} applies {command:?} in {slot:?}, never submitted"));
                return;
            }
        }
        let effects: Vec<(u32, u64)> =
            outcomes.iter().map(|outcome| (commands[outcome.index].client, commands[outcome.index].sequence)).collect();
        let hash = hash_of(&state.object);
        match sim.canonical.get(&slot) {
            Some((expected, expected_effects, expected_hash)) => {
                if expected.as_slice() != commands {
                    let message = format!(
                        "agreement: replica {i} applies {commands:?} in {slot:?}, another applied {expected:?}"
                    );
                    sim.broke(message);
                } else if expected_effects != &effects || *expected_hash != hash {
                    let message = format!(
                        "state: replica {i} diverged in {slot:?}: writes {effects:?} took effect, another saw {expected_effects:?}"
                    );
                    sim.broke(message);
                }
            }
            None => {
                for effect in &effects {
                    if !sim.took_effect.insert(*effect) {
                        let message = format!(
                            "exactly-once: client {} write {} takes effect a second time, in {slot:?}",
                            effect.0, effect.1
                        );
                        sim.broke(message);
                    }
                }
                sim.canonical.insert(slot, (commands.to_vec(), effects, hash));
                sim.report.slots_committed += 1;
            }
        }
    }

    /// Readers look at the state itself between rounds; nothing to publish.
    fn publish_applied(&mut self, _slot: Slot) {}

    /// The first replica to apply a write completes its client, which may then issue its
    /// next operation at once, in the middle of this round, as a woken caller would: a read
    /// that begins now must see the write.
    fn complete(&mut self, command: &Command<D>, result: Result<D::Response, Error>) {
        let sim = &mut *self.sim;
        let client = command.client as usize;
        let Some(pending) = sim.clients[client].outstanding.remove(&command.sequence) else { return };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                sim.broke(format!("the object failed client {client}'s write {}: {error}", command.sequence));
                return;
            }
        };
        let state = &mut sim.clients[client];
        if state.session.forget(command.sequence).is_some_and(|write| write.retried)
            && state.session.floor() > command.sequence
        {
            sim.report.coverage.floors_past_retried_writes += 1;
        }
        if sim.trace {
            println!(
                "tick {} clock {} r{}: client {client} write {} returns {response:?}",
                sim.tick, sim.clock, self.i, command.sequence
            );
        }
        sim.history[pending.operation].returned = Some((sim.clock, response));
        sim.clock += 1;
        sim.report.operations_completed += 1;
        sim.client_acts(client);
    }

    fn donors(&self) -> Vec<(usize, Slot)> {
        let nodes = &self.sim.nodes;
        (0..nodes.len())
            .filter(|&j| j != self.i && nodes[j].runs())
            .map(|j| (j, nodes[j].state().slot_applied))
            .collect()
    }

    fn copy_state(&self, peer: usize) -> ReplicaState<D> {
        self.sim.nodes[peer].state().snapshot()
    }

    fn installed_snapshot(&mut self, peer: usize, slot: Slot) {
        let sim = &mut *self.sim;
        sim.report.snapshots += 1;
        sim.count_snapshot_during_retries();
        if sim.trace {
            println!("tick {} r{} installs r{peer}'s snapshot at {slot:?}", sim.tick, self.i);
        }
    }
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The configuration the seed sweep derives from `seed`: 3 or 5 replicas, 2 to 4 clients,
/// pipelines of 1 to 3 writes, the uniform fault mix, and on three seeds in four the
/// targeted faults of [`FaultConfig`] on top (partitions of a running leader, lost commit
/// notices, simultaneous campaigns, fast restarts, replayed messages), each on its own
/// share of seeds. An eighth of the seeds run without the election stagger, and an
/// eighth retry writes eagerly.
pub fn sweep_config(seed: u64) -> SimConfig {
    let mut rng = SimRng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let mut config = SimConfig {
        replicas: if rng.chance(1, 3) { 5 } else { 3 },
        clients: 2 + rng.below(3) as usize,
        pipeline: 1 + rng.below(3) as usize,
        // A quarter of the seeds have clients that give up on slow writes.
        abandon_ticks: rng.chance(1, 4).then(|| SimConfig::default().retry_ticks * (1 + rng.below(4))),
        ..SimConfig::default()
    };
    if rng.chance(3, 4) {
        let faults = &mut config.faults;
        if rng.chance(1, 2) {
            faults.partition_permille = 10 + rng.below(20);
            faults.partition_ticks_max = 20 + rng.below(100);
        }
        if rng.chance(1, 2) {
            faults.commit_loss_permille = 200 + rng.below(600);
        }
        if rng.chance(1, 2) {
            faults.campaign_permille = 5 + rng.below(20);
        }
        if rng.chance(1, 2) {
            faults.fast_restart_permille = 500 + rng.below(500);
            faults.promise_crash_permille = 300 + rng.below(600);
            faults.crash_permille *= 2;
        }
        if rng.chance(1, 3) {
            faults.replay_permille = 5 + rng.below(20);
        }
    }
    if rng.chance(1, 8) {
        config.protocol.election_stagger_ticks = 0;
    }
    if rng.chance(1, 8) {
        config.retry_ticks = 8 + rng.below(8);
    }
    config
}

/// Runs seed `seed` of the sweep: the configuration from [`sweep_config`] on a
/// [`workloads::Register`] (even seeds) or a [`workloads::KvMap`] (odd seeds).
///
/// # Errors
/// The [`Failure`] of that seed.
pub fn sweep_seed(seed: u64) -> Result<Report, Failure> {
    let config = sweep_config(seed);
    if seed % 2 == 0 {
        run(seed, &config, workloads::Register::default(), workloads::Register::workload, None)
    } else {
        let key = |call: &Call<workloads::KvGet, workloads::KvWrite>| workloads::KvMap::key(call);
        run(seed, &config, workloads::KvMap::default(), workloads::KvMap::workload, Some(&key))
    }
}
