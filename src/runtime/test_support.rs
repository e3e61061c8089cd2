//! What the runtime's unit tests share.

use std::time::Duration;

/// How long a unit test waits for what takes milliseconds on an idle machine: far above
/// what anything needs, so that only a broken guarantee fails a test (as in `tests/common`).
pub(crate) const PATIENCE: Duration = Duration::from_secs(120);

/// An election timeout no unit test outlasts (at a 1 ms tick, 10 minutes): what happens
/// within a test happens without an election.
pub(crate) const NO_ELECTION_TICKS: u32 = 600_000;

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
