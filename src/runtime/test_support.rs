//! What the runtime's unit tests share.

/// A counter: writes add, reads return the sum.
#[derive(Clone, Default)]
pub(crate) struct Counter(pub(crate) u64);

impl crate::Dispatch for Counter {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;
    fn dispatch(&self, _: &()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.0 += add;
        self.0
    }
}
