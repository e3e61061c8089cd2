//! The protocol's vocabulary as newtypes: replica ids, ballots, slots and batches, so that
//! none of them can be mixed up with another integer.

use std::fmt;
use std::sync::Arc;

/// The most replicas one cluster may have: acknowledgements are kept in a `u64` bit set.
pub const MAX_REPLICAS: usize = 64;

/// The identity of one replica: its index in the cluster, `0..replicas`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(u8);

impl ReplicaId {
    /// The replica with index `index`.
    ///
    /// # Panics
    /// If `index >= MAX_REPLICAS`; callers validate the replica count first.
    pub fn new(index: usize) -> Self {
        assert!(index < MAX_REPLICAS, "replica index {index} is not below {MAX_REPLICAS}");
        Self(index as u8)
    }

    /// The replica's index, `0..replicas`.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub(crate) fn bit(self) -> u64 {
        1u64 << self.0
    }
}

impl fmt::Debug for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A Paxos ballot: a round number and the replica that owns it, totally ordered by round
/// and then by replica. Encoded in one `u64` as `round << 8 | replica`, so comparing the
/// integers compares the ballots and no two replicas ever own the same ballot.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ballot(u64);

impl Ballot {
    /// The ballot below every ballot any replica uses; nothing is ever accepted in it.
    pub const ZERO: Ballot = Ballot(0);

    /// The ballot of `round` owned by `replica`.
    pub fn new(round: u64, replica: ReplicaId) -> Self {
        Self(round << 8 | u64::from(replica.0))
    }

    /// The ballot's round.
    pub fn round(self) -> u64 {
        self.0 >> 8
    }

    /// The replica that owns (leads in) this ballot.
    pub fn replica(self) -> ReplicaId {
        ReplicaId((self.0 & 0xff) as u8)
    }

    /// The raw encoding, for stats and logs.
    pub fn as_u64(self) -> u64 {
        self.0
    }

    /// The ballot whose encoding is `raw` (see [`Ballot::as_u64`]).
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The ballot `replica` uses to start an election after having seen `self`.
    pub(crate) fn next_for(self, replica: ReplicaId) -> Ballot {
        Ballot::new(self.round() + 1, replica)
    }
}

impl fmt::Debug for Ballot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b{}.{}", self.round(), self.0 & 0xff)
    }
}

/// A position in the replicated log. Slot `n` holds the `n`-th batch every replica applies.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Slot(u64);

impl Slot {
    /// The first slot of the log.
    pub const ZERO: Slot = Slot(0);

    /// The slot numbered `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The slot's number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The slot after this one.
    pub const fn next(self) -> Slot {
        Slot(self.0 + 1)
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// The value of one slot: the client commands the leader batched into it, in order. An
/// empty batch is a no-op, which a new leader uses to fill holes it finds in the log.
/// Cloning is a reference-count increment, so sending one batch to every peer is cheap.
/// A leader builds its batches in buffers it reuses once nobody holds them any more (see
/// `BatchBuffers`), so that a batch costs no allocation in the steady state.
pub struct Batch<C>(Arc<Vec<C>>);

impl<C> Batch<C> {
    /// A batch holding `commands`, in order.
    pub fn new(commands: Vec<C>) -> Self {
        Self(Arc::new(commands))
    }

    /// The no-op batch.
    pub fn noop() -> Self {
        Self(Arc::new(Vec::new()))
    }

    /// Whether this is the no-op batch.
    pub fn is_noop(&self) -> bool {
        self.0.is_empty()
    }

    /// The batch's commands, in the order they are applied.
    pub fn commands(&self) -> &[C] {
        &self.0
    }

    /// Whether `self` and `other` are the same proposal (the same allocation).
    pub fn same_as(&self, other: &Batch<C>) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A batch of the commands in order.
impl<C> FromIterator<C> for Batch<C> {
    fn from_iter<I: IntoIterator<Item = C>>(commands: I) -> Self {
        Self::new(commands.into_iter().collect())
    }
}

/// The buffers of the batches a leader built, oldest first, each reused for a new batch
/// once no log, message or driver holds its batch any more (`Arc::get_mut` succeeds). In a
/// healthy cluster a batch is freed everywhere a few rounds after it commits (truncation
/// follows what every replica applied), so the oldest buffer is free again by the time the
/// leader builds a batch, and batches cost no allocation. While a replica lags, the log
/// keeps its batches up to `Config::log_window` slots, and new batches are allocated
/// (only the oldest buffer is looked at, so building a batch never scans).
///
/// At most `capacity` buffers are kept, each as large as the largest batch built in it
/// (at most `Config::batch_max` commands). Cloning gives an empty set: a copy of a replica
/// (a model checker's branch) must not share buffers with the original, which would only
/// keep both from reusing them.
pub(crate) struct BatchBuffers<C> {
    buffers: std::collections::VecDeque<Arc<Vec<C>>>,
    capacity: usize,
}

impl<C> BatchBuffers<C> {
    /// Room for `capacity` buffers.
    pub(crate) fn new(capacity: usize) -> Self {
        Self { buffers: std::collections::VecDeque::new(), capacity }
    }

    /// A batch of `commands`, built in the oldest buffer if it is free, else in a new one
    /// (kept for later while there is room).
    pub(crate) fn batch(&mut self, commands: impl Iterator<Item = C>) -> Batch<C> {
        if let Some(mut oldest) = self.buffers.pop_front() {
            if let Some(buffer) = Arc::get_mut(&mut oldest) {
                buffer.clear();
                buffer.extend(commands);
                self.buffers.push_back(Arc::clone(&oldest));
                return Batch(oldest);
            }
            self.buffers.push_front(oldest);
        }
        let batch = Batch::new(commands.collect());
        if self.buffers.len() < self.capacity {
            self.buffers.push_back(Arc::clone(&batch.0));
        }
        batch
    }
}

impl<C> Clone for BatchBuffers<C> {
    fn clone(&self) -> Self {
        Self::new(self.capacity)
    }
}

impl<C> fmt::Debug for BatchBuffers<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchBuffers").field("buffers", &self.buffers.len()).field("capacity", &self.capacity).finish()
    }
}

impl<C: PartialEq> PartialEq for Batch<C> {
    /// Batches are equal when they hold equal commands in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<C: Eq> Eq for Batch<C> {}

impl<C: PartialOrd> PartialOrd for Batch<C> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.0.partial_cmp(&other.0)
    }
}

impl<C: Ord> Ord for Batch<C> {
    /// Batches order by their commands, lexicographically (for model checkers' sets).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<C: std::hash::Hash> std::hash::Hash for Batch<C> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<C> Clone for Batch<C> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<C: fmt::Debug> fmt::Debug for Batch<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_noop() {
            f.write_str("noop")
        } else {
            f.debug_list().entries(self.0.iter()).finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_buffer_is_reused_only_once_nothing_else_holds_its_batch() {
        let mut buffers = BatchBuffers::new(4);
        let first = buffers.batch([1, 2, 3].into_iter());
        let first_buffer = first.commands().as_ptr();
        // Held (as a log or a message would): the next batch gets a buffer of its own, and
        // the held one keeps its commands.
        let second = buffers.batch([4].into_iter());
        assert_ne!(second.commands().as_ptr(), first_buffer);
        assert_eq!(first.commands(), &[1, 2, 3]);
        // Let go everywhere: the oldest buffer is the next batch's (the set still holds it,
        // so no allocation could have been given the same address meanwhile).
        drop(first);
        let third = buffers.batch([5, 6].into_iter());
        assert_eq!(third.commands().as_ptr(), first_buffer);
        assert_eq!(third.commands(), &[5, 6]);
        assert_eq!(second.commands(), &[4]);
    }

    #[test]
    fn batch_buffers_keep_at_most_their_capacity() {
        let mut buffers = BatchBuffers::new(2);
        let held: Vec<Batch<u32>> = (0..5).map(|n| buffers.batch([n].into_iter())).collect();
        assert_eq!(buffers.buffers.len(), 2);
        assert_eq!(held.iter().map(|batch| batch.commands()[0]).collect::<Vec<_>>(), [0, 1, 2, 3, 4]);
        // A copy starts without buffers: it shares none with the original.
        assert!(buffers.clone().buffers.is_empty());
    }
}
