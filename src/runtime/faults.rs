//! Fault injection on a running cluster: pause, resume, crash, restart and slow down
//! replicas, one call at a time.

use std::fmt;

use super::cluster::Cluster;
use super::replica::ReplicaThread;
use super::shared::{ReplicaShared, CRASHED, PAUSED, RUNNING};
use super::worker::{announce_lifecycle, crash};
use crate::sync::atomic::Ordering;
use crate::{Dispatch, Error};

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

impl<'a, D: Dispatch> Faults<'a, D> {
    pub(super) fn new(cluster: &'a Cluster<D>) -> Self {
        Self { cluster }
    }
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
        crash(&self.cluster.shared, replica);
        finish_round_in_progress(target);
        let thread = self.cluster.threads.lock()[replica].take();
        if let Some(thread) = thread {
            // Writes the crashed replica held are retried by their clients elsewhere (they
            // may also have been committed through its peers). Its state stays behind its
            // token, kept for the acceptor's durable part, which a restart needs.
            let _ = thread.join();
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
        let restarted = target.worker.take().with(|place| {
            let worker = place.as_mut()?;
            worker.restart();
            // With the token held: no round runs before the restart is complete. Relaxed:
            // peers read it after the lifecycle announcement below (Release/Acquire).
            target.restarts.fetch_add(1, Ordering::Relaxed);
            target.status.store(RUNNING, Ordering::Release);
            Some(())
        });
        if restarted.is_none() {
            return Err(refused("a round of the crashed replica panicked; nothing to restart from"));
        }
        match ReplicaThread::spawn(&self.cluster.shared, replica, self.cluster.cores[replica]) {
            Ok(thread) => {
                self.cluster.threads.lock()[replica] = Some(thread);
                announce_lifecycle(&self.cluster.shared);
                Ok(())
            }
            Err(error) => {
                // Still crashed, with what it keeps on stable storage: a later restart can
                // try again.
                crash(&self.cluster.shared, replica);
                finish_round_in_progress(target);
                Err(Error::Spawn { replica, error: error.into() })
            }
        }
    }

    /// Pauses replica `replica`: it keeps its state but takes no messages and applies
    /// nothing until [`Faults::resume`], like a stopped core: neither its thread nor any
    /// client thread runs its rounds. Reads move to another replica unless its copy already
    /// holds every write they must see. Returns once the round in progress (if any) has
    /// finished.
    ///
    /// # Errors
    /// As for [`Faults::crash`]; pausing a crashed replica does nothing.
    pub fn pause(&self, replica: usize) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        if target.status.compare_exchange(RUNNING, PAUSED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Ok(());
        }
        target.wake.notify();
        finish_round_in_progress(target);
        Ok(())
    }

    /// Slows replica `replica` down: its thread sleeps `delay` after every round of work
    /// (a round handles every message and write waiting for it), like a thread on a busy
    /// or throttled core, and client threads do not run its rounds for it. `Duration::ZERO` restores full speed. A leader slowed past half
    /// an election timeout per round steps down, and a responsive replica takes over.
    ///
    /// # Errors
    /// As for [`Faults::crash`].
    pub fn slow(&self, replica: usize, delay: std::time::Duration) -> Result<(), Error> {
        let _serial = self.cluster.faults.lock();
        let target = self.cluster.replica_checked(replica)?;
        // Relaxed: a setting, read by the replica thread once per round.
        target.slowness_nanos.store(super::idle::nanos(delay), Ordering::Relaxed);
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

/// Waits until the round `target` is in (run by its thread or a client thread) has
/// finished. Called after a new status was stored: once the token has been ours, every
/// later round reads that status (rounds read it with the token held) and does not run.
fn finish_round_in_progress<D: Dispatch>(target: &ReplicaShared<D>) {
    drop(target.worker.take());
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use crate::runtime::replica::tests::FAIL_NEXT_SPAWN;
    use crate::runtime::test_support::{Counter, PATIENCE};
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
        let deadline = std::time::Instant::now() + PATIENCE;
        while !caught_up() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let copies = cluster.shutdown().expect("shutdown");
        assert!(copies.iter().all(|copy| copy.0 == 20), "copies: {:?}", copies.iter().map(|c| c.0).collect::<Vec<_>>());
    }
}
