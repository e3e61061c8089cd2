//! What a cluster's threads and handles share: the write board where clients post writes
//! (and the writes as it holds them), each replica's shared cell (its copy, its applied
//! slot, its status and stats), the cluster-wide watermark and leader hint, the clients'
//! view of all this (the
//! client machine's `View`), and the encodings of a replica's status and role in atomics
//! (converted here only).

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use super::cluster::ReplicaStatus;
use super::idle::{nanos, IdleStrategy};
use super::reminder::Reminders;
use super::worker::WorkerPlace;
use crate::client::{Time, Timing, View};
use crate::digest::DigestBoard;
use crate::driver::StateCell;
use crate::exactly_once::ClientId;
use crate::protocol::{RoleKind, Slot};
use crate::state::ReplicaState;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::sync::{now, Mutex};
use crate::transport::board::{Address, Board};
use crate::transport::copy_lock::CopyLock;
use crate::transport::event::EventCount;
use crate::transport::token::RunToken;
use crate::{Dispatch, Error};

/// One client write as the board holds it and the protocol cores order it: where its answer
/// goes, who sent it, its number in its session, the session's floor (every write of the
/// session numbered below it has completed), and the operation. Collectors clone it out of
/// the board into a batch, so no replica shares a reference count with the client.
pub(crate) struct Posted<D: Dispatch> {
    pub(crate) address: Address,
    pub(crate) client: ClientId,
    pub(crate) sequence: u64,
    pub(crate) floor: u64,
    pub(crate) op: D::WriteOp,
}

impl<D: Dispatch> Clone for Posted<D> {
    fn clone(&self) -> Self {
        Self {
            address: self.address,
            client: self.client,
            sequence: self.sequence,
            floor: self.floor,
            op: self.op.clone(),
        }
    }
}

impl<D: Dispatch> crate::state::Write<D> for Posted<D> {
    fn numbers(&self) -> (ClientId, u64, u64) {
        (self.client, self.sequence, self.floor)
    }

    fn op(&self) -> &D::WriteOp {
        &self.op
    }
}

/// The cluster's write board: posted writes, and their answers.
pub(crate) type WriteBoard<D> = Board<Posted<D>, Result<<D as Dispatch>::Response, Error>>;

/// Where the driver finds a replica's copy of the object: behind the lock in the replica's
/// shared cell, which readers and snapshot donors take too.
pub(crate) struct LockedCopy<D: Dispatch> {
    pub(super) shared: Arc<Shared<D>>,
    pub(super) index: usize,
}

impl<D: Dispatch> StateCell<D> for LockedCopy<D> {
    fn with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> R {
        self.shared.replicas[self.index].state.write(f)
    }

    fn try_with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> Option<R> {
        self.shared.replicas[self.index].state.try_write(f)
    }
}

/// A replica thread's lifecycle, stored in [`ReplicaShared::status`].
pub(crate) const RUNNING: u8 = 0;
pub(crate) const PAUSED: u8 = 1;
pub(crate) const CRASHED: u8 = 2;
pub(crate) const STOPPED: u8 = 3;

/// [`Shared::forked_at`] while the copies have not been found forked.
pub(crate) const NOT_FORKED: u64 = u64::MAX;

/// Settings the runtime reads at run time (the protocol's live in its own `Config`).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// When the cluster was built: the clients' clock counts from it ([`Shared::time`]).
    pub(crate) epoch: Instant,
    /// The coarse clock's reading at `epoch` (`CLOCK_MONOTONIC` read then) and its
    /// resolution, if a write's start may be read from the coarse clock
    /// ([`Shared::recent_time`]).
    pub(crate) coarse: Option<(u64, u64)>,
    /// The clients' deadline, retry interval and read switch interval, in nanoseconds.
    pub(crate) timing: Timing,
    pub(crate) tick: Duration,
    pub(crate) deadline: Duration,
    /// The election timeout (ticks times election ticks). A read whose replica has not
    /// caught up within it moves to another replica; a leader whose rounds take half of it
    /// steps down.
    pub(crate) election: Duration,
    pub(crate) idle: IdleStrategy,
    /// Whether waiting threads spin before they yield: only when the process has a core
    /// for every replica and at least one more (see [`IdleStrategy::Park`]).
    pub(crate) spin: bool,
    /// Whether waiting client threads run replicas' rounds (`Builder::helping`).
    pub(crate) helping: bool,
    pub(crate) leader_policy: super::LeaderPolicy,
    /// Replicas compare digests every this many slots (`crate::digest`).
    pub(crate) digest_every: u64,
    /// Whether a replica thread wakes the peers it sends to, and a submission wakes its
    /// replica's thread: when the process has a core for every replica and at least one
    /// more, or clients do not run rounds (see `runtime/replica.rs`); elsewhere their ticks
    /// wake them. Always under loom, where time stands still and only a notification ends
    /// a wait.
    pub(crate) wake_peers: bool,
    pub(crate) pending_max: usize,
}

/// Counters a replica thread publishes for [`Cluster::stats`]; written by that thread only.
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub(crate) role: AtomicU8,
    pub(crate) ballot: AtomicU64,
    pub(crate) slot_committed: AtomicU64,
    pub(crate) batches_proposed: AtomicU64,
    pub(crate) leader_changes: AtomicU64,
    pub(crate) elections_started: AtomicU64,
    pub(crate) messages_dropped: AtomicU64,
    pub(crate) commands_waiting: AtomicU64,
    pub(crate) log_len: AtomicU64,
    pub(crate) snapshots_installed: AtomicU64,
    pub(crate) applies_put_off: AtomicU64,
    /// The replica thread's average time per round of work, in nanoseconds (0 until it
    /// measured one): see `LeaderPolicy::Fastest`.
    pub(crate) round_nanos: AtomicU64,
    /// Nanoseconds in all that the replica's thread was held stopped while it should have
    /// been running (paused by fault injection, a stopped core): see `LeaderPolicy::Fastest`.
    pub(crate) stalled_nanos: AtomicU64,
    /// Times this replica's copy was found diverged (`crate::digest`): incremented by the
    /// replica whose report decided it, the one counter not written by its own thread only.
    pub(crate) divergences: AtomicU64,
    /// The checkpoint slot at which it was last found diverged (0: never; no checkpoint is
    /// at slot 0). Written as `divergences` is.
    pub(crate) diverged_at: AtomicU64,
}

/// What clients, peers and the replica's own thread share about one replica.
///
/// Laid out by who writes what (`repr(C)` keeps the order): the fields every call reads and
/// almost nothing writes share the first cache line, and each field that one thread or
/// another writes often has lines of its own, so that a write to it costs no other field a
/// miss. Left to the compiler, the order changed with unrelated changes to the crate, and a
/// read's cost with it (docs/BENCHMARKS.md, "What the design rests on").
#[repr(C)]
pub(crate) struct ReplicaShared<D: Dispatch> {
    /// RUNNING, PAUSED, CRASHED or STOPPED.
    pub(crate) status: AtomicU8,
    /// Whether this replica's copy was found diverged and is not yet replaced: set by
    /// whichever replica's report decided it (`Io::checkpoint`), cleared by the replica's
    /// round once it installed a healthy peer's copy. While set, the copy serves no read,
    /// completes no write and gives no snapshot.
    pub(crate) diverged: AtomicBool,
    /// Times the replica was restarted: a peer that finds it changed knows the replica
    /// crashed and came back since it last looked, also if it never saw it crashed
    /// (`Io::notice_lifecycle`).
    pub(crate) restarts: AtomicU64,
    /// Injected slowness: nanoseconds the replica thread sleeps after each round of work.
    pub(crate) slowness_nanos: AtomicU64,
    /// Every slot below this has been applied to `state`. Written (Release) by the replica
    /// thread after applying, and by `Faults::restart` while that thread is down; it never
    /// decreases. Read by clients (Acquire).
    pub(crate) slot_applied: CachePadded<AtomicU64>,
    /// The replica's copy: written by whoever runs its round when applying, read by clients
    /// serving reads (each on the reader indicator of its client id) and by peers copying
    /// a snapshot.
    pub(crate) state: CachePadded<CopyLock<ReplicaState<D>>>,
    /// Readers waiting for `slot_applied` to reach their watermark park here.
    pub(crate) applied: CachePadded<EventCount>,
    /// The replica thread parks here when idle; peers, clients and faults notify it.
    pub(crate) wake: CachePadded<EventCount>,
    /// Whether the replica's own thread is parked (waiting for work or for its token):
    /// waiting clients run the replica's rounds only then (`help.rs`). A hint, written by
    /// that thread only.
    pub(crate) parked: CachePadded<AtomicBool>,
    /// The replica's working state behind its run token: whoever holds the token runs
    /// the replica's next round (its pinned thread, or a client thread helping).
    pub(crate) worker: CachePadded<RunToken<WorkerPlace<D>>>,
    /// Written at every round.
    pub(crate) stats: CachePadded<StatsCell>,
}

/// Everything the cluster's threads and handles share. Laid out as [`ReplicaShared`] is:
/// what every call reads and almost nothing writes first, then what is written often, each
/// on lines of its own.
#[repr(C)]
pub(crate) struct Shared<D: Dispatch> {
    pub(crate) replicas: Box<[ReplicaShared<D>]>,
    /// Where sessions post writes for whichever replica leads, and find their answers.
    pub(crate) board: WriteBoard<D>,
    /// Set by shutdown: new calls fail with [`crate::Error::Shutdown`].
    pub(crate) closed: AtomicBool,
    /// Set when replica threads must exit.
    pub(crate) stop: AtomicBool,
    /// The checkpoint at which the copies were found forked (no majority digest), or
    /// [`NOT_FORKED`]: from then on calls fail with `Error::Diverged`.
    pub(crate) forked_at: AtomicU64,
    pub(crate) options: Options,
    /// The commit watermark, the highest commit index any replica has reached: every slot
    /// below it is committed. Replicas raise it (Release) before anyone can apply those
    /// slots, so a read that loads it (Acquire) and waits until its replica applied that
    /// far sees every write that completed before the read began.
    pub(crate) watermark: CachePadded<AtomicU64>,
    /// The replica that last became leader: where clients submit.
    pub(crate) leader: CachePadded<AtomicUsize>,
    /// Raised (Release) after every replica crash and restart, once the replica's status is
    /// stored: each replica compares it with what it last saw at the start of its rounds
    /// and, when it moved, tells its protocol core which peers are down
    /// ([`Replica::peer_down`](crate::protocol::Replica::peer_down)), so that a dead
    /// leader is replaced at once rather than after an election timeout.
    pub(crate) lifecycle: CachePadded<AtomicU64>,
    /// The next session's client id.
    pub(crate) next_client: CachePadded<AtomicU64>,
    /// Wakes tasks awaiting tickets when they have something to look at.
    pub(crate) reminders: CachePadded<Reminders<D>>,
    /// The replicas' digests at recent checkpoints (`crate::digest`).
    pub(crate) digests: CachePadded<Mutex<DigestBoard>>,
    /// Which client thread runs rounds for writes where replicas share cores
    /// (`help::help_write`): twice the number of passes begun, plus one while a pass runs.
    /// The others defer to a holder that keeps beginning passes, and help too once one
    /// pass takes long (its thread was preempted). A hint that spreads the work, not a
    /// lock: nothing is published through it, and every round still runs under its
    /// replica's token.
    pub(crate) helper: CachePadded<AtomicU64>,
}

impl<D: Dispatch> ReplicaShared<D> {
    /// A running replica whose copy starts as `object` behind `indicators` reader
    /// indicators; its worker is installed once its rings exist.
    pub(crate) fn new(object: D, indicators: usize) -> Self {
        Self {
            status: AtomicU8::new(RUNNING),
            diverged: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            slowness_nanos: AtomicU64::new(0),
            slot_applied: CachePadded::new(AtomicU64::new(0)),
            state: CachePadded::new(CopyLock::new(ReplicaState::new(object), indicators)),
            applied: CachePadded::new(EventCount::new()),
            wake: CachePadded::new(EventCount::new()),
            parked: CachePadded::new(AtomicBool::new(false)),
            worker: CachePadded::new(RunToken::new(None)),
            stats: CachePadded::new(StatsCell::default()),
        }
    }

    pub(crate) fn status(&self) -> u8 {
        // Acquire pairs with the Release stores in `Faults` and the replica thread's exit.
        self.status.load(Ordering::Acquire)
    }

    pub(crate) fn slot_applied(&self) -> Slot {
        // Acquire pairs with the replica thread's Release store after applying: the object
        // behind the lock holds every write below this slot.
        Slot::new(self.slot_applied.load(Ordering::Acquire))
    }
}

impl<D: Dispatch> Shared<D> {
    /// What a new cluster of `replicas` shares, run with `options`, with a write board of
    /// `lanes` lanes (sessions writing at once) of `berths` writes in flight each.
    pub(crate) fn new(replicas: Box<[ReplicaShared<D>]>, options: Options, lanes: usize, berths: usize) -> Self {
        let n = replicas.len();
        Self {
            replicas,
            board: Board::new(lanes, berths),
            closed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            forked_at: AtomicU64::new(NOT_FORKED),
            options,
            watermark: CachePadded::new(AtomicU64::new(0)),
            leader: CachePadded::new(AtomicUsize::new(0)),
            lifecycle: CachePadded::new(AtomicU64::new(0)),
            next_client: CachePadded::new(AtomicU64::new(0)),
            reminders: CachePadded::new(Reminders::default()),
            digests: CachePadded::new(Mutex::new(DigestBoard::new(n))),
            helper: CachePadded::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// The current time on the clients' clock ([`Time`]): nanoseconds since the cluster
    /// was built.
    #[inline]
    pub(crate) fn time(&self) -> Time {
        Time(nanos(now().saturating_duration_since(self.options.epoch)))
    }

    /// [`Shared::time`] from the coarse clock, where it exists and the deadline is long
    /// enough that its resolution does not matter (see `Builder::build`): the kernel's
    /// last timer tick plus one resolution, so at most a tick (1 to 10 ms) late, and early
    /// only where the kernel ran its tick late, at an eighth of the precise read's cost. For a write's start, from which its
    /// deadline counts: the precise read was the largest single cost of a pipelined write
    /// (docs/BENCHMARKS.md).
    #[inline]
    pub(crate) fn recent_time(&self) -> Time {
        match self.options.coarse {
            Some((epoch, resolution)) => Time((crate::sync::coarse_now() + resolution).saturating_sub(epoch)),
            None => self.time(),
        }
    }

    /// The moment `time` stands for.
    #[inline]
    pub(crate) fn instant(&self, time: Time) -> Instant {
        let far = self.options.epoch + Duration::from_secs(1 << 32);
        self.options.epoch.checked_add(Duration::from_nanos(time.0)).map_or(far, |at| at.min(far))
    }
}

/// What a client sees of the cluster: the client machine's view, one load each.
impl<D: Dispatch> View for Shared<D> {
    fn replicas(&self) -> usize {
        self.replicas.len()
    }

    fn closed(&self) -> bool {
        self.is_closed()
    }

    fn stopped(&self) -> bool {
        self.is_stopped()
    }

    fn forked(&self) -> Option<u64> {
        // Relaxed: a flag set once; what it refuses does not depend on other memory.
        let slot = self.forked_at.load(Ordering::Relaxed);
        (slot != NOT_FORKED).then_some(slot)
    }

    fn watermark(&self) -> Slot {
        // Acquire pairs with the replicas' Release `fetch_max` in `Io::raise_watermark`.
        Slot::new(self.watermark.load(Ordering::Acquire))
    }

    fn leader_hint(&self) -> usize {
        // Relaxed: the hint only steers where requests go; correctness does not depend on it.
        self.leader.load(Ordering::Relaxed)
    }

    fn runs(&self, replica: usize) -> bool {
        self.replicas[replica].status() == RUNNING
    }

    fn diverged(&self, replica: usize) -> bool {
        // Acquire pairs with the Release swap that marks a copy diverged.
        self.replicas[replica].diverged.load(Ordering::Acquire)
    }

    fn slot_applied(&self, replica: usize) -> Slot {
        self.replicas[replica].slot_applied()
    }
}

/// The [`ReplicaStatus`] a status code stands for.
pub(crate) fn status_of(code: u8) -> ReplicaStatus {
    match code {
        RUNNING => ReplicaStatus::Running,
        PAUSED => ReplicaStatus::Paused,
        CRASHED => ReplicaStatus::Crashed,
        _ => ReplicaStatus::Stopped,
    }
}

/// The code a role is published as in [`StatsCell`].
pub(crate) fn role_code(role: RoleKind) -> u8 {
    match role {
        RoleKind::Follower => 0,
        RoleKind::Candidate => 1,
        RoleKind::Leader => 2,
    }
}

/// The role a published code stands for.
pub(crate) fn role_of(code: u8) -> RoleKind {
    match code {
        2 => RoleKind::Leader,
        1 => RoleKind::Candidate,
        _ => RoleKind::Follower,
    }
}
