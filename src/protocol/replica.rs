//! The Multi-Paxos replica as a pure state machine: messages and ticks in, messages and
//! committed batches out. It owns acceptor, learner and (when elected) leader state, and
//! keeps one invariant above all: a value committed in a slot never changes.
//!
//! This file holds the replica's state, its construction and restart, and its entry points;
//! what it shows of itself is in `observe.rs`, and each role's rules live in a file of
//! their own: `acceptor.rs` (promises and accepts), `candidate.rs` (phase 1 and recovery),
//! `leader.rs` (proposing, commit, heartbeats), `leadership.rs` (failover and hand-over),
//! `learner.rs` (learning commits, catch-up, truncation), `log.rs` (entries by slot) and
//! `invariants.rs`.
//!
//! # Contract with the caller
//! The replica never does I/O and never reads a clock. The caller feeds it a round of
//! input ([`Replica::step`] for every message received, [`Replica::tick`] once per tick of
//! its clock, [`Replica::propose`] for every client command), then takes the round's output
//! with [`Replica::ready`], acts on it in the order [`Ready`] documents, and gives it back
//! with [`Replica::advance`]. The crate's own drivers do this in one place (the runtime's
//! replica threads and the simulator share it).
//!
//! Rules are those of Lamport's "Paxos Made Simple" (§2 for the synod, §3 for the
//! multi-slot log); leases and catch-up follow "Paxos Made Live" (§5).

use std::collections::VecDeque;

mod acceptor;
mod candidate;
mod invariants;
mod leader;
mod leadership;
mod learner;
mod log;
mod observe;

use std::ops::{Deref, DerefMut};

use super::config::Config;
use super::counters::Counters;
use super::message::Message;
use super::ready::Ready;
use super::types::{Ballot, Batch, BatchBuffers, ReplicaId, Slot};
use crate::plant::planted;
use candidate::CandidateState;
use leader::LeaderState;
use log::Log;

pub use leadership::FAILOVER_GRACE_TICKS;

/// What a replica's acceptor keeps across a crash; see [`Replica::durable_state`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DurableState<C> {
    /// The highest ballot promised.
    pub ballot_promised: Ballot,
    /// Every accepted entry: slot, ballot accepted in, value.
    pub accepted: Vec<(Slot, Ballot, Batch<C>)>,
}

/// Which role a replica plays; see [`Replica::role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoleKind {
    /// Accepts what the leader proposes.
    Follower,
    /// Runs phase 1 to become leader.
    Candidate,
    /// Proposes client commands.
    Leader,
}

/// One log entry: the value accepted in a slot, the ballot it was accepted in, and whether
/// it is known chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry<C> {
    ballot: Ballot,
    batch: Batch<C>,
    committed: bool,
}

/// How many batch buffers a replica keeps for reuse, per slot of its window, and beyond
/// those: a batch stays in use while it is proposed (up to `window` of them), until every
/// replica applied it and heard so (a round or two more), and while a driver applies it.
const BATCH_BUFFERS_PER_WINDOW_SLOT: usize = 4;
const BATCH_BUFFERS_SLACK: usize = 16;

/// A field left out of the replica's equality and hashing: statistics, and buffers that are
/// empty between rounds. Two replicas that differ only in these are in the same protocol
/// state (what a model checker compares).
#[derive(Debug, Clone, Default)]
struct Ignored<T>(T);

impl<T> PartialEq for Ignored<T> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl<T> Eq for Ignored<T> {}

impl<T> std::hash::Hash for Ignored<T> {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl<T> Deref for Ignored<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for Ignored<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Role<C> {
    Follower { leader: Option<ReplicaId> },
    Candidate(CandidateState<C>),
    Leader(LeaderState<C>),
}

/// One Multi-Paxos replica: acceptor, learner and, when elected, leader. See the module
/// docs for the contract with the caller.
///
/// Cloning copies the whole state, so a model checker can branch on it. Equality and
/// hashing compare the protocol state only: the [`Counters`] are statistics and the outbox
/// is empty between rounds, so both are left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Replica<C> {
    id: ReplicaId,
    config: Config,
    /// Acceptor: the highest ballot promised; nothing below it is accepted.
    ballot_promised: Ballot,
    /// Accepted and committed entries at or above `slot_truncated`.
    log: Log<Entry<C>>,
    /// Every slot below this is committed and present in `log` (or freed).
    slot_committed: Slot,
    /// Every slot below this was handed out in a `Ready`.
    slot_delivered: Slot,
    /// Entries below this were freed after every replica applied them.
    slot_truncated: Slot,
    role: Role<C>,
    /// Commands waiting for a known leader (at followers and candidates).
    buffered: VecDeque<C>,
    ticks_since_heard: u32,
    learn_cooldown: u32,
    /// A peer answered a learn request with "freed below this slot": the caller should
    /// install a snapshot reaching at least this far. `Slot::ZERO` when none is wanted.
    snapshot_wanted: Slot,
    /// The highest commit index a peer reported to us, and the peer to learn from while
    /// ours is below it.
    slot_learn_target: Slot,
    learn_from: Option<ReplicaId>,
    /// The highest commit index heard from the leader of a ballot, and that ballot: every
    /// entry accepted in that ballot below that slot is committed. Entries already there
    /// were marked when it was heard; one accepted later is marked as it is accepted. (So
    /// a replica that lags far behind its leader does not walk its whole backlog again for
    /// every message.)
    commit_heard: (Ballot, Slot),
    /// Peers the caller reported stopped ([`Replica::peer_down`]), one bit per replica: a
    /// hint that speeds up failover, never needed for safety.
    peers_down: u64,
    /// The leader this replica follows if it was reported stopped while followed (or when
    /// this replica began to follow it), until it follows another or hears from that one as
    /// a leader again: its followers replace it
    /// ([`Replica::should_replace_stopped_leader`]), also if it restarts meanwhile.
    leader_stopped: Option<ReplicaId>,
    /// A leader's commit notice this round asked how far this replica applied: answered
    /// in [`Replica::ready`], once the round's committed slots are handed out, so that the
    /// answer counts them.
    progress_owed: Option<(ReplicaId, Ballot)>,
    outbox: Ignored<Vec<(ReplicaId, Message<C>)>>,
    /// Emptied buffers of the last [`Ready`], reused by the next.
    outbox_spare: Ignored<Vec<(ReplicaId, Message<C>)>>,
    committed_spare: Ignored<Vec<(Slot, Batch<C>)>>,
    /// The buffers this replica's batches are built in while it leads, reused.
    batch_buffers: Ignored<BatchBuffers<C>>,
    counters: Ignored<Counters>,
}

impl<C: Clone> Replica<C> {
    /// A fresh replica `id` of a cluster configured by `config`. Replica 0 starts an
    /// election on its first tick; the others wait for it.
    ///
    /// # Panics
    /// If `config` does not validate or `id` is not below `config.replicas`.
    pub fn new(id: ReplicaId, config: Config) -> Self {
        if let Err(error) = config.validate() {
            panic!("invalid protocol config: {error}: {config:?}");
        }
        assert!(id.index() < config.replicas, "{id:?} is not in a cluster of {}", config.replicas);
        let log_sparse_span = config.log_sparse_span;
        let batch_buffers = BatchBuffers::new(BATCH_BUFFERS_PER_WINDOW_SLOT * config.window + BATCH_BUFFERS_SLACK);
        let mut replica = Self {
            id,
            config,
            ballot_promised: Ballot::ZERO,
            log: Log::new(log_sparse_span),
            slot_committed: Slot::ZERO,
            slot_delivered: Slot::ZERO,
            slot_truncated: Slot::ZERO,
            role: Role::Follower { leader: None },
            buffered: VecDeque::new(),
            ticks_since_heard: 0,
            learn_cooldown: 0,
            snapshot_wanted: Slot::ZERO,
            slot_learn_target: Slot::ZERO,
            learn_from: None,
            commit_heard: (Ballot::ZERO, Slot::ZERO),
            peers_down: 0,
            leader_stopped: None,
            progress_owed: None,
            outbox: Ignored::default(),
            outbox_spare: Ignored::default(),
            committed_spare: Ignored::default(),
            batch_buffers: Ignored(batch_buffers),
            counters: Ignored::default(),
        };
        if id.index() == 0 {
            replica.ticks_since_heard = replica.election_timeout();
        }
        replica
    }

    /// The acceptor state a crash must not lose: the promise and every accepted value.
    /// Paxos assumes an acceptor keeps these on stable storage; a replica restarted without
    /// them could break a promise made before the crash. Everything else is volatile.
    pub fn durable_state(&self) -> DurableState<C> {
        DurableState {
            ballot_promised: self.ballot_promised,
            accepted: self.log.iter().map(|(slot, entry)| (slot, entry.ballot, entry.batch.clone())).collect(),
        }
    }

    /// A replica restarted after a crash: its acceptor state comes back from `durable`,
    /// everything else starts empty. It follows, and catches up by learning or, when the
    /// log it needs has been freed, from a snapshot ([`Replica::install_snapshot`]).
    pub fn restart(id: ReplicaId, config: Config, durable: DurableState<C>) -> Self {
        let mut replica = Self::new(id, config);
        replica.ticks_since_heard = 0;
        // Committed values learned from peers keep their proposer's ballot, which may be
        // above this acceptor's promise; the durable state does not say they were committed.
        // Promising at least that ballot keeps "nothing accepted above the promise" true,
        // and raising a promise is always safe.
        let ballot_accepted = durable.accepted.iter().map(|&(_, ballot, _)| ballot).max().unwrap_or(Ballot::ZERO);
        replica.ballot_promised = if planted!("volatile-promise") {
            // Planted bug: only the accepted values were kept; the promise is rebuilt from
            // them, so a promise made without accepting anything is forgotten.
            ballot_accepted
        } else {
            durable.ballot_promised.max(ballot_accepted)
        };
        for (slot, ballot, batch) in durable.accepted {
            replica.log.insert(slot, Entry { ballot, batch, committed: false });
        }
        replica
    }

    /// The caller replaced its state machine with a snapshot holding every slot below
    /// `slot`: skip those slots and free their entries.
    ///
    /// # Panics
    /// If `slot` is below what this replica already delivered (a snapshot never goes back).
    pub fn install_snapshot(&mut self, slot: Slot) {
        if slot >= self.snapshot_wanted {
            self.snapshot_wanted = Slot::ZERO;
        }
        assert!(
            slot >= self.slot_delivered,
            "{:?}: snapshot at {slot:?} behind delivered {:?}",
            self.id,
            self.slot_delivered
        );
        self.slot_delivered = slot;
        self.slot_committed = self.slot_committed.max(slot);
        self.slot_truncated = slot;
        self.log.remove_below(slot);
        if let Role::Leader(leader) = &mut self.role {
            // Proposals below the snapshot are committed: the snapshot holds them.
            leader.proposals = leader.proposals.split_off(&slot);
            leader.slot_next = leader.slot_next.max(slot);
        }
        // Entries below the new commit index that we hold may be committed values we have
        // not confirmed; they are at or above `slot` only if the snapshot is older than our
        // commit index, in which case they were already committed.
        self.advance_committed();
        self.check_invariants();
    }

    // ----- output -----------------------------------------------------------------------

    /// Ends a round of input: proposes queued commands (as many batches as the window
    /// allows), forwards buffered ones, announces a commit index that moved without an
    /// accept to carry it, and hands out everything the round produced. See [`Ready`] for
    /// the order in which the caller must act on it; then give it back with
    /// [`Replica::advance`].
    ///
    /// Committed batches are handed out once: the ones in this `Ready` count as delivered
    /// ([`Replica::slot_delivered`]).
    pub fn ready(&mut self) -> Ready<C> {
        self.flush_inner();
        self.check_invariants();
        let mut committed = std::mem::take(&mut *self.committed_spare);
        while self.slot_delivered < self.slot_committed {
            let slot = self.slot_delivered;
            let entry = self.log.get(slot).unwrap_or_else(|| {
                panic!("{:?}: committed {slot:?} missing from the log (truncated {:?})", self.id, self.slot_truncated)
            });
            debug_assert!(entry.committed);
            committed.push((slot, entry.batch.clone()));
            self.slot_delivered = slot.next();
        }
        // A replica that is the whole cluster frees what it hands out at once (no peer will
        // ask for it), not at its next commit: the caller's commands are then held only
        // by `committed` and let go of once applied. With peers, truncation waits for them
        // to report their delivery (`slot_truncate_global`).
        if self.config.replicas == 1 && !committed.is_empty() {
            self.truncate(self.slot_truncate_global());
        }
        if let Some((leader, ballot)) = self.progress_owed.take() {
            self.send(leader, Message::Progress { ballot, slot_delivered: self.slot_delivered });
        }
        (self.counters.logs_made_sparse, self.counters.logs_made_dense) = self.log.form_changes();
        let messages = std::mem::replace(&mut *self.outbox, std::mem::take(&mut *self.outbox_spare));
        Ready { slot_committed: self.slot_committed, messages, committed, snapshot_wanted: self.snapshot_wanted() }
    }

    /// Takes back a [`Ready`] the caller has acted on, keeping its buffers for the next
    /// round. Messages it did not send and batches it did not apply are dropped.
    pub fn advance(&mut self, ready: Ready<C>) {
        let Ready { mut messages, mut committed, .. } = ready;
        messages.clear();
        committed.clear();
        *self.outbox_spare = messages;
        *self.committed_spare = committed;
    }

    // ----- input ------------------------------------------------------------------------

    /// Queues a client command. A leader proposes it at the next [`Replica::ready`]; any
    /// other replica forwards it to the leader it knows, or holds it until it knows one.
    pub fn propose(&mut self, command: C) {
        match &mut self.role {
            Role::Leader(leader) => leader.queue.push(command),
            _ => self.buffer(command),
        }
    }

    /// Advances the replica's clock by one tick: heartbeats, retransmission, elections.
    pub fn tick(&mut self) {
        self.learn_cooldown = self.learn_cooldown.saturating_sub(1);
        if let Some(from) = self.learn_from {
            // A learn request or its answer may have been lost: ask again.
            if self.slot_committed < self.slot_learn_target {
                self.request_learn(from);
            } else {
                self.learn_from = None;
            }
        }
        if self.is_leader() {
            self.tick_leader();
        } else {
            self.ticks_since_heard = self.ticks_since_heard.saturating_add(1);
            if self.should_replace_stopped_leader() {
                // Its turn in line came (`FAILOVER_GRACE_TICKS`) with no new leader heard.
                self.counters.failovers_started += 1;
                self.become_candidate();
            } else if self.ticks_since_heard >= self.election_timeout() {
                self.become_candidate();
            }
        }
        self.flush_inner();
        self.check_invariants();
    }

    /// Starts an election now, as if the election timeout had passed: phase 1 in a ballot
    /// above every ballot seen. A leader that campaigns gives up its ballot for a higher one.
    pub fn campaign(&mut self) {
        self.become_candidate();
        self.flush_inner();
        self.check_invariants();
    }

    /// Gives up leadership (a leader that finds itself too slow to lead well). Queued
    /// commands are kept for the next leader; proposals in flight are recovered by its
    /// phase 1 or retried by their clients. Does nothing on a replica that does not lead.
    pub fn step_down(&mut self) {
        if self.is_leader() {
            self.become_follower(None);
            self.ticks_since_heard = 0;
        }
        self.check_invariants();
    }

    /// Handles one message from replica `from`.
    pub fn step(&mut self, from: ReplicaId, message: Message<C>) {
        if from == self.id || from.index() >= self.config.replicas {
            return;
        }
        // A peer that sends is not stopped, whatever this replica was told: a wrong or
        // outdated death notice must not make it campaign against a live peer again and
        // again. (A leader it followed when told so is still replaced unless it is heard
        // from as a leader: `leader_stopped`.)
        self.peers_down &= !from.bit();
        match message {
            Message::Prepare { ballot, slot_first } => self.on_prepare(from, ballot, slot_first),
            Message::Promise { ballot, accepted, slot_committed } => {
                self.on_promise(from, ballot, slot_committed, accepted)
            }
            Message::Accept { ballot, slot, batch, slot_committed } => {
                self.on_accept(from, ballot, slot, batch, slot_committed)
            }
            Message::Accepted { ballot, slot, slot_delivered } => self.on_accepted(from, ballot, slot, slot_delivered),
            Message::Commit { ballot, slot_committed, slot_truncate } => {
                self.on_commit(from, ballot, slot_committed, slot_truncate)
            }
            Message::Progress { ballot, slot_delivered } => self.on_progress(from, ballot, slot_delivered),
            Message::Nack { ballot_promised } => self.on_nack(ballot_promised),
            Message::LearnRequest { slot_first } => self.on_learn_request(from, slot_first),
            Message::Learn { slot_committed, entries } => self.on_learn(from, slot_committed, entries),
            Message::Forward { commands } => self.on_forward(from, commands),
            Message::Truncated { slot_truncated } => self.on_truncated(slot_truncated),
            Message::Handover { ballot } => self.on_handover(from, ballot),
        }
        self.check_invariants();
    }

    // ----- helpers ----------------------------------------------------------------------

    fn buffer(&mut self, command: C) {
        if self.buffered.len() >= self.config.buffer_max {
            self.buffered.pop_front();
            self.counters.commands_dropped += 1;
        }
        self.buffered.push_back(command);
    }

    fn election_timeout(&self) -> u32 {
        self.config.election_ticks + self.config.election_stagger_ticks * self.id.index() as u32
    }

    fn peers(&self) -> impl Iterator<Item = ReplicaId> {
        let id = self.id;
        (0..self.config.replicas).map(ReplicaId::new).filter(move |&peer| peer != id)
    }

    fn send(&mut self, to: ReplicaId, message: Message<C>) {
        self.outbox.push((to, message));
    }

    fn broadcast(&mut self, mut message: impl FnMut() -> Message<C>) {
        for peer in self.peers() {
            self.outbox.push((peer, message()));
        }
    }
}
