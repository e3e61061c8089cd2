//! What a replica did: counters that only grow.

/// Counters of what a replica did; they only ever grow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Counters {
    /// Elections this replica started.
    pub elections_started: u64,
    /// Times this replica became leader.
    pub leader_changes: u64,
    /// Batches this replica proposed as leader (re-proposals after phase 1 included).
    pub batches_proposed: u64,
    /// Client commands dropped because no leader was known and the buffer was full, or a
    /// forward arrived at a replica that does not lead; clients retry them.
    pub commands_dropped: u64,
    /// Slots a new leader re-proposed after its promises reported different values for
    /// them: phase 1 had to choose between values (the highest ballot's wins).
    pub recoveries_contested: u64,
    /// Times this replica, as a candidate, met a higher ballot before it won.
    pub candidacies_preempted: u64,
    /// Times this replica, as leader, learned of a higher ballot and stepped down.
    pub leaders_deposed: u64,
    /// Elections this replica started because the leader it followed was reported stopped
    /// ([`Replica::peer_down`](super::Replica::peer_down)): at once as the first in line, or
    /// after its grace ([`FAILOVER_GRACE_TICKS`](super::FAILOVER_GRACE_TICKS)) behind others.
    pub failovers_started: u64,
    /// Times this replica, as leader, handed leadership over
    /// ([`Replica::transfer_leadership`](super::Replica::transfer_leadership)).
    pub handovers: u64,
    /// Leadership transfers this replica gave up (not done within an election timeout, or
    /// the target stopped).
    pub transfers_abandoned: u64,
    /// Times this replica's log moved its entries to its sparse form (a map), because they
    /// spread over far more slots than there are of them ([`Config::log_sparse_span`]).
    ///
    /// [`Config::log_sparse_span`]: super::Config::log_sparse_span
    pub logs_made_sparse: u64,
    /// Times this replica's log moved its entries back from the sparse form to its ring.
    pub logs_made_dense: u64,
}
