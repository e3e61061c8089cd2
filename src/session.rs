//! Exactly-once bookkeeping kept inside the replicated state: which client operations have
//! taken effect. Every replica runs the same table over the same committed sequence, so all
//! replicas make the same apply-or-skip decision for every command.
//!
//! A client numbers its writes `0, 1, 2, ...` and attaches to each its *floor*: every one of
//! its writes numbered below the floor has completed, so the client will never retry it. The
//! table remembers, per client, the floor and the set of applied numbers at or above it. A
//! command is a duplicate when its number is below the floor or in the set. This stays
//! correct when a leader change reorders a client's pipelined writes (a retried write may
//! commit after a later one), which a single "last applied number" would not.

use std::collections::{BTreeSet, HashMap};

/// The identity of one client session (one [`crate::Handle`]).
pub(crate) type ClientId = u64;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct ClientRecord {
    floor: u64,
    applied: BTreeSet<u64>,
}

/// Per-client record of applied sequence numbers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Sessions {
    clients: HashMap<ClientId, ClientRecord>,
}

impl Sessions {
    /// Records that `client`'s write `sequence` is being applied, and returns whether it is
    /// new (apply it) or a duplicate (skip it). `floor` is the client's floor when it
    /// submitted the write.
    pub(crate) fn admit(&mut self, client: ClientId, sequence: u64, floor: u64) -> bool {
        let record = self.clients.entry(client).or_default();
        if floor > record.floor {
            record.floor = floor;
            record.applied = record.applied.split_off(&floor);
        }
        if cfg!(corum_plant = "skip-dedup") {
            // Planted bug for the simulator's sweep: the table is never consulted.
            return true;
        }
        if sequence < record.floor {
            return false;
        }
        record.applied.insert(sequence)
    }

    /// Number of sequence numbers remembered, over all clients.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.clients.values().map(|record| record.applied.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Sessions;

    #[test]
    fn first_delivery_applies_and_repeats_are_skipped() {
        let mut sessions = Sessions::default();
        assert!(sessions.admit(1, 0, 0));
        assert!(!sessions.admit(1, 0, 0));
        assert!(sessions.admit(1, 1, 0));
        assert!(sessions.admit(2, 0, 0), "clients are independent");
    }

    #[test]
    fn reordered_pipelined_writes_apply_once_each() {
        let mut sessions = Sessions::default();
        // Write 6 commits before write 5 (5 was lost in a leader change and retried).
        assert!(sessions.admit(7, 6, 5));
        assert!(sessions.admit(7, 5, 5));
        assert!(!sessions.admit(7, 6, 5));
        assert!(!sessions.admit(7, 5, 5));
    }

    #[test]
    fn floor_frees_memory_and_marks_old_writes_as_duplicates() {
        let mut sessions = Sessions::default();
        for sequence in 0..100 {
            assert!(sessions.admit(3, sequence, sequence));
        }
        assert_eq!(sessions.remembered(), 1);
        assert!(!sessions.admit(3, 10, 0), "below the floor is a duplicate");
    }
}
