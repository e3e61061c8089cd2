//! The shape of a simulated run: its faults, its clients, its protocol timing, and the
//! configuration the seed sweep derives from each seed.

use super::rng::SimRng;
use crate::protocol;
use crate::Dispatch;

/// What can go wrong, per tick or per message, in permille.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultConfig {
    /// Chance that a message is lost.
    pub loss_permille: u64,
    /// Chance that a message is delivered twice.
    pub duplicate_permille: u64,
    /// Each message is delivered 1 to `1 + delay_max_ticks` ticks after it is sent, so
    /// messages overtake each other.
    pub delay_max_ticks: u64,
    /// Chance per tick that a running replica crashes (never more than a minority down).
    pub crash_permille: u64,
    /// Chance per tick that a crashed replica restarts.
    pub restart_permille: u64,
    /// Chance per tick that a running replica pauses.
    pub pause_permille: u64,
    /// Chance per tick that a paused replica resumes.
    pub resume_permille: u64,
    /// Chance per crash that the replica restarts 1 or 2 ticks later, while messages sent
    /// to it before the crash are still on their way: a restarted acceptor then meets
    /// ballots it promised to ignore before it crashed.
    pub fast_restart_permille: u64,
    /// Chance that a replica crashes right after it sent a promise, and restarts 1 or 2
    /// ticks later: the moment at which the promise, not yet backed by any accepted value,
    /// must survive the crash.
    pub promise_crash_permille: u64,
    /// Chance per tick that a replica (the leader, two times out of three) is cut off from
    /// every peer for up to `partition_ticks_max` ticks. It keeps running, ticking and
    /// proposing; its messages and those sent to it are lost until the partition heals.
    pub partition_permille: u64,
    /// The longest partition, in ticks.
    pub partition_ticks_max: u64,
    /// Chance that a commit notice or heartbeat ([`Message::Commit`](crate::protocol::Message::Commit)) is lost, on top of
    /// `loss_permille`: followers then learn commits late and new leaders meet values whose
    /// commit nobody reported.
    pub commit_loss_permille: u64,
    /// Chance per tick that two replicas start an election in the same tick, as when their
    /// timers fire together: candidates of one round compete.
    pub campaign_permille: u64,
    /// Chance per tick that a burst of 4 to 16 messages delivered earlier is delivered
    /// again (old ballots, old commit indexes, old promises).
    pub replay_permille: u64,
    /// Chance per tick that the leader is asked to hand leadership to another replica
    /// ([`Replica::transfer_leadership`](crate::protocol::Replica::transfer_leadership)),
    /// which may be crashed, paused or cut off.
    pub transfer_permille: u64,
    /// Chance per tick that a replica is told a running peer stopped
    /// ([`Replica::peer_down`](crate::protocol::Replica::peer_down)), the leader it
    /// follows most often: a wrong hint must cost an election, never safety. (Right hints,
    /// after every crash and restart, are always on.)
    pub wrong_hint_permille: u64,
    /// Chance per tick that the leader hint clients read points at a random replica for 1
    /// to 20 ticks, as the runtime's does for a while after its leader stopped: reads then
    /// start from, and waiting writes wake, a replica that may not lead.
    pub misleading_hint_permille: u64,
    /// Chance that a replica resuming from a pause campaigns at once, as one whose clock
    /// ran on while it was stopped would: far behind, it then holds its old entries and
    /// those its promises report, far above them (the log's sparse form, see
    /// [`Config::log_sparse_span`](crate::protocol::Config::log_sparse_span)).
    pub resume_campaign_permille: u64,
    /// Chance per round that a reader is in the replica's copy (descheduled inside its
    /// read, say): the round puts off applying what it committed to a later round, as the
    /// runtime's replica does rather than wait for the reader.
    pub copy_busy_permille: u64,
}

impl FaultConfig {
    /// No faults at all; messages still take 1 to 3 ticks.
    pub fn none() -> Self {
        Self {
            loss_permille: 0,
            duplicate_permille: 0,
            delay_max_ticks: 2,
            crash_permille: 0,
            restart_permille: 0,
            pause_permille: 0,
            resume_permille: 0,
            fast_restart_permille: 0,
            promise_crash_permille: 0,
            partition_permille: 0,
            partition_ticks_max: 0,
            commit_loss_permille: 0,
            campaign_permille: 0,
            replay_permille: 0,
            transfer_permille: 0,
            wrong_hint_permille: 0,
            misleading_hint_permille: 0,
            resume_campaign_permille: 0,
            copy_busy_permille: 0,
        }
    }
}

impl Default for FaultConfig {
    /// The uniform mix: 5 % loss, 5 % duplication, delays up to 8 ticks, a crash, restart,
    /// pause or resume every few dozen ticks, and a misleading leader hint every fifty. No
    /// targeted faults; the sweep adds them on most seeds (see [`sweep_config`]).
    fn default() -> Self {
        Self {
            loss_permille: 50,
            duplicate_permille: 50,
            delay_max_ticks: 8,
            crash_permille: 8,
            restart_permille: 20,
            pause_permille: 8,
            resume_permille: 30,
            misleading_hint_permille: 20,
            ..Self::none()
        }
    }
}

/// The shape of one simulated run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimConfig {
    /// Replicas in the cluster.
    pub replicas: usize,
    /// Simulated clients, each its own session.
    pub clients: usize,
    /// Operations each client issues.
    pub operations_per_client: usize,
    /// Writes one client may have in flight at once.
    pub pipeline: usize,
    /// Faults during the first `fault_ticks` ticks.
    pub faults: FaultConfig,
    /// Ticks during which faults happen; then every replica is brought back.
    pub fault_ticks: u64,
    /// After the faults stop, every operation must complete and every replica converge
    /// within this many ticks, or the run fails its liveness check.
    pub liveness_ticks: u64,
    /// A client submits a write again after this many ticks without a response.
    pub retry_ticks: u64,
    /// The deadline, in ticks, of the one write per client that its client gives up on:
    /// on a quarter of its writes until it has chosen one, a client gives that write this
    /// deadline, and either drops its ticket at once (it is submitted once and never
    /// retried, as a dropped `Ticket`'s write) or waits for it until the deadline (and then
    /// gets `NoQuorum`, as a waiting `Ticket` would). Either way its outcome stays unknown
    /// (it may still take effect once) and the session's floor passes it. `None`: clients
    /// wait for every write, with no deadline.
    pub abandon_ticks: Option<u64>,
    /// Protocol timing, in ticks.
    pub protocol: protocol::Config,
}

impl Default for SimConfig {
    fn default() -> Self {
        let mut protocol = protocol::Config::new(3);
        protocol.heartbeat_ticks = 5;
        protocol.election_ticks = 30;
        protocol.election_stagger_ticks = 10;
        protocol.retransmit_ticks = 10;
        protocol.window = 4;
        protocol.batch_max = 8;
        // A short log, so that lagging replicas fall behind it and catch up by snapshot.
        protocol.log_window = 6;
        // Broken invariants fail the run in every build, release sweeps included.
        protocol.check_invariants = true;
        Self {
            replicas: 3,
            clients: 3,
            operations_per_client: 10,
            pipeline: 2,
            faults: FaultConfig::default(),
            fault_ticks: 400,
            liveness_ticks: 3_000,
            retry_ticks: 40,
            abandon_ticks: None,
            protocol,
        }
    }
}

/// What a client asks of the object.
#[derive(Debug, Clone)]
pub enum ClientOp<D: Dispatch> {
    /// A read.
    Read(D::ReadOp),
    /// A write.
    Write(D::WriteOp),
}

/// The configuration the seed sweep derives from `seed`: 3 or 5 replicas, 2 to 4 clients,
/// pipelines of 1 to 3 writes, the uniform fault mix, and on three seeds in four the
/// targeted faults of [`FaultConfig`] on top (partitions of a running leader, lost commit
/// notices, simultaneous campaigns, fast restarts, replayed messages, leadership transfers,
/// wrong death notices), each on its own share of seeds. An eighth of the seeds run without
/// the election stagger, and an eighth retry writes eagerly. One seed in 32 runs long
/// (300 to 600 operations per client, pipelines of 4 to 8, faults for 2,000 to 4,000
/// ticks), and a fifth let logs take their sparse form past a span of 4 to 31 slots, with
/// long pauses after which replicas campaign at once, and busy clients.
pub fn sweep_config(seed: u64) -> SimConfig {
    let mut rng = SimRng::new(seed ^ 0x5eed_5eed_5eed_5eed);
    let mut config = SimConfig {
        replicas: if rng.chance(1, 3) { 5 } else { 3 },
        clients: 2 + rng.below(3) as usize,
        pipeline: 1 + rng.below(3) as usize,
        // A quarter of the seeds have clients that give up on slow writes.
        abandon_ticks: rng.chance(1, 4).then(|| SimConfig::default().retry_ticks * (1 + rng.below(4))),
        ..SimConfig::default()
    };
    if rng.chance(3, 4) {
        let faults = &mut config.faults;
        if rng.chance(1, 2) {
            faults.partition_permille = 10 + rng.below(20);
            faults.partition_ticks_max = 20 + rng.below(100);
        }
        if rng.chance(1, 2) {
            faults.commit_loss_permille = 200 + rng.below(600);
        }
        if rng.chance(1, 2) {
            faults.campaign_permille = 5 + rng.below(20);
        }
        if rng.chance(1, 2) {
            faults.fast_restart_permille = 500 + rng.below(500);
            faults.promise_crash_permille = 300 + rng.below(600);
            faults.crash_permille *= 2;
        }
        if rng.chance(1, 3) {
            faults.replay_permille = 5 + rng.below(20);
        }
        if rng.chance(1, 2) {
            faults.transfer_permille = 10 + rng.below(50);
        }
        if rng.chance(1, 4) {
            faults.wrong_hint_permille = 5 + rng.below(20);
        }
    }
    if rng.chance(1, 2) {
        config.faults.copy_busy_permille = 20 + rng.below(300);
    }
    if rng.chance(1, 8) {
        config.protocol.election_stagger_ticks = 0;
    }
    if rng.chance(1, 8) {
        config.retry_ticks = 8 + rng.below(8);
    }
    // A share of the seeds run long, with faults all along: thousands of slots, clients
    // whose floors cross several words of the exactly-once table, snapshots of long logs.
    if rng.chance(1, 20) {
        config.operations_per_client = 300 + rng.below(300) as usize;
        config.pipeline = 4 + rng.below(5) as usize;
        config.fault_ticks = 2_000 + rng.below(2_000);
        // Batches big enough that 2 to 4 clients' deep pipelines, collected again by every
        // new leader, do not outrun the commits after a long fault period.
        config.protocol.batch_max = 16;
        config.liveness_ticks = 6_000;
    }
    // A fifth of the seeds let a log take its sparse form past a span of 4 to 31 slots
    // (protocol::Config::log_sparse_span), as a far-behind replica's does past 16,384.
    // A log takes its sparse form when a replica far behind takes over leadership: it holds
    // its old entries and the ones its promises reported, far above them (a follower never
    // holds entries a log window above what it delivered). Those seeds have long pauses
    // after which replicas campaign at once, and clients that keep the leader busy.
    if rng.chance(1, 5) {
        config.protocol.log_sparse_span = 4 + rng.below(28);
        config.faults.resume_campaign_permille = 500 + rng.below(500);
        config.faults.pause_permille *= 3;
        config.faults.resume_permille = 5 + rng.below(10);
        config.operations_per_client = config.operations_per_client.max(60 + rng.below(60) as usize);
        config.fault_ticks = config.fault_ticks.max(1_000);
    }
    config
}
