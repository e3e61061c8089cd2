//! One replica thread: the loop that feeds its protocol core from the rings and the
//! submission queue, sends what the core emits, applies what it commits, and parks when
//! there is nothing to do. The order inside one round is what makes reads linearizable:
//! a replica raises the shared commit watermark to its commit index *before* it applies
//! those slots or sends the messages that let others apply them.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::idle::{now, Idler};
use super::{Command, ReplicaShared, Shared, CRASHED, PAUSED, RUNNING, STOPPED};
use crate::protocol::{self, Message, ReplicaId, RoleKind, Slot};
use crate::sync::atomic::Ordering;
use crate::sync::thread::{self, JoinHandle};
use crate::sync::Arc;
use crate::transport::ring::{Consumer, Producer};
use crate::{Dispatch, Error};

type Wire<D> = Message<Command<D>>;

/// A write applied by this replica, waiting for its caller's completion: the index of its
/// batch in `ReplicaThread::applied_batches`, its index in the batch, and its outcome. (Not
/// a clone of the command: that would write its reference count, a cache line its client
/// and the other replicas also write, once more per write on every replica.)
type Applied<D> = (usize, usize, Result<<D as Dispatch>::Response, Error>);

/// Most messages taken from one ring, and writes from the submission queue, per round, so
/// that one busy input cannot starve the others.
const INPUT_BUDGET: usize = 256;

/// Consecutive late rounds after which a leader steps down (see `step_down_if_late`).
const LATE_ROUNDS_BEFORE_STEPPING_DOWN: u32 = 3;

/// Marks a replica crashed if its thread unwinds.
struct CrashOnPanic<D: Dispatch> {
    shared: Arc<Shared<D>>,
    index: usize,
}

impl<D: Dispatch> Drop for CrashOnPanic<D> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let replica = &self.shared.replicas[self.index];
            // Release pairs with the Acquire loads of `status`.
            replica.status.store(CRASHED, Ordering::Release);
            replica.wake.notify();
        }
    }
}

pub(crate) struct ReplicaThread<D: Dispatch> {
    index: usize,
    core: protocol::Replica<Command<D>>,
    shared: Arc<Shared<D>>,
    /// `outgoing[j]` sends to replica `j`; `None` at our own index.
    outgoing: Vec<Option<Producer<Wire<D>>>>,
    incoming: Vec<(ReplicaId, Consumer<Wire<D>>)>,
    /// Messages waiting for room in a full ring, per destination.
    pending: Vec<VecDeque<Wire<D>>>,
    completed: Vec<Applied<D>>,
    /// The batches `completed` points into.
    applied_batches: Vec<protocol::Batch<Command<D>>>,
    next_tick: Instant,
    idler: Idler,
    slot_committed_published: u64,
    messages_dropped: u64,
    snapshots_installed: u64,
    /// When the current round of the loop started, and how many rounds in a row took
    /// too long while leading.
    round_started: Instant,
    late_rounds: u32,
    /// What the protocol cores this replica ran before its restarts counted.
    counters_before_restart: protocol::Counters,
}

impl<D: Dispatch> ReplicaThread<D> {
    pub(crate) fn new(
        index: usize,
        core: protocol::Replica<Command<D>>,
        shared: Arc<Shared<D>>,
        outgoing: Vec<Option<Producer<Wire<D>>>>,
        incoming: Vec<(ReplicaId, Consumer<Wire<D>>)>,
        pending: Vec<VecDeque<Wire<D>>>,
    ) -> Self {
        let idler = Idler::new(shared.options.idle, shared.options.spin);
        Self {
            index,
            core,
            shared,
            outgoing,
            incoming,
            pending,
            completed: Vec::new(),
            applied_batches: Vec::new(),
            next_tick: now(),
            idler,
            slot_committed_published: 0,
            messages_dropped: 0,
            snapshots_installed: 0,
            round_started: now(),
            late_rounds: 0,
            counters_before_restart: protocol::Counters::default(),
        }
    }

    fn me(&self) -> &ReplicaShared<D> {
        &self.shared.replicas[self.index]
    }

    /// Starts the replica's thread, pinned to `core` if given (best effort: a refused pin
    /// leaves the thread unpinned). If the operating system refuses the thread, the replica
    /// comes back with the error, so that nothing it holds is lost.
    pub(crate) fn spawn(
        self,
        core: Option<core_affinity::CoreId>,
    ) -> Result<JoinHandle<Self>, (Box<Self>, std::io::Error)> {
        let index = self.index;
        let shared = Arc::clone(&self.shared);
        // A one-time handoff, never contended: the thread takes the replica when it starts;
        // if it never starts, the closure is dropped and the replica is taken back here.
        // (A std mutex, not the `sync` shim: there is no protocol here for loom to check.)
        let handoff = std::sync::Arc::new(std::sync::Mutex::new(Some(self)));
        let inside = std::sync::Arc::clone(&handoff);
        let builder = thread::Builder::new().name(format!("corum-replica-{index}"));
        #[cfg(all(test, not(corum_loom)))]
        let builder = if tests::FAIL_NEXT_SPAWN.with(|fail| fail.replace(false)) {
            // A stack no machine can map: the operating system refuses the thread.
            builder.stack_size(usize::MAX / 4)
        } else {
            builder
        };
        let spawned = builder.spawn(move || {
            // A panic that escapes (a broken invariant, a panic in the object's `clone`)
            // ends the thread: mark the replica crashed so nobody waits for it.
            let _crash_on_panic = CrashOnPanic { shared, index };
            #[cfg(not(corum_loom))]
            if let Some(core) = core {
                let _ = core_affinity::set_for_current(core);
            }
            #[cfg(corum_loom)]
            let _ = core;
            let replica = inside.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            replica.expect("the replica is handed over once").run()
        });
        spawned.map_err(|error| {
            let replica = handoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            (Box::new(replica.expect("a thread that never started did not take the replica")), error)
        })
    }

    /// Rebuilds a crashed replica for a restart. What a replica keeps on stable storage
    /// survives: the acceptor's promise and accepted values, and its copy of the object as
    /// of the slots its log has freed (the snapshot that stands for them). The log, the
    /// leader and learner state are rebuilt; the copy is replaced by the running peer's
    /// that applied the most, unless that one is behind its own, which would roll it back
    /// and could lose committed writes whose entries every replica has freed.
    pub(crate) fn restart(&mut self) {
        let config = self.core.config().clone();
        let durable = self.core.durable_state();
        let old = self.core.counters();
        let carried = &mut self.counters_before_restart;
        carried.batches_proposed += old.batches_proposed;
        carried.leader_changes += old.leader_changes;
        carried.elections_started += old.elections_started;
        carried.commands_dropped += old.commands_dropped;
        self.core = protocol::Replica::restart(ReplicaId::new(self.index), config, durable);
        self.pending.iter_mut().for_each(VecDeque::clear);
        self.completed.clear();
        self.applied_batches.clear();
        self.next_tick = now();
        self.idler.reset();
        let own = self.shared.replicas[self.index].state.read().slot_applied;
        if !self.install_peer_copy(own) {
            self.core.install_snapshot(own);
        }
    }

    /// Installs a peer's copy when the protocol core reports that its peers freed log
    /// entries it still needs. Returns whether it installed one.
    fn catch_up_from_snapshot(&mut self) -> bool {
        match self.core.snapshot_wanted() {
            Some(wanted) => self.install_peer_copy(wanted),
            None => false,
        }
    }

    /// Installs a copy of the state of the running peer that applied the most, if that
    /// copy reaches at least `at_least` and this replica's delivered slot. Returns whether
    /// it installed one.
    fn install_peer_copy(&mut self, at_least: Slot) -> bool {
        let replicas = &self.shared.replicas;
        let donor = (0..replicas.len())
            .filter(|&j| j != self.index && replicas[j].status() == RUNNING)
            .max_by_key(|&j| replicas[j].slot_applied());
        let Some(donor) = donor else { return false };
        // The read lock gives a consistent copy: object, table and slot together.
        let copy = replicas[donor].state.read().snapshot();
        let slot = copy.slot_applied;
        if slot < at_least || slot < self.core.slot_delivered() {
            return false;
        }
        *replicas[self.index].state.write() = copy;
        self.core.install_snapshot(slot);
        // Release pairs with readers' Acquire load, as after applying.
        replicas[self.index].slot_applied.store(slot.get(), Ordering::Release);
        replicas[self.index].applied.notify();
        self.snapshots_installed += 1;
        true
    }

    /// Runs the replica until it is stopped or crashed, and returns its state.
    pub(crate) fn run(mut self) -> Self {
        self.publish_stats();
        loop {
            if self.shared.is_stopped() {
                break;
            }
            match self.me().status() {
                RUNNING => {}
                PAUSED => {
                    // Release pairs with the Acquire load in `Faults::pause`: everything
                    // this replica did before pausing happens before `pause` returns.
                    self.me().pause_acknowledged.store(true, Ordering::Release);
                    self.park_while_paused();
                    continue;
                }
                _ => break,
            }
            let mut progressed = self.receive();
            progressed |= self.catch_up_from_snapshot();
            progressed |= self.intake();
            let now = now();
            if now >= self.next_tick {
                self.core.tick();
                self.next_tick = now + self.shared.options.tick;
            }
            self.core.flush();
            // The planted bug `watermark-after-apply` raises the watermark only after the
            // round's writes were applied and their callers completed.
            let watermark_late = cfg!(corum_plant = "watermark-after-apply");
            if !watermark_late {
                self.publish_progress();
            }
            progressed |= self.send();
            progressed |= self.apply();
            if watermark_late {
                self.publish_progress();
            }
            if progressed {
                self.idler.reset();
                self.publish_stats();
                self.be_slow();
            } else {
                self.idle();
            }
            self.step_down_if_late();
        }
        self.publish_stats();
        // A crashed replica stays crashed; anything else that exits has stopped.
        let _ = self.me().status.compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
        let _ = self.me().status.compare_exchange(PAUSED, STOPPED, Ordering::AcqRel, Ordering::Acquire);
        self
    }

    /// After every replica thread has exited: completes every write this replica still
    /// holds (in its rings, its submission queue, its protocol core) with
    /// [`Error::Shutdown`]. Writes already completed are left as they are.
    pub(crate) fn fail_held_writes(mut self) {
        let mut held: Vec<Command<D>> = Vec::new();
        let mut collect = |message: Wire<D>| match message {
            Message::Accept { batch, .. } => held.extend(batch.commands().iter().cloned()),
            Message::Forward { commands } => held.extend(commands),
            Message::Promise { accepted, .. } => {
                accepted.iter().for_each(|entry| held.extend(entry.batch.commands().iter().cloned()))
            }
            Message::Learn { entries, .. } => {
                entries.iter().for_each(|entry| held.extend(entry.batch.commands().iter().cloned()))
            }
            _ => {}
        };
        for (_, consumer) in &mut self.incoming {
            while let Some(message) = consumer.pop() {
                collect(message);
            }
        }
        for queue in &mut self.pending {
            queue.drain(..).for_each(&mut collect);
        }
        while let Some(command) = self.shared.replicas[self.index].submissions.pop() {
            held.push(command);
        }
        held.extend(self.core.drain_unapplied_commands());
        for command in held {
            command.completion.complete(Err(Error::Shutdown));
        }
    }

    /// Sleeps as long as fault injection asked this replica to after each round of work;
    /// a pause, crash or stop (which notify `wake`) cuts the sleep short.
    fn be_slow(&self) {
        // Relaxed: a setting read once per round; nothing is published through it.
        let nanos = self.me().slowness_nanos.load(Ordering::Relaxed);
        if nanos == 0 {
            return;
        }
        let me = self.me();
        let until = now() + std::time::Duration::from_nanos(nanos);
        loop {
            // Messages and writes also notify `wake`: only a status change ends the sleep early.
            let key = me.wake.prepare_wait();
            let left = until.saturating_duration_since(now());
            if me.status() != RUNNING || self.shared.is_stopped() || left.is_zero() {
                me.wake.cancel_wait(key);
                return;
            }
            me.wake.wait(key, left);
        }
    }

    /// A leader whose rounds keep taking longer than half an election timeout (a slow or
    /// starved core) gives up leadership, so that a responsive replica takes over; its own
    /// slow clock makes it the last to campaign again.
    fn step_down_if_late(&mut self) {
        let now = now();
        let round = now.saturating_duration_since(self.round_started);
        self.round_started = now;
        if !self.core.is_leader() {
            self.late_rounds = 0;
            return;
        }
        let limit = self.shared.options.tick * self.core.config().election_ticks / 2;
        if round <= limit {
            self.late_rounds = 0;
            return;
        }
        self.late_rounds += 1;
        if self.late_rounds >= LATE_ROUNDS_BEFORE_STEPPING_DOWN {
            self.late_rounds = 0;
            self.core.step_down();
        }
    }

    /// Steps the core with every message waiting in the rings (up to a budget per ring).
    fn receive(&mut self) -> bool {
        let mut any = false;
        for (from, consumer) in &mut self.incoming {
            for _ in 0..INPUT_BUDGET {
                let Some(message) = consumer.pop() else { break };
                self.core.step(*from, message);
                any = true;
            }
        }
        any
    }

    /// Takes client writes from the submission queue, unless a majority of peers cannot
    /// take more messages: then the writes wait in the queue, which makes clients wait.
    fn intake(&mut self) -> bool {
        if self.backlogged() {
            return false;
        }
        let mut any = false;
        for _ in 0..INPUT_BUDGET {
            let Some(command) = self.me().submissions.pop() else { break };
            self.core.propose(command);
            any = true;
        }
        any
    }

    /// Whether so many peers have a full backlog that no majority can be reached quickly.
    fn backlogged(&self) -> bool {
        let limit = self.shared.options.pending_max / 2;
        let stuck = self.pending.iter().filter(|queue| queue.len() >= limit).count();
        self.pending.len() - stuck < self.core.config().quorum()
    }

    /// Raises the shared commit watermark to this replica's commit index before it applies
    /// anything below it or sends the messages that let others do so (see the module docs),
    /// and, if it leads, tells clients where to submit. Every replica does this, not only
    /// the leader: a replica may learn that a slot is committed before the current leader
    /// does (a quorum of an older ballot chose it), and must not apply it unannounced.
    fn publish_progress(&mut self) {
        let committed = self.core.slot_committed().get();
        if committed > self.slot_committed_published {
            // Most rounds another replica already raised it: a load avoids contending on
            // the line.
            if self.shared.slot_committed.load(Ordering::Relaxed) < committed {
                // Release pairs with the Acquire load of readers (`Shared::slot_committed`).
                self.shared.slot_committed.fetch_max(committed, Ordering::Release);
            }
            self.slot_committed_published = committed;
        }
        if !self.core.is_leader() {
            return;
        }
        if self.shared.leader.load(Ordering::Relaxed) != self.index {
            self.shared.leader.store(self.index, Ordering::Relaxed);
        }
    }

    /// Moves the core's messages into the rings; what does not fit waits in `pending`,
    /// bounded: beyond `pending_max` the oldest messages to that peer are dropped and
    /// counted (the protocol tolerates loss; the peer catches up by learning).
    fn send(&mut self) -> bool {
        for (to, message) in self.core.drain_messages() {
            self.pending[to.index()].push_back(message);
        }
        let pending_max = self.shared.options.pending_max;
        let mut any = false;
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
                target.wake.notify();
                any = true;
            }
        }
        any
    }

    /// Applies every committed batch, in slot order, skipping duplicates; then publishes
    /// how far it applied and completes the writes' callers.
    fn apply(&mut self) -> bool {
        let me = &self.shared.replicas[self.index];
        if cfg!(corum_plant = "applied-before-apply") {
            // Planted bug: announce the slots as applied before applying them.
            me.slot_applied.store(self.core.slot_committed().get(), Ordering::Release);
        }
        let mut applied_to = None;
        {
            let mut state = None;
            while let Some((slot, batch)) = self.core.pop_committed() {
                let state = state.get_or_insert_with(|| me.state.write());
                let batch_index = self.applied_batches.len();
                for (index, command) in batch.commands().iter().enumerate() {
                    if !state.sessions.admit(command.client, command.sequence, command.floor) {
                        // A duplicate: its first application completed the caller already.
                        continue;
                    }
                    // The object's code is the user's: a panic is caught here, on every
                    // replica alike, and reported to the caller instead of killing us.
                    let outcome = catch_unwind(AssertUnwindSafe(|| state.object.dispatch_mut(&command.op)))
                        .map_err(|_| Error::OperationPanicked);
                    self.completed.push((batch_index, index, outcome));
                }
                self.applied_batches.push(batch);
                state.slot_applied = slot.next();
                applied_to = Some(slot.next());
            }
        }
        let Some(applied_to) = applied_to else { return false };
        // Release pairs with readers' Acquire load: the object they lock next holds these.
        me.slot_applied.store(applied_to.get(), Ordering::Release);
        me.applied.notify();
        for (batch, index, outcome) in self.completed.drain(..) {
            self.applied_batches[batch].commands()[index].completion.complete(outcome);
        }
        self.applied_batches.clear();
        true
    }

    fn idle(&mut self) {
        let me = &self.shared.replicas[self.index];
        let timeout = self.next_tick.saturating_duration_since(now()).max(std::time::Duration::from_micros(50));
        let incoming = &self.incoming;
        let shared = &self.shared;
        // While backlogged, queued writes are not work this round can do: the next tick
        // (or a peer's message) wakes the thread to retry sending.
        let backlogged = self.backlogged();
        self.idler.idle(|| {
            let key = me.wake.prepare_wait();
            let ready = shared.is_stopped()
                || me.status() != RUNNING
                || (!backlogged && !me.submissions.is_empty())
                || incoming.iter().any(|(_, consumer)| !consumer.is_empty());
            if ready {
                me.wake.cancel_wait(key);
            } else {
                me.wake.wait(key, timeout);
            }
        });
    }

    fn park_while_paused(&mut self) {
        let me = &self.shared.replicas[self.index];
        let key = me.wake.prepare_wait();
        if me.status() != PAUSED || self.shared.is_stopped() {
            me.wake.cancel_wait(key);
        } else {
            me.wake.wait(key, self.shared.options.tick);
        }
    }

    pub(crate) fn publish_stats(&self) {
        let stats = &self.me().stats;
        let counters = self.core.counters();
        let role = match self.core.role() {
            RoleKind::Follower => 0,
            RoleKind::Candidate => 1,
            RoleKind::Leader => 2,
        };
        // Relaxed: stats are a best-effort snapshot, read by `Cluster::stats` only.
        stats.role.store(role, Ordering::Relaxed);
        stats.ballot.store(self.core.ballot_promised().as_u64(), Ordering::Relaxed);
        stats.slot_committed.store(self.core.slot_committed().get(), Ordering::Relaxed);
        // Counters of the cores this replica ran before a restart count too.
        let before = &self.counters_before_restart;
        stats.batches_proposed.store(before.batches_proposed + counters.batches_proposed, Ordering::Relaxed);
        stats.leader_changes.store(before.leader_changes + counters.leader_changes, Ordering::Relaxed);
        stats.elections_started.store(before.elections_started + counters.elections_started, Ordering::Relaxed);
        let dropped = self.messages_dropped + before.commands_dropped + counters.commands_dropped;
        stats.messages_dropped.store(dropped, Ordering::Relaxed);
        let waiting = self.core.commands_waiting() + self.core.proposals_in_flight();
        stats.commands_waiting.store(waiting as u64, Ordering::Relaxed);
        stats.log_len.store(self.core.log_len() as u64, Ordering::Relaxed);
        stats.snapshots_installed.store(self.snapshots_installed, Ordering::Relaxed);
    }
}

#[cfg(all(test, not(corum_loom)))]
pub(crate) mod tests {
    thread_local! {
        /// Makes the next replica thread this thread spawns fail, to test what a refused
        /// thread loses. Per thread, so that tests running in parallel do not see it.
        pub(crate) static FAIL_NEXT_SPAWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
}
