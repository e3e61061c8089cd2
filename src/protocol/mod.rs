//! The Multi-Paxos protocol core: a pure state machine with no threads, atomics or clocks.
//!
//! [`Replica`] is stepped from outside with messages ([`Replica::step`]), ticks
//! ([`Replica::tick`]) and client commands ([`Replica::propose`]); it hands back messages to
//! send and committed batches to apply. The threaded runtime and the deterministic tests
//! drive the same code, which is what makes the protocol testable message by message.
//!
//! ```
//! use corum::protocol::{Config, Replica, ReplicaId};
//!
//! // A single-replica cluster commits on its own.
//! let mut replica: Replica<&str> = Replica::new(ReplicaId::new(0), Config::new(1));
//! replica.tick(); // replica 0 campaigns on its first tick and, alone, wins at once
//! assert!(replica.is_leader());
//! replica.propose("hello");
//! replica.flush();
//! let (slot, batch) = replica.pop_committed().expect("committed by a quorum of one");
//! assert_eq!(slot.get(), 0);
//! assert_eq!(batch.commands(), &["hello"]);
//! ```

mod message;
mod replica;
mod types;

#[cfg(test)]
mod tests;

pub use message::{LearnEntry, Message, PromiseEntry};
pub use replica::{Config, Counters, DurableState, Replica, RoleKind};
pub use types::{Ballot, Batch, ReplicaId, Slot, MAX_REPLICAS};
