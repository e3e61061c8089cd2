//! A replica's replicated state: the user's object, the exactly-once table, and the slot
//! they reflect; how a committed batch is applied to it and how it is copied to a lagging or
//! restarted replica ([`ReplicaState::snapshot`]). The threaded runtime and the simulator
//! use these same functions, so the simulator's sweep checks what the runtime does.
//! Invariant: `object` and `exactly_once` hold the effect of every slot below
//! `slot_applied` and of no other.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::exactly_once::{ClientId, ExactlyOnce};
use crate::plant::planted;
use crate::protocol::Slot;
use crate::{Dispatch, Error};

/// A client write as the protocol orders it: the session numbers exactly-once needs, and
/// the operation. The runtime's requests and the simulator's both implement it.
pub(crate) trait Write<D: Dispatch> {
    /// The client, the write's number in its session, and the client's floor when it
    /// submitted the write (see [`ExactlyOnce::admit`]).
    fn numbers(&self) -> (ClientId, u64, u64);
    /// The operation to apply.
    fn op(&self) -> &D::WriteOp;
}

/// A write that took effect: where it sits in the round's committed batches, and what the
/// object answered (or that the object's code panicked).
#[derive(Debug)]
pub(crate) struct Outcome<R> {
    /// Index of its batch in the round's committed batches.
    pub(crate) batch: usize,
    /// Index of the write in its batch.
    pub(crate) index: usize,
    pub(crate) result: Result<R, Error>,
}

/// The replicated part of one replica. Cloned through [`ReplicaState::snapshot`], it is the
/// snapshot a replica installs instead of the log entries its peers have freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaState<D> {
    /// The user's object.
    pub(crate) object: D,
    /// Which client writes have taken effect on `object`.
    pub(crate) exactly_once: ExactlyOnce,
    /// Every slot below this has been applied to `object` and `exactly_once`.
    pub(crate) slot_applied: Slot,
}

impl<D: Dispatch> ReplicaState<D> {
    /// The state before any slot is applied.
    pub(crate) fn new(object: D) -> Self {
        Self { object, exactly_once: ExactlyOnce::default(), slot_applied: Slot::ZERO }
    }

    /// The copy another replica installs to catch up: object and exactly-once table
    /// together, as of `slot_applied`. The table must travel with the object: a replica that
    /// installed the object alone would apply again a retried write that already took effect.
    pub(crate) fn snapshot(&self) -> Self {
        let mut copy = self.clone();
        if planted!("snapshot-drops-exactly-once") {
            // Planted bug: the snapshot carries the object but not the exactly-once table.
            copy.exactly_once = ExactlyOnce::default();
        }
        copy
    }

    /// Applies committed slot `slot` holding `commands` (the round's batch number `batch`):
    /// each write the exactly-once table admits runs through the object, and its outcome is
    /// pushed onto `outcomes`; duplicates are skipped, on every replica alike.
    pub(crate) fn apply<C: Write<D>>(
        &mut self,
        slot: Slot,
        batch: usize,
        commands: &[C],
        outcomes: &mut Vec<Outcome<D::Response>>,
    ) {
        debug_assert_eq!(slot, self.slot_applied, "slots are applied in order, once");
        for (index, command) in commands.iter().enumerate() {
            let (client, sequence, floor) = command.numbers();
            if !self.exactly_once.admit(client, sequence, floor) {
                // A duplicate: its first application completed the caller already.
                continue;
            }
            // The object's code is the user's: a panic is caught here, on every replica
            // alike, and reported to the caller instead of ending the replica.
            let object = &mut self.object;
            let result = catch_unwind(AssertUnwindSafe(|| object.dispatch_mut(command.op())))
                .map_err(|_| Error::OperationPanicked);
            outcomes.push(Outcome { batch, index, result });
        }
        self.slot_applied = slot.next();
    }
}
