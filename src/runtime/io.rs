//! The runtime's environment for the replica driver ([`Io`]): a replica's rings, the write
//! board (collected while it leads) and its clock for input; the shared commit watermark,
//! leader hint and rings for output; the copy that readers and snapshot donors share.

use std::collections::VecDeque;
use std::time::Instant;

use super::shared::{Posted, ReplicaShared, Shared, CRASHED, NOT_FORKED, RUNNING, STOPPED};
use crate::digest::Verdict;
use crate::driver::Environment;
use crate::protocol::{Message, Replica, ReplicaId, Slot};
use crate::state::ReplicaState;
use crate::sync::atomic::Ordering;
use crate::sync::now;
use crate::sync::Arc;
use crate::transport::board::Collector;
use crate::transport::reader::Reader;
use crate::transport::ring::{Consumer, Producer};
use crate::{Dispatch, Error};

pub(crate) type Wire<D> = Message<Posted<D>>;

/// Most messages taken from one ring, and writes collected from the board, per round, so
/// that one busy input cannot starve the others.
const INPUT_BUDGET: usize = 256;

/// Rounds with input between two looks at the clock for a tick (a round without input
/// always looks): a tick is late by a few tens of microseconds at most, and the six or so
/// rounds of a write no longer read the clock each (docs/BENCHMARKS.md).
const BUSY_ROUNDS_PER_LOOK: u32 = 16;

/// The runtime's [`Environment`] for one replica: its rings, its collection of the write
/// board, its clock, and what it shares with clients and peers.
pub(crate) struct Io<D: Dispatch> {
    pub(super) index: usize,
    pub(super) shared: Arc<Shared<D>>,
    /// `outgoing[j]` sends to replica `j`; `None` at our own index.
    pub(super) outgoing: Vec<Option<Producer<Wire<D>>>>,
    pub(super) incoming: Vec<(ReplicaId, Consumer<Wire<D>>)>,
    /// Messages waiting for room in a full ring, per destination.
    pub(super) pending: Vec<VecDeque<Wire<D>>>,
    /// What this replica collected from the write board in its current ballot.
    pub(super) collector: Collector,
    pub(super) next_tick: Instant,
    /// Rounds with input since the clock was last read for a tick ([`BUSY_ROUNDS_PER_LOOK`]).
    pub(super) busy_rounds: u32,
    /// The lanes `complete` answered writes in and `completed` has not woken yet.
    answered_lanes: Vec<u32>,
    pub(super) watermark_published: u64,
    pub(super) messages_dropped: u64,
    /// Whether `send` wakes the peers it sends to: the pinned thread's rounds do; a client
    /// thread's rounds do not, because that thread runs those peers' rounds next itself
    /// (a peer left with input wakes by its own tick at the latest).
    pub(super) notify_peers: bool,
    /// Whether the round runs on the replica's own thread, not a helping client's: only
    /// then may it wait for a reader to leave the copy (`Environment::may_wait_for_readers`).
    pub(super) own_thread: bool,
    /// The value of `Shared::lifecycle` this replica last acted on; `None` before its
    /// first round (and after a restart).
    pub(super) lifecycle_seen: Option<u64>,
    /// Each replica's restart count (`ReplicaShared::restarts`) when this replica last
    /// acted on the lifecycle.
    pub(super) restarts_seen: Vec<u64>,
    /// The peers found crashed when this replica last acted on the lifecycle, one bit per
    /// replica: `receive` drops what they sent.
    pub(super) peers_crashed: u64,
}

impl<D: Dispatch> Io<D> {
    /// Replica `index`'s environment over its ends of the rings: `outgoing[j]` sends to
    /// replica `j` (`None` at `index`), `incoming` receives from each peer.
    pub(crate) fn new(
        index: usize,
        shared: Arc<Shared<D>>,
        outgoing: Vec<Option<Producer<Wire<D>>>>,
        incoming: Vec<(ReplicaId, Consumer<Wire<D>>)>,
    ) -> Self {
        let peers = outgoing.len();
        Self {
            index,
            shared,
            outgoing,
            incoming,
            pending: (0..peers).map(|_| VecDeque::new()).collect(),
            collector: Collector::default(),
            next_tick: now(),
            busy_rounds: 0,
            answered_lanes: Vec::new(),
            watermark_published: 0,
            messages_dropped: 0,
            notify_peers: true,
            own_thread: true,
            lifecycle_seen: None,
            restarts_seen: vec![0; peers],
            peers_crashed: 0,
        }
    }

    fn me(&self) -> &ReplicaShared<D> {
        &self.shared.replicas[self.index]
    }

    /// When a peer crashed or restarted since the last round, tells the core which peers
    /// are down and which run ([`Replica::peer_down`], [`Replica::peer_up`]).
    fn notice_lifecycle(&mut self, core: &mut Replica<Posted<D>>) {
        // Acquire pairs with the Release raise in `announce_lifecycle`.
        let lifecycle = self.shared.lifecycle.load(Ordering::Acquire);
        if self.lifecycle_seen == Some(lifecycle) {
            return;
        }
        let first = self.lifecycle_seen.replace(lifecycle).is_none();
        for (peer, replica) in self.shared.replicas.iter().enumerate().filter(|&(peer, _)| peer != self.index) {
            let id = ReplicaId::new(peer);
            // Relaxed: ordered by the Acquire load of `lifecycle` (raised after it).
            let restarts = replica.restarts.load(Ordering::Relaxed);
            if restarts != self.restarts_seen[peer] {
                self.restarts_seen[peer] = restarts;
                if !first {
                    // It crashed and came back since this replica last looked, perhaps
                    // unseen: what it sent before it crashed is dropped, as from a crashed
                    // peer (`receive`), and the core hears of the crash too, so that a
                    // follower of it replaces it (a restart does not bring back leadership).
                    if let Some((_, consumer)) = self.incoming.iter_mut().find(|(from, _)| *from == id) {
                        self.messages_dropped += drain(consumer);
                    }
                    core.peer_down(id);
                }
            }
            if replica.status() == CRASHED {
                self.peers_crashed |= id.bit();
                core.peer_down(id);
            } else {
                self.peers_crashed &= !id.bit();
                core.peer_up(id);
            }
        }
    }

    /// Steps the core with every message waiting in the rings (up to a budget per ring).
    /// Messages from a crashed peer are dropped unread, all of them: what it sent before it
    /// died would tell the core that it runs (and, from a dead leader, that it still leads)
    /// after the death notice, so its followers would wait out the election timeout
    /// instead of replacing it; left in the ring, they would be taken after its restart.
    /// The protocol tolerates the loss.
    fn receive(&mut self, core: &mut Replica<Posted<D>>) -> bool {
        let mut any = false;
        for (from, consumer) in &mut self.incoming {
            if self.peers_crashed & from.bit() != 0 {
                self.messages_dropped += drain(consumer);
                continue;
            }
            for _ in 0..INPUT_BUDGET {
                let Some(message) = consumer.pop() else { break };
                core.step(*from, message);
                any = true;
            }
        }
        any
    }

    /// While this replica leads, collects client writes from the board (every unfinished one
    /// again in a new ballot), unless a majority of peers cannot take more messages: then
    /// the writes wait on the board, which makes clients wait.
    fn intake(&mut self, core: &mut Replica<Posted<D>>) -> bool {
        if !core.is_leader() || self.backlogged(core.config().quorum()) {
            return false;
        }
        let ballot = core.ballot_promised().as_u64();
        self.collector.collect(&self.shared.board, ballot, INPUT_BUDGET, |_, write| core.propose(write)) > 0
    }

    /// Whether the next round would collect writes from the board.
    pub(super) fn has_writes(&self, core: &Replica<Posted<D>>) -> bool {
        core.is_leader()
            && !self.backlogged(core.config().quorum())
            && self.collector.has_uncollected(&self.shared.board, core.ballot_promised().as_u64())
    }

    /// Whether so many peers have a full backlog that no majority (`quorum`) can be
    /// reached quickly.
    pub(super) fn backlogged(&self, quorum: usize) -> bool {
        let limit = self.shared.options.pending_max / 2;
        let stuck = self.pending.iter().filter(|queue| queue.len() >= limit).count();
        self.pending.len() - stuck < quorum
    }
}

/// Drops every message waiting in a ring from a peer; returns how many. Only for a peer
/// that crashed (its rounds no longer run, so the ring ends empty) or whose pre-crash
/// messages must go.
fn drain<D: Dispatch>(consumer: &mut Consumer<Wire<D>>) -> u64 {
    std::iter::from_fn(|| consumer.pop()).count() as u64
}

impl<D: Dispatch> Environment<D, Posted<D>> for Io<D> {
    /// The rings, the write board, and a tick when one is due.
    fn feed(&mut self, core: &mut Replica<Posted<D>>) -> bool {
        // Before the rings: a peer known crashed or restarted has its old messages dropped
        // first. One whose crash is announced after this look has its messages taken this
        // round, and the notice comes next round (a message from a peer tells the core that
        // it runs).
        self.notice_lifecycle(core);
        let received = self.receive(core);
        let taken = self.intake(core);
        let busy = received || taken;
        if busy && self.busy_rounds + 1 < BUSY_ROUNDS_PER_LOOK {
            self.busy_rounds += 1;
            return true;
        }
        self.busy_rounds = 0;
        let now = now();
        if now >= self.next_tick {
            core.tick();
            self.next_tick = now + self.shared.options.tick;
        }
        busy
    }

    /// Raises the shared commit watermark, and, if this replica leads, tells clients where
    /// to submit. Every replica does this, not only the leader: a replica may learn that a
    /// slot is committed before the current leader does (a quorum of an older ballot chose
    /// it), and must not apply it unannounced.
    fn raise_watermark(&mut self, slot_committed: Slot, leading: bool) {
        let committed = slot_committed.get();
        if committed > self.watermark_published {
            // Most rounds another replica already raised it: a load avoids contending on
            // the line.
            if self.shared.watermark.load(Ordering::Relaxed) < committed {
                // Release pairs with the Acquire load of readers (`View::watermark` on `Shared`).
                self.shared.watermark.fetch_max(committed, Ordering::Release);
            }
            self.watermark_published = committed;
        }
        if leading && self.shared.leader.load(Ordering::Relaxed) != self.index {
            self.shared.leader.store(self.index, Ordering::Relaxed);
        }
    }

    /// Moves the core's messages into the rings; what does not fit waits in `pending`,
    /// bounded: beyond `pending_max` the oldest messages to that peer are dropped and
    /// counted (the protocol tolerates loss; the peer catches up by learning).
    fn send(&mut self, messages: &mut Vec<(ReplicaId, Wire<D>)>) -> bool {
        // Peers sent to, by bit (`MAX_REPLICAS` fits a word).
        let mut sent_to = 0u64;
        for (to, message) in messages.drain(..) {
            let peer = to.index();
            let queue = &mut self.pending[peer];
            // Straight into the ring when nothing waits before it (a move saved: messages
            // are large); else behind the waiting ones, in order.
            if queue.is_empty() && !matches!(self.shared.replicas[peer].status(), CRASHED | STOPPED) {
                let producer = self.outgoing[peer].as_mut().expect("a ring leads to every peer");
                match producer.push(message) {
                    Ok(()) => sent_to |= 1 << peer,
                    Err(message) => queue.push_back(message),
                }
            } else {
                queue.push_back(message);
            }
        }
        let pending_max = self.shared.options.pending_max;
        for (peer, queue) in self.pending.iter_mut().enumerate() {
            if queue.is_empty() {
                continue;
            }
            let target = &self.shared.replicas[peer];
            if matches!(target.status(), CRASHED | STOPPED) {
                self.messages_dropped += queue.len() as u64;
                queue.clear();
                continue;
            }
            let producer = self.outgoing[peer].as_mut().expect("a ring leads to every peer");
            let mut sent = false;
            while let Some(message) = queue.pop_front() {
                if let Err(message) = producer.push(message) {
                    queue.push_front(message);
                    break;
                }
                sent = true;
            }
            if queue.len() > pending_max {
                let excess = queue.len() - pending_max;
                queue.drain(..excess);
                self.messages_dropped += excess as u64;
            }
            if sent {
                sent_to |= 1 << peer;
            }
        }
        if self.notify_peers {
            for (peer, target) in self.shared.replicas.iter().enumerate() {
                if sent_to & 1 << peer != 0 {
                    target.wake.notify();
                }
            }
        }
        sent_to != 0
    }

    fn publish_applied(&mut self, slot: Slot) {
        let me = self.me();
        // Release pairs with readers' Acquire load: the object they lock next holds these.
        me.slot_applied.store(slot.get(), Ordering::Release);
        me.applied.notify();
    }

    /// Answers the write on the board (quietly: see `completed`) unless this copy is known
    /// diverged.
    fn complete(&mut self, write: &Posted<D>, result: Result<D::Response, Error>) {
        // Acquire pairs with the Release swap in `checkpoint`.
        if !self.me().diverged.load(Ordering::Acquire)
            && self.shared.board.answer_quietly(write.address, result)
            && self.answered_lanes.last() != Some(&write.address.lane)
        {
            self.answered_lanes.push(write.address.lane);
        }
    }

    /// Wakes each lane answered since the last call once (a batch's writes from one lane
    /// sit together, in the order the leader collected them).
    fn completed(&mut self) {
        for lane in self.answered_lanes.drain(..) {
            self.shared.board.wake(lane);
        }
    }

    fn donors(&self) -> Vec<(usize, Slot)> {
        let replicas = &self.shared.replicas;
        (0..replicas.len())
            .filter(|&j| j != self.index && replicas[j].status() == RUNNING)
            // Acquire pairs with the Release swap in `checkpoint`.
            .filter(|&j| !replicas[j].diverged.load(Ordering::Acquire))
            .map(|j| (j, replicas[j].slot_applied()))
            .collect()
    }

    fn digest_every(&self) -> u64 {
        self.shared.options.digest_every
    }

    /// Records this replica's digest on the shared board and acts on what it decided: marks
    /// the copies found diverged (their own rounds replace them) or the cluster forked.
    fn checkpoint(&mut self, slot: Slot, digest: u64) {
        let verdict = self.shared.digests.lock().record(self.index, slot, digest);
        match verdict {
            Verdict::Diverged(replicas) => {
                for index in replicas {
                    let replica = &self.shared.replicas[index];
                    // Release pairs with the Acquire loads of readers, donors and
                    // `complete`; Acquire with the Release store in `repaired` (a copy
                    // repaired and diverged again is counted again).
                    if !replica.diverged.swap(true, Ordering::AcqRel) {
                        // Relaxed: counters for stats.
                        replica.stats.divergences.fetch_add(1, Ordering::Relaxed);
                        replica.stats.diverged_at.store(slot.get(), Ordering::Relaxed);
                        replica.wake.notify();
                    }
                }
            }
            Verdict::Forked => {
                // Relaxed: a flag set once (`Shared::forked`); the first fork found stays.
                let _ = self.shared.forked_at.compare_exchange(
                    NOT_FORKED,
                    slot.get(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Verdict::Agreed | Verdict::Undecided => {}
        }
    }

    fn may_wait_for_readers(&self) -> bool {
        self.own_thread
    }

    fn diverged(&self) -> bool {
        // Acquire pairs with the Release swap in `checkpoint`.
        self.me().diverged.load(Ordering::Acquire)
    }

    /// A copy installed from a peer: what this replica reported before describes a copy
    /// it no longer has.
    fn installed_snapshot(&mut self, _peer: usize, _slot: Slot) {
        self.shared.digests.lock().forget(self.index);
    }

    fn repaired(&mut self) {
        // Release: the healthy copy installed before is what readers see once they find
        // the flag clear.
        self.me().diverged.store(false, Ordering::Release);
    }

    fn copy_state(&self, peer: usize) -> ReplicaState<D> {
        // Read as a reader gives a consistent copy: object, table and slot together.
        self.shared.replicas[peer].state.read(Reader::shared(self.index), ReplicaState::snapshot)
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests;
