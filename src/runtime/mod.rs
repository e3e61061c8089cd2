//! The threaded runtime: one pinned thread per replica driving a protocol core, client
//! handles, completion slots, fault injection, stats and shutdown.
//!
//! Memory shared between threads lives in [`Shared`]; each replica thread owns its protocol
//! core, its ends of the rings, and its exactly-once table.

mod builder;
mod cluster;
#[cfg_attr(not(corum_loom), allow(unreachable_pub))]
mod completion;
mod handle;
mod idle;
mod replica;

use std::time::Duration;

use crossbeam_utils::CachePadded;

pub use builder::{available_cores, Builder};
pub use cluster::{Cluster, Faults, ReplicaStats, ReplicaStatus};
pub use handle::{Handle, Ticket};
pub use idle::IdleStrategy;

use crate::protocol::Slot;
use crate::session::ClientId;
pub(crate) use crate::state::ReplicaState;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::sync::{Arc, RwLock};
use crate::transport::event::EventCount;
use crate::transport::queue::Queue;
use crate::Dispatch;
#[cfg(corum_loom)]
pub use completion::Completion;
#[cfg(not(corum_loom))]
pub(crate) use completion::Completion;

/// One client write in flight: who sent it, its number, the client's floor (every write of
/// this client numbered below it has completed), the operation, and where to put the
/// response. Shared by the client and every replica through an `Arc`.
pub(crate) struct Request<D: Dispatch> {
    client: ClientId,
    sequence: u64,
    floor: u64,
    op: D::WriteOp,
    completion: Completion<D::Response>,
}

/// What the protocol orders: a shared pointer to a request.
pub(crate) type Command<D> = Arc<Request<D>>;

impl<D: Dispatch> crate::state::Write<D> for Command<D> {
    fn session(&self) -> (ClientId, u64, u64) {
        (self.client, self.sequence, self.floor)
    }

    fn op(&self) -> &D::WriteOp {
        &self.op
    }
}

/// A replica thread's lifecycle, stored in [`ReplicaShared::status`].
const RUNNING: u8 = 0;
const PAUSED: u8 = 1;
const CRASHED: u8 = 2;
const STOPPED: u8 = 3;

/// Settings the runtime reads at run time (the protocol's live in its own `Config`).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    tick: Duration,
    deadline: Duration,
    retry_after: Duration,
    read_failover: Duration,
    idle: IdleStrategy,
    /// Whether waiting threads spin before they yield: only when the process has a core
    /// for every replica and at least one more (see [`IdleStrategy::Park`]).
    spin: bool,
    pending_max: usize,
}

/// Counters a replica thread publishes for [`Cluster::stats`]; written by that thread only.
#[derive(Debug, Default)]
struct StatsCell {
    role: AtomicU8,
    ballot: AtomicU64,
    slot_committed: AtomicU64,
    batches_proposed: AtomicU64,
    leader_changes: AtomicU64,
    elections_started: AtomicU64,
    messages_dropped: AtomicU64,
    commands_waiting: AtomicU64,
    log_len: AtomicU64,
    snapshots_installed: AtomicU64,
}

/// What clients and peers share with one replica thread.
pub(crate) struct ReplicaShared<D: Dispatch> {
    /// The replica's copy: written by its thread when applying, read by clients serving
    /// reads and by peers copying a snapshot.
    state: RwLock<ReplicaState<D>>,
    /// Every slot below this has been applied to `state`. Written (Release) by the replica
    /// thread after applying, and by `Faults::restart` while that thread is down; it never
    /// decreases. Read by clients (Acquire).
    slot_applied: CachePadded<AtomicU64>,
    /// Readers waiting for `slot_applied` to reach their watermark park here.
    applied: EventCount,
    /// Client submissions to this replica.
    submissions: Queue<Command<D>>,
    /// The replica thread parks here when idle; peers, clients and faults notify it.
    wake: EventCount,
    /// RUNNING, PAUSED, CRASHED or STOPPED.
    status: AtomicU8,
    /// Set by the replica thread once it has seen `PAUSED` and stopped working.
    pause_acknowledged: AtomicBool,
    /// Injected slowness: nanoseconds the replica thread sleeps after each round of work.
    slowness_nanos: AtomicU64,
    stats: StatsCell,
}

/// Everything the cluster's threads and handles share.
pub(crate) struct Shared<D: Dispatch> {
    replicas: Box<[ReplicaShared<D>]>,
    /// The highest commit index any replica has reached: every slot below it is committed.
    /// Replicas raise it (Release) before anyone can apply those slots, so a read that loads
    /// it (Acquire) and waits until its replica applied that far sees every write that
    /// completed before the read began.
    slot_committed: CachePadded<AtomicU64>,
    /// The replica that last became leader: where clients submit.
    leader: CachePadded<AtomicUsize>,
    /// Set by shutdown: new calls fail with [`crate::Error::Shutdown`].
    closed: AtomicBool,
    /// Set when replica threads must exit.
    stop: AtomicBool,
    next_client: AtomicU64,
    options: Options,
}

impl<D: Dispatch> ReplicaShared<D> {
    fn status(&self) -> u8 {
        // Acquire pairs with the Release stores in `Faults` and the replica thread's exit.
        self.status.load(Ordering::Acquire)
    }

    fn slot_applied(&self) -> Slot {
        // Acquire pairs with the replica thread's Release store after applying: the object
        // behind the lock holds every write below this slot.
        Slot::new(self.slot_applied.load(Ordering::Acquire))
    }
}

impl<D: Dispatch> Shared<D> {
    fn slot_committed(&self) -> Slot {
        // Acquire pairs with the replicas' Release `fetch_max` in `publish_progress`.
        Slot::new(self.slot_committed.load(Ordering::Acquire))
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The replica to submit writes to: the leader if it runs, else `home` if it runs,
    /// else any running replica (which forwards to the leader once it knows one).
    fn write_target(&self, home: usize) -> usize {
        // Relaxed: the hint only steers where requests go; correctness does not depend on it.
        let leader = self.leader.load(Ordering::Relaxed);
        if self.replicas[leader].status() == RUNNING {
            return leader;
        }
        self.running_from(home).unwrap_or(home)
    }

    /// The first running replica at or after `start`, wrapping around.
    fn running_from(&self, start: usize) -> Option<usize> {
        let n = self.replicas.len();
        (0..n).map(|offset| (start + offset) % n).find(|&index| self.replicas[index].status() == RUNNING)
    }
}

/// What the runtime's unit tests share.
#[cfg(all(test, not(corum_loom)))]
pub(crate) mod test_support {
    /// A counter: writes add, reads return the sum.
    #[derive(Clone, Default)]
    pub(crate) struct Counter(pub(crate) u64);

    impl crate::Dispatch for Counter {
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
}
