//! Leadership without waiting out the election timeout: failover when the caller knows a
//! peer has stopped, and a leader handing leadership to a replica of the caller's choice.
//!
//! Both only make a replica campaign sooner, or a leader stop proposing for a while. A
//! campaign is phase 1 in a fresh ballot, which Paxos makes safe at any moment, so neither a
//! wrong hint nor a handover that goes astray can break agreement: the worst they cost is an
//! election.

use super::leader::Transfer;
use super::{Replica, Role};
use crate::plant::planted;
use crate::protocol::message::Message;
use crate::protocol::types::{Ballot, ReplicaId};

/// Ticks a follower whose leader is reported stopped waits, for each replica ahead of it in
/// line that is not reported stopped, before it campaigns itself (see
/// [`Replica::peer_down`]). The first in line campaigns at once; the next ones cover for
/// a first in line that is stalled, or that never heard of the leader that stopped (it
/// restarted since), long before an election timeout would.
pub const FAILOVER_GRACE_TICKS: u32 = 3;

impl<C: Clone> Replica<C> {
    /// The caller knows replica `peer` has stopped (its thread died). If this replica
    /// followed `peer` and is the first in line (every replica with a lower index is
    /// reported stopped too), it starts phase 1 at once instead of waiting out its election
    /// timeout. The others that followed `peer` campaign if no new leader is heard from
    /// within [`FAILOVER_GRACE_TICKS`] ticks for each replica ahead of them in line: the
    /// first in line may be stalled, or may never have heard of `peer`'s leadership (it
    /// restarted since), and then does not campaign before its election timeout. A leader handing over to `peer` gives
    /// the transfer up.
    ///
    /// A hint: a wrong one costs an election, never safety. Calls for this replica itself
    /// or an index outside the cluster are ignored.
    ///
    /// ```
    /// use corum::protocol::{Config, Replica, ReplicaId, RoleKind};
    ///
    /// let (r0, r1) = (ReplicaId::new(0), ReplicaId::new(1));
    /// let mut first: Replica<u32> = Replica::new(r0, Config::new(3));
    /// let mut second: Replica<u32> = Replica::new(r1, Config::new(3));
    /// first.tick(); // replica 0 campaigns on its first tick
    /// let mut ready = first.ready();
    /// for (_, prepare) in ready.messages.drain(..).filter(|(to, _)| *to == r1) {
    ///     second.step(r0, prepare); // replica 1 promises, and follows replica 0
    /// }
    /// first.advance(ready);
    /// assert_eq!(second.leader(), Some(r0));
    /// // Replica 0's thread dies: replica 1, next in line, campaigns at once.
    /// second.peer_down(r0);
    /// assert_eq!(second.role(), RoleKind::Candidate);
    /// ```
    pub fn peer_down(&mut self, peer: ReplicaId) {
        if peer == self.id || peer.index() >= self.config.replicas {
            return;
        }
        if self.leader_stopped != Some(peer)
            && matches!(self.role, Role::Follower { leader: Some(leader) } if leader == peer)
        {
            // The grace before campaigning counts from the news of the death.
            self.ticks_since_heard = 0;
            self.leader_stopped = Some(peer);
        }
        self.peers_down |= peer.bit();
        if let Role::Leader(leader) = &mut self.role {
            if leader.transfer.is_some_and(|transfer| transfer.to == peer) {
                leader.transfer = None;
                self.counters.transfers_abandoned += 1;
            }
        }
        if self.should_replace_stopped_leader() {
            self.counters.failovers_started += 1;
            self.become_candidate();
        }
        self.flush_inner();
        self.check_invariants();
    }

    /// The caller knows replica `peer` runs again (it restarted): undoes
    /// [`Replica::peer_down`], except that a leader this replica followed when it was
    /// reported stopped is still replaced (a restart brings back a replica's promise and
    /// accepted values, not its leadership), unless it is heard from as a leader again.
    pub fn peer_up(&mut self, peer: ReplicaId) {
        if peer.index() < self.config.replicas {
            self.peers_down &= !peer.bit();
        }
    }

    /// Whether this replica follows a leader reported stopped and its turn to replace it
    /// has come: at once for the first in line (every replica with a lower index is
    /// reported stopped too, or is that leader), and after [`FAILOVER_GRACE_TICKS`] ticks
    /// without word from a new leader for each replica ahead of it that is not reported
    /// stopped. The stopped leader is never ahead in line, also once it restarted: it
    /// follows nobody then, and does not campaign before its election timeout.
    pub(super) fn should_replace_stopped_leader(&self) -> bool {
        let Role::Follower { leader: Some(leader) } = self.role else { return false };
        if self.leader_stopped != Some(leader) {
            return false;
        }
        let ahead = ((self.id.bit() - 1) & !self.peers_down & !leader.bit()).count_ones();
        self.ticks_since_heard >= ahead.saturating_mul(FAILOVER_GRACE_TICKS)
    }

    /// Asks this replica, if it leads, to hand leadership to replica `to`. It stops
    /// proposing new batches, waits until every batch it proposed is committed and `to` has
    /// applied everything committed, then sends `to` a [`Message::Handover`], which makes
    /// `to` start phase 1 at once, and follows `to`. Commands that arrive meanwhile are
    /// queued, then forwarded to `to`. A transfer not done within an election timeout (or
    /// whose target is reported stopped) is given up, and the leader proposes again.
    ///
    /// Returns whether the request was taken: this replica leads and `to` is in the cluster.
    /// A transfer to the leader itself is taken and does nothing.
    ///
    /// ```
    /// use corum::protocol::{Config, Message, Replica, ReplicaId, RoleKind};
    ///
    /// let mut leader: Replica<u32> = Replica::new(ReplicaId::new(0), Config::new(1));
    /// leader.tick(); // alone, replica 0 leads at once
    /// assert!(leader.transfer_leadership(ReplicaId::new(0)));
    /// assert!(!leader.transfer_leadership(ReplicaId::new(5)), "not in the cluster");
    /// assert_eq!(leader.role(), RoleKind::Leader);
    /// ```
    pub fn transfer_leadership(&mut self, to: ReplicaId) -> bool {
        if to.index() >= self.config.replicas {
            return false;
        }
        let me = self.id;
        let Role::Leader(leader) = &mut self.role else { return false };
        if to == me {
            return true;
        }
        leader.transfer = Some(Transfer { to, ticks: 0, answered: false });
        // A heartbeat now: the target answers with how far it applied.
        self.send_commit();
        self.flush_inner();
        self.check_invariants();
        true
    }

    /// The replica a transfer in progress hands leadership to, if this replica leads and
    /// is handing over.
    pub fn transferring_to(&self) -> Option<ReplicaId> {
        match &self.role {
            Role::Leader(leader) => leader.transfer.map(|transfer| transfer.to),
            _ => None,
        }
    }

    /// Hands leadership over once nothing proposed is uncommitted and the target has
    /// applied everything committed.
    pub(super) fn hand_over_if_ready(&mut self) {
        let Role::Leader(leader) = &self.role else { return };
        let Some(transfer) = leader.transfer else { return };
        let caught_up = transfer.answered && leader.peer_delivered[transfer.to.index()] >= self.slot_committed;
        if !caught_up || !leader.proposals.is_empty() {
            return;
        }
        let ballot = leader.ballot;
        self.send(transfer.to, Message::Handover { ballot });
        self.counters.handovers += 1;
        self.become_follower(Some(transfer.to));
        self.ticks_since_heard = 0;
    }

    /// A handover from the leader this replica follows, in the ballot it promised: start
    /// phase 1 now. One that was overtaken (a higher ballot was promised since) or replayed
    /// is ignored.
    pub(super) fn on_handover(&mut self, from: ReplicaId, ballot: Ballot) {
        if ballot != self.ballot_promised || ballot.replica() != from || self.is_leader() {
            return;
        }
        self.become_candidate();
        if planted!("handover-skips-phase-1") {
            // Planted bug: the successor leads at once, as if every acceptor had promised
            // its ballot and reported nothing: phase 1 is skipped.
            if let Role::Candidate(candidate) = &mut self.role {
                candidate.promises = (1 << self.config.replicas) - 1;
            }
            self.become_leader();
        }
    }
}
