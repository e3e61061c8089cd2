//! The replica's invariants, asserted after every input when
//! [`Config::check_invariants`](crate::protocol::Config::check_invariants) is set.

use super::{Entry, Replica, Role};

impl<C: Clone> Replica<C> {
    /// Asserts the replica's invariants; runs after every input when
    /// [`Config::check_invariants`] is set (debug builds, the simulator, the model checkers).
    pub(super) fn check_invariants(&self) {
        if !self.config.check_invariants {
            return;
        }
        let id = self.id;
        // An acceptor accepts only at or above its promise, and promises what it accepts.
        // (Committed values it learned carry the ballot their proposer used, which may be
        // above this acceptor's promise.)
        let above_promise = |entry: &Entry<C>| !entry.committed && entry.ballot > self.ballot_promised;
        if let Some((slot, entry)) = self.log.iter().find(|(_, entry)| above_promise(entry)) {
            panic!("{id:?}: {slot:?} accepted in {:?} above the promise {:?}", entry.ballot, self.ballot_promised);
        }
        assert!(self.slot_delivered <= self.slot_committed, "{id:?}: delivered beyond committed");
        assert!(self.slot_truncated <= self.slot_delivered, "{id:?}: truncated beyond delivered");
        if let Some((first, _)) = self.log.iter().next() {
            assert!(first >= self.slot_truncated, "{id:?}: entry {first:?} below truncation point");
        }
        if let Some(entry) = self.log.get(self.slot_committed) {
            assert!(!entry.committed, "{id:?}: {:?} committed but commit index not advanced", self.slot_committed);
        }
        match &self.role {
            Role::Leader(leader) => {
                assert_eq!(leader.ballot, self.ballot_promised, "{id:?}: leader's ballot is not its promise");
                assert!(leader.ballot.replica() == id, "{id:?}: leads in {:?} it does not own", leader.ballot);
                for (&slot, proposal) in &leader.proposals {
                    assert!(slot < leader.slot_next, "{id:?}: proposal {slot:?} at or above slot_next");
                    assert!(proposal.acks & id.bit() != 0, "{id:?}: leader did not accept its own {slot:?}");
                    let entry = self.log.get(slot).expect("a proposal's entry is in the log");
                    assert_eq!(entry.ballot, leader.ballot, "{id:?}: proposal {slot:?} in a foreign ballot");
                    assert!(!entry.committed, "{id:?}: proposal {slot:?} is already committed");
                }
            }
            Role::Candidate(candidate) => {
                assert_eq!(candidate.ballot, self.ballot_promised, "{id:?}: candidate's ballot is not its promise");
            }
            Role::Follower { .. } => {}
        }
    }
}
