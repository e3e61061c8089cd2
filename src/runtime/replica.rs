//! One replica's pinned thread: the replica's home, which runs its rounds
//! ([`Driver::round`](crate::driver::Driver::round), through `worker.rs`) whenever it has
//! the replica's run token, and parks when there is nothing to do. Client threads waiting
//! for the replica may run its rounds too (`help.rs`); then this thread finds the token
//! held and waits for it to be given back. The order inside a round, which is what makes
//! reads linearizable, is the driver's (shared with the simulator).

use std::time::{Duration, Instant};

use super::idle::{nanos, Idler};
use super::leadership::{Lateness, Pace};
use super::shared::{ReplicaShared, Shared, PAUSED, RUNNING, STOPPED};
use super::worker::{crash, run_round, Round, Worker};
use crate::sync::atomic::Ordering;
use crate::sync::now;
use crate::sync::thread::JoinHandle;
use crate::sync::Arc;
use crate::Dispatch;

/// Marks a replica crashed if its thread unwinds.
struct CrashOnPanic<D: Dispatch> {
    shared: Arc<Shared<D>>,
    index: usize,
}

impl<D: Dispatch> Drop for CrashOnPanic<D> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            crash(&self.shared, self.index);
        }
    }
}

/// Marks a replica's thread parked while it lives (see `ReplicaShared::parked`).
struct Parked<'a, D: Dispatch>(&'a ReplicaShared<D>);

impl<'a, D: Dispatch> Parked<'a, D> {
    fn new(replica: &'a ReplicaShared<D>) -> Self {
        // Relaxed: a hint for helpers; nothing is published through it.
        replica.parked.store(true, Ordering::Relaxed);
        Self(replica)
    }
}

impl<D: Dispatch> Drop for Parked<'_, D> {
    fn drop(&mut self) {
        self.0.parked.store(false, Ordering::Relaxed);
    }
}

/// A replica's pinned thread. The replica's working state is not here but behind its run
/// token (`ReplicaShared::worker`).
pub(crate) struct ReplicaThread<D: Dispatch> {
    index: usize,
    shared: Arc<Shared<D>>,
    idler: Idler,
    lateness: Lateness,
    pace: Pace,
    /// The time this thread was held stopped, in all (`StatsCell::stalled_nanos`).
    stalled_nanos: u64,
}

impl<D: Dispatch> ReplicaThread<D> {
    /// Starts replica `index`'s thread, pinned to `core` if given (best effort: a refused
    /// pin leaves the thread unpinned).
    pub(crate) fn spawn(
        shared: &Arc<Shared<D>>,
        index: usize,
        core: Option<core_affinity::CoreId>,
    ) -> std::io::Result<JoinHandle<()>> {
        // Where spinning would steal a busy core, yielding gives it away on every idle
        // round of every replica: a replica thread with nothing to do parks at once (the
        // client threads waiting for it run its rounds, `help.rs`).
        let idler = Idler::new(shared.options.idle, shared.options.spin, shared.options.spin);
        let lateness = Lateness::new();
        let pace = Pace::new(shared);
        // Relaxed: a statistic this thread alone writes (a restarted replica's new thread
        // goes on from its predecessor's total).
        let stalled_nanos = shared.replicas[index].stats.stalled_nanos.load(Ordering::Relaxed);
        let thread = Self { index, shared: Arc::clone(shared), idler, lateness, pace, stalled_nanos };
        thread_builder(index).spawn(move || {
            // A panic that escapes (outside a round, where `run_round` catches it) ends the
            // thread: mark the replica crashed so nobody waits for it.
            let _crash_on_panic = CrashOnPanic { shared: Arc::clone(&thread.shared), index };
            #[cfg(not(corum_loom))]
            if let Some(core) = core {
                let _ = core_affinity::set_for_current(core);
            }
            #[cfg(corum_loom)]
            let _ = core;
            thread.run();
        })
    }

    fn me(&self) -> &ReplicaShared<D> {
        &self.shared.replicas[self.index]
    }

    /// Runs the replica until it is stopped or crashed.
    fn run(mut self) {
        loop {
            if self.shared.is_stopped() {
                break;
            }
            match self.me().status() {
                RUNNING => {}
                PAUSED => {
                    // Held stopped (a core taken away): counted, so that a leader that
                    // keeps being stopped hands over (`LeaderPolicy::Fastest`).
                    let started = now();
                    self.park_while_paused();
                    let stopped = nanos(now().saturating_duration_since(started));
                    self.stalled_nanos = self.stalled_nanos.saturating_add(stopped);
                    // Relaxed: a statistic.
                    self.me().stats.stalled_nanos.store(self.stalled_nanos, Ordering::Relaxed);
                    continue;
                }
                _ => break,
            }
            let me = &self.shared.replicas[self.index];
            let Some(mut guard) = me.worker.try_take() else {
                // A client thread runs this replica's round right now: wait until it gives
                // the token back (it may leave input behind), at most a tick.
                let _parked = Parked::new(me);
                me.worker.wait_released(self.shared.options.tick);
                continue;
            };
            // Wake the peers this round sends to only when every replica has a core of its
            // own. Where they share cores, a woken peer takes a core from a thread doing
            // useful work (often a client running that very peer's round, `help.rs`), and
            // one wake-up leads to the next; each replica thread takes its input at its
            // next tick (1 ms by default) at the latest, and clients waiting for a write
            // run the rounds it needs themselves.
            let started = now();
            let round = run_round(&self.shared, self.index, &mut guard, self.shared.options.wake_peers, true);
            let ended = now();
            self.lateness.step_down_if_late(self.shared.options.election / 2, ended, &mut guard);
            self.pace.follow_policy(&self.shared, self.index, ended, &mut guard);
            let next_tick = guard.with(|place| place.as_ref().map(Worker::next_tick));
            drop(guard);
            match round {
                Round::Progressed => {
                    self.idler.reset();
                    let slept = self.be_slow();
                    self.pace
                        .sample(ended.saturating_duration_since(started) + slept, &self.shared.replicas[self.index]);
                }
                Round::Idle => self.idle(next_tick.unwrap_or_else(now)),
                Round::Skipped => {}
            }
        }
        // A crashed replica stays crashed; anything else that exits has stopped.
        let status = &self.me().status;
        let _ = status.compare_exchange(RUNNING, STOPPED, Ordering::AcqRel, Ordering::Acquire);
        let _ = status.compare_exchange(PAUSED, STOPPED, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Sleeps as long as fault injection asked this replica to after each round of work;
    /// a pause, crash or stop (which notify `wake`) cuts the sleep short. Returns how long
    /// it slept.
    fn be_slow(&self) -> Duration {
        // Relaxed: a setting read once per round; nothing is published through it.
        let nanos = self.me().slowness_nanos.load(Ordering::Relaxed);
        if nanos == 0 {
            return Duration::ZERO;
        }
        let me = self.me();
        let started = now();
        let until = started + Duration::from_nanos(nanos);
        loop {
            // Messages and writes also notify `wake`: only a status change ends the sleep early.
            let key = me.wake.prepare_wait();
            let now = now();
            let left = until.saturating_duration_since(now);
            if me.status() != RUNNING || self.shared.is_stopped() || left.is_zero() {
                me.wake.cancel_wait(key);
                return now.saturating_duration_since(started);
            }
            me.wake.wait(key, left);
        }
    }

    /// Nothing to do: spin, yield, then park until a peer's message, a write, a status
    /// change or the next tick.
    fn idle(&mut self, next_tick: Instant) {
        let me = &self.shared.replicas[self.index];
        let shared = &self.shared;
        let timeout = next_tick.saturating_duration_since(now()).max(Duration::from_micros(50));
        self.idler.idle(|| {
            // Parked before looking for input, with the event count's SeqCst fence between:
            // a client that adds input, fences, and then finds this flag clear and leaves
            // the round to this thread (`help.rs`) knows the look below sees its input.
            let _parked = Parked::new(me);
            let key = me.wake.prepare_wait();
            // The rings' consumers are the worker's: look at them with the token. A token
            // held by someone else means its round is running: go round again.
            let ready = shared.is_stopped()
                || me.status() != RUNNING
                || me
                    .worker
                    .try_take()
                    .map_or(true, |mut guard| guard.with(|place| place.as_ref().is_some_and(Worker::has_input)));
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
        if me.status() != PAUSED || self.shared.is_stopped() {
            me.wake.cancel_wait(key);
        } else {
            me.wake.wait(key, self.shared.options.tick);
        }
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
