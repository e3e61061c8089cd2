//! corum: replicate a sequential object across cores with Multi-Paxos.
#![warn(missing_docs, missing_debug_implementations, unreachable_pub, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod dispatch;
mod error;
pub mod protocol;
mod runtime;
mod session;
mod sync;
mod transport;

pub use dispatch::Dispatch;
pub use error::{ConfigError, Error};
pub use protocol::RoleKind;
pub use runtime::{
    available_cores, Builder, Cluster, Faults, Handle, IdleStrategy, ReplicaStats, ReplicaStatus, Ticket,
};
