//! corum-raft's errors: one enum for what a caller can get back.

use std::fmt;
use std::time::Duration;

use crate::types::NodeId;

/// Why a node could not start, or a write or read did not complete.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The builder's settings do not make a working node; nothing was started.
    Config(String),
    /// No leader with a quorum answered within the deadline. A write may or may not have
    /// taken effect (its entry may commit later); it will not take effect twice.
    NoQuorum {
        /// How long the call tried.
        waited: Duration,
        /// The leader the last node asked knew of, if any.
        leader: Option<NodeId>,
    },
    /// No node could be reached at all within the deadline (every connection failed).
    Unreachable {
        /// How long the call tried.
        waited: Duration,
        /// The last connection error.
        last: std::io::Error,
    },
    /// The node asked is not the leader (only from a client built with
    /// [`ClientBuilder::follow_leader(false)`](crate::ClientBuilder::follow_leader)).
    NotLeader {
        /// The leader it knows of, if any.
        leader: Option<NodeId>,
    },
    /// The operation panicked in `dispatch_mut`, on every node alike; the cluster goes on.
    OperationPanicked,
    /// The write's session had already released its number: a copy of a write that was
    /// answered before. Not applied.
    Expired,
    /// A retry of the write found its session unknown to the cluster: the session expired
    /// (the client had been idle for longer than the session expiry), or it is new and the
    /// write's first copy, which may yet arrive, had not been applied. An earlier copy may
    /// have been applied, or may yet be, once; it will never be applied twice. The client
    /// goes on under a new session.
    SessionExpired,
    /// The leader's data directory has less free space than its floor
    /// ([`Builder::min_free_disk`](crate::Builder::min_free_disk)): the write was refused
    /// before it was proposed, so it was not applied and never will be. Writes are taken
    /// again once space is freed.
    DiskFull {
        /// The leader that refused it.
        node: NodeId,
        /// The free bytes it measured.
        free: u64,
    },
    /// The node has been shut down.
    Shutdown,
    /// The node's storage failed (opening, reading or writing its data directory).
    Storage(std::io::Error),
    /// A peer could not decode what was sent to it, or sent back something that does not
    /// decode.
    Protocol(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(why) => write!(f, "bad configuration: {why}"),
            Error::NoQuorum { waited, leader } => {
                write!(f, "no leader with a quorum answered within {waited:?} (last known leader: {leader:?})")
            }
            Error::Unreachable { waited, last } => write!(f, "no node could be reached within {waited:?}: {last}"),
            Error::NotLeader { leader } => write!(f, "not the leader (the leader is {leader:?})"),
            Error::OperationPanicked => f.write_str("the operation panicked"),
            Error::Expired => f.write_str("the write's session has released its number; it was not applied"),
            Error::SessionExpired => {
                f.write_str("the session expired while the write was retried; it may have been applied once")
            }
            Error::DiskFull { node, free } => {
                write!(f, "node {node}'s disk has {free} bytes free, below its floor: the write was not applied")
            }
            Error::Shutdown => f.write_str("the node has been shut down"),
            Error::Storage(e) => write!(f, "storage failed: {e}"),
            Error::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { last, .. } => Some(last),
            Error::Storage(e) => Some(e),
            _ => None,
        }
    }
}
