//! A replica's working state, the part that runs its rounds: the driver (protocol core and
//! the lock-protected copy) and its environment `Io` (ring ends, clock, pending messages).
//! It lives in the replica's shared cell behind the replica's run token
//! (`ReplicaShared::worker`), so that whichever thread holds the token runs the round: the
//! replica's pinned thread, or a client thread waiting for that replica (`help.rs`).
//!
//! Everything a worker writes outside itself (the ring producers' tails, the ring
//! consumers' heads, the applied slot, the stats) it writes only while its token is held,
//! so each of those stays single-writer across the threads that run its rounds: the
//! token's Release on giving it back and Acquire on taking it order one holder's writes
//! before the next's.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::io::{Io, Wire};
use super::shared::{role_code, LockedCopy, Posted, ReplicaShared, Shared, CRASHED, RUNNING};
use crate::driver::Driver;
use crate::protocol::{self, Replica, ReplicaId};
use crate::sync::atomic::Ordering;
use crate::sync::now;
use crate::sync::Arc;
use crate::transport::ring::{Consumer, Producer};
use crate::transport::token::TokenGuard;
use crate::Dispatch;

/// What [`run_round`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    /// The round did some work.
    Progressed,
    /// The round found nothing to do.
    Idle,
    /// No round ran: the replica is not running (paused, crashed, stopped), or its worker
    /// is gone (a round panicked, or the cluster shut down).
    Skipped,
}

/// The content of a replica's run token: its worker, or `None` once a round panicked
/// (nothing consistent is left to run or restart) or the cluster shut down.
pub(crate) type WorkerPlace<D> = Option<Worker<D>>;

/// See the module docs.
pub(crate) struct Worker<D: Dispatch> {
    pub(super) driver: Driver<D, Posted<D>, LockedCopy<D>>,
    pub(super) io: Io<D>,
    /// What the protocol cores this replica ran before its restarts counted.
    counters_before_restart: protocol::Counters,
}

impl<D: Dispatch> Worker<D> {
    pub(crate) fn new(
        index: usize,
        core: protocol::Replica<Posted<D>>,
        shared: Arc<Shared<D>>,
        outgoing: Vec<Option<Producer<Wire<D>>>>,
        incoming: Vec<(ReplicaId, Consumer<Wire<D>>)>,
    ) -> Self {
        let state = LockedCopy { shared: Arc::clone(&shared), index };
        Self {
            driver: Driver::new(core, state),
            io: Io::new(index, shared, outgoing, incoming),
            counters_before_restart: protocol::Counters::default(),
        }
    }

    fn me(&self) -> &ReplicaShared<D> {
        &self.io.shared.replicas[self.io.index]
    }

    pub(crate) fn core(&self) -> &Replica<Posted<D>> {
        self.driver.core()
    }

    /// One round of the driver. `notify_peers`: whether to wake the peers it sends to (the
    /// pinned thread does; a helper, which runs those peers' rounds next, does not).
    /// `own_thread`: whether the replica's own thread runs it. A helping client runs no
    /// round of a replica that owes its copy a whole log window of slots (a reader stays
    /// in the copy): that round waits for the reader, which only the replica's own thread
    /// does, so the client wakes it instead and runs nothing.
    fn round(&mut self, notify_peers: bool, own_thread: bool) -> bool {
        #[cfg(all(test, not(corum_loom)))]
        tests::panic_if_armed(&self.io.shared, self.io.index);
        if !own_thread && self.driver.owes_a_window() {
            self.me().wake.notify();
            return false;
        }
        self.io.notify_peers = notify_peers;
        self.io.own_thread = own_thread;
        let progressed = self.driver.round(&mut self.io);
        if progressed {
            self.publish_stats();
        }
        progressed
    }

    /// Whether the next round has input waiting: messages in its rings, writes on the
    /// board that it would collect now, or a whole window of slots to apply.
    pub(crate) fn has_input(&self) -> bool {
        self.io.has_writes(self.core())
            || self.io.incoming.iter().any(|(_, consumer)| !consumer.is_empty())
            // A round that waits for a reader is this thread's to run (see `round`).
            || self.driver.owes_a_window()
    }

    /// When the next tick is due.
    pub(crate) fn next_tick(&self) -> std::time::Instant {
        self.io.next_tick
    }

    /// Asks the core, if it leads, to hand leadership to replica `to`.
    pub(crate) fn transfer_leadership(&mut self, to: usize) {
        self.driver.core_mut().transfer_leadership(ReplicaId::new(to));
    }

    /// Gives up leadership (a leader whose rounds run late).
    pub(crate) fn step_down(&mut self) {
        self.driver.core_mut().step_down();
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
        // The rebuilt core knows no peer down: tell it at its first round.
        self.io.lifecycle_seen = None;
        self.driver.restart(&mut self.io);
        self.publish_stats();
    }

    pub(crate) fn publish_stats(&self) {
        let stats = &self.me().stats;
        let core = self.core();
        let counters = core.counters();
        // Relaxed: stats are a best-effort snapshot, read by `Cluster::stats` only. Written
        // only by the token's holder, so single-writer.
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
        stats.applies_put_off.store(self.driver.applies_deferred(), Ordering::Relaxed);
    }
}

/// Runs one round of replica `index`, whose token `guard` holds, if it is running. The
/// status is read with the token held: fault injection stores its new status before it
/// takes the token, so a round that starts after `pause` or `crash` returned sees it.
///
/// A round that panics (a broken invariant, a panic in the object's `clone`; the object's
/// `dispatch_mut` panicking is caught where it is called) leaves the worker inconsistent:
/// the replica is marked crashed and its worker dropped, and the panic goes no further, so
/// a client thread helping never panics for a replica's fault.
pub(crate) fn run_round<D: Dispatch>(
    shared: &Shared<D>,
    index: usize,
    guard: &mut TokenGuard<'_, WorkerPlace<D>>,
    notify_peers: bool,
    own_thread: bool,
) -> Round {
    let me = &shared.replicas[index];
    if me.status() != RUNNING || shared.is_stopped() {
        return Round::Skipped;
    }
    guard.with(|place| {
        let Some(worker) = place.as_mut() else { return Round::Skipped };
        match catch_unwind(AssertUnwindSafe(|| worker.round(notify_peers, own_thread))) {
            Ok(true) => Round::Progressed,
            Ok(false) => Round::Idle,
            Err(_) => {
                // The panic message was printed by the panic hook.
                *place = None;
                crash(shared, index);
                Round::Skipped
            }
        }
    })
}

/// Marks replica `index` crashed, wakes everyone who may wait on it, and tells its peers
/// (see [`announce_lifecycle`]).
pub(crate) fn crash<D: Dispatch>(shared: &Shared<D>, index: usize) {
    let me = &shared.replicas[index];
    // Release pairs with the Acquire loads of `status`.
    me.status.store(CRASHED, Ordering::Release);
    me.wake.notify();
    me.applied.notify();
    announce_lifecycle(shared);
}

/// Tells every replica that a peer's status changed (it crashed or restarted): raises
/// `Shared::lifecycle`, which each replica compares at its next round, and wakes them all
/// for that round. Called after the new status was stored.
pub(crate) fn announce_lifecycle<D: Dispatch>(shared: &Shared<D>) {
    // Release pairs with the Acquire load in `Io::feed`: a replica that sees the new
    // value sees the status stored before it.
    shared.lifecycle.fetch_add(1, Ordering::Release);
    for replica in shared.replicas.iter() {
        replica.wake.notify();
    }
}

#[cfg(all(test, not(corum_loom)))]
pub(crate) mod tests {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use super::Shared;
    use crate::runtime::test_support::{Counter, NO_ELECTION_TICKS, PATIENCE};
    use crate::sync::Arc;
    use crate::{Builder, Dispatch, ReplicaStatus};

    /// The replica whose next round panics, named by its cluster's `Shared` address and its
    /// index: a panic outside the object's `dispatch_mut`, as a broken invariant would be.
    static PANIC_NEXT_ROUND: Mutex<Option<(usize, usize)>> = Mutex::new(None);

    pub(super) fn panic_if_armed<D: Dispatch>(shared: &Arc<Shared<D>>, index: usize) {
        let key = (Arc::as_ptr(shared) as usize, index);
        let mut armed = PANIC_NEXT_ROUND.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *armed == Some(key) {
            *armed = None;
            drop(armed);
            panic!("a panic injected in a round of replica {index}");
        }
    }

    /// A panic in the leader's round marks it crashed, and a peer takes over at once: with
    /// an election timeout of 10 minutes, the write after it completes within its deadline
    /// (2 minutes) only through the death notice.
    #[test]
    fn a_panic_in_the_leaders_round_hands_leadership_on_at_once() {
        let cluster = Builder::new(Counter::default())
            .replicas(3)
            .election_ticks(NO_ELECTION_TICKS)
            .deadline(PATIENCE)
            .build()
            .expect("build");
        let handle = cluster.handle();
        assert_eq!(handle.execute_mut(1), Ok(1));
        let leader = cluster.leader().expect("a leader");
        *PANIC_NEXT_ROUND.lock().expect("hook") = Some((Arc::as_ptr(&cluster.shared) as usize, leader));
        cluster.shared.replicas[leader].wake.notify();
        let deadline = Instant::now() + PATIENCE;
        while cluster.stats()[leader].status != ReplicaStatus::Crashed {
            assert!(Instant::now() < deadline, "the leader's round never panicked");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(handle.execute_mut(1), Ok(2));
        let new_leader = cluster.leader().expect("a new leader");
        assert_ne!(new_leader, leader);
        assert_eq!(cluster.shutdown().expect("shutdown").len(), 2);
    }
}
