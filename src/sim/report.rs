//! What a run reports: its counts, the delicate paths it took, or the check it broke.

use std::fmt;

use crate::protocol;

/// What happened in a run that passed every check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Peer snapshots installed, by replicas that fell behind what their peers still held
    /// and by restarted replicas whose own copy was older.
    pub snapshots: u64,
    /// Client writes submitted again after a timeout.
    pub retries: u64,
    /// Client writes given up on (see [`SimConfig::abandon_ticks`](super::SimConfig::abandon_ticks)).
    pub abandoned: u64,
    /// Operations that returned to their clients.
    pub operations_completed: u64,
    /// Slots committed.
    pub slots_committed: u64,
    /// Partitions injected.
    pub partitions: u64,
    /// Leadership transfers asked of a leader.
    pub transfers: u64,
    /// Digests replicas reported at checkpoints (every 4 slots, for objects that provide
    /// [`Dispatch::digest`](crate::Dispatch::digest)); a report that differs from the
    /// majority's breaks the run, since the simulated objects are deterministic.
    pub checkpoints: u64,
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
    /// A replica campaigned at once because the leader it followed was reported stopped.
    pub failovers_started: u64,
    /// A leader handed leadership over to the replica a transfer named.
    pub handovers: u64,
    /// A client's floor, as a slot applied it, moved into a later word (64 numbers) of the
    /// exactly-once table.
    pub floors_across_words: u64,
    /// A replica's log moved its entries to the sparse form (see
    /// [`Config::log_sparse_span`](crate::protocol::Config::log_sparse_span)).
    pub logs_made_sparse: u64,
    /// A replica's log moved its entries back from the sparse form to its ring.
    pub logs_made_dense: u64,
    /// A replica installed a snapshot of a long log: at slot [`LONG_LOG`] or beyond.
    pub snapshots_of_long_logs: u64,
    /// Client writes a replica that does not lead forwarded to the one it takes for the
    /// leader.
    pub writes_forwarded: u64,
    /// A leader collected from the write board a write that a leader of an earlier ballot
    /// had collected (a change of leader with no resubmission).
    pub writes_collected_again: u64,
    /// A client retracted a write a leader had collected (given up on at its deadline).
    pub writes_retracted_after_collection: u64,
    /// A replica put off applying committed slots because a reader was in its copy.
    pub applies_deferred: u64,
    /// A leader's collector took an idle lane off the write board's list (its owner's next
    /// post puts it back).
    pub lanes_unlisted: u64,
}

/// The slot from which a snapshot counts as one of a long log ([`Coverage::snapshots_of_long_logs`]).
pub const LONG_LOG: u64 = 500;

impl Coverage {
    /// Every path with its name and count, in a fixed order.
    pub fn paths(&self) -> [(&'static str, u64); 17] {
        [
            ("phase 1 chose among different values", self.recoveries_contested),
            ("candidate preempted by a higher ballot", self.candidacies_preempted),
            ("stale leader deposed", self.leaders_deposed),
            ("accept below a restarted acceptor's promise", self.stale_accepts_after_restart),
            ("snapshot installed while a write is retried", self.snapshots_during_retries),
            ("floor passed a retried write", self.floors_past_retried_writes),
            ("failover on a death notice", self.failovers_started),
            ("leadership handed over", self.handovers),
            ("client floor moved into a later word of the exactly-once table", self.floors_across_words),
            ("log moved to its sparse form", self.logs_made_sparse),
            ("log moved back to its ring", self.logs_made_dense),
            ("snapshot of a long log installed", self.snapshots_of_long_logs),
            ("writes forwarded by a replica that does not lead", self.writes_forwarded),
            ("write collected again by a leader of a later ballot", self.writes_collected_again),
            ("write retracted after a leader collected it", self.writes_retracted_after_collection),
            ("apply put off while a reader held the copy", self.applies_deferred),
            ("idle lane taken off the write board's list", self.lanes_unlisted),
        ]
    }

    pub(super) fn absorb(&mut self, counters: &protocol::Counters) {
        self.recoveries_contested += counters.recoveries_contested;
        self.candidacies_preempted += counters.candidacies_preempted;
        self.leaders_deposed += counters.leaders_deposed;
        self.failovers_started += counters.failovers_started;
        self.handovers += counters.handovers;
        self.logs_made_sparse += counters.logs_made_sparse;
        self.logs_made_dense += counters.logs_made_dense;
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
