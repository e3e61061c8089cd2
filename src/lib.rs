//! corum replicates a sequential, in-memory object across the cores of one process with
//! Multi-Paxos, and hands back a linearizable concurrent object that keeps serving while a
//! minority of its replicas are slow, descheduled or dead.
//!
//! # A tutorial, in order of use
//!
//! **1. Describe the object.** Implement [`Dispatch`] for a plain sequential type: reads
//! take `&self`, writes take `&mut self`, and writes must be deterministic, because every
//! replica applies them to its own copy.
//!
//! ```
//! use corum::Dispatch;
//!
//! #[derive(Clone, Default)]
//! struct Counter(u64);
//!
//! impl Dispatch for Counter {
//!     type ReadOp = ();
//!     type WriteOp = u64;
//!     type Response = u64;
//!     fn dispatch(&self, _op: &()) -> u64 { self.0 }
//!     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
//! }
//! # let _ = Counter::default();
//! ```
//!
//! **2. Start a cluster** with a [`Builder`]: the replica count, and optionally the cores
//! to pin to, batching, timeouts and how idle threads wait. Misconfiguration is an
//! [`Error::Config`], never a panic.
//!
//! **3. Call it through handles.** [`Cluster::handle`] opens a client session; give each
//! thread its own. [`Handle::execute_mut`] is a linearizable write applied exactly once,
//! [`Handle::execute`] a linearizable read served by a replica's own copy, and
//! [`Handle::submit`] returns a [`Ticket`] so one thread can keep many writes in flight.
//!
//! **4. Shut down** with [`Cluster::shutdown`], which returns every live replica's copy
//! after it has applied everything committed.
//!
//! ```
//! # use corum::Dispatch;
//! # #[derive(Clone, Default)] struct Counter(u64);
//! # impl Dispatch for Counter {
//! #     type ReadOp = (); type WriteOp = u64; type Response = u64;
//! #     fn dispatch(&self, _op: &()) -> u64 { self.0 }
//! #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
//! # }
//! use corum::Builder;
//!
//! let cluster = Builder::new(Counter::default()).replicas(3).build()?;
//! let handle = cluster.handle();            // Clone + Send; one per client thread
//! let after = handle.execute_mut(5)?;       // linearizable write, applied exactly once
//! let now = handle.execute(())?;            // linearizable read
//! assert_eq!((after, now), (5, 5));
//!
//! let tickets: Vec<_> = (0..10).map(|_| handle.submit(1)).collect::<Result<_, _>>()?;
//! for ticket in tickets {
//!     ticket.wait()?;                       // pipelined writes, one ticket each
//! }
//!
//! let states: Vec<Counter> = cluster.shutdown()?; // every live replica's final object
//! assert!(states.iter().all(|copy| copy.0 == 15));
//! # Ok::<(), corum::Error>(())
//! ```
//!
//! **5. Test under faults.** [`Cluster::faults`] pauses, resumes, slows, crashes and
//! restarts replicas, so an object can be tested while a minority is gone;
//! [`Cluster::stats`] shows each replica's role, ballot, progress and measured speed.
//!
//! **6. Choose who leads.** Leadership follows the fastest core by default
//! ([`LeaderPolicy`], set with [`Builder::leader_policy`]); [`Cluster::transfer_leadership`]
//! moves it on request. A replica whose thread dies is replaced at once, without waiting
//! for an election timeout.
//!
//! # Vocabulary
//! - **replica**: a thread, pinned to a core, holding a copy of the object and a protocol
//!   core ([`protocol::Replica`]).
//! - **slot**: a position in the replicated log; each slot holds one **batch** of writes.
//! - **ballot**: a (round, replica) pair; the replica owning the highest ballot leads.
//! - **prepare / promise**: phase 1, run by a new leader over every undecided slot.
//! - **accept / accepted**: phase 2, run by the leader for each batch.
//! - **commit**: a majority accepted a batch in a slot; it can no longer change.
//! - **apply**: a replica runs a committed batch through its copy's `dispatch_mut`.
//!
//! # Guarantees
//! - Writes are linearizable and take effect at most once; a write that returned `Ok`
//!   took effect exactly once and is never lost while a majority of replicas lives.
//! - Reads are linearizable: a read sees every write that completed before it began.
//! - With a majority of replicas running, calls complete; without, they fail with
//!   [`Error::NoQuorum`] at their deadline.
//! - A panic in the object's code fails that operation only; every replica records the
//!   same outcome and the cluster keeps serving.
//!
//! The architecture (pure protocol core, lock-free transport, runtime) and how each layer
//! is verified are described in the repository's `docs/ARCHITECTURE.md` and
//! `docs/VERIFICATION.md`.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod client;
mod digest;
mod dispatch;
mod driver;
mod error;
mod exactly_once;
mod plant;
pub mod protocol;
mod runtime;
pub mod sim;
mod state;
mod sync;
// Transport items are `pub` so that the loom suite and the benchmarks can reach them
// through `internals`; they are not part of the public API.
#[cfg_attr(not(corum_loom), allow(unreachable_pub))]
mod transport;

/// The hand-written concurrent building blocks and test hooks, for corum's own loom suite
/// (`loom-tests/`, built with `--cfg corum_loom`), benchmarks and tests (which enable the
/// `internals` feature through a dev-dependency). Not part of the public API: compiled only
/// in those builds, hidden, and free to change in any release.
#[cfg(any(corum_loom, feature = "internals"))]
#[doc(hidden)]
pub mod internals {
    pub use crate::transport::board::{Address, Board, Collector, LaneKey, Refused, Retracted};
    #[cfg(corum_loom)]
    pub use crate::transport::copy_lock::CopyLock;
    #[cfg(corum_loom)]
    pub use crate::transport::event::{EventCount, WaitKey};
    #[cfg(corum_loom)]
    pub use crate::transport::reader::Reader;
    pub use crate::transport::ring::{ring, Consumer, Producer};
    #[cfg(corum_loom)]
    pub use crate::transport::spin_lock::SpinLock;
    #[cfg(corum_loom)]
    pub use crate::transport::token::{RunToken, TokenGuard};

    /// [`Cluster::shutdown`](crate::Cluster::shutdown), returning with each copy a digest of
    /// its replica's exactly-once table, which must be equal wherever the copies are (they
    /// reflect the same slots). For corum's stress tests.
    ///
    /// # Errors
    /// As for `Cluster::shutdown`.
    #[cfg(not(corum_loom))]
    pub fn shutdown_with_exactly_once_digests<D: crate::Dispatch>(
        cluster: crate::Cluster<D>,
    ) -> Result<Vec<(D, u64)>, crate::Error> {
        cluster.shutdown_with_exactly_once_digests()
    }
}

pub use dispatch::Dispatch;
pub use error::{ConfigError, Error, OsError};
pub use protocol::RoleKind;
pub use runtime::{
    available_cores, Builder, Cluster, Faults, Handle, IdleStrategy, LeaderPolicy, ReadFuture, ReplicaStats,
    ReplicaStatus, Ticket, WriteFuture,
};

// Compile-time checks that the cluster and its handles are `Send + Sync`, and the futures
// `Send + Unpin`, for every object, as their docs promise: a change that broke it would fail to build here, not in a user's
// crate.
const _: () = {
    fn send_sync<T: Send + Sync>() {}
    #[allow(dead_code)]
    fn handles_are_send_and_sync<D: Dispatch>() {
        send_sync::<Cluster<D>>();
        send_sync::<Handle<D>>();
        send_sync::<Ticket<D>>();
        send_sync::<Error>();
    }
    fn send_unpin<T: Send + Unpin>() {}
    #[allow(dead_code)]
    fn futures_are_send_and_unpin<D: Dispatch>()
    where
        D::ReadOp: Send,
    {
        send_unpin::<ReadFuture<D>>();
        send_unpin::<WriteFuture<D>>();
        send_unpin::<Ticket<D>>();
    }
};

/// Compiles and runs the README's code sample as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
