//! Run a [`corum`] object across processes and machines.
//!
//! corum replicates a sequential object across the cores of one process. When that is not
//! enough (the object must survive the machine failing, or be served from several hosts),
//! corum-raft runs the same [`Dispatch`](corum::Dispatch) object as the state machine of
//! [openraft](https://docs.rs/openraft), a networked Raft engine, and adds what openraft
//! leaves to its embedder:
//!
//! - **TCP between nodes and from clients** (tokio): length-prefixed frames with request
//!   ids, many requests in flight on one connection; a frame that does not decode is
//!   answered with a rejection and logged, never a panic.
//! - **A durable log, vote and snapshot** in one [redb](https://docs.rs/redb) file per
//!   node; an append is reported flushed only once it is on disk, so an acknowledged write
//!   survives every process being killed.
//! - **Snapshots** of the object (postcard-encoded, with the client sessions) for log
//!   compaction and for a follower too far behind to catch up from the log.
//! - **Exactly-once writes**: each [`Client`] is a session whose writes are numbered; every
//!   retry (after a lost connection, a timeout, a leader change) carries the same number,
//!   and the state machine answers a retry from the response it kept.
//! - **Linearizable reads** through openraft's `ensure_linearizable`: the leader confirms
//!   its leadership with a quorum and applies everything committed before it reads.
//! - **Leader routing**: a write or read sent to any node reaches the leader.
//!
//! The object needs serde derives on itself, its operations and responses ([`Replicated`]
//! is implemented for every such `Dispatch`).
//!
//! ```
//! use std::time::Duration;
//!
//! use corum::Dispatch;
//! use corum_raft::Builder;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Default, Serialize, Deserialize)]
//! struct Counter(u64);
//!
//! impl Dispatch for Counter {
//!     type ReadOp = ();
//!     type WriteOp = u64;
//!     type Response = u64;
//!     fn dispatch(&self, _op: &()) -> u64 {
//!         self.0
//!     }
//!     fn dispatch_mut(&mut self, add: &u64) -> u64 {
//!         self.0 += add;
//!         self.0
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! // Three nodes in this process, on ports the OS picks.
//! let mut listeners = Vec::new();
//! for _ in 0..3 {
//!     listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
//! }
//! let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
//! let mut nodes = Vec::new();
//! for (i, listener) in listeners.into_iter().enumerate() {
//!     let mut builder = Builder::new(i as u64 + 1, Counter::default())
//!         .listener(listener)
//!         .data_dir(dir.path().join(format!("node{i}")))
//!         .request_timeout(Duration::from_secs(10));
//!     for (j, addr) in addrs.iter().enumerate() {
//!         if j != i {
//!             builder = builder.peer(j as u64 + 1, *addr);
//!         }
//!     }
//!     nodes.push(builder.start().await?);
//! }
//! // A write through any node goes to the leader, once.
//! assert_eq!(nodes[2].execute_mut(5).await?, 5);
//! assert_eq!(nodes[1].execute_mut(2).await?, 7);
//! assert_eq!(nodes[0].execute(()).await?, 7);
//! for node in &nodes {
//!     node.shutdown().await;
//! }
//! # Ok(()) }
//! ```
//!
//! `cargo run --release -p corum-raft --example cluster` runs three node processes, kills
//! the leader's process mid-load and restarts it from its data directory.

mod client;
mod error;
mod net;
mod node;
mod peer;
mod server;
mod space;
mod state_machine;
mod storage;
mod types;

pub use client::{Client, ClientBuilder};
pub use error::Error;
pub use node::{Builder, Node, NodeMetrics};
pub use types::{Applied, Batch, NodeId, Replicated, Types, Write};
