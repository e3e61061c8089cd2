//! Configuration and start-up of a cluster: validation, rings, pinned replica threads.

use std::time::Duration;

use super::cluster::Cluster;
use super::idle::nanos;
use super::replica::ReplicaThread;
use super::shared::{Options, ReplicaShared, Shared};
use super::worker::Worker;
use super::{IdleStrategy, LeaderPolicy};
use crate::client::Timing;
use crate::error::{ConfigError, Error};
use crate::protocol::{self, ReplicaId};
use crate::sync::Arc;
use crate::transport::ring::ring;
use crate::Dispatch;

/// Configures and starts a [`Cluster`] replicating one object.
///
/// Every setting has a default; [`Builder::build`] checks them all and returns
/// [`Error::Config`] naming the first one that is invalid.
///
/// ```
/// use std::time::Duration;
/// use corum::{Builder, Dispatch};
///
/// #[derive(Clone, Default)]
/// struct Counter(u64);
/// impl Dispatch for Counter {
///     type ReadOp = ();
///     type WriteOp = u64;
///     type Response = u64;
///     fn dispatch(&self, _: &()) -> u64 { self.0 }
///     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// }
///
/// let cluster = Builder::new(Counter::default())
///     .replicas(3)
///     .deadline(Duration::from_secs(2))
///     .build()?;
/// assert_eq!(cluster.handle().execute_mut(2)?, 2);
/// cluster.shutdown()?;
/// # Ok::<(), corum::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder<D> {
    object: D,
    replicas: usize,
    cores: Option<Vec<usize>>,
    pin: bool,
    batch_max: usize,
    window: usize,
    tick: Duration,
    heartbeat_ticks: u32,
    election_ticks: u32,
    deadline: Duration,
    retry_after: Duration,
    idle: IdleStrategy,
    helping: bool,
    leader_policy: LeaderPolicy,
    digest_every: u64,
    ring_capacity: usize,
    submission_capacity: usize,
    writing_handles: usize,
    log_window: u64,
    /// Under loom only: whether the cluster behaves as where replicas share cores (see
    /// [`Builder::loom_shares_cores`]).
    #[cfg(corum_loom)]
    loom_shares_cores: bool,
}

impl<D: Dispatch> Builder<D> {
    /// A builder for a cluster whose replicas all start from a clone of `object`.
    pub fn new(object: D) -> Self {
        Self {
            object,
            replicas: 3,
            cores: None,
            pin: true,
            batch_max: 1024,
            window: 8,
            tick: Duration::from_millis(1),
            heartbeat_ticks: 10,
            election_ticks: 100,
            deadline: Duration::from_secs(5),
            retry_after: Duration::from_millis(250),
            idle: IdleStrategy::Park,
            helping: true,
            leader_policy: LeaderPolicy::Fastest,
            digest_every: 256,
            ring_capacity: 1024,
            // Small under loom, whose every atomic is an object it tracks.
            submission_capacity: if cfg!(corum_loom) { 4 } else { 64 },
            writing_handles: if cfg!(corum_loom) { 4 } else { 256 },
            log_window: 4096,
            #[cfg(corum_loom)]
            loom_shares_cores: false,
        }
    }

    /// Under loom only: the cluster behaves as where replicas share cores (clients do not
    /// wake replica threads, and deep writers defer to a client running rounds), so that
    /// the loom suite explores that path too. Otherwise loom clusters behave as where every
    /// replica has a core, whatever the machine has. Not part of the public API.
    #[cfg(corum_loom)]
    #[doc(hidden)]
    pub fn loom_shares_cores(mut self) -> Self {
        self.loom_shares_cores = true;
        self
    }

    /// Number of replicas (default 3). A cluster of `n` tolerates `(n - 1) / 2` crashed or
    /// stalled replicas; 1 replica gives ordering without fault tolerance.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// The cores to pin replicas to, as indices into the list of cores this process may
    /// use (read once, when the first cluster is built). Replica `i` is pinned to
    /// `cores[i % cores.len()]`. Default: all usable cores, round-robin. Replicas pinned
    /// to fewer cores than there are of them share those cores as where the process has
    /// too few ([`IdleStrategy`]): their threads do not spin, and clients run their rounds.
    pub fn cores(mut self, cores: impl IntoIterator<Item = usize>) -> Self {
        self.cores = Some(cores.into_iter().collect());
        self
    }

    /// Whether to pin replica threads to cores at all (default `true`).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// The most writes a leader puts in one slot (default 1024).
    pub fn batch_max(mut self, batch_max: usize) -> Self {
        self.batch_max = batch_max;
        self
    }

    /// The most slots a leader keeps in flight before batching what queues up (default 8).
    pub fn window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// The protocol's clock tick (default 1 ms): heartbeats and election timeouts count it.
    pub fn tick(mut self, tick: Duration) -> Self {
        self.tick = tick;
        self
    }

    /// Ticks between a leader's heartbeats (default 10).
    pub fn heartbeat_ticks(mut self, ticks: u32) -> Self {
        self.heartbeat_ticks = ticks;
        self
    }

    /// Ticks without a heartbeat before a follower starts an election (default 100; the
    /// replica with index `i` waits `i * ticks * 3 / 10` ticks more, at least `i`, so the
    /// lowest live one goes first).
    pub fn election_ticks(mut self, ticks: u32) -> Self {
        self.election_ticks = ticks;
        self
    }

    /// How long a call may take before it fails with [`Error::NoQuorum`] (default 5 s).
    ///
    /// A write's deadline counts from its submission, read on Linux from the coarse clock
    /// (`CLOCK_MONOTONIC_COARSE`, a timer tick's resolution, at an eighth of the cost of a
    /// precise read) when the deadline is at least 256 of those ticks (a second where the
    /// kernel ticks every 4 ms): it may then end up to a tick (1 to 10 ms) late, or, where
    /// the kernel runs its tick late (a loaded virtual machine), early by that lateness,
    /// typically under a millisecond. Shorter deadlines read the precise clock.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// How long a client waits for a write before submitting it again when no leader
    /// change prompted it sooner (default 250 ms). Retries are applied at most once.
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// Whether a client thread waiting for a replica runs that replica's rounds itself
    /// while the replica's own thread is parked (default `true`). A waiting writer then
    /// carries its write through the leader and the followers, and a waiting reader applies
    /// its replica's committed writes, instead of waking the replicas' threads; where
    /// threads outnumber cores that saves a context switch per hop. The object's `dispatch_mut` then also runs on client
    /// threads (never on two threads at once for one copy). With `false`, only the
    /// replicas' own threads run their rounds.
    ///
    /// ```
    /// # use corum::{Builder, Dispatch};
    /// # #[derive(Clone, Default)] struct Counter(u64);
    /// # impl Dispatch for Counter {
    /// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
    /// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
    /// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
    /// # }
    /// let cluster = Builder::new(Counter::default()).helping(false).build()?;
    /// assert_eq!(cluster.handle().execute_mut(3)?, 3); // applied by the replicas' threads
    /// # cluster.shutdown()?;
    /// # Ok::<(), corum::Error>(())
    /// ```
    pub fn helping(mut self, helping: bool) -> Self {
        self.helping = helping;
        self
    }

    /// Which replica should lead (default [`LeaderPolicy::Fastest`]: leadership follows the
    /// fastest core). See [`LeaderPolicy`] for an example.
    pub fn leader_policy(mut self, policy: LeaderPolicy) -> Self {
        self.leader_policy = policy;
        self
    }

    /// How often replicas compare digests of their copies, in slots of the log (default
    /// 256; each slot holds a batch of writes). Only for objects that provide
    /// [`Dispatch::digest`](crate::Dispatch::digest); see there for what a mismatch does.
    /// A diverged copy is found at the first checkpoint after the write that forked it
    /// (within this many slots of it), as soon as a majority of the replicas have passed
    /// that checkpoint with one digest. The replicas' reports are kept for the last 16
    /// checkpoints: where the replicas that passed it disagree and the others pass it only
    /// later than that (a replica far behind), or never (one that catches up by a
    /// snapshot), the copy is found at a later checkpoint.
    pub fn digest_every(mut self, slots: u64) -> Self {
        self.digest_every = slots;
        self
    }

    /// How idle replica threads and waiting clients wait (default [`IdleStrategy::Park`]).
    pub fn idle(mut self, idle: IdleStrategy) -> Self {
        self.idle = idle;
        self
    }

    /// Capacity of each replica-to-replica ring, in messages (default 1024).
    pub fn ring_capacity(mut self, capacity: usize) -> Self {
        self.ring_capacity = capacity;
        self
    }

    /// The most writes one handle has in flight at once (default 64, rounded up to a power
    /// of two): the size of its lane on the cluster's write board. A handle with that many
    /// makes its next submission wait for the oldest to finish: back-pressure, not loss.
    pub fn submission_capacity(mut self, capacity: usize) -> Self {
        self.submission_capacity = capacity;
        self
    }

    /// The most handles that write (default 256): each takes a lane of the cluster's write
    /// board at its first write and gives it back when dropped. A write from one handle
    /// more fails with [`Error::TooManyWriters`](crate::Error::TooManyWriters). The board
    /// takes about `writing_handles * submission_capacity` times the size of a write and
    /// its response in memory, allocated when the cluster is built.
    pub fn writing_handles(mut self, handles: usize) -> Self {
        self.writing_handles = handles;
        self
    }

    /// The most committed slots the log keeps behind the commit index (default 4096). A
    /// replica that falls further behind (paused, slow, or restarted) catches up from a
    /// copy of a peer's object instead of holding the log, and memory, back.
    pub fn log_window(mut self, slots: u64) -> Self {
        self.log_window = slots;
        self
    }

    fn validate(&self) -> Result<Vec<Option<core_affinity::CoreId>>, ConfigError> {
        // The protocol's settings are checked by the protocol's own rule.
        self.protocol_config().validate()?;
        for (setting, value) in [
            ("ring_capacity", self.ring_capacity),
            ("submission_capacity", self.submission_capacity),
            ("writing_handles", self.writing_handles),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.digest_every == 0 {
            return Err(ConfigError::Zero { setting: "digest_every" });
        }
        for (setting, value) in [("tick", self.tick), ("deadline", self.deadline), ("retry_after", self.retry_after)] {
            if value.is_zero() {
                return Err(ConfigError::Zero { setting });
            }
            if value > MAX_DURATION {
                return Err(ConfigError::TooLong { setting, max: MAX_DURATION });
            }
        }
        if let LeaderPolicy::Prefer(replica) = self.leader_policy {
            if replica >= self.replicas {
                return Err(ConfigError::PreferredReplicaMissing { replica, replicas: self.replicas });
            }
        }
        let available = usable_cores();
        let chosen: Vec<usize> = match &self.cores {
            Some(cores) if cores.is_empty() => return Err(ConfigError::NoCores),
            Some(cores) => {
                if let Some(&core) = cores.iter().find(|&&core| core >= available.len()) {
                    return Err(ConfigError::CoreUnavailable { core, available: available.len() });
                }
                cores.clone()
            }
            None => (0..available.len()).collect(),
        };
        Ok((0..self.replicas)
            .map(|i| if !self.pin || chosen.is_empty() { None } else { Some(available[chosen[i % chosen.len()]]) })
            .collect())
    }

    /// Whether replicas share cores: the process has at most one core more than it has
    /// replicas, or the replicas are pinned to fewer cores than there are of them
    /// ([`Builder::cores`]). A replica thread with a core of its own pays off only where
    /// clients have cores too: with one core left over, a lone client hands every write
    /// across cores (docs/BENCHMARKS.md, "What the design rests on") and two clients leave a
    /// thread without a core; replica threads pinned to one core would spin there in turn.
    /// Under loom, only if the test asks for it ([`Builder::loom_shares_cores`]): where
    /// replicas share cores, nothing but a replica's tick wakes its thread for input a
    /// replica thread's round sent it, and under loom's frozen clock that tick never comes.
    fn shares_cores(&self, pinning: &[Option<core_affinity::CoreId>]) -> bool {
        #[cfg(corum_loom)]
        {
            let _ = pinning;
            self.loom_shares_cores
        }
        #[cfg(not(corum_loom))]
        shares_cores(available_cores(), pinning)
    }

    fn protocol_config(&self) -> protocol::Config {
        protocol::Config {
            replicas: self.replicas,
            heartbeat_ticks: self.heartbeat_ticks,
            election_ticks: self.election_ticks,
            election_stagger_ticks: (self.election_ticks * 3 / 10).max(1),
            window: self.window,
            batch_max: self.batch_max,
            retransmit_ticks: self.heartbeat_ticks * 2,
            learn_max: 64,
            buffer_max: self.submission_capacity * 4,
            log_window: self.log_window,
            log_sparse_span: protocol::Config::new(self.replicas).log_sparse_span,
            check_invariants: cfg!(debug_assertions),
        }
    }

    /// Starts the replica threads and returns the running cluster.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid setting (nothing is started), [`Error::Spawn`] if
    /// the operating system refuses a thread (those already started are stopped).
    pub fn build(self) -> Result<Cluster<D>, Error> {
        let pinning = self.validate()?;
        let shares = self.shares_cores(&pinning);
        let config = self.protocol_config();
        let n = self.replicas;
        let election = self.tick * self.election_ticks;
        let epoch = crate::sync::now();
        // A write's start may be read from the coarse clock if its resolution is at most
        // 1/256 of the deadline: a start a tick off then moves a deadline by under 0.4 %.
        let coarse = crate::sync::coarse_resolution()
            .filter(|&resolution| resolution > 0 && u128::from(resolution) * 256 <= self.deadline.as_nanos())
            .map(|resolution| (crate::sync::monotonic_now(), resolution));
        let options = Options {
            epoch,
            coarse,
            timing: Timing {
                deadline: nanos(self.deadline),
                retry_after: nanos(self.retry_after),
                switch_after: nanos(election),
            },
            tick: self.tick,
            deadline: self.deadline,
            election,
            idle: self.idle,
            spin: !shares,
            helping: self.helping,
            leader_policy: self.leader_policy,
            digest_every: self.digest_every,
            wake_peers: !shares || !self.helping,
            pending_max: self.ring_capacity * 4,
        };
        // A reader indicator per core that may read at once (loom: one, to keep its models
        // small); threads beyond that share indicators.
        let indicators = if cfg!(corum_loom) { 1 } else { available_cores().clamp(1, MAX_INDICATORS) };
        let replicas = (0..n).map(|_| ReplicaShared::new(self.object.clone(), indicators)).collect();
        let shared = Arc::new(Shared::new(replicas, options, self.writing_handles, self.submission_capacity));

        // One ring per ordered pair: outgoing[i][j] sends from i to j.
        let mut outgoing: Vec<Vec<Option<_>>> = (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut incoming: Vec<Vec<_>> = (0..n).map(|_| Vec::new()).collect();
        for (from, row) in outgoing.iter_mut().enumerate() {
            for (to, slot) in row.iter_mut().enumerate() {
                if from != to {
                    let (producer, consumer) = ring(self.ring_capacity);
                    *slot = Some(producer);
                    incoming[to].push((ReplicaId::new(from), consumer));
                }
            }
        }

        for (index, (outgoing, incoming)) in outgoing.into_iter().zip(incoming).enumerate() {
            let core = protocol::Replica::new(ReplicaId::new(index), config.clone());
            let worker = Worker::new(index, core, Arc::clone(&shared), outgoing, incoming);
            worker.publish_stats();
            shared.replicas[index].worker.take().with(|place| *place = Some(worker));
        }
        let mut threads = Vec::with_capacity(n);
        for (index, core) in pinning.clone().into_iter().enumerate() {
            match ReplicaThread::spawn(&shared, index, core) {
                Ok(handle) => threads.push(Some(handle)),
                Err(error) => {
                    drop(Cluster::from_parts(shared, threads, pinning));
                    return Err(Error::Spawn { replica: index, error: error.into() });
                }
            }
        }
        Ok(Cluster::from_parts(shared, threads, pinning))
    }
}

/// Most reader indicators per copy: a writer looks at each of them once per batch.
const MAX_INDICATORS: usize = 64;

/// The longest tick, deadline or retry interval accepted: clocks add them to the current
/// time, which must not overflow.
const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// [`Builder::shares_cores`] for a process with `available` cores whose replicas are
/// pinned as `pinning` says (`None`: not pinned).
#[cfg(not(corum_loom))]
fn shares_cores(available: usize, pinning: &[Option<core_affinity::CoreId>]) -> bool {
    let replicas = pinning.len();
    let mut pinned: Vec<usize> = pinning.iter().flatten().map(|core| core.id).collect();
    pinned.sort_unstable();
    pinned.dedup();
    let stacked = pinning.iter().all(Option::is_some) && pinned.len() < replicas;
    available <= replicas + 1 || stacked
}

/// The cores this process may run on, read once per process: once a thread is pinned,
/// `core_affinity::get_core_ids` called from it returns only its own core.
fn usable_cores() -> &'static [core_affinity::CoreId] {
    static CORES: std::sync::OnceLock<Vec<core_affinity::CoreId>> = std::sync::OnceLock::new();
    CORES.get_or_init(|| core_affinity::get_core_ids().unwrap_or_default())
}

/// How many cores this process may use, as corum sees them (read once per process).
pub fn available_cores() -> usize {
    usable_cores().len()
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use core_affinity::CoreId;

    use super::shares_cores;

    fn pinned(cores: &[usize]) -> Vec<Option<CoreId>> {
        cores.iter().map(|&id| Some(CoreId { id })).collect()
    }

    /// Replicas share cores where at most one core is left over for clients, and wherever
    /// they are pinned to fewer cores than there are of them, however many the process has.
    #[test]
    fn replicas_share_cores_where_one_is_left_over_or_they_are_pinned_together() {
        assert!(!shares_cores(16, &pinned(&[0, 1, 2])), "each replica on a core of its own");
        assert!(!shares_cores(16, &[None, None, None]), "unpinned, with cores to spare");
        assert!(shares_cores(4, &pinned(&[0, 1, 2])), "one core left for the clients");
        assert!(shares_cores(4, &[None, None, None]));
        assert!(shares_cores(16, &pinned(&[0, 0, 0])), "three replicas pinned to one core");
        assert!(shares_cores(16, &pinned(&[3, 5, 3])), "two replicas pinned to one core");
        assert!(shares_cores(2, &pinned(&[1])), "one replica on 2 cores");
    }
}
