//! A client's side of corum as a pure machine, as the protocol core is the replica's: what a
//! client session decides, with time passed in and no threads, atomics or clocks. The
//! runtime's [`Handle`](crate::Handle) and [`Ticket`](crate::Ticket) drive it over the
//! cluster's shared state; the simulator's clients drive the same machine over the simulated
//! world. Both hand it what they see through one trait, [`View`], so the seed sweep checks
//! the decisions users run, and what the shells load for them (TigerBeetle's simulator
//! drives its real client for the same reason).
//!
//! - [`session`]: a session's writes: the number each carries, the floor, and when a write
//!   leaves the session (its outcome reported, its deadline passed).
//! - [`write`]: one write in flight: where it is submitted, when it is submitted again (a
//!   routing change, the retry time), when it is given up on.
//! - [`read`]: one linearizable read: which watermark it waits for, which copy serves it,
//!   when it moves to another copy, when it is given up on.
//! - [`route`]: where writes go and which copies serve reads, given a [`View`].
//!
//! Time is a [`Time`]: nanoseconds since the cluster started in the runtime, ticks in the
//! simulator. The machine compares and adds times; it never reads a clock.

pub(crate) mod read;
pub(crate) mod route;
pub(crate) mod session;
pub(crate) mod write;

use std::time::Duration;

use crate::protocol::Slot;
use crate::Error;

/// A moment on the driver's clock: nanoseconds since the cluster started in the runtime,
/// ticks in the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Time(pub(crate) u64);

impl Time {
    /// `span` units after this moment (never wrapping: a span of `u64::MAX` is never).
    #[inline]
    pub(crate) fn after(self, span: u64) -> Time {
        Time(self.0.saturating_add(span))
    }

    /// Units from `earlier` to this moment, zero if `earlier` is later.
    #[inline]
    pub(crate) fn since(self, earlier: Time) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// How long a client waits, in units of [`Time`]; `u64::MAX` is never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// A call not complete this long after it began fails with [`Error::NoQuorum`]; a
    /// write whose ticket was dropped leaves its session this long after it was opened.
    pub(crate) deadline: u64,
    /// A write is submitted again after this long without an outcome (and at once when
    /// its routing changes).
    pub(crate) retry_after: u64,
    /// A read whose copy has not caught up within this long moves to another copy.
    pub(crate) switch_after: u64,
}

/// What a client sees of the cluster: the shells implement it over what they share with
/// the replicas (the runtime's atomics, the simulator's world). Every value is a hint
/// except the watermark and the applied slots, which reads depend on.
pub(crate) trait View {
    /// The number of replicas.
    fn replicas(&self) -> usize;
    /// Whether shutdown has begun: new calls are refused.
    fn closed(&self) -> bool;
    /// Whether the replicas are stopping: calls still waiting end.
    fn stopped(&self) -> bool;
    /// The checkpoint at which the copies were found forked, if they were.
    fn forked(&self) -> Option<u64>;
    /// The commit watermark: every slot below it is committed, and replicas raise it before
    /// they apply those slots (see [`crate::driver`]).
    fn watermark(&self) -> Slot;
    /// The replica that last became leader: where writes go.
    fn leader_hint(&self) -> usize;
    /// Whether `replica` runs (not paused, crashed or stopped).
    fn runs(&self, replica: usize) -> bool;
    /// Whether `replica`'s copy was found diverged and is not yet replaced.
    fn diverged(&self, replica: usize) -> bool;
    /// Every slot below this has been applied to `replica`'s copy.
    fn slot_applied(&self, replica: usize) -> Slot;
}

/// Whether a new call is taken: not once shutdown has begun ([`Error::Shutdown`]), nor
/// once the copies were found forked ([`Error::Diverged`]).
#[inline]
pub(crate) fn admit(view: &impl View) -> Result<(), Error> {
    if view.closed() {
        return Err(Error::Shutdown);
    }
    match view.forked() {
        Some(slot) => Err(Error::Diverged { slot }),
        None => Ok(()),
    }
}

/// Why a call still waiting ends now whatever its progress: the replicas stopped
/// ([`Error::Shutdown`]) or the copies were found forked ([`Error::Diverged`]).
#[inline]
pub(crate) fn ended(view: &impl View) -> Option<Error> {
    if view.stopped() {
        return Some(Error::Shutdown);
    }
    view.forked().map(|slot| Error::Diverged { slot })
}

/// The error of a call given up on at its deadline after `waited` units (nanoseconds in
/// the runtime; the simulator's ticks are reported as nanoseconds too).
pub(crate) fn no_quorum(waited: u64) -> Error {
    Error::NoQuorum { waited: Duration::from_nanos(waited) }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::View;
    use crate::protocol::Slot;

    /// A cluster as a client sees it, set by hand.
    #[derive(Debug, Clone)]
    pub(crate) struct FakeView {
        pub(crate) closed: bool,
        pub(crate) stopped: bool,
        pub(crate) forked: Option<u64>,
        pub(crate) watermark: Slot,
        pub(crate) leader: usize,
        pub(crate) running: Vec<bool>,
        pub(crate) diverged: Vec<bool>,
        pub(crate) applied: Vec<Slot>,
    }

    impl FakeView {
        /// `replicas` replicas, all running and caught up at slot 0, replica 0 leading.
        pub(crate) fn new(replicas: usize) -> Self {
            Self {
                closed: false,
                stopped: false,
                forked: None,
                watermark: Slot::ZERO,
                leader: 0,
                running: vec![true; replicas],
                diverged: vec![false; replicas],
                applied: vec![Slot::ZERO; replicas],
            }
        }
    }

    impl View for FakeView {
        fn replicas(&self) -> usize {
            self.running.len()
        }
        fn closed(&self) -> bool {
            self.closed
        }
        fn stopped(&self) -> bool {
            self.stopped
        }
        fn forked(&self) -> Option<u64> {
            self.forked
        }
        fn watermark(&self) -> Slot {
            self.watermark
        }
        fn leader_hint(&self) -> usize {
            self.leader
        }
        fn runs(&self, replica: usize) -> bool {
            self.running[replica]
        }
        fn diverged(&self, replica: usize) -> bool {
            self.diverged[replica]
        }
        fn slot_applied(&self, replica: usize) -> Slot {
            self.applied[replica]
        }
    }

    #[test]
    fn calls_are_refused_after_shutdown_began_and_end_once_replicas_stop_or_fork() {
        let mut view = FakeView::new(3);
        assert_eq!(super::admit(&view), Ok(()));
        assert_eq!(super::ended(&view), None);
        view.closed = true;
        assert_eq!(super::admit(&view), Err(crate::Error::Shutdown));
        assert_eq!(super::ended(&view), None, "calls in flight finish while shutdown drains");
        view.stopped = true;
        assert_eq!(super::ended(&view), Some(crate::Error::Shutdown));
        let mut view = FakeView::new(3);
        view.forked = Some(256);
        assert_eq!(super::admit(&view), Err(crate::Error::Diverged { slot: 256 }));
        assert_eq!(super::ended(&view), Some(crate::Error::Diverged { slot: 256 }));
    }
}
