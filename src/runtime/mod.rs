//! The threaded runtime: one pinned thread per replica running the replica driver, client
//! threads that run replicas' rounds while they wait, client handles driving the client
//! machine, fault injection, stats and shutdown. One concern per file:
//!
//! - starting and running: `builder.rs` (settings, start-up), `cluster.rs` (stats,
//!   shutdown), `faults.rs` (fault injection), `leadership.rs` (transfers, the leader
//!   policy and each thread's pace);
//! - what is shared: `shared.rs` (the cluster's and each replica's shared cells, the write
//!   board and the writes it holds, the clients' view of the cluster);
//! - the client side: `handle.rs` (`Handle`: calls and reads), `ticket.rs` (`Ticket` and
//!   its `Future`), `session.rs` (a session's writes and its lane on the board),
//!   `reminder.rs` (waking tasks that await tickets);
//! - the replica side: `worker.rs` (a replica's working state behind its run token, one
//!   round), `io.rs` (the driver's environment: rings, board, watermark, locked copy),
//!   `replica.rs` (a replica's pinned thread), `help.rs` (waiting clients run rounds),
//!   `idle.rs` (how a thread with nothing to do waits).

mod builder;
mod cluster;
#[cfg_attr(not(corum_loom), allow(unreachable_pub))]
mod faults;
mod futures;
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
pub use futures::{ReadFuture, WriteFuture};
pub use handle::Handle;
pub use idle::IdleStrategy;
pub use leadership::LeaderPolicy;
pub use ticket::Ticket;
