//! One round of one replica: the only code that acts on the protocol core's output. The
//! threaded runtime (`runtime/replica.rs`, over `runtime/io.rs`) and the simulator
//! (`sim/`) drive their replicas through [`Driver`], each with its own [`Environment`]
//! (rings, a shared watermark and a locked object in the runtime; a simulated network,
//! watermark and object in the simulator), so the simulator's seed sweep exercises the
//! ordering that linearizable reads depend on, the exactly-once apply, the snapshot choice
//! and install, and the restart, exactly as the runtime runs them.
//!
//! A round, in order (see [`crate::protocol::Ready`]): the environment feeds the core its
//! input; the core hands out its [`Ready`](crate::protocol::Ready); the driver
//! 1. publishes the commit index (the read watermark),
//! 2. sends the messages,
//! 3. applies the committed batches to the state under its lock (taking the object's digest
//!    at each checkpoint it passes, see `crate::digest`), publishes how far it applied,
//!    reports the digests, then completes the writes' callers; if a reader is in the copy,
//!    it puts them off to a later round instead of waiting for it (`Driver::apply`),
//! 4. installs a peer's snapshot when the core needs one, or when this replica's copy was
//!    found diverged,
//! 5. gives the `Ready` back.

use crate::digest::at_checkpoint;
use crate::plant::planted;
use crate::protocol::{Batch, Message, Replica, ReplicaId, Slot};
use crate::state::{Outcome, ReplicaState, Write};
use crate::{Dispatch, Error};

/// Where a replica's state lives, so the driver can lock it while it applies: behind the
/// runtime's lock (readers and snapshot donors share it), or owned by the simulator.
pub(crate) trait StateCell<D> {
    /// Runs `f` with exclusive access to the state.
    fn with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> R;

    /// Runs `f` with exclusive access to the state if that is to be had without waiting
    /// for a reader (see `CopyLock::try_write`); `None`, without running `f`, if not.
    fn try_with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> Option<R>;
}

impl<D> StateCell<D> for ReplicaState<D> {
    fn with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> R {
        f(self)
    }

    fn try_with<R>(&mut self, f: impl FnOnce(&mut ReplicaState<D>) -> R) -> Option<R> {
        Some(f(self))
    }
}

/// What a replica's surroundings do for the driver: its inputs, its network, the watermark
/// readers wait for, its callers, and its peers' states.
pub(crate) trait Environment<D: Dispatch, C> {
    /// Feeds the core this round's input (messages, client commands, ticks). Returns
    /// whether there was any.
    fn feed(&mut self, core: &mut Replica<C>) -> bool;

    /// Step 1: every slot below `slot_committed` is committed; raise the watermark that
    /// linearizable reads wait for. `leading`: whether this replica leads now.
    fn raise_watermark(&mut self, slot_committed: Slot, leading: bool);

    /// Step 2: sends the messages, emptying `messages`. Returns whether any left.
    fn send(&mut self, messages: &mut Vec<(ReplicaId, Message<C>)>) -> bool;

    /// Step 3, per slot, with the state still locked: what applying `slot` did. For
    /// checkers; nothing by default.
    fn applied_slot(
        &mut self,
        _slot: Slot,
        _batch: &Batch<C>,
        _outcomes: &[Outcome<D::Response>],
        _state: &ReplicaState<D>,
    ) {
    }

    /// Step 3, after unlocking: every slot below `slot` is applied to this replica's state.
    fn publish_applied(&mut self, slot: Slot);

    /// Checkpoints fall every this many slots (none if zero): the driver takes the object's
    /// digest there ([`Dispatch::digest`]).
    fn digest_every(&self) -> u64 {
        0
    }

    /// Step 3, after unlocking, before completing: this replica's object had digest
    /// `digest` once it applied every slot below `slot`.
    fn checkpoint(&mut self, _slot: Slot, _digest: u64) {}

    /// Step 4: whether this replica's copy was found diverged and is to be replaced by a
    /// peer's.
    fn diverged(&self) -> bool {
        false
    }

    /// Steps 3 and 4: whether this round may wait for a reader to leave its copy, to apply
    /// once a whole log window of slots is put off, or to install a peer's copy. The
    /// runtime's rounds run by a client helping this replica may not (the client would be
    /// stuck behind a reader for as long as it reads, perhaps for good if the reader waits
    /// for that client): they put off further, or install in a later round, and the
    /// replica's own thread runs the round that waits ([`Driver::owes_a_window`]).
    fn may_wait_for_readers(&self) -> bool {
        true
    }

    /// Step 4: the diverged copy was replaced by a healthy peer's.
    fn repaired(&mut self) {}

    /// Step 3, last: `command` took effect here with `result`; complete its caller.
    fn complete(&mut self, command: &C, result: Result<D::Response, Error>);

    /// Step 3, after the last `complete` of a round: for an environment that wakes callers
    /// once per batch rather than once per write. Nothing by default.
    fn completed(&mut self) {}

    /// Step 4: the running peers that could hand over a snapshot (none whose copy is known
    /// diverged), with how far each applied.
    fn donors(&self) -> Vec<(usize, Slot)>;

    /// Step 4: a consistent copy of peer `peer`'s state (object, table and slot together).
    fn copy_state(&self, peer: usize) -> ReplicaState<D>;

    /// Step 4: this replica installed `peer`'s snapshot, which reaches `slot`.
    fn installed_snapshot(&mut self, _peer: usize, _slot: Slot) {}
}

/// One replica: its protocol core and its state, driven one round at a time.
#[derive(Debug)]
pub(crate) struct Driver<D: Dispatch, C, S> {
    core: Replica<C>,
    state: S,
    /// The outcomes of the writes the current round applied, until their callers complete.
    outcomes: Vec<Outcome<D::Response>>,
    /// The digests the current round took, until they are reported.
    digests: Vec<(Slot, u64)>,
    /// Committed slots not applied yet because a reader was in the copy (see
    /// `Driver::apply`), oldest first.
    deferred: Vec<(Slot, Batch<C>)>,
    /// Rounds whose apply was put off that way.
    applies_deferred: u64,
    snapshots_installed: u64,
}

impl<D: Dispatch, C, S> Driver<D, C, S> {
    /// A replica driving `core` over `state`.
    pub(crate) fn new(core: Replica<C>, state: S) -> Self {
        Self {
            core,
            state,
            outcomes: Vec::new(),
            digests: Vec::new(),
            deferred: Vec::new(),
            applies_deferred: 0,
            snapshots_installed: 0,
        }
    }

    /// The protocol core.
    pub(crate) fn core(&self) -> &Replica<C> {
        &self.core
    }

    /// The protocol core, for input outside a round (a client command, a step-down).
    pub(crate) fn core_mut(&mut self) -> &mut Replica<C> {
        &mut self.core
    }

    /// Where the state lives.
    pub(crate) fn state(&self) -> &S {
        &self.state
    }

    /// Snapshots this replica installed since it was built.
    pub(crate) fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
    }

    /// Rounds whose apply was put off because a reader was in the copy.
    pub(crate) fn applies_deferred(&self) -> u64 {
        self.applies_deferred
    }

    /// Where the state lives, for a simulator that decides when it is busy.
    #[cfg_attr(corum_loom, allow(dead_code))]
    pub(crate) fn state_mut(&mut self) -> &mut S {
        &mut self.state
    }
}

impl<D, C, S> Driver<D, C, S>
where
    D: Dispatch,
    C: Write<D> + Clone,
    S: StateCell<D>,
{
    /// One round: the environment's input, then the core's output acted on in the
    /// contract's order. Returns whether the round did any work.
    pub(crate) fn round<E: Environment<D, C>>(&mut self, env: &mut E) -> bool {
        let fed = env.feed(&mut self.core);
        let mut ready = self.core.ready();
        // The planted bug `watermark-after-apply` raises the watermark only after the
        // round's writes were applied and their callers completed.
        let watermark_late = planted!("watermark-after-apply");
        if !watermark_late {
            env.raise_watermark(ready.slot_committed, self.core.is_leader());
        }
        let sent = env.send(&mut ready.messages);
        let applied = self.apply(env, &ready.committed);
        if watermark_late {
            env.raise_watermark(ready.slot_committed, self.core.is_leader());
        }
        let installed = match ready.snapshot_wanted {
            Some(wanted) => self.install_peer_copy(env, wanted),
            None => false,
        };
        let repaired = env.diverged() && self.repair(env);
        self.core.advance(ready);
        fed || sent || applied || installed || repaired
    }

    /// Replaces this replica's diverged copy with a copy of a healthy peer's that applied at
    /// least as far (the next round tries again if none has yet). Returns whether it did.
    fn repair<E: Environment<D, C>>(&mut self, env: &mut E) -> bool {
        let repaired = self.install_peer_copy(env, self.core.slot_delivered());
        if repaired {
            env.repaired();
        }
        repaired
    }

    /// Whether a whole log window of committed slots is put off (a reader stays in the
    /// copy): the next round's apply waits for the reader, if its environment may wait.
    pub(crate) fn owes_a_window(&self) -> bool {
        self.deferred.len() as u64 >= self.core.config().log_window
    }

    /// Applies the round's `committed` slots, after any put off before, if the copy is free
    /// of readers; otherwise puts them off to a later round (and says the round did no
    /// work, so that a replica thread waits for its next input or tick rather than spin on
    /// a reader descheduled inside its read). The round has sent its messages already, so a
    /// reader holds back what this copy applied, never this replica's votes: its peers
    /// apply and answer the writes meanwhile. Slots put off reach `Config::log_window`
    /// only if a reader stays in the copy for that long; then the apply waits for it.
    /// Returns whether it applied anything.
    fn apply<E: Environment<D, C>>(&mut self, env: &mut E, committed: &[(Slot, Batch<C>)]) -> bool {
        if self.deferred.is_empty() {
            if committed.is_empty() || self.apply_now(env, committed, false) {
                return !committed.is_empty();
            }
            // The planted bug `put-off-slots-dropped` forgets the slots it put off.
            if !planted!("put-off-slots-dropped") {
                self.deferred.extend_from_slice(committed);
            }
            return false;
        }
        self.deferred.extend_from_slice(committed);
        let mut deferred = std::mem::take(&mut self.deferred);
        let wait = deferred.len() as u64 >= self.core.config().log_window && env.may_wait_for_readers();
        let applied = self.apply_now(env, &deferred, wait);
        if applied {
            deferred.clear();
        }
        self.deferred = deferred;
        applied
    }

    /// Applies `committed` in order under the state's lock (waiting for readers to leave
    /// if `wait`, else giving up if one is in: returns false), publishes how far it
    /// applied, then completes the callers of the writes that took effect.
    fn apply_now<E: Environment<D, C>>(&mut self, env: &mut E, committed: &[(Slot, Batch<C>)], wait: bool) -> bool {
        let Some(&(last, _)) = committed.last() else { return true };
        if planted!("applied-before-apply") {
            // Planted bug: announce the slots as applied before applying them.
            env.publish_applied(last.next());
        }
        let (outcomes, digests) = (&mut self.outcomes, &mut self.digests);
        let every = env.digest_every();
        let apply = |state: &mut ReplicaState<D>| {
            for (batch_index, (slot, batch)) in committed.iter().enumerate() {
                let first = outcomes.len();
                state.apply(*slot, batch_index, batch.commands(), outcomes);
                env.applied_slot(*slot, batch, &outcomes[first..], state);
                if at_checkpoint(state.slot_applied, every) {
                    if let Some(digest) = state.object.digest() {
                        digests.push((state.slot_applied, digest));
                    }
                }
            }
        };
        if wait {
            self.state.with(apply);
        } else if self.state.try_with(apply).is_none() {
            self.applies_deferred += 1;
            return false;
        }
        env.publish_applied(last.next());
        // Before completing: a copy found diverged here does not answer its callers.
        for (slot, digest) in self.digests.drain(..) {
            env.checkpoint(slot, digest);
        }
        for outcome in self.outcomes.drain(..) {
            env.complete(&committed[outcome.batch].1.commands()[outcome.index], outcome.result);
        }
        env.completed();
        true
    }

    /// Installs a copy of the state of the running peer that applied the most, if that copy
    /// reaches at least `at_least` and what this replica already applied. Returns whether
    /// it installed one.
    fn install_peer_copy<E: Environment<D, C>>(&mut self, env: &mut E, at_least: Slot) -> bool {
        let Some((donor, applied)) = env.donors().into_iter().max_by_key(|&(_, slot)| slot) else { return false };
        // Decide on the slot the donor reported before copying its whole state: a replica
        // waiting for a donor to get far enough asks again every round. (A donor's applied
        // slot only grows, so the copy reaches at least as far.)
        if applied < at_least || applied < self.core.slot_delivered() {
            return false;
        }
        let copy = env.copy_state(donor);
        let slot = copy.slot_applied;
        if env.may_wait_for_readers() {
            self.state.with(|state| *state = copy);
        } else if self.state.try_with(move |state| *state = copy).is_none() {
            // A reader is in the copy and this round may not wait for it (a helping
            // client's): the core asks again next round.
            return false;
        }
        // What was put off is below `slot` (which reaches what the core delivered).
        self.deferred.retain(|&(deferred, _)| deferred >= slot);
        self.core.install_snapshot(slot);
        env.publish_applied(slot);
        env.installed_snapshot(donor, slot);
        self.snapshots_installed += 1;
        true
    }

    /// Rebuilds a crashed replica. What a replica keeps on stable storage survives: the
    /// acceptor's promise and accepted values, and its state as of the slots its log has
    /// freed (the snapshot that stands for them). The log, the leader and learner state are
    /// rebuilt; the state is replaced by the running peer's that applied the most, unless
    /// that one is behind its own, which would roll it back and could lose committed writes
    /// whose entries every replica has freed.
    pub(crate) fn restart<E: Environment<D, C>>(&mut self, env: &mut E) {
        let config = self.core.config().clone();
        let durable = self.core.durable_state();
        self.core = Replica::restart(self.core.id(), config, durable);
        self.outcomes.clear();
        self.deferred.clear();
        let own = self.state.with(|state| state.slot_applied);
        if !self.install_peer_copy(env, own) {
            self.core.install_snapshot(own);
        }
    }
}
