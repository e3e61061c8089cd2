//! One linearizable read: which watermark it waits for, which copy serves it, when it moves
//! to another copy, and when it is given up on. [`Handle::execute`](crate::Handle::execute)
//! and the simulator's clients begin it with [`start`] and drive it with [`Read::next`].
//!
//! The rule ([`may_serve`]): a read that began when the commit watermark was `w` may be
//! served by a copy that has applied every slot below `w`. Every write that completed
//! before the read began is below `w`, because replicas raise the watermark before they
//! apply (the driver's order, `crate::driver`), and a write completes only once applied.
//! So the watermark is loaded first, before anything else the read looks at.

use super::route::serving_from;
use super::{ended, no_quorum, Time, Timing, View};
use crate::plant::planted;
use crate::protocol::Slot;
use crate::Error;

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Read {
    watermark: Slot,
    /// The replica whose copy is to serve it.
    replica: usize,
    /// When it first had to wait, its deadline and when it moves on: set at its first
    /// [`Read::next`], so that a read served at once never needs the clock.
    timed: Option<Timed>,
}

#[derive(Debug, Clone, Copy)]
struct Timed {
    started: Time,
    deadline: Time,
    switch_at: Time,
}

/// What to do next for a read ([`Read::next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Serve it from this replica's copy now.
    Serve(usize),
    /// Give up: report this error.
    End(Error),
    /// It moved to this replica: look again at once.
    Moved(usize),
    /// Wait for this replica's copy to apply more (or for the next look).
    Wait(usize),
}

/// Begins a read for a session homed at `home`: the shell's part, shared by the runtime
/// and the simulator, which loads from `view` what the machine is handed.
#[inline]
pub(crate) fn start(view: &impl View, home: usize) -> Read {
    let watermark = if planted!("read-watermark-applied") {
        // Planted bug: the read is handed what its home copy applied, not the commit
        // watermark, so it never waits for a lagging copy.
        view.slot_applied(home)
    } else {
        view.watermark()
    };
    Read::new(watermark, view, home)
}

impl Read {
    /// A read that waits for `watermark`, served by the first copy from `home` on that
    /// runs and is not known diverged (by `home`'s if none is).
    #[inline]
    pub(crate) fn new(watermark: Slot, view: &impl View, home: usize) -> Self {
        let replica = serving_from(view, home).unwrap_or(home);
        Self { watermark, replica, timed: None }
    }

    /// The watermark it waits for.
    pub(crate) fn watermark(&self) -> Slot {
        self.watermark
    }

    /// When it ends without being served, once it has had to wait.
    pub(crate) fn deadline(&self) -> Option<Time> {
        self.timed.map(|timed| timed.deadline)
    }

    /// The replica whose copy is to serve it.
    pub(crate) fn replica(&self) -> usize {
        self.replica
    }

    /// Whether its replica's copy may serve it now, without the clock: caught up with the
    /// watermark and not known diverged.
    #[inline]
    pub(crate) fn ready(&self, view: &impl View) -> bool {
        may_serve(view.slot_applied(self.replica), self.watermark) && !view.diverged(self.replica)
    }

    /// The next thing to do at `now`: serve it if its copy caught up; else end it if the
    /// replicas stopped or forked or its deadline passed; else move it to the next copy
    /// that may serve if its own stopped, diverged, or has not caught up within
    /// `timing.switch_after`; else wait.
    pub(crate) fn next(&mut self, now: Time, view: &impl View, timing: &Timing) -> Step {
        if self.ready(view) {
            return Step::Serve(self.replica);
        }
        if let Some(error) = ended(view) {
            return Step::End(error);
        }
        let timed = self.timed.get_or_insert(Timed {
            started: now,
            deadline: now.after(timing.deadline),
            switch_at: now.after(timing.switch_after),
        });
        if now >= timed.deadline {
            return Step::End(no_quorum(now.since(timed.started)));
        }
        let replica = self.replica;
        if now >= timed.switch_at || !view.runs(replica) || view.diverged(replica) {
            timed.switch_at = now.after(timing.switch_after);
            let next = serving_from(view, (replica + 1) % view.replicas()).unwrap_or(replica);
            if next != replica {
                self.replica = next;
                if planted!("read-moves-without-watermark") {
                    // Planted bug: a read that moves waits there only for what the new copy
                    // has applied.
                    self.watermark = view.slot_applied(next);
                }
                return Step::Moved(next);
            }
            // No other copy may serve: wait here.
        }
        Step::Wait(replica)
    }
}

/// Whether replica `replica`'s copy may serve, in place of the copy a read was to be served
/// by, a read that waits for `watermark`: it runs, is not known diverged, and has caught up
/// (the rules of `route::serving_from` and [`Read::ready`] together).
#[inline]
pub(crate) fn may_serve_instead(view: &impl View, replica: usize, watermark: Slot) -> bool {
    view.runs(replica) && !view.diverged(replica) && may_serve(view.slot_applied(replica), watermark)
}

/// Whether a copy that applied every slot below `slot_applied` may serve a linearizable read
/// that waits for `watermark` (see the module docs).
#[inline]
pub(crate) fn may_serve(slot_applied: Slot, watermark: Slot) -> bool {
    if planted!("read-one-short") {
        // Planted bug: the read waits for one slot less than the watermark.
        return slot_applied.get() + 1 >= watermark.get();
    }
    slot_applied >= watermark
}

#[cfg(test)]
mod tests {
    use super::{start, Step};
    use crate::client::tests::FakeView;
    use crate::client::{Time, Timing};
    use crate::protocol::Slot;
    use crate::Error;

    const TIMING: Timing = Timing { deadline: 1_000, retry_after: 100, switch_after: 300 };

    #[test]
    fn a_read_waits_for_the_watermark_it_loaded_when_it_began() {
        let mut view = FakeView::new(3);
        view.watermark = Slot::new(5);
        view.applied = vec![Slot::new(5), Slot::new(4), Slot::new(5)];
        let mut read = start(&view, 1);
        assert_eq!(read.watermark(), Slot::new(5));
        assert!(!read.ready(&view), "the home copy is one slot behind");
        view.watermark = Slot::new(9);
        assert_eq!(read.next(Time(0), &view, &TIMING), Step::Wait(1));
        view.applied[1] = Slot::new(5);
        assert_eq!(read.next(Time(1), &view, &TIMING), Step::Serve(1), "a later watermark does not hold it back");
    }

    #[test]
    fn a_read_moves_off_a_copy_that_stops_diverges_or_lags_and_keeps_its_watermark() {
        let mut view = FakeView::new(3);
        view.watermark = Slot::new(5);
        view.applied = vec![Slot::new(5), Slot::new(1), Slot::new(2)];
        let mut read = start(&view, 1);
        assert_eq!(read.next(Time(0), &view, &TIMING), Step::Wait(1));
        view.running[1] = false;
        assert_eq!(read.next(Time(10), &view, &TIMING), Step::Moved(2));
        assert_eq!(read.watermark(), Slot::new(5), "it still waits for what it loaded");
        assert_eq!(read.next(Time(10), &view, &TIMING), Step::Wait(2));
        assert_eq!(read.next(Time(309), &view, &TIMING), Step::Wait(2));
        assert_eq!(read.next(Time(310), &view, &TIMING), Step::Moved(0), "replica 2 lagged for a switch interval");
        assert_eq!(read.next(Time(311), &view, &TIMING), Step::Serve(0));
        view.diverged[0] = true;
        view.running[1] = true;
        view.applied[1] = Slot::new(5);
        assert_eq!(read.next(Time(312), &view, &TIMING), Step::Moved(1), "a diverged copy serves nothing");
    }

    #[test]
    fn a_read_ends_at_its_deadline_counted_from_its_first_wait_or_when_the_replicas_stop() {
        let mut view = FakeView::new(1);
        view.watermark = Slot::new(1);
        let mut read = start(&view, 0);
        assert_eq!(read.next(Time(50), &view, &TIMING), Step::Wait(0));
        assert_eq!(read.next(Time(1_049), &view, &TIMING), Step::Wait(0), "alone, it stays");
        assert_eq!(
            read.next(Time(1_050), &view, &TIMING),
            Step::End(Error::NoQuorum { waited: std::time::Duration::from_nanos(1_000) })
        );
        view.stopped = true;
        assert_eq!(read.next(Time(60), &view, &TIMING), Step::End(Error::Shutdown));
    }
}
