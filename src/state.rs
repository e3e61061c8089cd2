//! A replica's replicated state: the user's object, the exactly-once table, and the slot
//! they reflect. The threaded runtime and the simulator keep the same type and copy it to a
//! lagging or restarted replica the same way ([`ReplicaState::snapshot`]), so the simulator's
//! sweep checks the copy the runtime installs. Invariant: `object` and `sessions` hold the
//! effect of every slot below `slot_applied` and of no other.

use crate::protocol::Slot;
use crate::session::Sessions;

/// The replicated part of one replica. Cloned through [`ReplicaState::snapshot`], it is the
/// snapshot a replica installs instead of the log entries its peers have freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaState<D> {
    /// The user's object.
    pub(crate) object: D,
    /// Which client writes have taken effect on `object`.
    pub(crate) sessions: Sessions,
    /// Every slot below this has been applied to `object` and `sessions`.
    pub(crate) slot_applied: Slot,
}

impl<D: Clone> ReplicaState<D> {
    /// The state before any slot is applied.
    pub(crate) fn new(object: D) -> Self {
        Self { object, sessions: Sessions::default(), slot_applied: Slot::ZERO }
    }

    /// The copy another replica installs to catch up: object and exactly-once table
    /// together, as of `slot_applied`. The table must travel with the object: a replica that
    /// installed the object alone would apply again a retried write that already took effect.
    pub(crate) fn snapshot(&self) -> Self {
        let mut copy = self.clone();
        if cfg!(corum_plant = "snapshot-drops-sessions") {
            // Planted bug: the snapshot carries the object but not the exactly-once table.
            copy.sessions = Sessions::default();
        }
        copy
    }
}
