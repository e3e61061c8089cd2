//! The leader's rules: batch and propose client commands within the window, count
//! acceptances, commit at a majority, retransmit, and send heartbeats that carry the commit
//! index and the truncation point.

use std::collections::BTreeMap;

use super::{Entry, Replica, Role};
use crate::plant::planted;
use crate::protocol::message::Message;
use crate::protocol::types::{Ballot, Batch, ReplicaId, Slot};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct Proposal {
    pub(super) acks: u64,
    pub(super) ticks_since_sent: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct LeaderState<C> {
    pub(super) ballot: Ballot,
    pub(super) slot_next: Slot,
    pub(super) proposals: BTreeMap<Slot, Proposal>,
    /// Commands waiting for a batch, oldest first.
    pub(super) queue: Vec<C>,
    pub(super) ticks_since_heartbeat: u32,
    pub(super) slot_committed_sent: Slot,
    pub(super) peer_delivered: Vec<Slot>,
    /// A leadership transfer in progress (see `leadership.rs`): no new batch is proposed
    /// while it lasts.
    pub(super) transfer: Option<Transfer>,
}

/// A leadership transfer in progress: to whom, for how many ticks it has waited, and
/// whether the target has answered since it began (so that how far it applied is known).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Transfer {
    pub(super) to: ReplicaId,
    pub(super) ticks: u32,
    pub(super) answered: bool,
}

impl<C> LeaderState<C> {
    /// Records how far peer `from` applied, as it reported in this leader's ballot.
    fn peer_reported(&mut self, from: ReplicaId, slot_delivered: Slot) {
        let delivered = &mut self.peer_delivered[from.index()];
        *delivered = (*delivered).max(slot_delivered);
        if let Some(transfer) = &mut self.transfer {
            transfer.answered |= transfer.to == from;
        }
    }
}

impl<C: Clone> Replica<C> {
    pub(super) fn on_accepted(&mut self, from: ReplicaId, ballot: Ballot, slot: Slot, slot_delivered: Slot) {
        let quorum = self.config.quorum();
        let Role::Leader(leader) = &mut self.role else {
            return;
        };
        if ballot != leader.ballot {
            return;
        }
        leader.peer_reported(from, slot_delivered);
        let Some(proposal) = leader.proposals.get_mut(&slot) else {
            // Already committed: a duplicate or a late acceptor.
            return;
        };
        proposal.acks |= from.bit();
        if proposal.acks.count_ones() as usize >= quorum {
            leader.proposals.remove(&slot);
            self.commit_slot(slot);
        }
    }

    pub(super) fn on_progress(&mut self, from: ReplicaId, ballot: Ballot, slot_delivered: Slot) {
        match &mut self.role {
            Role::Leader(leader) if leader.ballot == ballot => leader.peer_reported(from, slot_delivered),
            _ => {}
        }
    }

    pub(super) fn on_forward(&mut self, from: ReplicaId, commands: Vec<C>) {
        match &mut self.role {
            Role::Leader(leader) => leader.queue.extend(commands),
            Role::Candidate(_) => commands.into_iter().for_each(|command| self.buffer(command)),
            // Never bounce commands back to the replica that forwarded them: it believes we
            // lead, we believe it does, and neither is right yet. Its clients will retry.
            Role::Follower { leader } if *leader == Some(from) => {
                self.counters.commands_dropped += commands.len() as u64
            }
            Role::Follower { .. } => commands.into_iter().for_each(|command| self.buffer(command)),
        }
    }

    pub(super) fn flush_inner(&mut self) {
        if self.is_leader() {
            // A leader that hands over becomes a follower of its successor here, and
            // forwards what it had queued right behind the handover.
            self.flush_leader();
        }
        match &self.role {
            Role::Follower { leader: Some(leader) } if !self.buffered.is_empty() => {
                let leader = *leader;
                let commands: Vec<C> = self.buffered.drain(..).collect();
                self.send(leader, Message::Forward { commands });
            }
            _ => {}
        }
    }

    pub(super) fn flush_leader(&mut self) {
        let batch_max = self.config.batch_max;
        let window = self.config.window;
        loop {
            let Role::Leader(leader) = &mut self.role else { return };
            if leader.queue.is_empty() || leader.proposals.len() >= window || leader.transfer.is_some() {
                break;
            }
            let take = leader.queue.len().min(batch_max);
            let batch = self.batch_buffers.batch(leader.queue.drain(..take));
            let slot = leader.slot_next;
            self.propose_in(slot, batch);
        }
        let Role::Leader(leader) = &self.role else { return };
        if self.slot_committed > leader.slot_committed_sent {
            self.send_commit();
        }
        self.hand_over_if_ready();
    }

    /// Proposes `batch` in `slot` in the leader's ballot: accept it locally, send it out.
    pub(super) fn propose_in(&mut self, slot: Slot, batch: Batch<C>) {
        let slot_committed = self.slot_committed;
        let id = self.id;
        let Role::Leader(leader) = &mut self.role else {
            unreachable!("propose_in is only called on a leader");
        };
        let ballot = leader.ballot;
        leader.proposals.insert(slot, Proposal { acks: id.bit(), ticks_since_sent: 0 });
        leader.slot_next = leader.slot_next.max(slot.next());
        leader.slot_committed_sent = slot_committed;
        self.counters.batches_proposed += 1;
        self.log.insert(slot, Entry { ballot, batch: batch.clone(), committed: false });
        self.broadcast(|| Message::Accept { ballot, slot, batch: batch.clone(), slot_committed });
        // The planted bug `commit-without-majority` commits before any acceptor answered.
        if self.config.quorum() == 1 || planted!("commit-without-majority") {
            if let Role::Leader(leader) = &mut self.role {
                leader.proposals.remove(&slot);
            }
            self.commit_slot(slot);
        }
    }

    pub(super) fn commit_slot(&mut self, slot: Slot) {
        let entry = self.log.get_mut(slot).unwrap_or_else(|| {
            panic!("{:?}: committing {slot:?} which is not in the log", self.id);
        });
        entry.committed = true;
        self.advance_committed();
    }

    pub(super) fn send_commit(&mut self) {
        let slot_committed = self.slot_committed;
        let slot_truncate = self.slot_truncate_global();
        let Role::Leader(leader) = &mut self.role else { return };
        let ballot = leader.ballot;
        leader.slot_committed_sent = slot_committed;
        leader.ticks_since_heartbeat = 0;
        self.broadcast(|| Message::Commit { ballot, slot_committed, slot_truncate });
        self.truncate(slot_truncate);
    }

    /// The slot below which log entries may be freed: everything every replica has applied,
    /// as far as this leader knows, and in any case everything more than `log_window` slots
    /// behind the commit index (a replica that needs those catches up from a snapshot).
    pub(super) fn slot_truncate_global(&self) -> Slot {
        let Role::Leader(leader) = &self.role else { return self.slot_truncated };
        let applied_everywhere = leader
            .peer_delivered
            .iter()
            .enumerate()
            .map(|(index, &slot)| if index == self.id.index() { self.slot_delivered } else { slot })
            .min()
            .unwrap_or(Slot::ZERO);
        let window_start = Slot::new(self.slot_committed.get().saturating_sub(self.config.log_window));
        applied_everywhere.max(window_start)
    }

    pub(super) fn tick_leader(&mut self) {
        let retransmit_ticks = self.config.retransmit_ticks;
        let heartbeat_ticks = self.config.heartbeat_ticks;
        let slot_committed = self.slot_committed;
        let Role::Leader(leader) = &mut self.role else { return };
        leader.ticks_since_heartbeat += 1;
        let heartbeat_due = leader.ticks_since_heartbeat >= heartbeat_ticks;
        if let Some(transfer) = &mut leader.transfer {
            transfer.ticks += 1;
            if transfer.ticks >= self.config.election_ticks {
                // The target did not catch up in time (stalled, or cut off): lead on.
                leader.transfer = None;
                self.counters.transfers_abandoned += 1;
            }
        }
        let ballot = leader.ballot;
        let mut resend = Vec::new();
        for (&slot, proposal) in leader.proposals.iter_mut() {
            proposal.ticks_since_sent += 1;
            if proposal.ticks_since_sent >= retransmit_ticks {
                proposal.ticks_since_sent = 0;
                resend.push((slot, proposal.acks));
            }
        }
        for (slot, acks) in resend {
            let batch = self.log.get(slot).expect("a proposal's entry is in the log until it commits").batch.clone();
            for peer in self.peers() {
                if acks & peer.bit() == 0 {
                    self.send(peer, Message::Accept { ballot, slot, batch: batch.clone(), slot_committed });
                }
            }
        }
        if heartbeat_due {
            self.send_commit();
        }
    }
}
