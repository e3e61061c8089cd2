//! The acceptor's rules ("Paxos Made Simple" §2.2): promise no ballot below the highest
//! promised, accept only at or above it, and follow the leader of the ballot it promised.

use super::{Entry, Replica, Role};
use crate::plant::planted;
use crate::protocol::message::{Message, PromiseEntry};
use crate::protocol::types::{Ballot, Batch, ReplicaId, Slot};

impl<C: Clone> Replica<C> {
    pub(super) fn on_prepare(&mut self, from: ReplicaId, ballot: Ballot, slot_first: Slot) {
        // The planted bug `ballot-round-only` compares ballots by round alone, so that two
        // candidates of one round both collect promises from the same acceptor.
        let (ours, theirs) = if planted!("ballot-round-only") {
            (self.ballot_promised.round(), ballot.round())
        } else {
            (self.ballot_promised.as_u64(), ballot.as_u64())
        };
        if theirs < ours {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        if theirs > ours {
            self.ballot_promised = ballot;
            // The planted bug `leader-keeps-leading` lets a leader promise a higher ballot
            // and go on proposing in its own.
            if !(self.is_leader() && planted!("leader-keeps-leading")) {
                self.become_follower(Some(from));
            }
        }
        // A repeated prepare of the ballot already promised gets the same answer again.
        self.ticks_since_heard = 0;
        debug_assert!(
            slot_first >= self.slot_truncated || self.slot_truncated <= self.slot_committed,
            "prepare below the truncation point"
        );
        let accepted = self
            .log
            .from(slot_first)
            .map(|(slot, entry)| PromiseEntry {
                slot,
                ballot: entry.ballot,
                batch: entry.batch.clone(),
                committed: entry.committed,
            })
            .collect();
        self.send(from, Message::Promise { ballot, slot_committed: self.slot_committed, accepted });
    }

    pub(super) fn on_accept(
        &mut self,
        from: ReplicaId,
        ballot: Ballot,
        slot: Slot,
        batch: Batch<C>,
        slot_committed: Slot,
    ) {
        // The planted bug `accept-below-promise` drops this guard: Paxos's one acceptor rule.
        if ballot < self.ballot_promised && !planted!("accept-below-promise") {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        self.follow(from, ballot);
        if slot.get() >= self.slot_delivered.get().saturating_add(self.config.log_window) {
            // So far ahead of what this replica delivered that the leader frees the slots in
            // between before this replica could deliver them: it will catch up from a
            // snapshot. Keeping the entry would only grow its log without bound (a slow
            // replica accepts faster than it delivers); ignoring it is a lost message, and
            // the commit index it carries is still learned.
            self.learn_commit(from, ballot, slot_committed);
            return;
        }
        let decided = slot < self.slot_truncated || self.log.get(slot).is_some_and(|entry| entry.committed);
        if !decided {
            // Below a commit index this ballot's leader announced, the leader's value is the
            // chosen one (see `learn_commit`).
            let committed = self.commit_heard.0 == ballot && slot < self.commit_heard.1;
            self.log.insert(slot, Entry { ballot, batch, committed });
            if committed {
                self.advance_committed();
            }
        }
        self.send(from, Message::Accepted { ballot, slot, slot_delivered: self.slot_delivered });
        self.learn_commit(from, ballot, slot_committed);
    }

    pub(super) fn on_commit(&mut self, from: ReplicaId, ballot: Ballot, slot_committed: Slot, slot_truncate: Slot) {
        if ballot < self.ballot_promised {
            self.send(from, Message::Nack { ballot_promised: self.ballot_promised });
            return;
        }
        self.follow(from, ballot);
        self.learn_commit(from, ballot, slot_committed);
        self.truncate(slot_truncate);
        if slot_truncate > self.slot_delivered {
            // The leader freed slots this replica has not delivered: nobody can send them
            // any more, so it catches up from a snapshot (as a `Truncated` answer would
            // tell it, one learn request later).
            self.snapshot_wanted = self.snapshot_wanted.max(slot_truncate);
        }
        // Answered at the end of the round, counting what it delivers (`Replica::ready`).
        self.progress_owed = Some((from, ballot));
    }

    pub(super) fn on_nack(&mut self, ballot_promised: Ballot) {
        if ballot_promised <= self.ballot_promised {
            return;
        }
        self.ballot_promised = ballot_promised;
        self.become_follower(Some(ballot_promised.replica()));
        self.ticks_since_heard = 0;
    }

    pub(super) fn become_follower(&mut self, leader: Option<ReplicaId>) {
        let old = std::mem::replace(&mut self.role, Role::Follower { leader });
        // A leader reported stopped (a ballot learned from a `Nack` may be a dead
        // replica's) is replaced after the grace, as if it had stopped while followed.
        self.leader_stopped = leader.filter(|leader| self.peers_down & leader.bit() != 0);
        match &old {
            Role::Leader(state) if state.ballot < self.ballot_promised => self.counters.leaders_deposed += 1,
            Role::Candidate(state) if state.ballot < self.ballot_promised => self.counters.candidacies_preempted += 1,
            _ => {}
        }
        if let Role::Leader(state) = old {
            // Commands not yet proposed go to the next leader; proposals in flight are
            // either recovered by its phase 1 or retried by their clients.
            for command in state.queue {
                self.buffer(command);
            }
        }
    }

    /// Follows the leader of `ballot` (>= our promise), heard from just now.
    pub(super) fn follow(&mut self, from: ReplicaId, ballot: Ballot) {
        debug_assert!(ballot >= self.ballot_promised);
        let is_current = matches!(self.role, Role::Follower { leader: Some(leader) } if leader == from);
        if ballot > self.ballot_promised || !is_current {
            self.ballot_promised = ballot;
            self.become_follower(Some(from));
        }
        // Heard as a leader: a death notice about it was wrong or outdated.
        self.leader_stopped = None;
        self.ticks_since_heard = 0;
    }
}
