//! Where leadership goes: moved on request ([`Cluster::transfer_leadership`]), and by the
//! leader itself: as its [`LeaderPolicy`] says ([`Pace`], run on each replica's pinned
//! thread, `replica.rs`, over the speed and the stalls each replica thread measures of
//! itself; the decision is the pure [`PolicyCheck`]), and when its rounds keep running late
//! ([`Lateness`]).

use std::time::{Duration, Instant};

use super::cluster::{Cluster, ReplicaStatus};
use super::help::help_all;
use super::idle::nanos;
use super::shared::{role_of, status_of, ReplicaShared, Shared, RUNNING};
use super::worker::WorkerPlace;
use crate::protocol::RoleKind;
use crate::sync::atomic::Ordering;
use crate::sync::now;
use crate::transport::token::TokenGuard;
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
        replica.worker.take().with(|place| {
            let Some(worker) = place.as_mut() else { return };
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

/// Consecutive late rounds after which a leader steps down (see `step_down_if_late`).
const LATE_ROUNDS_BEFORE_STEPPING_DOWN: u32 = 3;

/// When the current round of a replica thread's loop started, and how many rounds in a
/// row took too long while leading.
pub(crate) struct Lateness {
    round_started: Instant,
    late_rounds: u32,
}

impl Lateness {
    pub(crate) fn new() -> Self {
        Self { round_started: now(), late_rounds: 0 }
    }

    /// A leader whose thread's rounds keep taking longer than `limit` (half an election
    /// timeout: a slow or starved core) gives up leadership, so that a responsive replica
    /// takes over; its own slow clock makes it the last to campaign again.
    pub(crate) fn step_down_if_late<D: Dispatch>(
        &mut self,
        limit: Duration,
        now: Instant,
        guard: &mut TokenGuard<'_, WorkerPlace<D>>,
    ) {
        let round = now.saturating_duration_since(self.round_started);
        self.round_started = now;
        let late_rounds = &mut self.late_rounds;
        guard.with(|place| {
            let Some(worker) = place.as_mut() else { return };
            if !worker.core().is_leader() || round <= limit {
                *late_rounds = 0;
                return;
            }
            *late_rounds += 1;
            if *late_rounds >= LATE_ROUNDS_BEFORE_STEPPING_DOWN {
                *late_rounds = 0;
                worker.step_down();
            }
        });
    }
}

/// What a leader's check of the policy sees of one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) running: bool,
    /// Its average time per round of work, in nanoseconds (0: not measured yet).
    pub(crate) round_nanos: u64,
    /// Its share of the time held stopped, in per mille (an average over recent checks).
    pub(crate) stalled_per_mille: u64,
}

/// The leader's side of the [`LeaderPolicy`], as a pure decision over what its checks see:
/// it counts the checks in a row at which the leader was clearly slower than a peer, which
/// is the policy's hysteresis.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyCheck {
    slower_checks: u32,
}

impl PolicyCheck {
    /// One check by replica `me`, which leads: the replica to hand leadership to now, if
    /// any, under `policy`, given what it sees of every replica (itself included).
    pub(crate) fn check(&mut self, policy: LeaderPolicy, me: usize, seen: &[Seen]) -> Option<usize> {
        let running = |peer: usize| peer != me && seen[peer].running;
        let to = match policy {
            LeaderPolicy::Any => None,
            LeaderPolicy::Prefer(preferred) => running(preferred).then_some(preferred),
            LeaderPolicy::Fastest => {
                let factor = LeaderPolicy::FASTEST_FACTOR;
                let floor = nanos(LeaderPolicy::FASTEST_FLOOR);
                let mine = seen[me].round_nanos;
                let fastest = (0..seen.len())
                    .filter(|&peer| running(peer) && seen[peer].round_nanos > 0)
                    .min_by_key(|&peer| seen[peer].round_nanos);
                let by_speed =
                    fastest.filter(|&peer| mine > floor && mine > seen[peer].round_nanos.saturating_mul(factor));
                // Stopped far more than a running peer that is not itself slow (which would
                // hand leadership straight back by speed).
                let stalled = seen[me].stalled_per_mille;
                let by_stalls = || {
                    (0..seen.len())
                        .filter(|&peer| {
                            running(peer) && seen[peer].round_nanos <= mine.max(floor).saturating_mul(factor)
                        })
                        .min_by_key(|&peer| seen[peer].stalled_per_mille)
                        .filter(|&peer| {
                            stalled > LeaderPolicy::FASTEST_STALLED_PERCENT * 10
                                && seen[peer].stalled_per_mille.saturating_mul(factor) < stalled
                        })
                };
                match by_speed.or_else(by_stalls) {
                    Some(peer) => {
                        self.slower_checks += 1;
                        (self.slower_checks >= LeaderPolicy::FASTEST_CHECKS).then_some(peer)
                    }
                    None => {
                        self.slower_checks = 0;
                        None
                    }
                }
            }
        };
        if to.is_some() {
            self.slower_checks = 0;
        }
        to
    }

    /// This replica does not lead (or is handing over already): checks start over.
    pub(crate) fn reset(&mut self) {
        self.slower_checks = 0;
    }
}

/// A replica thread's measure of its own speed and of every replica's stalls, and its
/// checks of the [`LeaderPolicy`] while it leads.
pub(crate) struct Pace {
    /// Average time per round of work, in nanoseconds: an exponentially weighted average
    /// (each new round weighs 1/8).
    round_nanos: u64,
    next_check: Instant,
    policy: PolicyCheck,
    /// When `stalled_share` was last brought up to date.
    last_check: Instant,
    /// Each replica's stalled time (`StatsCell::stalled_nanos`) at that moment.
    stalled_seen: Vec<u64>,
    /// Each replica's share of the time held stopped, in per mille: an exponentially
    /// weighted average over this thread's checks (each new check weighs 1/16).
    stalled_share: Vec<u64>,
}

impl Pace {
    pub(crate) fn new<D: Dispatch>(shared: &Shared<D>) -> Self {
        Self {
            round_nanos: 0,
            next_check: now(),
            policy: PolicyCheck::default(),
            last_check: now(),
            // Relaxed: statistics.
            stalled_seen: shared.replicas.iter().map(|r| r.stats.stalled_nanos.load(Ordering::Relaxed)).collect(),
            stalled_share: vec![0; shared.replicas.len()],
        }
    }

    /// Brings every replica's share of the time held stopped up to date, over the time
    /// since the last check.
    fn update_stalls<D: Dispatch>(&mut self, shared: &Shared<D>, now: Instant) {
        let interval = nanos(now.saturating_duration_since(self.last_check));
        self.last_check = now;
        for (peer, replica) in shared.replicas.iter().enumerate() {
            // Relaxed: a statistic; a stale one is counted at the next check.
            let total = replica.stats.stalled_nanos.load(Ordering::Relaxed);
            let stalled = total.saturating_sub(self.stalled_seen[peer]);
            self.stalled_seen[peer] = total;
            let share = (stalled.saturating_mul(1000) / interval.max(1)).min(1000);
            self.stalled_share[peer] = (self.stalled_share[peer] * 15 + share) / 16;
        }
    }

    /// Counts one round of work that took `took` (slowness included), and publishes the
    /// average.
    pub(crate) fn sample<D: Dispatch>(&mut self, took: Duration, me: &ReplicaShared<D>) {
        let took = nanos(took);
        self.round_nanos = if self.round_nanos == 0 { took } else { (self.round_nanos * 7 + took) / 8 };
        // Relaxed: a statistic, read by leaders' checks and `Cluster::stats`.
        me.stats.round_nanos.store(self.round_nanos, Ordering::Relaxed);
    }

    /// If this replica leads, at most every tenth of an election timeout: follow the
    /// cluster's leader policy ([`PolicyCheck`]), handing over if it says so.
    pub(crate) fn follow_policy<D: Dispatch>(
        &mut self,
        shared: &Shared<D>,
        index: usize,
        now: Instant,
        guard: &mut TokenGuard<'_, WorkerPlace<D>>,
    ) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + shared.options.election / 10;
        self.update_stalls(shared, now);
        let mine = self.round_nanos;
        let seen: Vec<Seen> = shared
            .replicas
            .iter()
            .enumerate()
            .map(|(peer, replica)| Seen {
                running: replica.status() == RUNNING,
                // Relaxed: statistics; a stale one delays a hand-over by a check.
                round_nanos: if peer == index { mine } else { replica.stats.round_nanos.load(Ordering::Relaxed) },
                stalled_per_mille: self.stalled_share[peer],
            })
            .collect();
        let policy = &mut self.policy;
        guard.with(|place| {
            let Some(worker) = place.as_mut() else { return };
            let core = worker.core();
            if !core.is_leader() || core.transferring_to().is_some() {
                policy.reset();
                return;
            }
            if let Some(to) = policy.check(shared.options.leader_policy, index, &seen) {
                worker.transfer_leadership(to);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{LeaderPolicy, PolicyCheck, Seen};

    const FAST: u64 = 10_000;

    fn replicas(round_nanos: [u64; 3], stalled_per_mille: [u64; 3]) -> Vec<Seen> {
        (0..3)
            .map(|i| Seen { running: true, round_nanos: round_nanos[i], stalled_per_mille: stalled_per_mille[i] })
            .collect()
    }

    /// Checks by replica `me`, leading, under `seen`, until it hands over (or `checks` ran).
    fn checks_until_hand_over(check: &mut PolicyCheck, me: usize, seen: &[Seen], checks: u32) -> Option<(u32, usize)> {
        (1..=checks).find_map(|n| check.check(LeaderPolicy::Fastest, me, seen).map(|to| (n, to)))
    }

    #[test]
    fn a_slow_leader_hands_over_to_the_fastest_peer_after_three_checks_and_it_keeps_leading() {
        // Replica 0 takes 2 ms a round, its peers 10 us and 20 us.
        let seen = replicas([2_000_000, FAST, 2 * FAST], [0; 3]);
        let mut check = PolicyCheck::default();
        assert_eq!(checks_until_hand_over(&mut check, 0, &seen, 10), Some((LeaderPolicy::FASTEST_CHECKS, 1)));
        // Replica 1, now leading, sees the same: it never hands back.
        assert_eq!(checks_until_hand_over(&mut PolicyCheck::default(), 1, &seen, 1_000), None);
    }

    #[test]
    fn a_leader_stopped_far_more_than_a_peer_hands_over_once_and_none_back() {
        // Replica 0 is held stopped a tenth of the time; its peers hardly ever.
        let seen = replicas([FAST; 3], [100, 2, 0]);
        let mut check = PolicyCheck::default();
        assert_eq!(checks_until_hand_over(&mut check, 0, &seen, 10), Some((LeaderPolicy::FASTEST_CHECKS, 2)));
        assert_eq!(checks_until_hand_over(&mut PolicyCheck::default(), 2, &seen, 1_000), None);
    }

    #[test]
    fn replicas_slowed_or_stopped_alike_trade_no_leadership() {
        let mut check = PolicyCheck::default();
        assert_eq!(checks_until_hand_over(&mut check, 0, &replicas([500_000, 400_000, 450_000], [0; 3]), 1_000), None);
        assert_eq!(checks_until_hand_over(&mut check, 0, &replicas([FAST; 3], [110, 100, 120]), 1_000), None);
        // A fast leader stays, however much faster a peer is.
        assert_eq!(checks_until_hand_over(&mut check, 0, &replicas([150_000, 1_000, 1_000], [0; 3]), 1_000), None);
    }

    #[test]
    fn the_checks_must_come_in_a_row() {
        let slow = replicas([2_000_000, FAST, FAST], [0; 3]);
        let fine = replicas([FAST; 3], [0; 3]);
        let mut check = PolicyCheck::default();
        for _ in 0..10 {
            assert_eq!(check.check(LeaderPolicy::Fastest, 0, &slow), None);
            assert_eq!(check.check(LeaderPolicy::Fastest, 0, &slow), None);
            assert_eq!(check.check(LeaderPolicy::Fastest, 0, &fine), None, "a fine check starts over");
        }
    }

    #[test]
    fn a_preferred_replica_gets_leadership_whenever_it_runs_and_any_keeps_it() {
        let mut seen = replicas([FAST; 3], [0; 3]);
        let mut check = PolicyCheck::default();
        assert_eq!(check.check(LeaderPolicy::Prefer(2), 0, &seen), Some(2));
        seen[2].running = false;
        assert_eq!(check.check(LeaderPolicy::Prefer(2), 0, &seen), None);
        // Under `Any` even a slow leader stopped half the time keeps leading.
        let slow = replicas([2_000_000, FAST, FAST], [500, 0, 0]);
        assert!((0..1_000).all(|_| check.check(LeaderPolicy::Any, 0, &slow).is_none()));
    }
}
