//! The trait a user implements for the sequential object corum replicates.

/// A sequential, deterministic object that corum replicates.
///
/// Every replica holds its own copy and applies the same write operations in the same
/// order, so `dispatch_mut` must be deterministic: the same operations in the same order
/// must give the same state and the same responses on every copy (no clocks, no randomness,
/// no iteration over a `HashMap` whose order depends on a per-instance random seed when
/// that order affects a response). Reads run on a replica's copy from the caller's thread,
/// concurrently with other reads, which is why the object must be `Sync`.
///
/// If `dispatch_mut` panics, the panic is caught on every replica: the write's caller gets
/// [`Error::OperationPanicked`](crate::Error::OperationPanicked), and since the panic is
/// deterministic every copy is left in the same state, and the cluster keeps serving.
///
/// ```
/// use corum::Dispatch;
///
/// #[derive(Clone, Default)]
/// struct Counter(u64);
///
/// impl Dispatch for Counter {
///     type ReadOp = ();
///     type WriteOp = u64;
///     type Response = u64;
///     fn dispatch(&self, _op: &()) -> u64 {
///         self.0
///     }
///     fn dispatch_mut(&mut self, add: &u64) -> u64 {
///         self.0 += add;
///         self.0
///     }
/// }
/// ```
pub trait Dispatch: Clone + Send + Sync + 'static {
    /// An operation that only reads the object.
    type ReadOp;
    /// An operation that changes the object. The replica that leads clones it from the
    /// handle's lane of the cluster's write board into the batch it proposes (once per
    /// leader that proposes it), and the batch is shared by every replica, so `Clone +
    /// Send + Sync`. Wrap a large operation in an `Arc` to make its clone cheap.
    type WriteOp: Clone + Send + Sync + 'static;
    /// What an operation returns to its caller.
    type Response: Send + 'static;

    /// Serves a read from this copy.
    fn dispatch(&self, op: &Self::ReadOp) -> Self::Response;

    /// Applies a write to this copy. Must be deterministic (see the trait docs).
    fn dispatch_mut(&mut self, op: &Self::WriteOp) -> Self::Response;

    /// A digest of this copy's state, for divergence detection; `None` (the default) turns
    /// it off for this object.
    ///
    /// When it returns `Some`, replicas compare their digests at the same slot every
    /// [`Builder::digest_every`](crate::Builder::digest_every) slots of the log. A copy
    /// whose digest differs from the majority's is reported
    /// ([`ReplicaStats::divergences`](crate::ReplicaStats::divergences)), stops serving
    /// reads and completing writes, and is replaced by a copy of a majority replica's
    /// object; if no digest has a majority, the cluster stops serving
    /// ([`Error::Diverged`](crate::Error::Diverged)). Equal states must give equal digests
    /// on every replica: hash a canonical form (a `BTreeMap` in order, not a `HashMap`'s
    /// iteration order), with a hasher whose keys are fixed, such as
    /// `std::hash::DefaultHasher::new()`. It runs on a replica's thread, under its copy's
    /// lock, once per checkpoint, so its cost is spread over `digest_every` slots.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::hash::{DefaultHasher, Hash, Hasher};
    ///
    /// use corum::Dispatch;
    ///
    /// #[derive(Clone, Default)]
    /// struct Kv(BTreeMap<u64, u64>);
    ///
    /// impl Dispatch for Kv {
    ///     type ReadOp = u64;
    ///     type WriteOp = (u64, u64);
    ///     type Response = Option<u64>;
    ///     fn dispatch(&self, key: &u64) -> Option<u64> {
    ///         self.0.get(key).copied()
    ///     }
    ///     fn dispatch_mut(&mut self, &(key, value): &(u64, u64)) -> Option<u64> {
    ///         self.0.insert(key, value)
    ///     }
    ///     fn digest(&self) -> Option<u64> {
    ///         let mut hasher = DefaultHasher::new();
    ///         self.0.hash(&mut hasher);
    ///         Some(hasher.finish())
    ///     }
    /// }
    /// ```
    fn digest(&self) -> Option<u64> {
        None
    }
}
