//! Where leadership goes: moved on request ([`Cluster::transfer_leadership`]), and by the
//! leader itself as its [`LeaderPolicy`] says (the check runs on the leader's pinned thread,
//! `runtime/replica.rs`, over the speed each replica thread measures of itself).

use std::time::{Duration, Instant};

use super::cluster::{Cluster, ReplicaStatus};
use super::help::help_all;
use super::shared::{role_of, status_of, RUNNING};
use crate::protocol::RoleKind;
use crate::sync::atomic::Ordering;
use crate::sync::now;
use crate::{Dispatch, Error};

/// Which replica should lead, chosen with [`Builder::leader_policy`](crate::Builder::leader_policy).
///
/// Which replica leads decides how fast every write commits: each write waits for the
/// leader's rounds. The cores of one machine differ (a throttled core, a noisy neighbour,
/// an interrupt-heavy core, an efficiency core), and a leader on a slow one slows everyone.
///
/// ```
/// use corum::{Builder, Dispatch, LeaderPolicy};
/// # #[derive(Clone, Default)] struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// // Replica 2 runs on the core the user knows is best: it leads whenever it runs.
/// let cluster = Builder::new(Counter::default()).leader_policy(LeaderPolicy::Prefer(2)).build()?;
/// cluster.handle().execute_mut(1)?;
/// # let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
/// # while cluster.leader() != Some(2) && std::time::Instant::now() < deadline {
/// #     std::thread::sleep(std::time::Duration::from_millis(1));
/// # }
/// assert_eq!(cluster.leader(), Some(2));
/// # Ok::<(), corum::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum LeaderPolicy {
    /// Leadership follows speed (the default). Each replica thread measures how long its
    /// rounds of work take ([`ReplicaStats::round_time`](crate::ReplicaStats::round_time),
    /// injected slowness included). A leader whose rounds take more than
    /// [`LeaderPolicy::FASTEST_FACTOR`] times as long as those of its fastest running peer, and more than
    /// [`LeaderPolicy::FASTEST_FLOOR`], at [`LeaderPolicy::FASTEST_CHECKS`] checks in a row (one every tenth of an
    /// election timeout), hands leadership to that peer.
    ///
    /// A replica that keeps being stopped is slow too, however fast its rounds run: each
    /// replica also counts the time its thread is held stopped
    /// ([`ReplicaStats::stalled`](crate::ReplicaStats::stalled)), and a leader stopped for
    /// more than [`LeaderPolicy::FASTEST_STALLED_PERCENT`] of the time (an average over
    /// about the last sixteen checks) hands leadership, after the same number of checks, to
    /// the running peer stopped least, if that peer is stopped less than a
    /// [`LeaderPolicy::FASTEST_FACTOR`]th as much.
    ///
    /// The margins are the hysteresis: replicas of similar speed, or stopped alike, never
    /// trade leadership back and forth.
    #[default]
    Fastest,
    /// Replica `i` leads whenever it runs: any other leader hands over to it (after it has
    /// caught up). While it is paused or crashed, any replica may lead.
    Prefer(usize),
    /// Any replica may lead, and keeps leading until it stops, is deposed, steps down for
    /// running late, or is asked to transfer.
    Any,
}

impl LeaderPolicy {
    /// See [`LeaderPolicy::Fastest`]: how many times slower than its fastest peer a leader
    /// must be to hand over.
    pub const FASTEST_FACTOR: u64 = 4;

    /// See [`LeaderPolicy::Fastest`]: a leader whose rounds take less than this is fast
    /// enough, however much faster a peer is.
    pub const FASTEST_FLOOR: Duration = Duration::from_micros(200);

    /// See [`LeaderPolicy::Fastest`]: consecutive checks at which the leader must be slower.
    pub const FASTEST_CHECKS: u32 = 3;

    /// See [`LeaderPolicy::Fastest`]: the share of the time, in percent, a leader may be
    /// held stopped before it hands over to a replica stopped far less.
    pub const FASTEST_STALLED_PERCENT: u64 = 5;
}

impl<D: Dispatch> Cluster<D> {
    /// Makes replica `to` the leader, and returns once it leads.
    ///
    /// The leader stops proposing, waits until every write it proposed is committed and
    /// `to` has applied every committed write, then hands over: `to` runs phase 1 at once,
    /// in a ballot above the old leader's. Writes submitted meanwhile wait at the old leader
    /// and go on to `to` (or are resubmitted by their callers): none is lost or applied
    /// twice, as with any change of leader. Where no replica leads, `to` campaigns at once.
    /// Leadership stays with `to` until it stops or steps down, or another transfer moves it.
    ///
    /// ```
    /// # use corum::{Builder, Dispatch};
    /// # #[derive(Clone, Default)] struct Counter(u64);
    /// # impl Dispatch for Counter {
    /// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
    /// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
    /// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
    /// # }
    /// let cluster = Builder::new(Counter::default()).replicas(3).build()?;
    /// let handle = cluster.handle();
    /// handle.execute_mut(1)?;
    /// cluster.transfer_leadership(2)?;
    /// assert_eq!(cluster.leader(), Some(2));
    /// assert_eq!(handle.execute_mut(1)?, 2);
    /// # Ok::<(), corum::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NoSuchReplica`] for an index out of range; [`Error::Shutdown`] after
    /// shutdown; [`Error::ReplicaDown`] if `to` is paused or crashed (or becomes so during
    /// the transfer); [`Error::NoQuorum`] if `to` does not lead within the deadline
    /// ([`Builder::deadline`](crate::Builder::deadline)), for example because no majority
    /// runs.
    pub fn transfer_leadership(&self, to: usize) -> Result<(), Error> {
        let target = self.replica_checked(to)?;
        let shared = &self.shared;
        let started = now();
        let deadline = started + shared.options.deadline;
        // A request is repeated now and then: the leader asked may have lost leadership
        // meanwhile, and a leader gives a transfer up after an election timeout.
        let ask_every = (shared.options.election / 8).max(Duration::from_micros(100));
        let mut asked: Option<Instant> = None;
        loop {
            let status = status_of(target.status());
            if status != ReplicaStatus::Running {
                return Err(Error::ReplicaDown { replica: to, status });
            }
            if shared.is_closed() {
                return Err(Error::Shutdown);
            }
            if self.leads(to) {
                return Ok(());
            }
            let now = now();
            if now >= deadline {
                return Err(Error::NoQuorum { waited: now.saturating_duration_since(started) });
            }
            if asked.map_or(true, |at| now.saturating_duration_since(at) >= ask_every) {
                self.ask_for_transfer(to);
                asked = Some(now);
            }
            // Run the replicas' rounds here where their threads are parked (`help.rs`); when
            // none has anything to do, give them time.
            if !help_all(shared, to, || self.leads(to)) {
                crate::sync::yield_now();
                #[cfg(not(corum_loom))]
                std::thread::sleep(Duration::from_micros(20));
            }
        }
    }

    /// Whether replica `to` runs and leads, as its last round published.
    fn leads(&self, to: usize) -> bool {
        let replica = &self.shared.replicas[to];
        // Relaxed: the role is a published statistic; the transfer only waits for it.
        replica.status() == RUNNING && role_of(replica.stats.role.load(Ordering::Relaxed)) == RoleKind::Leader
    }

    /// Asks the running replica that believes it leads to hand over to `to`, or, where none
    /// does, makes `to` campaign. The request is made to the replica's protocol core with its
    /// run token held, between two of its rounds; the next round acts on it.
    fn ask_for_transfer(&self, to: usize) {
        let shared = &self.shared;
        let leader = (0..shared.replicas.len()).find(|&index| index != to && self.leads(index));
        let index = leader.unwrap_or(to);
        let replica = &shared.replicas[index];
        replica.worker.take().with(|slot| {
            let Some(worker) = slot.as_mut() else { return };
            if replica.status() != RUNNING {
                return;
            }
            if leader.is_some() {
                worker.transfer_leadership(to);
                return;
            }
            let core = worker.driver.core_mut();
            if !core.is_leader() && core.role() != RoleKind::Candidate {
                core.campaign();
            }
        });
        replica.wake.notify();
    }
}
