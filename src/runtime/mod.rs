//! The threaded runtime: one pinned thread per replica running the replica driver, client
//! threads that run replicas' rounds while they wait, client handles, completion slots,
//! fault injection, stats and shutdown. This file is the facade: `builder.rs` starts a
//! cluster, `cluster.rs` runs it (stats, shutdown), `leadership.rs` moves leadership on
//! request, `faults.rs` injects faults, `handle.rs`
//! serves calls, `worker.rs` is a replica's working state behind its run token and runs
//! its rounds over `io.rs`, `replica.rs` is a replica's pinned thread, `help.rs` lets a
//! waiting client run rounds, `shared.rs` holds what threads and handles share,
//! `completion.rs` and `idle.rs` are the waiting primitives, and `reminder.rs` wakes tasks
//! awaiting tickets.

mod builder;
mod cluster;
#[cfg_attr(not(corum_loom), allow(unreachable_pub))]
mod completion;
mod faults;
mod handle;
mod help;
mod idle;
mod io;
mod leadership;
mod reminder;
mod replica;
mod session;
mod shared;
#[cfg(all(test, not(corum_loom)))]
mod test_support;
mod ticket;
mod worker;

pub use builder::{available_cores, Builder};
pub use cluster::{Cluster, ReplicaStats, ReplicaStatus};
pub use faults::Faults;
pub use handle::Handle;
pub use idle::IdleStrategy;
pub use leadership::LeaderPolicy;
pub use ticket::Ticket;

#[cfg(corum_loom)]
pub use completion::Completion;
