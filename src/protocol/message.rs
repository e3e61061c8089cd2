//! The messages replicas exchange. Every message names the ballot it belongs to, so a
//! receiver can filter stale ones before acting on them.

use super::types::{Ballot, Batch, Slot};

/// One accepted (or committed) log entry reported in a [`Message::Promise`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromiseEntry<C> {
    /// The slot the entry belongs to.
    pub slot: Slot,
    /// The ballot in which the acceptor accepted `batch`.
    pub ballot: Ballot,
    /// The accepted value.
    pub batch: Batch<C>,
    /// Whether the acceptor knows the value is chosen; a new leader keeps it as is.
    pub committed: bool,
}

/// One committed log entry carried by a [`Message::Learn`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LearnEntry<C> {
    /// The slot the entry belongs to.
    pub slot: Slot,
    /// The ballot in which the value was accepted.
    pub ballot: Ballot,
    /// The chosen value.
    pub batch: Batch<C>,
}

/// A protocol message. Terminology follows the crate docs: a candidate sends *prepare*,
/// acceptors answer *promise*; a leader sends *accept*, acceptors answer *accepted*; once a
/// majority accepted, the slot is *committed* and every replica *applies* it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Message<C> {
    /// Phase 1a: a candidate asks for a promise not to accept ballots below `ballot`, and
    /// for every value accepted at or above `slot_first`.
    Prepare {
        /// The candidate's ballot.
        ballot: Ballot,
        /// The first slot the candidate does not know to be committed.
        slot_first: Slot,
    },
    /// Phase 1b: the acceptor's promise, with what it accepted at or above the slot asked for.
    Promise {
        /// The ballot promised.
        ballot: Ballot,
        /// Every slot below this is committed at the acceptor.
        slot_committed: Slot,
        /// The acceptor's entries at or above the prepare's `slot_first`.
        accepted: Vec<PromiseEntry<C>>,
    },
    /// Phase 2a: the leader asks acceptors to accept `batch` in `slot`.
    Accept {
        /// The leader's ballot.
        ballot: Ballot,
        /// The slot proposed.
        slot: Slot,
        /// The value proposed.
        batch: Batch<C>,
        /// Piggybacked commit index: every slot below this is committed.
        slot_committed: Slot,
    },
    /// Phase 2b: the acceptor accepted `slot` in `ballot`.
    Accepted {
        /// The ballot accepted in.
        ballot: Ballot,
        /// The slot accepted.
        slot: Slot,
        /// Every slot below this has been handed to the acceptor's state machine.
        slot_delivered: Slot,
    },
    /// The leader's heartbeat and commit notice, sent when the commit index moved without an
    /// accept to carry it, and every heartbeat interval.
    Commit {
        /// The leader's ballot.
        ballot: Ballot,
        /// Every slot below this is committed.
        slot_committed: Slot,
        /// Every replica has applied every slot below this: entries below it may be freed.
        slot_truncate: Slot,
    },
    /// A follower's answer to [`Message::Commit`]: how far it has applied.
    Progress {
        /// The leader's ballot the follower answers.
        ballot: Ballot,
        /// Every slot below this has been handed to the follower's state machine.
        slot_delivered: Slot,
    },
    /// The receiver's ballot is stale: the sender has promised `ballot_promised`.
    Nack {
        /// The sender's promise.
        ballot_promised: Ballot,
    },
    /// A replica that misses committed values asks for them from `slot_first` on.
    LearnRequest {
        /// The first slot missing.
        slot_first: Slot,
    },
    /// Committed values, in slot order, answering a [`Message::LearnRequest`].
    Learn {
        /// Every slot below this is committed at the sender.
        slot_committed: Slot,
        /// Committed entries, in slot order.
        entries: Vec<LearnEntry<C>>,
    },
    /// The answer to a [`Message::LearnRequest`] for entries already freed: the requester
    /// must catch up from a snapshot.
    Truncated {
        /// Entries below this slot are freed at the sender.
        slot_truncated: Slot,
    },
    /// A leader hands leadership to the receiver, which has applied everything the leader
    /// committed: the receiver starts phase 1 at once. The sender has stopped leading.
    Handover {
        /// The sender's ballot, in which it led; a receiver that has promised a higher one
        /// since ignores the handover.
        ballot: Ballot,
    },
    /// Client commands a non-leader passes on to the replica it believes leads.
    Forward {
        /// The commands, in submission order.
        commands: Vec<C>,
    },
}

impl<C> Message<C> {
    /// The client commands this message carries (in accepted, promised, learned and
    /// forwarded values), for a caller that must answer them when it drops the message.
    pub fn commands(&self) -> impl Iterator<Item = &C> {
        let (batches, forwarded): (Vec<&Batch<C>>, &[C]) = match self {
            Message::Accept { batch, .. } => (vec![batch], &[]),
            Message::Promise { accepted, .. } => (accepted.iter().map(|entry| &entry.batch).collect(), &[]),
            Message::Learn { entries, .. } => (entries.iter().map(|entry| &entry.batch).collect(), &[]),
            Message::Forward { commands } => (Vec::new(), commands),
            _ => (Vec::new(), &[]),
        };
        batches.into_iter().flat_map(|batch| batch.commands().iter()).chain(forwarded)
    }
}
