//! The errors corum returns: one enum for calls on a running cluster, one for configuration.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// What went wrong with a call on a cluster or its handles.
///
/// ```
/// # use corum::{Builder, Dispatch, Error};
/// # #[derive(Clone, Default)]
/// # struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = ();
/// #     type WriteOp = u64;
/// #     type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// // A bad configuration starts nothing and says which setting is wrong.
/// let refused = Builder::new(Counter::default()).replicas(0).build();
/// assert!(matches!(refused, Err(Error::Config(_))));
///
/// // A call after shutdown does nothing and says so.
/// let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build()?;
/// let handle = cluster.handle();
/// cluster.shutdown()?;
/// assert_eq!(handle.execute_mut(1), Err(Error::Shutdown));
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The builder's configuration is invalid; nothing was started.
    Config(ConfigError),
    /// The cluster has been shut down (or is shutting down). A call made after shutdown
    /// began did nothing; a write already in flight when the replicas stopped may or may
    /// not have taken effect.
    Shutdown,
    /// No majority of replicas committed (or, for a read, caught up with) the operation
    /// before the deadline. A write may still take effect later: its outcome is unknown.
    NoQuorum {
        /// How long the call waited.
        waited: Duration,
    },
    /// The object's `dispatch_mut` (or, for a read, `dispatch`) panicked on this operation.
    /// Every replica recorded the same outcome; the cluster keeps serving.
    OperationPanicked,
    /// A fault-injection call named a replica the cluster does not have.
    NoSuchReplica {
        /// The index given.
        replica: usize,
        /// The cluster's replica count.
        replicas: usize,
    },
    /// The call needs replica `replica` running, and it is not: it is paused, crashed or
    /// stopped (for example the target of [`Cluster::transfer_leadership`](crate::Cluster::transfer_leadership)).
    ReplicaDown {
        /// The replica named.
        replica: usize,
        /// Its status when the call gave up.
        status: crate::ReplicaStatus,
    },
    /// A fault-injection call that does not apply to the replica's current state.
    FaultRefused {
        /// The replica named.
        replica: usize,
        /// Why the call was refused.
        reason: &'static str,
    },
    /// The handle's write found every lane of the cluster's write board taken by other
    /// handles ([`Builder::writing_handles`](crate::Builder::writing_handles)): the write
    /// was not submitted. Drop handles that no longer write, or build the cluster with
    /// more lanes.
    TooManyWriters {
        /// The board's lanes: the most handles that write.
        lanes: usize,
    },
    /// The replicas' copies of the object differ and no digest has a majority
    /// ([`Dispatch::digest`](crate::Dispatch::digest)): the object's `dispatch_mut` is not
    /// deterministic, and there is no copy to trust. From then on the cluster refuses
    /// writes and reads with this error rather than serve a forked state; shut it down.
    Diverged {
        /// The first slot at which the copies were compared and found forked.
        slot: u64,
    },
    /// The operating system refused to start a replica thread; nothing was started. Its
    /// error is this error's [`source`](std::error::Error::source).
    Spawn {
        /// The replica whose thread could not start.
        replica: usize,
        /// The operating system's error.
        error: OsError,
    },
}

/// An error of the operating system's, shared so that [`Error`] stays `Clone`; two are
/// equal when their kind and message are.
///
/// ```
/// use std::error::Error as _;
///
/// let refused = corum::Error::Spawn {
///     replica: 2,
///     error: std::io::Error::new(std::io::ErrorKind::OutOfMemory, "no stack").into(),
/// };
/// let source = refused.source().expect("the operating system's error");
/// assert_eq!(source.to_string(), "no stack");
/// ```
#[derive(Debug, Clone)]
pub struct OsError(Arc<io::Error>);

impl OsError {
    /// The operating system's error.
    pub fn io_error(&self) -> &io::Error {
        &self.0
    }
}

impl From<io::Error> for OsError {
    fn from(error: io::Error) -> Self {
        Self(Arc::new(error))
    }
}

impl PartialEq for OsError {
    fn eq(&self, other: &Self) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for OsError {}

impl fmt::Display for OsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a [`Builder`](crate::Builder) configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A cluster needs at least one replica.
    ZeroReplicas,
    /// [`LeaderPolicy::Prefer`](crate::LeaderPolicy::Prefer) names a replica the cluster
    /// does not have.
    PreferredReplicaMissing {
        /// The replica named.
        replica: usize,
        /// The cluster's replica count.
        replicas: usize,
    },
    /// More replicas than [`MAX_REPLICAS`](crate::protocol::MAX_REPLICAS).
    TooManyReplicas {
        /// The count asked for.
        requested: usize,
        /// The most supported.
        max: usize,
    },
    /// A core index is not among the cores this process may run on.
    CoreUnavailable {
        /// The index asked for (into the list of usable cores).
        core: usize,
        /// How many cores the process may use.
        available: usize,
    },
    /// `cores` was given an empty list.
    NoCores,
    /// A setting that must be positive is zero.
    Zero {
        /// The setting's builder method.
        setting: &'static str,
    },
    /// The election timeout must be longer than the heartbeat interval.
    ElectionNotAboveHeartbeat,
    /// A duration setting is longer than corum accepts.
    TooLong {
        /// The setting's builder method.
        setting: &'static str,
        /// The longest accepted.
        max: Duration,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(error) => write!(f, "invalid configuration: {error}"),
            Error::Shutdown => f.write_str("the cluster has been shut down"),
            Error::NoQuorum { waited } => {
                write!(f, "no quorum: the operation did not complete within {waited:?}; its outcome is unknown")
            }
            Error::OperationPanicked => f.write_str("the object panicked while applying this operation"),
            Error::NoSuchReplica { replica, replicas } => {
                write!(f, "no replica {replica}: the cluster has {replicas}")
            }
            Error::ReplicaDown { replica, status } => write!(f, "replica {replica} is not running: {status:?}"),
            Error::FaultRefused { replica, reason } => write!(f, "fault on replica {replica} refused: {reason}"),
            Error::TooManyWriters { lanes } => {
                write!(f, "every one of the {lanes} lanes of the write board is taken by another handle")
            }
            Error::Diverged { slot } => write!(
                f,
                "the replicas' copies differ at slot {slot} with no majority: the object is not deterministic"
            ),
            Error::Spawn { replica, error } => write!(f, "could not start replica {replica}'s thread: {error}"),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::ZeroReplicas => f.write_str("a cluster needs at least one replica"),
            ConfigError::PreferredReplicaMissing { replica, replicas } => {
                write!(f, "the preferred leader {replica} is not among the cluster's {replicas} replicas")
            }
            ConfigError::TooManyReplicas { requested, max } => {
                write!(f, "{requested} replicas requested, at most {max} are supported")
            }
            ConfigError::CoreUnavailable { core, available } => {
                write!(f, "core index {core} does not exist: this process may use {available} cores")
            }
            ConfigError::NoCores => f.write_str("the list of cores is empty"),
            ConfigError::Zero { setting } => write!(f, "{setting} must be positive"),
            ConfigError::TooLong { setting, max } => write!(f, "{setting} must be at most {max:?}"),
            ConfigError::ElectionNotAboveHeartbeat => {
                f.write_str("the election timeout must be longer than the heartbeat interval")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(error) => Some(error),
            Error::Spawn { error, .. } => Some(error.io_error()),
            _ => None,
        }
    }
}
impl std::error::Error for ConfigError {}

impl From<ConfigError> for Error {
    fn from(error: ConfigError) -> Self {
        Error::Config(error)
    }
}
