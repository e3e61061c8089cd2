//! A replica's timing and sizing, and its validation.

use super::types::MAX_REPLICAS;
use crate::error::ConfigError;
use crate::plant::planted;

/// Timing and sizing of one replica. All durations are in ticks of the caller's clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Config {
    /// Number of replicas in the cluster, `1..=MAX_REPLICAS`.
    pub replicas: usize,
    /// A leader sends a heartbeat (a [`Message::Commit`](super::Message::Commit)) every this many ticks.
    pub heartbeat_ticks: u32,
    /// A follower that hears nothing from a leader for this many ticks (plus its stagger)
    /// starts an election.
    pub election_ticks: u32,
    /// Extra ticks of election timeout per replica index, so that the lowest-numbered live
    /// replica tries first and the others see its prepare before their own timers fire.
    pub election_stagger_ticks: u32,
    /// The most slots a leader keeps proposed but not yet committed.
    pub window: usize,
    /// The most commands a leader puts in one slot.
    pub batch_max: usize,
    /// A leader re-sends an accept that has not reached a majority after this many ticks.
    pub retransmit_ticks: u32,
    /// The most committed entries one [`Message::Learn`](super::Message::Learn) carries.
    pub learn_max: usize,
    /// The most commands a replica holds while it knows no leader to forward them to.
    pub buffer_max: usize,
    /// The most committed slots the log keeps behind the commit index. Entries every
    /// replica has applied are freed at once; beyond this window they are freed even if a
    /// slow, paused or crashed replica has not applied them, and that replica catches up
    /// from a snapshot ([`Replica::snapshot_wanted`](super::Replica::snapshot_wanted)) instead of holding the log back.
    pub log_window: u64,
    /// The span of slots up to which a log keeps its entries in a ring however sparse they
    /// are: beyond it, and beyond four slots per entry, they move to a map (and back once
    /// truncation brings them close together again; see the log's module docs). The
    /// default, 16,384, keeps a ring's memory to a few hundred KiB; tests and the simulator
    /// lower it so that the map form is exercised.
    pub log_sparse_span: u64,
    /// Whether the replica asserts its invariants after every input (see
    /// [`Replica::step`](super::Replica::step)). On by default in debug builds; the simulator and the model
    /// checker turn it on in every build, release included, because a broken invariant is
    /// often the first and only sign of a protocol bug that a run's outcome does not show.
    pub check_invariants: bool,
}

impl Config {
    /// Defaults for `replicas` replicas: heartbeat every 10 ticks, elections after 100.
    pub fn new(replicas: usize) -> Self {
        Self {
            replicas,
            heartbeat_ticks: 10,
            election_ticks: 100,
            election_stagger_ticks: 30,
            window: 8,
            batch_max: 1024,
            retransmit_ticks: 20,
            learn_max: 64,
            buffer_max: 65_536,
            log_window: 4096,
            log_sparse_span: 1 << 14,
            check_invariants: cfg!(debug_assertions),
        }
    }

    /// Checks the configuration; the error names the first setting out of range. The
    /// runtime's [`Builder`](crate::Builder) runs the same check on the protocol part of its
    /// settings.
    ///
    /// ```
    /// use corum::protocol::Config;
    /// use corum::ConfigError;
    ///
    /// let mut config = Config::new(3);
    /// assert_eq!(config.validate(), Ok(()));
    /// config.window = 0;
    /// assert_eq!(config.validate(), Err(ConfigError::Zero { setting: "window" }));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::ZeroReplicas`], [`ConfigError::TooManyReplicas`],
    /// [`ConfigError::Zero`] naming the field, or [`ConfigError::ElectionNotAboveHeartbeat`].
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.replicas == 0 {
            return Err(ConfigError::ZeroReplicas);
        }
        if self.replicas > MAX_REPLICAS {
            return Err(ConfigError::TooManyReplicas { requested: self.replicas, max: MAX_REPLICAS });
        }
        for (setting, value) in [
            ("batch_max", self.batch_max as u64),
            ("window", self.window as u64),
            ("heartbeat_ticks", u64::from(self.heartbeat_ticks)),
            ("election_ticks", u64::from(self.election_ticks)),
            ("log_window", self.log_window),
            ("retransmit_ticks", u64::from(self.retransmit_ticks)),
            ("learn_max", self.learn_max as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero { setting });
            }
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::ElectionNotAboveHeartbeat);
        }
        Ok(())
    }

    /// The number of replicas that make a majority.
    pub fn quorum(&self) -> usize {
        if planted!("quorum-too-small") {
            // Planted bug for the simulator's sweep: a "majority" one replica short.
            return (self.replicas / 2).max(1);
        }
        self.replicas / 2 + 1
    }
}
