//! The Multi-Paxos protocol core: a pure state machine with no threads, atomics or clocks.
//!
//! [`Replica`] is stepped from outside with messages ([`Replica::step`]), ticks
//! ([`Replica::tick`]) and client commands ([`Replica::propose`]); after each round of input
//! it hands back one [`Ready`]: the commit index to publish, messages to send, committed
//! batches to apply, and a snapshot it needs. The threaded runtime and the simulator drive it
//! through the same driver, which is what makes the protocol testable message by message.
//!
//! ```
//! use corum::protocol::{Config, Replica, ReplicaId};
//!
//! // A single-replica cluster commits on its own.
//! let mut replica: Replica<&str> = Replica::new(ReplicaId::new(0), Config::new(1));
//! replica.tick(); // replica 0 campaigns on its first tick and, alone, wins at once
//! assert!(replica.is_leader());
//! replica.propose("hello");
//! let ready = replica.ready();
//! assert_eq!(ready.slot_committed.get(), 1);
//! let (slot, batch) = &ready.committed[0];
//! assert_eq!(slot.get(), 0);
//! assert_eq!(batch.commands(), &["hello"]);
//! replica.advance(ready);
//! ```

mod config;
mod counters;
mod message;
mod ready;
mod replica;
mod types;

#[cfg(test)]
mod tests;

pub use config::Config;
pub use counters::Counters;
pub use message::{LearnEntry, Message, PromiseEntry};
pub use ready::Ready;
pub use replica::{DurableState, Replica, RoleKind, FAILOVER_GRACE_TICKS};
pub use types::{Ballot, Batch, ReplicaId, Slot, MAX_REPLICAS};
