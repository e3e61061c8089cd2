//! The protocol core's output contract: one [`Ready`] per round, acted on in one order.

use super::message::Message;
use super::types::{Batch, ReplicaId, Slot};

/// Everything one round of input produced, handed out by [`Replica::ready`](super::Replica::ready)
/// and given back with [`Replica::advance`](super::Replica::advance).
///
/// A driver acts on it in this order, and every driver of the core (the threaded runtime,
/// the simulator) does so through the same code:
/// 1. **publish** [`Ready::slot_committed`] wherever readers look for the commit index
///    (the runtime's shared watermark): before anything below it is applied or any message
///    that lets a peer apply it leaves, so that a read that begins after a write completed
///    waits for that write;
/// 2. **send** every message in [`Ready::messages`] to the replica it names, in any order
///    (the protocol tolerates loss, delay, duplication and reordering);
/// 3. **apply** every batch in [`Ready::committed`] to the state machine, in order; they come
///    in slot order, each slot exactly once over the replica's life;
/// 4. if [`Ready::snapshot_wanted`] names a slot, install a peer's copy of the state machine
///    that reaches at least that far, and tell the core with
///    [`Replica::install_snapshot`](super::Replica::install_snapshot);
/// 5. give the `Ready` back with [`Replica::advance`](super::Replica::advance), which keeps its
///    buffers for the next round.
#[derive(Debug)]
#[non_exhaustive]
pub struct Ready<C> {
    /// Every slot below this is committed at this replica.
    pub slot_committed: Slot,
    /// Messages to send, each with its destination.
    pub messages: Vec<(ReplicaId, Message<C>)>,
    /// Committed batches not handed out before, in slot order.
    pub committed: Vec<(Slot, Batch<C>)>,
    /// The slot a snapshot must reach when the entries this replica needs have been freed
    /// by its peers.
    pub snapshot_wanted: Option<Slot>,
}
