//! Phase 1: a candidate's ballot, the promises it collects, and the recovery a new leader
//! runs over every slot a promise reported ("Paxos Made Simple" §2.2 and §3).

use std::collections::{BTreeMap, BTreeSet};

use super::leader::LeaderState;
use super::{Entry, Replica, Role};
use crate::plant::planted;
use crate::protocol::message::{Message, PromiseEntry};
use crate::protocol::types::{Ballot, Batch, ReplicaId, Slot};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct CandidateState<C> {
    pub(super) ballot: Ballot,
    pub(super) promises: u64,
    pub(super) accepted: BTreeMap<Slot, PromiseEntry<C>>,
    /// The highest commit index a promise reported, and who reported it. Slots below it are
    /// chosen: the new leader adopts their values or learns them, and never re-proposes.
    pub(super) slot_floor: Slot,
    pub(super) floor_holder: ReplicaId,
    /// Slots for which promises reported different values (a coverage count).
    pub(super) slots_contested: BTreeSet<Slot>,
}

impl<C: Clone> Replica<C> {
    pub(super) fn on_promise(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        slot_committed: Slot,
        accepted: Vec<PromiseEntry<C>>,
    ) {
        if ballot > self.ballot_promised {
            // A promise for a ballot we never sent: noise from a past life. Ignore it.
            return;
        }
        let Role::Candidate(candidate) = &mut self.role else {
            return;
        };
        if candidate.ballot != ballot || candidate.promises & from.bit() != 0 {
            return;
        }
        candidate.promises |= from.bit();
        if slot_committed > candidate.slot_floor {
            candidate.slot_floor = slot_committed;
            candidate.floor_holder = from;
        }
        for entry in accepted {
            let slot = entry.slot;
            if merge_promise_entry(&mut candidate.accepted, entry) {
                candidate.slots_contested.insert(slot);
            }
        }
        if candidate.promises.count_ones() as usize >= self.config.quorum() {
            self.become_leader();
        }
    }

    pub(super) fn become_candidate(&mut self) {
        let ballot = self.ballot_promised.next_for(self.id);
        self.ballot_promised = ballot;
        self.ticks_since_heard = 0;
        self.counters.elections_started += 1;
        let slot_first = self.slot_committed;
        let mut accepted = BTreeMap::new();
        for (slot, entry) in self.log.from(slot_first) {
            merge_promise_entry(
                &mut accepted,
                PromiseEntry { slot, ballot: entry.ballot, batch: entry.batch.clone(), committed: entry.committed },
            );
        }
        if let Role::Leader(state) = std::mem::replace(&mut self.role, Role::Follower { leader: None }) {
            self.buffered.extend(state.queue);
        }
        self.role = Role::Candidate(CandidateState {
            ballot,
            promises: self.id.bit(),
            accepted,
            slot_floor: self.slot_committed,
            floor_holder: self.id,
            slots_contested: Default::default(),
        });
        self.broadcast(|| Message::Prepare { ballot, slot_first });
        if self.config.quorum() == 1 {
            self.become_leader();
        }
    }

    /// Phase 1 is done: adopt every committed value reported, re-propose the highest-ballot
    /// accepted value of every other slot, and fill holes with no-ops ("Paxos Made Simple" §3).
    pub(super) fn become_leader(&mut self) {
        let Role::Candidate(candidate) = std::mem::replace(&mut self.role, Role::Follower { leader: None }) else {
            unreachable!("become_leader is only called on a candidate");
        };
        let ballot = candidate.ballot;
        let slot_floor = candidate.slot_floor;
        let candidate_floor_holder = candidate.floor_holder;
        self.counters.leader_changes += 1;
        let slot_last = candidate.accepted.keys().next_back().copied();
        let slots_contested = candidate.slots_contested;
        let mut reproposals = Vec::new();
        let mut accepted = candidate.accepted;
        if let Some(slot_last) = slot_last {
            let mut slot = self.slot_committed;
            while slot <= slot_last {
                let already = self.log.get(slot).is_some_and(|entry| entry.committed);
                match accepted.remove(&slot) {
                    _ if already => {}
                    // Below the floor every slot is chosen, but the value a promise reports
                    // may be a stale one its acceptor never learned was overridden, and the
                    // chosen one may have been freed by the acceptors that knew it. Adopt
                    // only values reported committed; learn the rest.
                    Some(entry) if entry.committed => {
                        self.log.insert(slot, Entry { ballot: entry.ballot, batch: entry.batch, committed: true });
                    }
                    _ if slot < slot_floor => {}
                    // The planted bug `ignore-accepted-values` forgets what phase 1 reported.
                    Some(entry) if !planted!("ignore-accepted-values") => {
                        if slots_contested.contains(&slot) && !entry.batch.is_noop() {
                            self.counters.recoveries_contested += 1;
                        }
                        reproposals.push((slot, entry.batch))
                    }
                    // The planted bug `skip-noop-fill` leaves holes unproposed.
                    _ if planted!("skip-noop-fill") => {}
                    _ => reproposals.push((slot, Batch::noop())),
                }
                slot = slot.next();
            }
        }
        let slot_next = slot_last.map_or(self.slot_committed, Slot::next).max(self.slot_committed).max(slot_floor);
        let mut state = LeaderState {
            ballot,
            slot_next,
            proposals: BTreeMap::new(),
            queue: Vec::from(std::mem::take(&mut self.buffered)),
            ticks_since_heartbeat: 0,
            slot_committed_sent: self.slot_committed,
            peer_delivered: vec![Slot::ZERO; self.config.replicas],
            transfer: None,
        };
        self.advance_committed();
        state.slot_committed_sent = self.slot_committed;
        self.role = Role::Leader(state);
        for (slot, batch) in reproposals {
            self.propose_in(slot, batch);
        }
        // Tell everyone at once who leads, even when there was nothing to re-propose.
        self.send_commit();
        if self.slot_committed < slot_floor {
            self.slot_learn_target = self.slot_learn_target.max(slot_floor);
            self.request_learn(candidate_floor_holder);
        }
    }
}

/// Keeps, per slot, the value a new leader must re-propose: a committed one if any
/// acceptor reported it so, else the one accepted in the highest ballot ("Paxos Made
/// Simple" §2.2, P2c). Returns whether the slot now has two different reported values
/// (different proposals: values are told apart by allocation, as a proposal's batch is
/// shared by every copy of it).
fn merge_promise_entry<C>(merged: &mut BTreeMap<Slot, PromiseEntry<C>>, entry: PromiseEntry<C>) -> bool {
    let contested = merged.get(&entry.slot).is_some_and(|existing| !existing.batch.same_as(&entry.batch));
    match merged.get(&entry.slot) {
        Some(existing) if existing.committed => {}
        // The planted bug `recover-first-value` keeps the first value reported for a slot
        // (the candidate's own) instead of the highest ballot's.
        Some(existing) if !entry.committed && (existing.ballot >= entry.ballot || planted!("recover-first-value")) => {}
        _ => {
            merged.insert(entry.slot, entry);
        }
    }
    contested
}
