//! One write in flight: where it is submitted, when it is submitted again, and when it is
//! given up on. The runtime's [`Ticket`](crate::Ticket) drives it (and the simulator's
//! clients, for the writes they wait for).
//!
//! A write is submitted to [`write_target`] when it is opened, and again when that
//! target changes or the leader hint moves (the old leader may have lost it, or it may be
//! on its way to a replica that no longer leads), and after every retry interval without
//! an outcome. Every submission carries the same numbers ([`Write::numbers`]), so the
//! replicas apply it once however often it arrives. It ends without an outcome when the
//! replicas stop, when the copies are found forked, or at its deadline.

use super::route::write_target;
use super::session::Numbers;
use super::{ended, no_quorum, Time, Timing, View};
use crate::Error;

/// See the module docs. Small (replica indices in `u32`s, below
/// [`MAX_REPLICAS`](crate::protocol::MAX_REPLICAS)), because every ticket carries one.
#[derive(Debug, Clone)]
pub(crate) struct Write {
    numbers: Numbers,
    started: Time,
    deadline: Time,
    /// When it is submitted again if it has no outcome by then.
    retry_at: Time,
    /// The session's home replica: where the write goes while no leader runs.
    home: u32,
    /// Where it was last submitted, and the leader hint then; [`NOT_SENT`] before its
    /// first submission.
    sent_to: u32,
    leader_seen: u32,
}

/// [`Write::sent_to`] before the first submission.
const NOT_SENT: u32 = u32::MAX;

/// What to do next for a write with no outcome yet ([`Write::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Give up: report this error (its outcome stays unknown).
    End(Error),
    /// Submit it to this replica, and report it with [`Write::submitted`] once taken.
    Submit(usize),
    /// Wait for its outcome or the next look.
    Wait,
}

impl Write {
    /// A write opened at `now` with `numbers`, for a session homed at `home`.
    #[inline]
    pub(crate) fn new(numbers: Numbers, home: usize, now: Time, timing: &Timing) -> Self {
        Self {
            numbers,
            started: now,
            deadline: now.after(timing.deadline),
            retry_at: now.after(timing.retry_after),
            home: index(home),
            sent_to: NOT_SENT,
            leader_seen: NOT_SENT,
        }
    }

    /// The write's numbers: those it was posted with, once.
    #[inline]
    pub(crate) fn numbers(&self) -> Numbers {
        self.numbers
    }

    /// When it ends without an outcome.
    #[inline]
    pub(crate) fn deadline(&self) -> Time {
        self.deadline
    }

    /// When it is submitted again if nothing prompts it sooner.
    #[inline]
    pub(crate) fn retry_at(&self) -> Time {
        self.retry_at
    }

    /// Where it was last submitted, if it was.
    #[inline]
    pub(crate) fn submitted_to(&self) -> Option<usize> {
        (self.sent_to != NOT_SENT).then_some(self.sent_to as usize)
    }

    /// The next thing to do at `now` for the write, whose outcome has not come.
    #[inline]
    pub(crate) fn next(&self, now: Time, view: &impl View) -> Step {
        if let Some(error) = ended(view) {
            return Step::End(error);
        }
        if now >= self.deadline {
            return Step::End(no_quorum(now.since(self.started)));
        }
        if self.routing_moved(view) || now >= self.retry_at {
            return Step::Submit(write_target(view, self.home as usize));
        }
        Step::Wait
    }

    /// Whether it would now go elsewhere than where it was last submitted, or the leader
    /// hint moved since (it may have been lost with the old leader). True before its first
    /// submission.
    #[inline]
    pub(crate) fn routing_moved(&self, view: &impl View) -> bool {
        self.sent_to == NOT_SENT
            || write_target(view, self.home as usize) != self.sent_to as usize
            || view.leader_hint() != self.leader_seen as usize
    }

    /// It was submitted to `replica` at `now` (the replica's queue took it): the next
    /// retry comes a retry interval (`timing.retry_after`) later, sooner if the routing
    /// moves from what `view` shows now.
    #[inline]
    pub(crate) fn submitted(&mut self, replica: usize, now: Time, view: &impl View, timing: &Timing) {
        self.sent_to = index(replica);
        self.leader_seen = index(view.leader_hint());
        self.retry_at = now.after(timing.retry_after);
    }
}

/// A replica index as the write keeps it.
#[inline]
fn index(replica: usize) -> u32 {
    u32::try_from(replica).expect("replica indices are below MAX_REPLICAS")
}

#[cfg(test)]
mod tests {
    use super::{Step, Write};
    use crate::client::session::Numbers;
    use crate::client::tests::FakeView;
    use crate::client::{Time, Timing};
    use crate::Error;

    const TIMING: Timing = Timing { deadline: 1_000, retry_after: 100, switch_after: 300 };
    const NUMBERS: Numbers = Numbers { sequence: 7, floor: 5 };

    #[test]
    fn a_write_goes_to_the_leader_and_again_when_leadership_moves_or_its_retry_time_comes() {
        let mut view = FakeView::new(3);
        view.leader = 2;
        let mut write = Write::new(NUMBERS, 1, Time(0), &TIMING);
        assert_eq!(write.next(Time(0), &view), Step::Submit(2));
        write.submitted(2, Time(0), &view, &TIMING);
        assert_eq!(write.next(Time(99), &view), Step::Wait);
        assert_eq!(write.next(Time(100), &view), Step::Submit(2), "the retry time");
        write.submitted(2, Time(100), &view, &TIMING);
        assert_eq!(write.next(Time(150), &view), Step::Wait);
        view.leader = 0;
        assert_eq!(write.next(Time(150), &view), Step::Submit(0), "a new leader");
        write.submitted(0, Time(150), &view, &TIMING);
        view.running[0] = false;
        assert_eq!(write.next(Time(160), &view), Step::Submit(1), "the leader stopped: the home takes it");
        write.submitted(1, Time(160), &view, &TIMING);
        assert_eq!(write.next(Time(170), &view), Step::Wait, "the hint alone did not move");
        assert_eq!(write.numbers(), NUMBERS, "every submission carries the same numbers");
    }

    #[test]
    fn a_write_ends_at_its_deadline_or_when_the_replicas_stop_or_fork() {
        let mut view = FakeView::new(3);
        let mut write = Write::new(NUMBERS, 0, Time(10), &TIMING);
        write.submitted(0, Time(10), &view, &TIMING);
        assert_eq!(write.next(Time(1_009), &view), Step::Submit(0), "retry, not yet the deadline");
        assert_eq!(
            write.next(Time(1_010), &view),
            Step::End(Error::NoQuorum { waited: std::time::Duration::from_nanos(1_000) })
        );
        view.forked = Some(64);
        assert_eq!(write.next(Time(20), &view), Step::End(Error::Diverged { slot: 64 }));
        view.stopped = true;
        assert_eq!(write.next(Time(20), &view), Step::End(Error::Shutdown));
    }
}
