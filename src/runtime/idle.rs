//! How a thread with nothing to do waits: spin briefly, then yield, then park, so that
//! corum stays correct (only slower) with more busy threads than cores.

use std::time::{Duration, Instant};

use crate::sync::{now, spin_loop, yield_now};

/// How replica threads and waiting clients spend time with nothing to do.
///
/// ```
/// use corum::{Builder, IdleStrategy};
/// # #[derive(Clone, Default)] struct Counter(u64);
/// # impl corum::Dispatch for Counter {
/// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// // Every thread has a core of its own: never give the core away.
/// let builder = Builder::new(Counter::default()).idle(IdleStrategy::Spin);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IdleStrategy {
    /// Spin briefly, then yield, then park until woken or the next tick (the default).
    /// Right when threads may outnumber cores. The spinning is skipped when the process
    /// has at most one core more than it has replicas (replicas share cores with the
    /// clients): there a spinning thread only delays the thread it waits for (see
    /// docs/BENCHMARKS.md, "What the design rests on"). There replica threads also skip the
    /// yielding and park as soon as
    /// they have nothing to do, since the client threads waiting for them run their rounds
    /// (with [`Builder::helping`](crate::Builder::helping), the default); a waiting client
    /// yields a few times before it parks, so that a thread preempted in the middle of a
    /// round it needs gets the core back.
    #[default]
    Park,
    /// Spin briefly (as for `Park`), then yield the core on every idle round, never park.
    Yield,
    /// Busy-spin. Lowest latency, but only when every replica and client thread has a
    /// core of its own: a spinning thread steals the core of any thread it shares with.
    Spin,
}

/// Rounds of exponential spinning before yielding; none under loom, where a spin is a
/// scheduling point and each one multiplies the interleavings to explore.
const SPIN_ROUNDS: u32 = if cfg!(corum_loom) { 0 } else { 6 };
/// Rounds of yielding before parking.
const YIELD_ROUNDS: u32 = if cfg!(corum_loom) { 0 } else { 16 };

/// One waiting thread's progress through the idle strategy.
#[derive(Debug)]
pub(crate) struct Idler {
    strategy: IdleStrategy,
    /// Rounds of spinning before yielding, and of yielding before parking (0 and 0 when
    /// spinning or yielding would give a busy core away).
    spin_rounds: u32,
    yield_rounds: u32,
    round: u32,
}

impl Idler {
    /// `spin`: whether to spin before yielding (ignored by [`IdleStrategy::Spin`]);
    /// `yields`: whether to yield before parking, under [`IdleStrategy::Park`].
    pub(crate) fn new(strategy: IdleStrategy, spin: bool, yields: bool) -> Self {
        let spin_rounds = if spin { SPIN_ROUNDS } else { 0 };
        let yield_rounds = if yields { YIELD_ROUNDS } else { 0 };
        Self { strategy, spin_rounds, yield_rounds, round: 0 }
    }

    /// Work was found: start over with spinning.
    pub(crate) fn reset(&mut self) {
        self.round = 0;
    }

    /// One idle round. `park` is called in the park phase; it must announce the thread,
    /// re-check the condition it waits for, and sleep only if it still does not hold.
    pub(crate) fn idle(&mut self, park: impl FnOnce()) {
        self.round = self.round.saturating_add(1);
        let spin = self.round <= self.spin_rounds;
        match self.strategy {
            IdleStrategy::Spin => spin_loop(),
            IdleStrategy::Yield if spin => spin_for(self.round),
            IdleStrategy::Yield => yield_now(),
            IdleStrategy::Park if spin => spin_for(self.round),
            IdleStrategy::Park if self.round <= self.spin_rounds + self.yield_rounds => yield_now(),
            IdleStrategy::Park => park(),
        }
    }
}

fn spin_for(round: u32) {
    for _ in 0..1u32 << round.min(6) {
        spin_loop();
    }
}

/// `duration` in nanoseconds, the largest count for durations past 584 years.
pub(crate) fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// How long to sleep at most when parking before `deadline`, in slices of `slice`.
pub(crate) fn park_slice(deadline: Instant, slice: Duration) -> Duration {
    deadline.saturating_duration_since(now()).min(slice).max(Duration::from_micros(50))
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use super::*;

    /// Idle rounds until `park` is first called.
    fn rounds_before_parking(spin: bool) -> u32 {
        let mut idler = Idler::new(IdleStrategy::Park, spin, true);
        let mut parked = false;
        let mut rounds = 0;
        while !parked {
            idler.idle(|| parked = true);
            rounds += 1;
        }
        rounds - 1
    }

    #[test]
    fn spinning_is_skipped_when_told_so() {
        assert_eq!(rounds_before_parking(true), SPIN_ROUNDS + YIELD_ROUNDS);
        assert_eq!(rounds_before_parking(false), YIELD_ROUNDS);
    }

    #[test]
    fn reset_starts_over() {
        let mut idler = Idler::new(IdleStrategy::Park, false, true);
        for _ in 0..YIELD_ROUNDS {
            idler.idle(|| panic!("parked too early"));
        }
        idler.reset();
        idler.idle(|| panic!("parked right after a reset"));
    }
}
