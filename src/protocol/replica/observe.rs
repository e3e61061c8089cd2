//! What a replica shows of itself, for drivers, stats, simulators and tests: its role and
//! leader, its ballot, its slots, its log and queues, its counters; and, for a caller
//! shutting it down, the commands it still holds.

use super::{Ballot, Batch, Config, Counters, Replica, ReplicaId, Role, RoleKind, Slot};

impl<C: Clone> Replica<C> {
    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The configuration the replica runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The role the replica plays now.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower { .. } => RoleKind::Follower,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }

    /// Whether the replica currently believes it leads.
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader(_))
    }

    /// The replica this one believes leads, if any.
    pub fn leader(&self) -> Option<ReplicaId> {
        match &self.role {
            Role::Follower { leader } => *leader,
            Role::Candidate(_) => None,
            Role::Leader(_) => Some(self.id),
        }
    }

    /// The highest ballot this replica has promised.
    pub fn ballot_promised(&self) -> Ballot {
        self.ballot_promised
    }

    /// Every slot below this is known committed here.
    pub fn slot_committed(&self) -> Slot {
        self.slot_committed
    }

    /// Every slot below this has been handed out in a [`Ready`](crate::protocol::Ready).
    pub fn slot_delivered(&self) -> Slot {
        self.slot_delivered
    }

    /// Entries below this slot have been freed.
    pub fn slot_truncated(&self) -> Slot {
        self.slot_truncated
    }

    /// If the values this replica needs have been freed by its peers, the slot a snapshot
    /// must reach: the caller should copy a peer's state machine that has applied at least
    /// that far and call [`Replica::install_snapshot`].
    pub fn snapshot_wanted(&self) -> Option<Slot> {
        (self.snapshot_wanted > self.slot_delivered).then_some(self.snapshot_wanted)
    }

    /// Number of log entries held in memory.
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// Commands queued at the leader or buffered at a non-leader, not yet proposed.
    pub fn commands_waiting(&self) -> usize {
        let queued = match &self.role {
            Role::Leader(leader) => leader.queue.len(),
            _ => 0,
        };
        queued + self.buffered.len()
    }

    /// Slots this replica, as leader, has proposed and not yet seen committed.
    pub fn proposals_in_flight(&self) -> usize {
        match &self.role {
            Role::Leader(leader) => leader.proposals.len(),
            _ => 0,
        }
    }

    /// What the replica has done so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The committed value of `slot`, if it is still held.
    pub fn committed_batch(&self, slot: Slot) -> Option<&Batch<C>> {
        self.log.get(slot).filter(|entry| entry.committed).map(|entry| &entry.batch)
    }

    /// Takes every client command this replica holds that it has not handed out through
    /// a [`Ready`](crate::protocol::Ready): queued, buffered, proposed or accepted but not yet
    /// delivered. For a caller that is shutting the replica down; the replica must not be
    /// stepped afterwards.
    pub fn drain_unapplied_commands(&mut self) -> Vec<C> {
        let mut commands: Vec<C> = self.buffered.drain(..).collect();
        if let Role::Leader(leader) = &mut self.role {
            commands.append(&mut leader.queue);
        }
        for entry in self.log.from(self.slot_delivered).map(|(_, entry)| entry) {
            commands.extend(entry.batch.commands().iter().cloned());
        }
        commands
    }
}
