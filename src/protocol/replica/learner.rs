//! The learner's rules: learn which slots are committed (from the leader's commit index,
//! or by asking a peer for the values), hand out committed slots in order, and free the
//! entries every replica has applied.

use super::{Entry, Replica, Role};
use crate::protocol::message::{LearnEntry, Message};
use crate::protocol::types::{Ballot, ReplicaId, Slot};

impl<C: Clone> Replica<C> {
    pub(super) fn on_learn_request(&mut self, from: ReplicaId, slot_first: Slot) {
        if slot_first >= self.slot_committed {
            // We know no more than the requester.
            return;
        }
        if slot_first < self.slot_truncated {
            // What it asks for is freed here: it must catch up from a snapshot.
            self.send(from, Message::Truncated { slot_truncated: self.slot_truncated });
            return;
        }
        let entries: Vec<LearnEntry<C>> = self
            .log
            .from(slot_first)
            .take_while(|&(slot, _)| slot < self.slot_committed)
            .take(self.config.learn_max)
            .map(|(slot, entry)| LearnEntry { slot, ballot: entry.ballot, batch: entry.batch.clone() })
            .collect();
        if entries.is_empty() {
            return;
        }
        self.send(from, Message::Learn { slot_committed: self.slot_committed, entries });
    }

    pub(super) fn on_learn(&mut self, from: ReplicaId, slot_committed: Slot, entries: Vec<LearnEntry<C>>) {
        for entry in entries {
            if entry.slot < self.slot_committed || entry.slot < self.slot_truncated {
                continue;
            }
            if let Role::Leader(leader) = &mut self.role {
                // A leader learning a slot it still proposes: the slot is decided, and by
                // Paxos with the value it proposed; stop waiting for acceptances.
                leader.proposals.remove(&entry.slot);
            }
            match self.log.get_mut(entry.slot) {
                Some(existing) if existing.committed => {}
                Some(existing) => {
                    existing.ballot = entry.ballot;
                    existing.batch = entry.batch;
                    existing.committed = true;
                }
                None => {
                    self.log.insert(entry.slot, Entry { ballot: entry.ballot, batch: entry.batch, committed: true });
                }
            }
        }
        self.advance_committed();
        if self.slot_committed < slot_committed {
            // More to learn: ask again at once rather than after the cooldown.
            self.slot_learn_target = self.slot_learn_target.max(slot_committed);
            self.learn_cooldown = 0;
            self.request_learn(from);
        }
    }

    pub(super) fn on_truncated(&mut self, slot_truncated: Slot) {
        if slot_truncated <= self.slot_delivered {
            return;
        }
        self.snapshot_wanted = self.snapshot_wanted.max(slot_truncated);
    }

    /// The leader of `ballot` says every slot below `slot_committed` is committed. An entry
    /// we accepted in that same ballot holds the leader's value, so it is the chosen one.
    pub(super) fn learn_commit(&mut self, leader: ReplicaId, ballot: Ballot, slot_committed: Slot) {
        if slot_committed <= self.slot_committed {
            return;
        }
        // Entries of this ballot below what its leader said before are marked already.
        let (heard_ballot, heard) = self.commit_heard;
        let first = if heard_ballot == ballot { heard.max(self.slot_committed) } else { self.slot_committed };
        if slot_committed > first {
            for entry in self.log.range_mut(first, slot_committed) {
                if entry.ballot == ballot {
                    entry.committed = true;
                }
            }
        }
        if heard_ballot != ballot || slot_committed > heard {
            self.commit_heard = (ballot, slot_committed);
        }
        self.advance_committed();
        if self.slot_committed < slot_committed {
            self.slot_learn_target = self.slot_learn_target.max(slot_committed);
            self.request_learn(leader);
        }
    }

    /// Asks `from` for committed values from our commit index on, at most once per
    /// cooldown, and remembers to ask again (from `tick`) until we have caught up with
    /// what `from` told us is committed.
    pub(super) fn request_learn(&mut self, from: ReplicaId) {
        self.learn_from = Some(from);
        if self.learn_cooldown > 0 {
            return;
        }
        self.learn_cooldown = self.config.heartbeat_ticks;
        self.send(from, Message::LearnRequest { slot_first: self.slot_committed });
    }

    pub(super) fn advance_committed(&mut self) {
        while self.log.get(self.slot_committed).is_some_and(|entry| entry.committed) {
            self.slot_committed = self.slot_committed.next();
        }
    }

    /// Frees entries below `slot` that this replica has also delivered.
    pub(super) fn truncate(&mut self, slot: Slot) {
        let slot = slot.min(self.slot_delivered);
        if slot <= self.slot_truncated {
            return;
        }
        self.log.remove_below(slot);
        self.slot_truncated = slot;
    }
}
