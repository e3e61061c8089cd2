//! One replica thread: the loop that runs its replica's rounds ([`Driver::round`]) over
//! the rings, the submission queue, the shared watermark and the shared copy of the object
//! ([`Io`], the runtime's environment for the driver, in `io.rs`), and parks when there is
//! nothing to do. The order inside a round, which is what makes reads linearizable, is the
//! driver's (shared with the simulator): a replica raises the shared commit watermark to
//! its commit index *before* it applies those slots or sends the messages that let others
//! apply them.

use std::collections::VecDeque;
use std::time::Instant;

use super::idle::{now, Idler};
use super::io::{Io, SharedState, Wire};
use super::{role_code, Command, ReplicaShared, Shared, CRASHED, PAUSED, RUNNING, STOPPED};
use crate::driver::Driver;
use crate::protocol::{self, Replica, ReplicaId};
use crate::sync::atomic::Ordering;
use crate::sync::thread::JoinHandle;
use crate::sync::Arc;
use crate::transport::ring::{Consumer, Producer};
use crate::{Dispatch, Error};

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
    driver: Driver<D, Command<D>, SharedState<D>>,
    io: Io<D>,
    idler: Idler,
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
        let state = SharedState { shared: Arc::clone(&shared), index };
        Self {
            index,
            driver: Driver::new(core, state),
            io: Io {
                index,
                shared,
                outgoing,
                incoming,
                pending,
                next_tick: now(),
                slot_committed_published: 0,
                messages_dropped: 0,
            },
            idler,
            round_started: now(),
            late_rounds: 0,
            counters_before_restart: protocol::Counters::default(),
        }
    }

    fn me(&self) -> &ReplicaShared<D> {
        &self.io.shared.replicas[self.index]
    }

    fn shared(&self) -> &Shared<D> {
        &self.io.shared
    }

    fn core(&self) -> &Replica<Command<D>> {
        self.driver.core()
    }

    /// Starts the replica's thread, pinned to `core` if given (best effort: a refused pin
    /// leaves the thread unpinned). If the operating system refuses the thread, the replica
    /// comes back with the error, so that nothing it holds is lost.
    pub(crate) fn spawn(
        self,
        core: Option<core_affinity::CoreId>,
    ) -> Result<JoinHandle<Self>, (Box<Self>, std::io::Error)> {
        let index = self.index;
        let shared = Arc::clone(&self.io.shared);
        // A one-time handoff, never contended: the thread takes the replica when it starts;
        // if it never starts, the closure is dropped and the replica is taken back here.
        // (A std mutex, not the `sync` shim: there is no protocol here for loom to check.)
        let handoff = std::sync::Arc::new(std::sync::Mutex::new(Some(self)));
        let inside = std::sync::Arc::clone(&handoff);
        let spawned = thread_builder(index).spawn(move || {
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

    /// Rebuilds a crashed replica for a restart (see [`Driver::restart`]): the durable part
    /// and the newer of its own copy and the most advanced running peer's survive.
    pub(crate) fn restart(&mut self) {
        let old = self.core().counters().clone();
        let carried = &mut self.counters_before_restart;
        carried.batches_proposed += old.batches_proposed;
        carried.leader_changes += old.leader_changes;
        carried.elections_started += old.elections_started;
        carried.commands_dropped += old.commands_dropped;
        self.io.pending.iter_mut().for_each(VecDeque::clear);
        self.io.next_tick = now();
        self.idler.reset();
        self.driver.restart(&mut self.io);
    }

    /// Runs the replica until it is stopped or crashed, and returns its state.
    pub(crate) fn run(mut self) -> Self {
        self.publish_stats();
        loop {
            if self.shared().is_stopped() {
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
            let progressed = self.driver.round(&mut self.io);
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
        for (_, consumer) in &mut self.io.incoming {
            while let Some(message) = consumer.pop() {
                held.extend(message.commands().cloned());
            }
        }
        for queue in &mut self.io.pending {
            queue.drain(..).for_each(|message| held.extend(message.commands().cloned()));
        }
        while let Some(command) = self.me().submissions.pop() {
            held.push(command);
        }
        held.extend(self.driver.core_mut().drain_unapplied_commands());
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
            if me.status() != RUNNING || self.shared().is_stopped() || left.is_zero() {
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
        if !self.core().is_leader() {
            self.late_rounds = 0;
            return;
        }
        let limit = self.shared().options.tick * self.core().config().election_ticks / 2;
        if round <= limit {
            self.late_rounds = 0;
            return;
        }
        self.late_rounds += 1;
        if self.late_rounds >= LATE_ROUNDS_BEFORE_STEPPING_DOWN {
            self.late_rounds = 0;
            self.driver.core_mut().step_down();
        }
    }

    fn idle(&mut self) {
        let me = &self.io.shared.replicas[self.index];
        let timeout = self.io.next_tick.saturating_duration_since(now()).max(std::time::Duration::from_micros(50));
        let incoming = &self.io.incoming;
        let shared = &self.io.shared;
        // While backlogged, queued writes are not work this round can do: the next tick
        // (or a peer's message) wakes the thread to retry sending.
        let backlogged = self.io.backlogged(self.core().config().quorum());
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
        let me = self.me();
        let key = me.wake.prepare_wait();
        if me.status() != PAUSED || self.shared().is_stopped() {
            me.wake.cancel_wait(key);
        } else {
            me.wake.wait(key, self.shared().options.tick);
        }
    }

    pub(crate) fn publish_stats(&self) {
        let stats = &self.me().stats;
        let core = self.core();
        let counters = core.counters();
        // Relaxed: stats are a best-effort snapshot, read by `Cluster::stats` only.
        stats.role.store(role_code(core.role()), Ordering::Relaxed);
        stats.ballot.store(core.ballot_promised().as_u64(), Ordering::Relaxed);
        stats.slot_committed.store(core.slot_committed().get(), Ordering::Relaxed);
        // Counters of the cores this replica ran before a restart count too.
        let before = &self.counters_before_restart;
        stats.batches_proposed.store(before.batches_proposed + counters.batches_proposed, Ordering::Relaxed);
        stats.leader_changes.store(before.leader_changes + counters.leader_changes, Ordering::Relaxed);
        stats.elections_started.store(before.elections_started + counters.elections_started, Ordering::Relaxed);
        let dropped = self.io.messages_dropped + before.commands_dropped + counters.commands_dropped;
        stats.messages_dropped.store(dropped, Ordering::Relaxed);
        let waiting = core.commands_waiting() + core.proposals_in_flight();
        stats.commands_waiting.store(waiting as u64, Ordering::Relaxed);
        stats.log_len.store(core.log_len() as u64, Ordering::Relaxed);
        stats.snapshots_installed.store(self.driver.snapshots_installed(), Ordering::Relaxed);
    }
}

/// The thread replica `index` runs on.
#[cfg(not(all(test, not(corum_loom))))]
fn thread_builder(index: usize) -> crate::sync::thread::Builder {
    crate::sync::thread::Builder::new().name(format!("corum-replica-{index}"))
}

#[cfg(all(test, not(corum_loom)))]
use tests::thread_builder;

#[cfg(all(test, not(corum_loom)))]
pub(crate) mod tests {
    use crate::sync::thread;

    thread_local! {
        /// Makes the next replica thread this thread spawns fail, to test what a refused
        /// thread loses. Per thread, so that tests running in parallel do not see it.
        pub(crate) static FAIL_NEXT_SPAWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// The thread replica `index` runs on, in unit tests: one the operating system refuses
    /// when `FAIL_NEXT_SPAWN` is set.
    pub(super) fn thread_builder(index: usize) -> thread::Builder {
        let builder = thread::Builder::new().name(format!("corum-replica-{index}"));
        if FAIL_NEXT_SPAWN.with(|fail| fail.replace(false)) {
            // A stack no machine can map: the operating system refuses the thread.
            builder.stack_size(usize::MAX / 4)
        } else {
            builder
        }
    }
}
