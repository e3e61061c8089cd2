//! The running cluster: handles, stats, fault injection and shutdown.

use std::fmt;

use super::faults::Faults;
use super::handle::Handle;
use super::help::help_all;
use super::shared::{role_of, status_of, ReplicaShared, Shared, CRASHED, RUNNING};
use crate::client::View;
use crate::protocol::{Ballot, RoleKind, Slot};
use crate::state::ReplicaState;
use crate::sync::atomic::{fence, Ordering};
use crate::sync::now;
use crate::sync::thread::JoinHandle;
use crate::sync::{Arc, Mutex};
use crate::transport::reader::Reader;
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
    pub(super) shared: Arc<Shared<D>>,
    /// Each running replica's pinned thread. (A crashed replica's state stays behind its
    /// run token, for the durable part a restart needs.)
    pub(super) threads: Mutex<Vec<Option<JoinHandle<()>>>>,
    /// The core each replica is pinned to.
    pub(super) cores: Vec<Option<core_affinity::CoreId>>,
    /// Held by every fault-injection call, so that two of them never interleave (a crash
    /// racing a restart of the same replica could otherwise strand it).
    pub(super) faults: Mutex<()>,
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
    /// Messages it dropped towards crashed or stalled peers and, unread, from crashed
    /// peers, and client writes it dropped for want of a leader (their clients retry them).
    pub messages_dropped: u64,
    /// Writes queued, buffered or proposed at it and not yet committed.
    pub commands_waiting: u64,
    /// Log entries it holds in memory.
    pub log_len: u64,
    /// Snapshots it installed to catch up (after a restart, or after falling behind the
    /// log window).
    pub snapshots_installed: u64,
    /// Rounds in which it put off applying committed slots because a reader was in its
    /// copy (it applies them in a later round; docs/ARCHITECTURE.md, "Reads").
    pub applies_put_off: u64,
    /// The core it is pinned to (the operating system's core id), if any.
    pub core: Option<usize>,
    /// Its measured speed: the average time its thread takes per round of work (an
    /// exponentially weighted average, injected slowness included; rounds client threads
    /// run for it are not counted). Zero until its thread measured one. What
    /// [`LeaderPolicy::Fastest`](crate::LeaderPolicy::Fastest) compares.
    pub round_time: std::time::Duration,
    /// How long in all its thread was held stopped ([`Faults::pause`](crate::Faults::pause):
    /// a core taken away), the other half of what
    /// [`LeaderPolicy::Fastest`](crate::LeaderPolicy::Fastest) compares.
    pub stalled: std::time::Duration,
    /// Times its copy was found to differ from the majority's at a checkpoint and was
    /// replaced (see [`Dispatch::digest`](crate::Dispatch::digest)).
    pub divergences: u64,
    /// Whether its copy is found diverged now and not yet replaced: it serves no read and
    /// answers no write meanwhile.
    pub diverged: bool,
    /// The checkpoint (every slot below it applied) at which its copy was last found
    /// diverged, if ever.
    pub diverged_at: Option<Slot>,
}

impl<D: Dispatch> fmt::Debug for Cluster<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster").field("replicas", &self.shared.replicas.len()).finish_non_exhaustive()
    }
}

impl<D: Dispatch> Cluster<D> {
    pub(crate) fn from_parts(
        shared: Arc<Shared<D>>,
        threads: Vec<Option<JoinHandle<()>>>,
        cores: Vec<Option<core_affinity::CoreId>>,
    ) -> Self {
        Self { shared, threads: Mutex::new(threads), cores, faults: Mutex::new(()) }
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
                    applies_put_off: load(&stats.applies_put_off),
                    core: self.cores[replica].map(|core| core.id),
                    round_time: std::time::Duration::from_nanos(load(&stats.round_nanos)),
                    stalled: std::time::Duration::from_nanos(load(&stats.stalled_nanos)),
                    divergences: load(&stats.divergences),
                    diverged: shared.diverged.load(Ordering::Acquire),
                    diverged_at: match load(&stats.diverged_at) {
                        0 => None,
                        slot => Some(Slot::new(slot)),
                    },
                }
            })
            .collect()
    }

    /// Fault injection, for testing corum and the objects it replicates.
    pub fn faults(&self) -> Faults<'_, D> {
        Faults::new(self)
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
    /// exactly-once table (see `crate::internals`).
    #[cfg(all(feature = "internals", not(corum_loom)))]
    pub(crate) fn shutdown_with_exactly_once_digests(self) -> Result<Vec<(D, u64)>, Error> {
        Ok(self.shutdown_states()?.into_iter().map(|state| (state.object, state.exactly_once.digest())).collect())
    }

    fn shutdown_states(self) -> Result<Vec<ReplicaState<D>>, Error> {
        self.shared.closed.store(true, Ordering::Release);
        let started = now();
        let deadline = started + self.shared.options.deadline;
        while !self.settled() && now() < deadline {
            // Run the replicas' rounds here rather than wait for their threads (`help.rs`);
            // when none has anything to do, give them time.
            if !help_all(&self.shared, 0, || false) {
                crate::sync::yield_now();
                #[cfg(not(corum_loom))]
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        self.stop_threads();
        let watermark = self.shared.watermark();
        let copies: Vec<ReplicaState<D>> = self
            .shared
            .replicas
            .iter()
            .filter(|replica| replica.status() != CRASHED && replica.slot_applied() >= watermark)
            .map(|replica| replica.state.read(Reader::shared(0), ReplicaState::clone))
            .collect();
        if copies.is_empty() {
            return Err(Error::NoQuorum { waited: now().saturating_duration_since(started) });
        }
        Ok(copies)
    }

    /// Whether every live replica has applied everything committed and holds no write, and
    /// no write waits on the board for a majority that runs.
    fn settled(&self) -> bool {
        let watermark = self.shared.watermark();
        let replicas = &self.shared.replicas;
        let running = replicas.iter().filter(|replica| replica.status() == RUNNING).count();
        let settled = replicas.iter().filter(|replica| replica.status() == RUNNING).all(|replica| {
            replica.slot_applied() >= watermark && replica.stats.commands_waiting.load(Ordering::Relaxed) == 0
        });
        // Writes on the board complete only where a majority runs; elsewhere they fail at
        // shutdown with `Error::Shutdown`.
        let writes_settled = 2 * running <= replicas.len() || !self.shared.board.any_posted();
        settled && writes_settled && self.shared.watermark() == watermark
    }

    fn stop_threads(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        for replica in self.shared.replicas.iter() {
            replica.wake.notify();
            replica.applied.notify();
        }
        // A replica thread catches every panic of the user's code; one that still panicked
        // has already reported it, and shutdown goes on without it.
        for thread in self.threads.lock().iter_mut().filter_map(Option::take) {
            let _ = thread.join();
        }
        // Client threads may still be running rounds: take every replica's token, all at
        // once (helpers only ever try a token, so this cannot deadlock with them), and
        // take the workers out, so that nothing applies or answers a write any more. Then
        // fail every write still posted on the board, so that no waiting client is left
        // parked. (Taking the workers out also drops their references to `shared`.)
        let mut guards: Vec<_> = self.shared.replicas.iter().map(|replica| replica.worker.take()).collect();
        let workers: Vec<_> = guards.iter_mut().filter_map(|guard| guard.with(Option::take)).collect();
        drop(guards);
        drop(workers);
        // SeqCst fence pairs with the one in `EventCount::prepare_wait`, which a client
        // waiting for a write passes after posting it and before it looks at `stop` and
        // parks (`Ticket::wait`, `Ticket::poll`): either the sweep below sees a write posted
        // concurrently (and fails it, which wakes its waiter), or that client sees `stop`
        // (stored above) and returns `Error::Shutdown` without parking. A client that does
        // not park yet looks at `stop` at each of its looks.
        fence(Ordering::SeqCst);
        self.shared.board.answer_every_posted(|| Err(Error::Shutdown));
        // Wake every task still awaiting a ticket: it sees `stop`.
        self.shared.reminders.stop();
    }

    pub(super) fn replica_checked(&self, replica: usize) -> Result<&ReplicaShared<D>, Error> {
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
