//! The simulated world: the replicas (the runtime's driver over a protocol core and the
//! runtime's state type), the network, the clients, the history, and the run loop. Faults,
//! clients, the network and the checks add their methods to [`Sim`] from files of their own.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

use super::clients::Client;
use super::config::{ClientOp, SimConfig};
use super::linearizability::{Operation, Specification};
use super::report::{Failure, Report};
use super::rng::SimRng;
use crate::driver::{Driver, StateCell};
use crate::exactly_once::ClientId;
use crate::protocol::{Ballot, Message, Replica, ReplicaId, Slot};
use crate::state::{ReplicaState, Write};
use crate::transport::board::{Address, Board, Collector};
use crate::{Dispatch, Error};

/// A client's write as the simulated protocol orders it: who, the numbers it carries,
/// which write, the operation, and where it is posted on the write board (the runtime's
/// `Posted`, with the index into the run's table of writes for the checks).
pub(super) struct Request<D: Dispatch> {
    pub(super) address: Address,
    pub(super) client: u32,
    pub(super) sequence: u64,
    pub(super) floor: u64,
    /// Index into the run's table of submitted writes.
    pub(super) write: usize,
    pub(super) op: D::WriteOp,
}

impl<D: Dispatch> Clone for Request<D> {
    fn clone(&self) -> Self {
        Self {
            address: self.address,
            client: self.client,
            sequence: self.sequence,
            floor: self.floor,
            write: self.write,
            op: self.op.clone(),
        }
    }
}

impl<D: Dispatch> PartialEq for Request<D> {
    /// Requests are the same write when their numbers are: the operation is the one the
    /// write table holds for `write` (the validity check makes sure of it).
    fn eq(&self, other: &Self) -> bool {
        (self.client, self.sequence, self.floor, self.write) == (other.client, other.sequence, other.floor, other.write)
    }
}

impl<D: Dispatch> fmt::Debug for Request<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}#{} (floor {}, write {})", self.client, self.sequence, self.floor, self.write)
    }
}

impl<D: Dispatch> Write<D> for Request<D> {
    fn numbers(&self) -> (ClientId, u64, u64) {
        (ClientId::from(self.client), self.sequence, self.floor)
    }

    fn op(&self) -> &D::WriteOp {
        &self.op
    }
}

/// A simulated replica: the runtime's driver over a protocol core and the runtime's state
/// type, owned here instead of behind a lock.
pub(super) type SimDriver<D> = Driver<D, Request<D>, SimCopy<D>>;

/// A simulated replica's copy of the object: its state, owned here, and whether a reader
/// is in it for the coming round (see [`FaultConfig::copy_busy_permille`]), in which case
/// the driver puts off applying, as the runtime's does when `CopyLock::try_write` finds a
/// reader in the copy.
///
/// [`FaultConfig::copy_busy_permille`]: super::FaultConfig::copy_busy_permille
pub(super) struct SimCopy<D> {
    pub(super) state: ReplicaState<D>,
    pub(super) busy: bool,
}

impl<D> StateCell<D> for SimCopy<D> {
    fn with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> R {
        f(&mut self.state)
    }

    fn try_with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> Option<R> {
        (!self.busy).then(|| f(&mut self.state))
    }
}

pub(super) struct Node<D: Dispatch> {
    /// The replica: its core, and its state (object, exactly-once table, applied slot).
    /// A crashed replica keeps it for what survives a crash (see [`Driver::restart`]).
    /// `None` only while the replica runs a round (see `Sim::round`).
    pub(super) driver: Option<SimDriver<D>>,
    pub(super) crashed: bool,
    pub(super) paused: bool,
    /// A fast restart scheduled for this tick (see [`FaultConfig::fast_restart_permille`]).
    pub(super) restart_at: Option<u64>,
    /// The promise this replica had made when it last crashed, once it restarted.
    pub(super) promise_before_crash: Ballot,
    /// What it collected from the write board, per lane, in its current ballot (the
    /// runtime's `Io::collector`).
    pub(super) collector: Collector,
    /// Every slot below this has been applied to its state, as it last published it (the
    /// runtime's `ReplicaShared::slot_applied`): what clients see of it, also while its
    /// round runs.
    pub(super) applied_published: Slot,
}

impl<D: Dispatch> Node<D> {
    pub(super) fn driver(&self) -> &SimDriver<D> {
        self.driver.as_ref().expect("a replica's state is not read during its own round")
    }

    /// The replica's protocol core, if it runs (paused or not) and is not in a round.
    pub(super) fn core(&self) -> Option<&Replica<Request<D>>> {
        self.driver.as_ref().filter(|_| !self.crashed).map(Driver::core)
    }

    pub(super) fn core_mut(&mut self) -> Option<&mut Replica<Request<D>>> {
        self.driver.as_mut().filter(|_| !self.crashed).map(Driver::core_mut)
    }

    /// Whether it runs and is not paused (nor in a round).
    pub(super) fn runs(&self) -> bool {
        self.core().is_some() && !self.paused
    }

    pub(super) fn state(&self) -> &ReplicaState<D> {
        &self.driver().state().state
    }
}

/// A slot as the first replica to apply it saw it: its batch, the writes that took effect
/// (client, sequence), and a hash of the object afterwards.
pub(super) type Canonical<D> = (Vec<Request<D>>, Vec<(u32, u64)>, u64);

pub(super) struct InFlight<D: Dispatch> {
    pub(super) deliver_at: u64,
    pub(super) from: ReplicaId,
    pub(super) to: ReplicaId,
    pub(super) message: Message<Request<D>>,
}

/// What a replica's round starts from.
pub(super) enum Input<D: Dispatch> {
    Message(ReplicaId, Message<Request<D>>),
    Tick,
    Campaign,
    /// The runtime tells the replica that a peer stopped (or runs again).
    PeerDown(ReplicaId),
    PeerUp(ReplicaId),
    /// A leadership transfer to the given replica is asked of the replica.
    Transfer(ReplicaId),
}

/// What the runtime tells a replica about a peer's thread: it died, or runs again. Reaches
/// the replica a tick or two after the fact (the runtime's replicas see it at their next
/// round), and never while it is crashed or paused.
pub(super) struct Hint {
    pub(super) deliver_at: u64,
    pub(super) to: usize,
    pub(super) peer: usize,
    pub(super) down: bool,
}

/// Berths of a client's lane beyond its pipeline: room for the one write per client that
/// is dropped (never waited for) while it is still unanswered, and one more.
const BERTHS_BEYOND_PIPELINE: usize = 2;

/// A leader's collector takes a lane off the write board's list after finding it idle on
/// this many passes in a row (the runtime: 64), so that the sweep takes lanes off and
/// puts them back often, also while faults run.
const UNLIST_AFTER_PASSES: u32 = 1;

pub(super) struct Sim<'a, D: Dispatch, W> {
    pub(super) seed: u64,
    pub(super) rng: SimRng,
    pub(super) config: &'a SimConfig,
    pub(super) initial: D,
    pub(super) workload: W,
    pub(super) tick: u64,
    pub(super) clock: u64,
    pub(super) nodes: Vec<Node<D>>,
    pub(super) network: Vec<InFlight<D>>,
    pub(super) clients: Vec<Client<D>>,
    /// The cluster's write board, a lane per client: clients post their writes there once,
    /// the leader collects them, the first replica to apply a write answers it (the
    /// runtime's own board, driven from one thread).
    pub(super) board: Board<Request<D>, Result<D::Response, Error>>,
    pub(super) writes: Vec<(u32, u64, D::WriteOp)>,
    /// Per write (as `writes`), the ballot in which a leader last collected it.
    pub(super) collected: Vec<Option<Ballot>>,
    pub(super) history: Vec<Operation<D>>,
    /// The highest commit index any replica reached: what the runtime's read watermark holds.
    pub(super) watermark: Slot,
    /// The replica that last became leader (or, after a misleading-hint fault, any
    /// replica): what the runtime's leader hint holds.
    pub(super) leader_hint: usize,
    /// A misleading hint stays until this tick: leaders do not set it before.
    pub(super) hint_pinned_until: u64,
    /// Per slot, the batch, the writes it took effect for, and the object's hash after it,
    /// as the first replica to apply it saw them.
    pub(super) canonical: BTreeMap<Slot, Canonical<D>>,
    pub(super) took_effect: HashSet<(u32, u64)>,
    /// The replicas' digests at checkpoints (`crate::digest`), every
    /// [`DIGEST_EVERY`](super::network::DIGEST_EVERY) slots.
    pub(super) digests: crate::digest::DigestBoard,
    pub(super) report: Report,
    /// `CORUM_SIM_TRACE` set: print every client-visible event and watermark move.
    pub(super) trace: bool,
    /// `CORUM_SIM_TRACE=messages`: print every message delivered, too.
    pub(super) trace_messages: bool,
    /// The replica cut off from its peers, and the tick the partition heals.
    pub(super) partition: Option<(usize, u64)>,
    /// Recently delivered messages, for replay bursts.
    pub(super) delivered: Vec<(ReplicaId, ReplicaId, Message<Request<D>>)>,
    /// Each client's highest floor a slot applied carried (for
    /// [`Coverage::floors_across_words`](super::Coverage::floors_across_words)).
    pub(super) floors_applied: Vec<u64>,
    /// The first check a replica's round broke (see `Sim::round`).
    pub(super) failure: Option<Failure>,
    /// Death and restart notices on their way to replicas.
    pub(super) hints: Vec<Hint>,
}

impl<'a, D, W> Sim<'a, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    pub(super) fn new(seed: u64, config: &'a SimConfig, initial: D, workload: W) -> Self {
        let mut protocol = config.protocol.clone();
        protocol.replicas = config.replicas;
        let nodes = (0..config.replicas)
            .map(|i| Node {
                driver: Some(Driver::new(
                    Replica::new(ReplicaId::new(i), protocol.clone()),
                    SimCopy { state: ReplicaState::new(initial.clone()), busy: false },
                )),
                crashed: false,
                paused: false,
                restart_at: None,
                promise_before_crash: Ballot::ZERO,
                collector: Collector::unlisting_after(UNLIST_AFTER_PASSES),
                applied_published: Slot::ZERO,
            })
            .collect();
        let clients = (0..config.clients).map(|client| Client::new(client % config.replicas)).collect();
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
            board: Board::new(config.clients, config.pipeline + BERTHS_BEYOND_PIPELINE),
            writes: Vec::new(),
            collected: Vec::new(),
            history: Vec::new(),
            watermark: Slot::ZERO,
            leader_hint: 0,
            hint_pinned_until: 0,
            canonical: BTreeMap::new(),
            took_effect: HashSet::new(),
            digests: crate::digest::DigestBoard::new(config.replicas),
            report: Report { seed, ..Report::default() },
            trace: std::env::var_os("CORUM_SIM_TRACE").is_some(),
            trace_messages: std::env::var("CORUM_SIM_TRACE").is_ok_and(|value| value == "messages"),
            partition: None,
            delivered: Vec::new(),
            floors_applied: vec![0; config.clients],
            failure: None,
            hints: Vec::new(),
        }
    }

    pub(super) fn fail(&self, message: String) -> Failure {
        Failure { seed: self.seed, tick: self.tick, message }
    }

    pub(super) fn run(&mut self) -> Result<(), Failure> {
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
        let waiting: usize = self.clients.iter().map(|c| c.tickets.len() + usize::from(c.read.is_some())).sum();
        Err(self.fail(format!(
            "liveness: {} ticks after the faults stopped, {waiting} operations still wait; replicas: {}",
            self.config.liveness_ticks,
            self.describe_replicas()
        )))
    }

    pub(super) fn describe_replicas(&self) -> String {
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
}

pub(super) fn hash_of<T: Hash>(value: &T) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}
