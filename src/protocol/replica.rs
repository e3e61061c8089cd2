//! The Multi-Paxos replica as a pure state machine: messages and ticks in, messages and
//! committed batches out. It owns acceptor, learner and (when elected) leader state, and
//! keeps one invariant above all: a value committed in a slot never changes.
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

use std::collections::{BTreeMap, VecDeque};

use super::message::{LearnEntry, Message, PromiseEntry};
use super::ready::Ready;
use super::types::{Ballot, Batch, ReplicaId, Slot, MAX_REPLICAS};

/// Timing and sizing of one replica. All durations are in ticks of the caller's clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Config {
    /// Number of replicas in the cluster, `1..=MAX_REPLICAS`.
    pub replicas: usize,
    /// A leader sends a heartbeat (a [`Message::Commit`]) every this many ticks.
    pub heartbeat_ticks: u32,
    /// A follower that hears nothing from a leader for this many ticks (plus its stagger)
    /// starts an election.
    pub election_ticks: u32,
    /// Extra ticks of election timeout per replica index, so that the lowest-numbered live
    /// replica tries first and the others see its prepare before their own timers fire.
    pub election_stagger_ticks: u32,
    /// The most slots a leader keeps proposed but not yet committed.
    pub window: usize,
    /// The most commands a leader puts in one slot.
    pub batch_max: usize,
    /// A leader re-sends an accept that has not reached a majority after this many ticks.
    pub retransmit_ticks: u32,
    /// The most committed entries one [`Message::Learn`] carries.
    pub learn_max: usize,
    /// The most commands a replica holds while it knows no leader to forward them to.
    pub buffer_max: usize,
    /// The most committed slots the log keeps behind the commit index. Entries every
    /// replica has applied are freed at once; beyond this window they are freed even if a
    /// slow, paused or crashed replica has not applied them, and that replica catches up
    /// from a snapshot ([`Replica::snapshot_wanted`]) instead of holding the log back.
    pub log_window: u64,
    /// Whether the replica asserts its invariants after every input (see
    /// [`Replica::step`]). On by default in debug builds; the simulator and the model
    /// checker turn it on in every build, release included, because a broken invariant is
    /// often the first and only sign of a protocol bug that a run's outcome does not show.
    pub check_invariants: bool,
}

impl Config {
    /// Defaults for `replicas` replicas: heartbeat every 10 ticks, elections after 100.
    pub fn new(replicas: usize) -> Self {
        Self {
            replicas,
            heartbeat_ticks: 10,
            election_ticks: 100,
            election_stagger_ticks: 30,
            window: 8,
            batch_max: 1024,
            retransmit_ticks: 20,
            learn_max: 64,
            buffer_max: 65_536,
            log_window: 4096,
            check_invariants: cfg!(debug_assertions),
        }
    }

    /// Checks the configuration, naming the first field that is out of range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err("replicas");
        }
        if self.heartbeat_ticks == 0 {
            return Err("heartbeat_ticks");
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err("election_ticks");
        }
        if self.window == 0 {
            return Err("window");
        }
        if self.batch_max == 0 {
            return Err("batch_max");
        }
        if self.retransmit_ticks == 0 {
            return Err("retransmit_ticks");
        }
        if self.log_window == 0 {
            return Err("log_window");
        }
        if self.learn_max == 0 {
            return Err("learn_max");
        }
        Ok(())
    }

    /// The number of replicas that make a majority.
    pub fn quorum(&self) -> usize {
        if cfg!(corum_plant = "quorum-too-small") {
            // Planted bug for the simulator's sweep: a "majority" one replica short.
            return (self.replicas / 2).max(1);
        }
        self.replicas / 2 + 1
    }
}

/// What a replica's acceptor keeps across a crash; see [`Replica::durable_state`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// Counters of what a replica did and what it ignored; they only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// Elections this replica started.
    pub elections_started: u64,
    /// Times this replica became leader.
    pub leader_changes: u64,
    /// Batches this replica proposed as leader (re-proposals after phase 1 included).
    pub batches_proposed: u64,
    /// Messages dropped as stale or duplicate (expected protocol noise).
    pub messages_ignored: u64,
    /// Client commands dropped because no leader was known and the buffer was full, or a
    /// forward arrived at a replica that does not lead; clients retry them.
    pub commands_dropped: u64,
    /// Learn requests that asked for entries already freed.
    pub learn_unavailable: u64,
    /// Slots a new leader re-proposed after its promises reported different values for
    /// them: phase 1 had to choose between values (the highest ballot's wins).
    pub recoveries_contested: u64,
    /// Times this replica, as a candidate, met a higher ballot before it won.
    pub candidacies_preempted: u64,
    /// Times this replica, as leader, learned of a higher ballot and stepped down.
    pub leaders_deposed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Entry<C> {
    ballot: Ballot,
    batch: Batch<C>,
    committed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Proposal {
    acks: u64,
    ticks_since_sent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LeaderState<C> {
    ballot: Ballot,
    slot_next: Slot,
    proposals: BTreeMap<Slot, Proposal>,
    queue: VecDeque<C>,
    ticks_since_heartbeat: u32,
    slot_committed_sent: Slot,
    peer_delivered: Vec<Slot>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CandidateState<C> {
    ballot: Ballot,
    promises: u64,
    accepted: BTreeMap<Slot, PromiseEntry<C>>,
    /// The highest commit index a promise reported, and who reported it. Slots below it are
    /// chosen: the new leader adopts their values or learns them, and never re-proposes.
    slot_floor: Slot,
    floor_holder: ReplicaId,
    /// Slots for which promises reported different values (a coverage count).
    slots_contested: std::collections::BTreeSet<Slot>,
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
/// is empty between inputs once drained, so both are left out.
#[derive(Debug, Clone)]
pub struct Replica<C> {
    id: ReplicaId,
    config: Config,
    /// Acceptor: the highest ballot promised; nothing below it is accepted.
    ballot_promised: Ballot,
    /// Accepted and committed entries at or above `slot_truncated`.
    log: BTreeMap<Slot, Entry<C>>,
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
    outbox: Vec<(ReplicaId, Message<C>)>,
    /// Emptied buffers of the last [`Ready`], reused by the next.
    outbox_spare: Vec<(ReplicaId, Message<C>)>,
    committed_spare: Vec<(Slot, Batch<C>)>,
    counters: Counters,
}

impl<C: PartialEq> PartialEq for Replica<C> {
    fn eq(&self, other: &Self) -> bool {
        self.protocol_state() == other.protocol_state() && self.log == other.log && self.role == other.role
    }
}

impl<C: Eq> Eq for Replica<C> {}

impl<C: std::hash::Hash> std::hash::Hash for Replica<C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.protocol_state().hash(state);
        self.log.hash(state);
        self.role.hash(state);
    }
}

impl<C> Replica<C> {
    /// The scalar fields that equality and hashing compare (besides the log and the role).
    #[allow(clippy::type_complexity)]
    fn protocol_state(
        &self,
    ) -> (ReplicaId, &Config, Ballot, Slot, Slot, Slot, &VecDeque<C>, u32, u32, Slot, Slot, Option<ReplicaId>) {
        (
            self.id,
            &self.config,
            self.ballot_promised,
            self.slot_committed,
            self.slot_delivered,
            self.slot_truncated,
            &self.buffered,
            self.ticks_since_heard,
            self.learn_cooldown,
            self.snapshot_wanted,
            self.slot_learn_target,
            self.learn_from,
        )
    }
}

impl<C: Clone> Replica<C> {
    /// A fresh replica `id` of a cluster configured by `config`. Replica 0 starts an
    /// election on its first tick; the others wait for it.
    ///
    /// # Panics
    /// If `config` does not validate or `id` is not below `config.replicas`.
    pub fn new(id: ReplicaId, config: Config) -> Self {
        if let Err(field) = config.validate() {
            panic!("invalid protocol config: {field} is out of range: {config:?}");
        }
        assert!(id.index() < config.replicas, "{id:?} is not in a cluster of {}", config.replicas);
        let mut replica = Self {
            id,
            config,
            ballot_promised: Ballot::ZERO,
            log: BTreeMap::new(),
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
            outbox: Vec::new(),
            outbox_spare: Vec::new(),
            committed_spare: Vec::new(),
            counters: Counters::default(),
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
            accepted: self.log.iter().map(|(&slot, entry)| (slot, entry.ballot, entry.batch.clone())).collect(),
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
        replica.ballot_promised = if cfg!(corum_plant = "volatile-promise") {
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
        self.log = self.log.split_off(&slot);
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

    // ----- inspection -------------------------------------------------------------------

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The configuration the replica runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The role the replica plays now.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower { .. } => RoleKind::Follower,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }

    /// Whether the replica currently believes it leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The replica this one believes leads, if any.
    pub fn leader(&self) -> Option<ReplicaId> {
        match &self.role {
            Role::Follower { leader } => *leader,
            Role::Candidate(_) => None,
            Role::Leader(_) => Some(self.id),
        }
    }

    /// The highest ballot this replica has promised.
    pub fn ballot_promised(&self) -> Ballot {
        self.ballot_promised
    }

    /// Every slot below this is known committed here.
    pub fn slot_committed(&self) -> Slot {
        self.slot_committed
    }

    /// Every slot below this has been handed out in a [`Ready`].
    pub fn slot_delivered(&self) -> Slot {
        self.slot_delivered
    }

    /// Entries below this slot have been freed.
    pub fn slot_truncated(&self) -> Slot {
        self.slot_truncated
    }

    /// If the values this replica needs have been freed by its peers, the slot a snapshot
    /// must reach: the caller should copy a peer's state machine that has applied at least
    /// that far and call [`Replica::install_snapshot`].
    pub fn snapshot_wanted(&self) -> Option<Slot> {
        (self.snapshot_wanted > self.slot_delivered).then_some(self.snapshot_wanted)
    }

    /// Number of log entries held in memory.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Commands queued at the leader or buffered at a non-leader, not yet proposed.
    pub fn commands_waiting(&self) -> usize {
        let queued = match &self.role {
            Role::Leader(leader) => leader.queue.len(),
            _ => 0,
        };
        queued + self.buffered.len()
    }

    /// Slots this replica, as leader, has proposed and not yet seen committed.
    pub fn proposals_in_flight(&self) -> usize {
        match &self.role {
            Role::Leader(leader) => leader.proposals.len(),
            _ => 0,
        }
    }

    /// What the replica has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The committed value of `slot`, if it is still held.
    pub fn committed_batch(&self, slot: Slot) -> Option<&Batch<C>> {
        self.log.get(&slot).filter(|entry| entry.committed).map(|entry| &entry.batch)
    }

    /// Takes every client command this replica holds that it has not handed out through
    /// a [`Ready`]: queued, buffered, proposed or accepted but not yet
    /// delivered. For a caller that is shutting the replica down; the replica must not be
    /// stepped afterwards.
    pub fn drain_unapplied_commands(&mut self) -> Vec<C> {
        let mut commands: Vec<C> = self.buffered.drain(..).collect();
        if let Role::Leader(leader) = &mut self.role {
            commands.extend(leader.queue.drain(..));
        }
        for entry in self.log.range(self.slot_delivered..).map(|(_, entry)| entry) {
            commands.extend(entry.batch.commands().iter().cloned());
        }
        commands
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
        let mut committed = std::mem::take(&mut self.committed_spare);
        while self.slot_delivered < self.slot_committed {
            let slot = self.slot_delivered;
            let entry = self.log.get(&slot).unwrap_or_else(|| {
                panic!("{:?}: committed {slot:?} missing from the log (truncated {:?})", self.id, self.slot_truncated)
            });
            debug_assert!(entry.committed);
            committed.push((slot, entry.batch.clone()));
            self.slot_delivered = slot.next();
        }
        let messages = std::mem::replace(&mut self.outbox, std::mem::take(&mut self.outbox_spare));
        Ready { slot_committed: self.slot_committed, messages, committed, snapshot_wanted: self.snapshot_wanted() }
    }

    /// Takes back a [`Ready`] the caller has acted on, keeping its buffers for the next
    /// round. Messages it did not send and batches it did not apply are dropped.
    pub fn advance(&mut self, ready: Ready<C>) {
        let Ready { mut messages, mut committed, .. } = ready;
        messages.clear();
        committed.clear();
        self.outbox_spare = messages;
        self.committed_spare = committed;
    }

    // ----- input ------------------------------------------------------------------------

    /// Queues a client command. A leader proposes it at the next [`Replica::ready`]; any
    /// other replica forwards it to the leader it knows, or holds it until it knows one.
    pub fn propose(&mut self, command: C) {
        match &mut self.role {
            Role::Leader(leader) => leader.queue.push_back(command),
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
            if self.ticks_since_heard >= self.election_timeout() {
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
            self.counters.messages_ignored += 1;
            return;
        }
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
        }
        self.check_invariants();
    }

    // ----- handlers ---------------------------------------------------------------------

    fn on_prepare(&mut self, from: ReplicaId, ballot: Ballot, slot_first: Slot) {
        // The planted bug `ballot-round-only` compares ballots by round alone, so that two
        // candidates of one round both collect promises from the same acceptor.
        let (ours, theirs) = if cfg!(corum_plant = "ballot-round-only") {
            (self.ballot_promised.round(), ballot.round())
        } else {
            (self.ballot_promised.as_u64(), ballot.as_u64())
        };
        if theirs < ours {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        if theirs > ours {
            self.ballot_promised = ballot;
            // The planted bug `leader-keeps-leading` lets a leader promise a higher ballot
            // and go on proposing in its own.
            if !(self.is_leader() && cfg!(corum_plant = "leader-keeps-leading")) {
                self.become_follower(Some(from));
            }
        }
        // A repeated prepare of the ballot already promised gets the same answer again.
        self.ticks_since_heard = 0;
        debug_assert!(
            slot_first >= self.slot_truncated || self.slot_truncated <= self.slot_committed,
            "prepare below the truncation point"
        );
        let accepted = self
            .log
            .range(slot_first..)
            .map(|(&slot, entry)| PromiseEntry {
                slot,
                ballot: entry.ballot,
                batch: entry.batch.clone(),
                committed: entry.committed,
            })
            .collect();
        self.send(from, Message::Promise { ballot, slot_committed: self.slot_committed, accepted });
    }

    fn on_promise(&mut self, from: ReplicaId, ballot: Ballot, slot_committed: Slot, accepted: Vec<PromiseEntry<C>>) {
        if ballot > self.ballot_promised {
            // A promise for a ballot we never sent: noise from a past life. Ignore it.
            self.counters.messages_ignored += 1;
            return;
        }
        let Role::Candidate(candidate) = &mut self.role else {
            self.counters.messages_ignored += 1;
            return;
        };
        if candidate.ballot != ballot || candidate.promises & from.bit() != 0 {
            self.counters.messages_ignored += 1;
            return;
        }
        candidate.promises |= from.bit();
        if slot_committed > candidate.slot_floor {
            candidate.slot_floor = slot_committed;
            candidate.floor_holder = from;
        }
        for entry in accepted {
            let slot = entry.slot;
            if merge_promise_entry(&mut candidate.accepted, entry) {
                candidate.slots_contested.insert(slot);
            }
        }
        if candidate.promises.count_ones() as usize >= self.config.quorum() {
            self.become_leader();
        }
    }

    fn on_accept(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot, batch: Batch<C>, slot_committed: Slot) {
        // The planted bug `accept-below-promise` drops this guard: Paxos's one acceptor rule.
        if ballot < self.ballot_promised && !cfg!(corum_plant = "accept-below-promise") {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        self.follow(from, ballot);
        let decided = slot < self.slot_truncated || self.log.get(&slot).is_some_and(|entry| entry.committed);
        if !decided {
            self.log.insert(slot, Entry { ballot, batch, committed: false });
        }
        self.send(from, Message::Accepted { ballot, slot, slot_delivered: self.slot_delivered });
        self.learn_commit(from, ballot, slot_committed);
    }

    fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot, slot_delivered: Slot) {
        let quorum = self.config.quorum();
        let Role::Leader(leader) = &mut self.role else {
            self.counters.messages_ignored += 1;
            return;
        };
        if ballot != leader.ballot {
            self.counters.messages_ignored += 1;
            return;
        }
        let delivered = &mut leader.peer_delivered[from.index()];
        *delivered = (*delivered).max(slot_delivered);
        let Some(proposal) = leader.proposals.get_mut(&slot) else {
            // Already committed: a duplicate or a late acceptor.
            self.counters.messages_ignored += 1;
            return;
        };
        proposal.acks |= from.bit();
        if proposal.acks.count_ones() as usize >= quorum {
            leader.proposals.remove(&slot);
            self.commit_slot(slot);
        }
    }

    fn on_commit(&mut self, from: ReplicaId, ballot: Ballot, slot_committed: Slot, slot_truncate: Slot) {
        if ballot < self.ballot_promised {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        self.follow(from, ballot);
        self.learn_commit(from, ballot, slot_committed);
        self.truncate(slot_truncate);
        self.send(from, Message::Progress { ballot, slot_delivered: self.slot_delivered });
    }

    fn on_progress(&mut self, from: ReplicaId, ballot: Ballot, slot_delivered: Slot) {
        match &mut self.role {
            Role::Leader(leader) if leader.ballot == ballot => {
                let delivered = &mut leader.peer_delivered[from.index()];
                *delivered = (*delivered).max(slot_delivered);
            }
            _ => self.counters.messages_ignored += 1,
        }
    }

    fn on_nack(&mut self, ballot_promised: Ballot) {
        if ballot_promised <= self.ballot_promised {
            self.counters.messages_ignored += 1;
            return;
        }
        self.ballot_promised = ballot_promised;
        self.become_follower(Some(ballot_promised.replica()));
        self.ticks_since_heard = 0;
    }

    fn on_learn_request(&mut self, from: ReplicaId, slot_first: Slot) {
        if slot_first >= self.slot_committed {
            // We know no more than the requester.
            self.counters.messages_ignored += 1;
            return;
        }
        if slot_first < self.slot_truncated {
            // What it asks for is freed here: it must catch up from a snapshot.
            self.counters.learn_unavailable += 1;
            self.send(from, Message::Truncated { slot_truncated: self.slot_truncated });
            return;
        }
        let entries: Vec<LearnEntry<C>> = self
            .log
            .range(slot_first..self.slot_committed)
            .take(self.config.learn_max)
            .map(|(&slot, entry)| LearnEntry { slot, ballot: entry.ballot, batch: entry.batch.clone() })
            .collect();
        if entries.is_empty() {
            self.counters.messages_ignored += 1;
            return;
        }
        self.send(from, Message::Learn { slot_committed: self.slot_committed, entries });
    }

    fn on_learn(&mut self, from: ReplicaId, slot_committed: Slot, entries: Vec<LearnEntry<C>>) {
        for entry in entries {
            if entry.slot < self.slot_committed || entry.slot < self.slot_truncated {
                continue;
            }
            if let Role::Leader(leader) = &mut self.role {
                // A leader learning a slot it still proposes: the slot is decided, and by
                // Paxos with the value it proposed; stop waiting for acceptances.
                leader.proposals.remove(&entry.slot);
            }
            match self.log.get_mut(&entry.slot) {
                Some(existing) if existing.committed => {}
                Some(existing) => {
                    existing.ballot = entry.ballot;
                    existing.batch = entry.batch;
                    existing.committed = true;
                }
                None => {
                    self.log.insert(entry.slot, Entry { ballot: entry.ballot, batch: entry.batch, committed: true });
                }
            }
        }
        self.advance_committed();
        if self.slot_committed < slot_committed {
            // More to learn: ask again at once rather than after the cooldown.
            self.slot_learn_target = self.slot_learn_target.max(slot_committed);
            self.learn_cooldown = 0;
            self.request_learn(from);
        }
    }

    fn on_truncated(&mut self, slot_truncated: Slot) {
        if slot_truncated <= self.slot_delivered {
            self.counters.messages_ignored += 1;
            return;
        }
        self.snapshot_wanted = self.snapshot_wanted.max(slot_truncated);
    }

    fn on_forward(&mut self, from: ReplicaId, commands: Vec<C>) {
        match &mut self.role {
            Role::Leader(leader) => leader.queue.extend(commands),
            Role::Candidate(_) => commands.into_iter().for_each(|command| self.buffer(command)),
            // Never bounce commands back to the replica that forwarded them: it believes we
            // lead, we believe it does, and neither is right yet. Its clients will retry.
            Role::Follower { leader } if *leader == Some(from) => {
                self.counters.commands_dropped += commands.len() as u64
            }
            Role::Follower { .. } => commands.into_iter().for_each(|command| self.buffer(command)),
        }
    }

    // ----- transitions ------------------------------------------------------------------

    fn become_follower(&mut self, leader: Option<ReplicaId>) {
        let old = std::mem::replace(&mut self.role, Role::Follower { leader });
        match &old {
            Role::Leader(state) if state.ballot < self.ballot_promised => self.counters.leaders_deposed += 1,
            Role::Candidate(state) if state.ballot < self.ballot_promised => self.counters.candidacies_preempted += 1,
            _ => {}
        }
        if let Role::Leader(state) = old {
            // Commands not yet proposed go to the next leader; proposals in flight are
            // either recovered by its phase 1 or retried by their clients.
            for command in state.queue {
                self.buffer(command);
            }
        }
    }

    /// Follows the leader of `ballot` (>= our promise), heard from just now.
    fn follow(&mut self, from: ReplicaId, ballot: Ballot) {
        debug_assert!(ballot >= self.ballot_promised);
        let is_current = matches!(self.role, Role::Follower { leader: Some(leader) } if leader == from);
        if ballot > self.ballot_promised || !is_current {
            self.ballot_promised = ballot;
            self.become_follower(Some(from));
        }
        self.ticks_since_heard = 0;
    }

    fn become_candidate(&mut self) {
        let ballot = self.ballot_promised.next_for(self.id);
        self.ballot_promised = ballot;
        self.ticks_since_heard = 0;
        self.counters.elections_started += 1;
        let slot_first = self.slot_committed;
        let mut accepted = BTreeMap::new();
        for (&slot, entry) in self.log.range(slot_first..) {
            merge_promise_entry(
                &mut accepted,
                PromiseEntry { slot, ballot: entry.ballot, batch: entry.batch.clone(), committed: entry.committed },
            );
        }
        if let Role::Leader(state) = std::mem::replace(&mut self.role, Role::Follower { leader: None }) {
            self.buffered.extend(state.queue);
        }
        self.role = Role::Candidate(CandidateState {
            ballot,
            promises: self.id.bit(),
            accepted,
            slot_floor: self.slot_committed,
            floor_holder: self.id,
            slots_contested: Default::default(),
        });
        self.broadcast(|| Message::Prepare { ballot, slot_first });
        if self.config.quorum() == 1 {
            self.become_leader();
        }
    }

    /// Phase 1 is done: adopt every committed value reported, re-propose the highest-ballot
    /// accepted value of every other slot, and fill holes with no-ops ("Paxos Made Simple" §3).
    fn become_leader(&mut self) {
        let Role::Candidate(candidate) = std::mem::replace(&mut self.role, Role::Follower { leader: None }) else {
            unreachable!("become_leader is only called on a candidate");
        };
        let ballot = candidate.ballot;
        let slot_floor = candidate.slot_floor;
        let candidate_floor_holder = candidate.floor_holder;
        self.counters.leader_changes += 1;
        let slot_last = candidate.accepted.keys().next_back().copied();
        let slots_contested = candidate.slots_contested;
        let mut reproposals = Vec::new();
        let mut accepted = candidate.accepted;
        if let Some(slot_last) = slot_last {
            let mut slot = self.slot_committed;
            while slot <= slot_last {
                let already = self.log.get(&slot).is_some_and(|entry| entry.committed);
                match accepted.remove(&slot) {
                    _ if already => {}
                    // Below the floor every slot is chosen, but the value a promise reports
                    // may be a stale one its acceptor never learned was overridden, and the
                    // chosen one may have been freed by the acceptors that knew it. Adopt
                    // only values reported committed; learn the rest.
                    Some(entry) if entry.committed => {
                        self.log.insert(slot, Entry { ballot: entry.ballot, batch: entry.batch, committed: true });
                    }
                    _ if slot < slot_floor => {}
                    // The planted bug `ignore-accepted-values` forgets what phase 1 reported.
                    Some(entry) if !cfg!(corum_plant = "ignore-accepted-values") => {
                        if slots_contested.contains(&slot) && !entry.batch.is_noop() {
                            self.counters.recoveries_contested += 1;
                        }
                        reproposals.push((slot, entry.batch))
                    }
                    // The planted bug `skip-noop-fill` leaves holes unproposed.
                    _ if cfg!(corum_plant = "skip-noop-fill") => {}
                    _ => reproposals.push((slot, Batch::noop())),
                }
                slot = slot.next();
            }
        }
        let slot_next = slot_last.map_or(self.slot_committed, Slot::next).max(self.slot_committed).max(slot_floor);
        let mut state = LeaderState {
            ballot,
            slot_next,
            proposals: BTreeMap::new(),
            queue: std::mem::take(&mut self.buffered),
            ticks_since_heartbeat: 0,
            slot_committed_sent: self.slot_committed,
            peer_delivered: vec![Slot::ZERO; self.config.replicas],
        };
        self.advance_committed();
        state.slot_committed_sent = self.slot_committed;
        self.role = Role::Leader(state);
        for (slot, batch) in reproposals {
            self.propose_in(slot, batch);
        }
        // Tell everyone at once who leads, even when there was nothing to re-propose.
        self.send_commit();
        if self.slot_committed < slot_floor {
            self.slot_learn_target = self.slot_learn_target.max(slot_floor);
            self.request_learn(candidate_floor_holder);
        }
    }

    // ----- leader mechanics -------------------------------------------------------------

    fn flush_inner(&mut self) {
        match &self.role {
            Role::Leader(_) => self.flush_leader(),
            Role::Follower { leader: Some(leader) } if !self.buffered.is_empty() => {
                let leader = *leader;
                let commands: Vec<C> = self.buffered.drain(..).collect();
                self.send(leader, Message::Forward { commands });
            }
            _ => {}
        }
    }

    fn flush_leader(&mut self) {
        let batch_max = self.config.batch_max;
        let window = self.config.window;
        loop {
            let Role::Leader(leader) = &mut self.role else { return };
            if leader.queue.is_empty() || leader.proposals.len() >= window {
                break;
            }
            let take = leader.queue.len().min(batch_max);
            let batch = Batch::new(leader.queue.drain(..take).collect());
            let slot = leader.slot_next;
            self.propose_in(slot, batch);
        }
        let Role::Leader(leader) = &self.role else { return };
        if self.slot_committed > leader.slot_committed_sent {
            self.send_commit();
        }
    }

    /// Proposes `batch` in `slot` in the leader's ballot: accept it locally, send it out.
    fn propose_in(&mut self, slot: Slot, batch: Batch<C>) {
        let slot_committed = self.slot_committed;
        let id = self.id;
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("propose_in is only called on a leader");
        };
        let ballot = leader.ballot;
        leader.proposals.insert(slot, Proposal { acks: id.bit(), ticks_since_sent: 0 });
        leader.slot_next = leader.slot_next.max(slot.next());
        leader.slot_committed_sent = slot_committed;
        self.counters.batches_proposed += 1;
        self.log.insert(slot, Entry { ballot, batch: batch.clone(), committed: false });
        self.broadcast(|| Message::Accept { ballot, slot, batch: batch.clone(), slot_committed });
        // The planted bug `commit-without-majority` commits before any acceptor answered.
        if self.config.quorum() == 1 || cfg!(corum_plant = "commit-without-majority") {
            if let Role::Leader(leader) = &mut self.role {
                leader.proposals.remove(&slot);
            }
            self.commit_slot(slot);
        }
    }

    fn commit_slot(&mut self, slot: Slot) {
        let entry = self.log.get_mut(&slot).unwrap_or_else(|| {
            panic!("{:?}: committing {slot:?} which is not in the log", self.id);
        });
        entry.committed = true;
        self.advance_committed();
    }

    fn send_commit(&mut self) {
        let slot_committed = self.slot_committed;
        let slot_truncate = self.slot_truncate_global();
        let Role::Leader(leader) = &mut self.role else { return };
        let ballot = leader.ballot;
        leader.slot_committed_sent = slot_committed;
        leader.ticks_since_heartbeat = 0;
        self.broadcast(|| Message::Commit { ballot, slot_committed, slot_truncate });
        self.truncate(slot_truncate);
    }

    /// The slot below which log entries may be freed: everything every replica has applied,
    /// as far as this leader knows, and in any case everything more than `log_window` slots
    /// behind the commit index (a replica that needs those catches up from a snapshot).
    fn slot_truncate_global(&self) -> Slot {
        let Role::Leader(leader) = &self.role else { return self.slot_truncated };
        let applied_everywhere = leader
            .peer_delivered
            .iter()
            .enumerate()
            .map(|(index, &slot)| if index == self.id.index() { self.slot_delivered } else { slot })
            .min()
            .unwrap_or(Slot::ZERO);
        let window_start = Slot::new(self.slot_committed.get().saturating_sub(self.config.log_window));
        applied_everywhere.max(window_start)
    }

    fn tick_leader(&mut self) {
        let retransmit_ticks = self.config.retransmit_ticks;
        let heartbeat_ticks = self.config.heartbeat_ticks;
        let slot_committed = self.slot_committed;
        let Role::Leader(leader) = &mut self.role else { return };
        leader.ticks_since_heartbeat += 1;
        let heartbeat_due = leader.ticks_since_heartbeat >= heartbeat_ticks;
        let ballot = leader.ballot;
        let mut resend = Vec::new();
        for (&slot, proposal) in leader.proposals.iter_mut() {
            proposal.ticks_since_sent += 1;
            if proposal.ticks_since_sent >= retransmit_ticks {
                proposal.ticks_since_sent = 0;
                resend.push((slot, proposal.acks));
            }
        }
        for (slot, acks) in resend {
            let batch = self.log.get(&slot).expect("a proposal's entry is in the log until it commits").batch.clone();
            for peer in self.peers() {
                if acks & peer.bit() == 0 {
                    self.send(peer, Message::Accept { ballot, slot, batch: batch.clone(), slot_committed });
                }
            }
        }
        if heartbeat_due {
            self.send_commit();
        }
    }

    // ----- learner mechanics ------------------------------------------------------------

    /// The leader of `ballot` says every slot below `slot_committed` is committed. An entry
    /// we accepted in that same ballot holds the leader's value, so it is the chosen one.
    fn learn_commit(&mut self, leader: ReplicaId, ballot: Ballot, slot_committed: Slot) {
        if slot_committed <= self.slot_committed {
            return;
        }
        for (_, entry) in self.log.range_mut(self.slot_committed..slot_committed) {
            if entry.ballot == ballot {
                entry.committed = true;
            }
        }
        self.advance_committed();
        if self.slot_committed < slot_committed {
            self.slot_learn_target = self.slot_learn_target.max(slot_committed);
            self.request_learn(leader);
        }
    }

    /// Asks `from` for committed values from our commit index on, at most once per
    /// cooldown, and remembers to ask again (from `tick`) until we have caught up with
    /// what `from` told us is committed.
    fn request_learn(&mut self, from: ReplicaId) {
        self.learn_from = Some(from);
        if self.learn_cooldown > 0 {
            return;
        }
        self.learn_cooldown = self.config.heartbeat_ticks;
        self.send(from, Message::LearnRequest { slot_first: self.slot_committed });
    }

    fn advance_committed(&mut self) {
        while self.log.get(&self.slot_committed).is_some_and(|entry| entry.committed) {
            self.slot_committed = self.slot_committed.next();
        }
    }

    /// Frees entries below `slot` that this replica has also delivered.
    fn truncate(&mut self, slot: Slot) {
        let slot = slot.min(self.slot_delivered);
        if slot <= self.slot_truncated {
            return;
        }
        self.log = self.log.split_off(&slot);
        self.slot_truncated = slot;
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

    /// Asserts the replica's invariants; runs after every input when
    /// [`Config::check_invariants`] is set (debug builds, the simulator, the model checkers).
    fn check_invariants(&self) {
        if !self.config.check_invariants {
            return;
        }
        let id = self.id;
        // An acceptor accepts only at or above its promise, and promises what it accepts.
        // (Committed values it learned carry the ballot their proposer used, which may be
        // above this acceptor's promise.)
        let above_promise = |entry: &Entry<C>| !entry.committed && entry.ballot > self.ballot_promised;
        if let Some((slot, entry)) = self.log.iter().find(|(_, entry)| above_promise(entry)) {
            panic!("{id:?}: {slot:?} accepted in {:?} above the promise {:?}", entry.ballot, self.ballot_promised);
        }
        assert!(self.slot_delivered <= self.slot_committed, "{id:?}: delivered beyond committed");
        assert!(self.slot_truncated <= self.slot_delivered, "{id:?}: truncated beyond delivered");
        if let Some((&first, _)) = self.log.iter().next() {
            assert!(first >= self.slot_truncated, "{id:?}: entry {first:?} below truncation point");
        }
        if let Some(entry) = self.log.get(&self.slot_committed) {
            assert!(!entry.committed, "{id:?}: {:?} committed but commit index not advanced", self.slot_committed);
        }
        match &self.role {
            Role::Leader(leader) => {
                assert_eq!(leader.ballot, self.ballot_promised, "{id:?}: leader's ballot is not its promise");
                assert!(leader.ballot.replica() == id, "{id:?}: leads in {:?} it does not own", leader.ballot);
                for (&slot, proposal) in &leader.proposals {
                    assert!(slot < leader.slot_next, "{id:?}: proposal {slot:?} at or above slot_next");
                    assert!(proposal.acks & id.bit() != 0, "{id:?}: leader did not accept its own {slot:?}");
                    let entry = self.log.get(&slot).expect("a proposal's entry is in the log");
                    assert_eq!(entry.ballot, leader.ballot, "{id:?}: proposal {slot:?} in a foreign ballot");
                    assert!(!entry.committed, "{id:?}: proposal {slot:?} is already committed");
                }
            }
            Role::Candidate(candidate) => {
                assert_eq!(candidate.ballot, self.ballot_promised, "{id:?}: candidate's ballot is not its promise");
            }
            Role::Follower { .. } => {}
        }
    }
}

/// Keeps, per slot, the value a new leader must re-propose: a committed one if any
/// acceptor reported it so, else the one accepted in the highest ballot ("Paxos Made
/// Simple" §2.2, P2c). Returns whether the slot now has two different reported values
/// (different proposals: values are told apart by allocation, as a proposal's batch is
/// shared by every copy of it).
fn merge_promise_entry<C>(merged: &mut BTreeMap<Slot, PromiseEntry<C>>, entry: PromiseEntry<C>) -> bool {
    let contested = merged.get(&entry.slot).is_some_and(|existing| !existing.batch.same_as(&entry.batch));
    match merged.get(&entry.slot) {
        Some(existing) if existing.committed => {}
        // The planted bug `recover-first-value` keeps the first value reported for a slot
        // (the candidate's own) instead of the highest ballot's.
        Some(existing)
            if !entry.committed && (existing.ballot >= entry.ballot || cfg!(corum_plant = "recover-first-value")) => {}
        _ => {
            merged.insert(entry.slot, entry);
        }
    }
    contested
}
