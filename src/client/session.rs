//! A session's writes, on the client's side of exactly-once: the number each write carries,
//! the *floor* (the lowest number whose outcome has not been reported: every write below it
//! is done, and the replicas' exactly-once table forgets what lies below it, see
//! `crate::exactly_once`), and when a write leaves the session.
//!
//! A write leaves when its outcome is reported to its caller ([`Session::close`]), or,
//! when nobody waits for it (its ticket was dropped), once its outcome is known or its
//! deadline has passed ([`Session::open`] lets go of those at the front). A dropped write
//! not applied by its deadline may have been lost with a replica, and nothing retries it:
//! without this, one lost write would pin the floor and the exactly-once table would grow
//! with every later write. Past its deadline its outcome is unknown, as
//! [`Error::NoQuorum`](crate::Error::NoQuorum) says of a write waited for: if it is still
//! in flight, it is applied only if it is ordered before the first write that carries the
//! raised floor (every replica decides alike).
//!
//! Invariant: `entries` holds the writes numbered `next_sequence - entries.len()` up, and
//! never starts with a closed (`None`) one.

use std::collections::VecDeque;

use super::Time;
use crate::plant::planted;

/// The numbers a write carries to the replicas, on every submission of it: its number in
/// its session, and the session's floor when it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Numbers {
    pub(crate) sequence: u64,
    pub(crate) floor: u64,
}

/// One session's writes not yet out of it, each with a value of the driver's (`T`: the
/// runtime's request, the simulator's write record).
#[derive(Debug)]
pub(crate) struct Session<T> {
    next_sequence: u64,
    entries: VecDeque<Option<Held<T>>>,
}

/// A write in its session: the driver's value, and when the session may let go of it.
#[derive(Debug)]
struct Held<T> {
    value: T,
    deadline: Time,
}

impl<T> Default for Session<T> {
    fn default() -> Self {
        Self { next_sequence: 0, entries: VecDeque::new() }
    }
}

impl<T> Session<T> {
    /// The floor: the number of the first write still in the session (the next write's,
    /// when there is none).
    #[inline]
    pub(crate) fn floor(&self) -> u64 {
        self.next_sequence - self.entries.len() as u64
    }

    /// Writes held, closed ones behind the first one still open included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.entries.len()
    }

    /// Opens a new write at `now`, to be let go of at `deadline` if its ticket is dropped:
    /// first lets go of the writes at the front whose outcome is `reported` (taken by a
    /// replica, though nobody took it from there) or whose deadline has passed (`expired`
    /// is called on those, so the driver can tell a task still awaiting one); then numbers
    /// the new write and keeps the value `make` builds from its numbers. Returns the
    /// numbers it carries.
    #[inline]
    pub(crate) fn open(
        &mut self,
        now: Time,
        deadline: Time,
        make: impl FnOnce(Numbers) -> T,
        reported: impl Fn(&T) -> bool,
        expired: impl FnMut(&T),
    ) -> Numbers {
        self.let_go(now, reported, expired);
        let numbers = Numbers { sequence: self.next_sequence, floor: self.floor() };
        self.next_sequence += 1;
        self.entries.push_back(Some(Held { value: make(numbers), deadline }));
        numbers
    }

    /// Lets go of the writes at the front whose outcome is `reported` or whose deadline has
    /// passed at `now` (`expired` is called on those), as [`Session::open`] does first.
    #[inline]
    pub(crate) fn let_go(&mut self, now: Time, reported: impl Fn(&T) -> bool, mut expired: impl FnMut(&T)) {
        self.pop_front_while(|held| {
            if reported(&held.value) {
                return true;
            }
            let past = now >= held.deadline;
            if past {
                expired(&held.value);
            }
            past
        });
    }

    /// The number the next write opened gets.
    #[inline]
    pub(crate) fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The value kept for write `sequence`, if it is still in the session.
    #[inline]
    pub(crate) fn get_mut(&mut self, sequence: u64) -> Option<&mut T> {
        let index = usize::try_from(sequence.checked_sub(self.floor())?).ok()?;
        Some(&mut self.entries.get_mut(index)?.as_mut()?.value)
    }

    /// Every write still in the session, in order, with its number.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        let floor = self.floor();
        self.entries
            .iter()
            .enumerate()
            .filter_map(move |(index, entry)| Some((floor + index as u64, &entry.as_ref()?.value)))
    }

    /// Every write still in the session, in order, with its number; mutable.
    // The reminder thread, its one user, is not built under loom.
    #[cfg_attr(corum_loom, allow(dead_code))]
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (u64, &mut T)> {
        let floor = self.floor();
        self.entries
            .iter_mut()
            .enumerate()
            .filter_map(move |(index, entry)| Some((floor + index as u64, &mut entry.as_mut()?.value)))
    }

    /// Closes write `sequence`: its outcome has been reported (or given up on by its
    /// caller), so the floor may pass it once every write before it is closed too. Returns
    /// the value kept for it.
    #[inline]
    pub(crate) fn close(&mut self, sequence: u64) -> Option<T> {
        let floor = self.floor();
        let index = usize::try_from(sequence.checked_sub(floor)?).ok()?;
        if planted!("floor-skips-in-flight") && index > 0 && index < self.entries.len() {
            // Planted bug: "writes complete in order", so reporting one closes every
            // write before it, also those still in flight.
            self.entries.drain(..index);
            return self.close(sequence);
        }
        let value = self.entries.get_mut(index)?.take().map(|held| held.value);
        self.pop_front_while(|_| false);
        value
    }

    /// Drops the first writes while `done` says the session may let go of them (and
    /// those already closed).
    #[inline]
    fn pop_front_while(&mut self, mut done: impl FnMut(&Held<T>) -> bool) {
        while let Some(front) = self.entries.front() {
            if matches!(front, Some(held) if !done(held)) {
                break;
            }
            self.entries.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Numbers, Session, Time};

    const NEVER: Time = Time(u64::MAX);

    fn open(session: &mut Session<u64>, value: u64) -> Numbers {
        session.open(Time(0), NEVER, |_| value, |_| false, |_| {})
    }

    #[test]
    fn the_floor_is_the_first_write_not_closed() {
        let mut session = Session::default();
        for expected in 0..4 {
            assert_eq!(open(&mut session, expected), Numbers { sequence: expected, floor: 0 });
        }
        assert_eq!(session.close(2), Some(2));
        assert_eq!(session.floor(), 0, "write 0 is still in flight");
        assert_eq!(session.close(0), Some(0));
        assert_eq!(session.floor(), 1);
        assert_eq!(session.close(2), None, "already closed");
        assert_eq!(session.close(9), None, "never numbered");
        assert_eq!(session.floor(), 1, "unknown and repeated numbers change nothing");
        assert_eq!(session.close(1), Some(1));
        assert_eq!(session.floor(), 3, "1 and 2 are done; 3 is still in flight");
        assert_eq!(session.iter().collect::<Vec<_>>(), vec![(3, &3)]);
        *session.get_mut(3).expect("kept") = 30;
        assert_eq!(session.close(3), Some(30));
        assert_eq!(
            open(&mut session, 4),
            Numbers { sequence: 4, floor: 4 },
            "with none left, the floor is the next write"
        );
    }

    /// A write nobody waits for leaves the session once its outcome is known or its
    /// deadline has passed, so that it never pins the floor; one before it still in flight
    /// holds the floor back however long.
    #[test]
    fn a_dropped_write_leaves_at_its_outcome_or_its_deadline_and_never_before() {
        let mut session: Session<(bool, &str)> = Session::default();
        let reported = |write: &(bool, &str)| write.0;
        let mut woken = Vec::new();
        session.open(Time(0), Time(100), |_| (false, "lost"), reported, |_| {});
        session.open(Time(0), Time(100), |_| (false, "applied"), reported, |_| {});
        session.open(Time(10), Time(110), |_| (false, "young"), reported, |_| {});
        // Before the first deadline nothing leaves.
        let numbers = session.open(Time(99), Time(199), |_| (false, "next"), reported, |w| woken.push(w.1));
        assert_eq!(numbers, Numbers { sequence: 3, floor: 0 });
        // The second one's outcome comes in; at 100 the first is past its deadline and
        // leaves (its waiter, if any, is told), then the reported one; the young one stays.
        session.get_mut(1).expect("held").0 = true;
        let numbers = session.open(Time(100), Time(200), |_| (false, "last"), reported, |w| woken.push(w.1));
        assert_eq!(numbers, Numbers { sequence: 4, floor: 2 });
        assert_eq!(woken, ["lost"]);
        assert_eq!(session.held(), 3);
    }
}
