//! The running cluster: handles, stats, fault injection and shutdown.

use std::fmt;

use super::handle::Handle;
use super::idle::now;
use super::replica::ReplicaThread;
use super::{role_of, status_of, ReplicaState, Shared, CRASHED, PAUSED, RUNNING};
use crate::protocol::{Ballot, RoleKind, Slot};
use crate::sync::atomic::Ordering;
use crate::sync::thread::JoinHandle;
use crate::sync::{Arc, Mutex};
use crate::{Dispatch, Error};

/// A running set of replicas of one object. Created by [`Builder::build`](crate::Builder::build).
///
/// Hand out [`Handle`]s with [`Cluster::handle`]; end with [`Cluster::shutdown`], which
/// returns every live replica's copy. Dropping a cluster without `shutdown` stops its
/// threads too, and calls on its handles then fail with [`Error::Shutdown`].
///
/// ```
/// # use corum::{Builder, Dispatch};
/// # #[derive(Clone, Default)]
/// # struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = ();
/// #     type WriteOp = u64;
/// #     type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build()?;
/// cluster.handle().execute_mut(5)?;
/// let leaders = cluster.stats().iter().filter(|stats| stats.role == corum::RoleKind::Leader).count();
/// assert!(leaders <= 1);
/// let copies = cluster.shutdown()?; // every live replica's copy
/// assert!(copies.iter().all(|copy| copy.0 == 5));
/// # Ok::<(), corum::Error>(())
/// ```
pub struct Cluster<D: Dispatch> {
    shared: Arc<Shared<D>>,
    /// Each running replica's thread.
    threads: Mutex<Vec<Option<JoinHandle<ReplicaThread<D>>>>>,
    /// Each crashed replica's state, kept for the durable part a restart needs.
    crashed: Mutex<Vec<Option<ReplicaThread<D>>>>,
    /// The core each replica is pinned to.
    cores: Vec<Option<core_affinity::CoreId>>,
    /// Held by every fault-injection call, so that two of them never interleave (a crash
    /// racing a restart of the same replica could otherwise strand it).
    faults: Mutex<()>,
}

/// Where a replica thread is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReplicaStatus {
    /// Serving.
    Running,
    /// Paused by [`Faults::pause`]: keeps its state, takes no messages, applies nothing.
    Paused,
    /// Crashed by [`Faults::crash`] (or its thread panicked): its thread has exited and it
    /// applies nothing until [`Faults::restart`].
    Crashed,
    /// Stopped by shutdown.
    Stopped,
}

/// A snapshot of one replica's progress, from [`Cluster::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStats {
    /// The replica's index.
    pub replica: usize,
    /// Its thread's status.
    pub status: ReplicaStatus,
    /// The role it plays.
    pub role: RoleKind,
    /// The highest ballot it has promised (its own when it leads).
    pub ballot: Ballot,
    /// Every slot below this is known committed at this replica.
    pub slot_committed: Slot,
    /// Every slot below this has been applied to this replica's copy.
    pub slot_applied: Slot,
    /// Batches it proposed while leading.
    pub batches_proposed: u64,
    /// Times it became leader.
    pub leader_changes: u64,
    /// Elections it started.
    pub elections_started: u64,
    /// Messages it dropped towards crashed or stalled peers, and client writes it dropped
    /// for want of a leader (their clients retry them).
    pub messages_dropped: u64,
    /// Writes queued, buffered or proposed at it and not yet committed.
    pub commands_waiting: u64,
    /// Log entries it holds in memory.
    pub log_len: u64,
    /// Snapshots it installed to catch up (after a restart, or after falling behind the
    /// log window).
    pub snapshots_installed: u64,
    /// The core it is pinned to (the operating system's core id), if any.
    pub core: Option<usize>,
}

impl<D: Dispatch> fmt::Debug for Cluster<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("replicas", &self.shared.replicas.len()).finish_non_exhaustive()
    }
}

impl<D: Dispatch> Cluster<D> {
    pub(crate) fn from_parts(
        shared: Arc<Shared<D>>,
        threads: Vec<Option<JoinHandle<ReplicaThread<D>>>>,
        cores: Vec<Option<core_affinity::CoreId>>,
    ) -> Self {
        let crashed = Mutex::new((0..cores.len()).map(|_| None).collect());
        Self { shared, threads: Mutex::new(threads), crashed, cores, faults: Mutex::new(()) }
    }

    /// A new client session. Each handle has its own client id for exactly-once writes;
    /// give each client thread its own (cloning a handle opens a new session too).
    pub fn handle(&self) -> Handle<D> {
        Handle::new(Arc::clone(&self.shared))
    }

    /// Number of replicas.
    pub fn replicas(&self) -> usize {
        self.shared.replicas.len()
    }

    /// The replica that most recently became leader, if it is running.
    pub fn leader(&self) -> Option<usize> {
        let leader = self.shared.leader.load(Ordering::Relaxed);
        let stats = self.stats();
        (stats[leader].role == RoleKind::Leader && stats[leader].status == ReplicaStatus::Running).then_some(leader)
    }

    /// A snapshot of every replica's progress. Each replica publishes its numbers after
    /// every round of work, so they may lag by one round.
    pub fn stats(&self) -> Vec<ReplicaStats> {
        self.shared
            .replicas
            .iter()
            .enumerate()
            .map(|(replica, shared)| {
                let stats = &shared.stats;
                let load = |counter: &crate::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
                ReplicaStats {
                    replica,
                    status: status_of(shared.status()),
                    role: role_of(stats.role.load(Ordering::Relaxed)),
                    ballot: Ballot::from_u64(load(&stats.ballot)),
                    slot_committed: Slot::new(load(&stats.slot_committed)),
                    slot_applied: shared.slot_applied(),
                    batches_proposed: load(&stats.batches_proposed),
                    leader_changes: load(&stats.leader_changes),
                    elections_started: load(&stats.elections_started),
                    messages_dropped: load(&stats.messages_dropped),
                    commands_waiting: load(&stats.commands_waiting),
                    log_len: load(&stats.log_len),
                    snapshots_installed: load(&stats.snapshots_installed),
                    core: self.cores[replica].map(|core| core.id),
                }
            })
            .collect()
    }

    /// Fault injection, for testing corum and the objects it replicates.
    pub fn faults(&self) -> Faults<'_, D> {
        Faults { cluster: self }
    }

    /// Stops taking calls, lets every write already submitted finish (up to the deadline),
    /// stops the replica threads, and returns the copies of every replica that is not
    /// crashed and has applied everything committed, in replica order.
    ///
    /// # Errors
    /// [`Error::NoQuorum`] if no replica could catch up with the commit watermark before
    /// the deadline (a majority was lost with committed writes not yet applied anywhere
    /// alive).
    pub fn shutdown(self) -> Result<Vec<D>, Error> {
        Ok(self.shutdown_states()?.into_iter().map(|state| state.object).collect())
    }

    /// [`Cluster::shutdown`], returning with each copy a digest of its replica's
    /// exactly-once table, which must be equal wherever the copies are (they reflect the
    /// same slots). For corum's own stress tests; not part of the public API.
    #[doc(hidden)]
    pub fn __shutdown_with_exactly_once_digests(self) -> Result<Vec<(D, u64)>, Error> {
        Ok(self.shutdown_states()?.into_iter().map(|state| (state.object, state.sessions.digest())).collect())
    }

    fn shutdown_states(self) -> Result<Vec<ReplicaState<D>>, Error> {
        self.shared.closed.store(true, Ordering::Release);
        let started = now();
        let deadline = started + self.shared.options.deadline;
        while !self.settled() && now() < deadline {
            crate::sync::yield_now();
            #[cfg(not(corum_loom))]
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        self.stop_threads();
        let watermark = self.shared.slot_committed();
        let copies: Vec<ReplicaState<D>> = self
            .shared
            .replicas
            .iter()
            .filter(|replica| replica.status() != CRASHED && replica.slot_applied() >= watermark)
            .map(|replica| replica.state.read().clone())
            .collect();
        if copies.is_empty() {
            return Err(Error::NoQuorum { waited: now().saturating_duration_since(started) });
        }
        Ok(copies)
    }

    /// Whether every live replica has applied everything committed and holds no write.
    fn settled(&self) -> bool {
        let watermark = self.shared.slot_committed();
        let settled = self.shared.replicas.iter().filter(|replica| replica.status() == RUNNING).all(|replica| {
            replica.slot_applied() >= watermark
                && replica.submissions.is_empty()
                && replica.stats.commands_waiting.load(Ordering::Relaxed) == 0
        });
        settled && self.shared.slot_committed() == watermark
    }

    fn stop_threads(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        for replica in self.shared.replicas.iter() {
            replica.wake.notify();
            replica.applied.notify();
        }
        let mut threads = self.threads.lock();
        // A replica thread catches every panic of the user's code; one that still panicked
        // has already reported it, and shutdown goes on without it.
        let stopped: Vec<ReplicaThread<D>> =
            threads.iter_mut().filter_map(Option::take).filter_map(|thread| thread.join().ok()).collect();
        // Only now, with every replica thread gone, can nothing move a write between them:
        // fail every write still held anywhere, so that no waiting client is left parked.
        for replica in stopped {
            replica.fail_held_writes();
        }
    }

    fn replica_checked(&self, replica: usize) -> Result<&super::ReplicaShared<D>, Error> {
        if self.shared.is_stopped() {
            return Err(Error::Shutdown);
        }
        self.shared.replicas.get(replica).ok_or(Error::NoSuchReplica { replica, replicas: self.shared.replicas.len() })
    }
}

impl<D: Dispatch> Drop for Cluster<D> {
    fn drop(&mut self) {
        self.stop_threads();
    }
}

/// Fault injection on a running cluster, from [`Cluster::faults`]: pause, resume, crash and
/// restart replicas to test how an object behaves while a minority is slow or gone.
///
/// ```
/// use corum::{Builder, Dispatch};
/// # #[derive(Clone, Default)] struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// let cluster = Builder::new(Counter::default()).replicas(3).build()?;
/// let handle = cluster.handle();
/// handle.execute_mut(1)?;
/// cluster.faults().crash(0)?; // replica 0 led: a new leader takes over
/// assert_eq!(handle.execute_mut(1)?, 2);
/// cluster.faults().restart(0)?; // back, with a copy of a peer's object
/// assert_eq!(handle.execute_mut(1)?, 3);
/// assert_eq!(cluster.shutdown()?.len(), 3, "three live replicas");
/// # Ok::<(), corum::Error>(())
/// ```
pub struct Faults<'a, D: Dispatch> {
    cluster: &'a Cluster<D>,
}

impl<D: Dispatch> fmt::Debug for Faults<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults").finish_non_exhaustive()
    }
}

impl<D: Dispatch> Faults<'_, D> {
    /// Stops replica `replica`'s thread for good and takes its copy out of service, as if
    /// its core died. Returns once the thread has exited. Crashing a crashed replica does
    /// nothing.
    ///
    /// # Errors
    /// [`Error::NoSuchReplica`] for an index out of range, [`Error::Shutdown`] after shutdown.
    pub fn crash(&self, replica: usize) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        target.status.store(CRASHED, Ordering::Release);
        target.wake.notify();
        let thread = self.cluster.threads.lock()[replica].take();
        if let Some(thread) = thread {
            // Writes the crashed replica held are retried by their clients elsewhere (they
            // may also have been committed through its peers). Its state is kept only for
            // the acceptor's durable part, which a restart needs.
            if let Ok(state) = thread.join() {
                self.cluster.crashed.lock()[replica] = Some(state);
            }
        }
        Ok(())
    }

    /// Restarts a crashed replica on a fresh thread on its core. What a replica would keep
    /// on stable storage survives the crash: its acceptor's promise and accepted values (as
    /// Paxos requires) and the copy of the object that stands for the log entries it freed.
    /// Everything else is rebuilt; the copy is replaced by the running peer's that applied
    /// the most when that one is not behind, and the replica then catches up by learning.
    /// Returns once the thread runs.
    ///
    /// # Errors
    /// [`Error::NoSuchReplica`], [`Error::Shutdown`], [`Error::FaultRefused`] if the
    /// replica is not crashed, and [`Error::Spawn`] if the operating system refuses the
    /// thread: the replica then stays crashed with what it keeps, and may be restarted again.
    pub fn restart(&self, replica: usize) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        let refused = |reason| Error::FaultRefused { replica, reason };
        if target.status() != CRASHED {
            return Err(refused("the replica is not crashed"));
        }
        let Some(mut state) = self.cluster.crashed.lock()[replica].take() else {
            return Err(refused("the crashed replica's thread panicked; nothing to restart from"));
        };
        state.restart();
        target.status.store(RUNNING, Ordering::Release);
        state.publish_stats();
        match state.spawn(self.cluster.cores[replica]) {
            Ok(thread) => {
                self.cluster.threads.lock()[replica] = Some(thread);
                Ok(())
            }
            Err((state, error)) => {
                // Still crashed, with what it keeps on stable storage: a later restart can
                // try again.
                target.status.store(CRASHED, Ordering::Release);
                self.cluster.crashed.lock()[replica] = Some(*state);
                Err(Error::Spawn { replica, error: error.into() })
            }
        }
    }

    /// Pauses replica `replica`: it keeps its state but takes no messages and applies
    /// nothing until [`Faults::resume`], like a descheduled thread. Reads move to another
    /// replica unless its copy already holds every write they must see. Returns once its
    /// thread has finished the round of work it was in and stopped.
    ///
    /// # Errors
    /// As for [`Faults::crash`]; pausing a crashed replica does nothing.
    pub fn pause(&self, replica: usize) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        target.pause_acknowledged.store(false, Ordering::Relaxed);
        if target.status.compare_exchange(RUNNING, PAUSED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Ok(());
        }
        target.wake.notify();
        // Return once the thread has stopped: it finishes the round it is in first.
        // Acquire pairs with the replica thread's Release store when it parks.
        while !target.pause_acknowledged.load(Ordering::Acquire) && target.status() == PAUSED {
            crate::sync::yield_now();
        }
        Ok(())
    }

    /// Slows replica `replica` down: its thread sleeps `delay` after every round of work
    /// (a round handles every message and write waiting for it), like a thread on a busy
    /// or throttled core. `Duration::ZERO` restores full speed. A leader slowed past half
    /// an election timeout per round steps down, and a responsive replica takes over.
    ///
    /// # Errors
    /// As for [`Faults::crash`].
    pub fn slow(&self, replica: usize, delay: std::time::Duration) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        // Relaxed: a setting, read by the replica thread once per round.
        target.slowness_nanos.store(nanos, Ordering::Relaxed);
        target.wake.notify();
        Ok(())
    }

    /// Resumes a paused replica, which then catches up with what it missed.
    ///
    /// # Errors
    /// As for [`Faults::crash`]; resuming a replica that is not paused does nothing.
    pub fn resume(&self, replica: usize) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        let _ = target.status.compare_exchange(PAUSED, RUNNING, Ordering::AcqRel, Ordering::Acquire);
        target.wake.notify();
        Ok(())
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use crate::runtime::replica::tests::FAIL_NEXT_SPAWN;
    use crate::runtime::test_support::Counter;
    use crate::{Builder, Error, ReplicaStatus};

    /// A restart whose thread the operating system refuses keeps the crashed replica's
    /// state, so a second restart brings it back with everything it had.
    #[test]
    fn a_refused_restart_thread_loses_nothing() {
        let cluster = Builder::new(Counter::default()).replicas(3).build().expect("build");
        let handle = cluster.handle();
        for _ in 0..10 {
            handle.execute_mut(1).expect("write");
        }
        let victim = (cluster.leader().expect("a leader") + 1) % 3;
        cluster.faults().crash(victim).expect("crash");
        FAIL_NEXT_SPAWN.with(|fail| fail.set(true));
        let refused = cluster.faults().restart(victim);
        assert!(matches!(refused, Err(Error::Spawn { replica, .. }) if replica == victim), "{refused:?}");
        assert_eq!(cluster.stats()[victim].status, ReplicaStatus::Crashed);
        cluster.faults().restart(victim).expect("the second restart finds the replica's state");
        for _ in 0..10 {
            handle.execute_mut(1).expect("write after the restart");
        }
        // The restarted replica catches up: its copy reaches every write.
        let caught_up = || {
            let stats = cluster.stats();
            let committed = stats.iter().map(|replica| replica.slot_committed).max().expect("replicas");
            stats.iter().all(|replica| replica.slot_applied >= committed)
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !caught_up() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let copies = cluster.shutdown().expect("shutdown");
        assert!(copies.iter().all(|copy| copy.0 == 20), "copies: {:?}", copies.iter().map(|c| c.0).collect::<Vec<_>>());
    }
}
