//! A write in flight ([`Ticket`]): posted to its session's lane on the write board, then
//! waited for by a thread ([`Ticket::wait`]) or awaited by a task (its [`Future`]), both
//! through one look at a time ([`Ticket::step`]) that drives the client machine's write
//! (`crate::client::write`): wake the replica it goes to when the machine says (every
//! leader collects it from the board, so nothing is resubmitted), run replicas' rounds for
//! it meanwhile (`help.rs`), give it up at its deadline, report its outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

use super::help::{help_all, help_write, Deferral, Helped, DEFER_BEHIND};
use super::idle::{park_slice, Idler};
use super::session::{GaveUp, Keep, Refusal, Session};
use crate::client::route::write_target;
use crate::client::write::{Step as WriteStep, Write};
use crate::client::{ended, no_quorum, Time};
use crate::exactly_once::ClientId;
use crate::sync::atomic::Ordering;
use crate::sync::spin_loop;
use crate::sync::Arc;
use crate::transport::board::Address;
use crate::{Dispatch, Error};

/// A write in flight, from [`Handle::submit`](crate::Handle::submit). [`Ticket::wait`]
/// returns its response.
///
/// Writes submitted from one handle without waiting in between are concurrent operations:
/// they are normally applied in submission order, but a leader change may reorder them.
/// Wait for a ticket before submitting a write that must come after it. A ticket dropped
/// without waiting leaves its write on the board: whichever replica leads proposes it, until
/// it is applied or, once its deadline has passed, retracted at the handle's next write
/// (its outcome then stays unknown, as with [`Error::NoQuorum`], and it no longer holds
/// back the session's exactly-once record).
///
/// ```
/// # use corum::{Builder, Dispatch};
/// # #[derive(Clone, Default)]
/// # struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = ();
/// #     type WriteOp = u64;
/// #     type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build()?;
/// let handle = cluster.handle();
/// // Three writes in flight at once, then their responses.
/// let tickets: Vec<_> = (0..3).map(|_| handle.submit(10)).collect::<Result<_, _>>()?;
/// let mut responses: Vec<u64> = tickets.into_iter().map(|ticket| ticket.wait()).collect::<Result<_, _>>()?;
/// responses.sort();
/// assert_eq!(responses, [10, 20, 30]);
/// # cluster.shutdown()?;
/// # Ok::<(), corum::Error>(())
/// ```
///
/// A ticket is also a [`Future`]: awaiting it is [`Ticket::wait`] without blocking the
/// thread, on any executor. The cluster wakes the task when the write is applied, when
/// leadership moves, at the retry time and the deadline, and at shutdown, so no executor
/// timer is needed and the task is not re-polled in between.
///
/// ```
/// # use corum::{Builder, Dispatch};
/// # #[derive(Clone, Default)]
/// # struct Counter(u64);
/// # impl Dispatch for Counter {
/// #     type ReadOp = ();
/// #     type WriteOp = u64;
/// #     type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, add: &u64) -> u64 { self.0 += add; self.0 }
/// # }
/// # let runtime = tokio::runtime::Runtime::new().unwrap();
/// # runtime.block_on(async {
/// let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build()?;
/// let handle = cluster.handle();
/// let (first, second) = (handle.submit(1)?, handle.submit(2)?);
/// let total = first.await? + second.await?; // 1 + 3 or 2 + 3
/// assert!(total == 4 || total == 5);
/// # cluster.shutdown()?;
/// # Ok::<(), corum::Error>(())
/// # }).unwrap();
/// ```
#[must_use = "a write's outcome is only known by waiting for its ticket"]
pub struct Ticket<D: Dispatch> {
    /// Its session, which it touches only until it is `finished` ([`Ticket::session`]).
    /// Not an `Arc`: a counted ticket is kept alive by its session's count of tickets, an
    /// uncounted one by the call it lives in (see [`Keep`]).
    session: NonNull<Session<D>>,
    /// Whether its session counts it (see [`Keep`]).
    counted: bool,
    /// Its session's client id, for `Debug` at any time.
    client: ClientId,
    /// Where the write sits on the board, and where its answer lands.
    address: Address,
    /// The client machine's write: its numbers, where and when to announce it, when to
    /// give up.
    write: Write,
    /// Whether the outcome has been returned (by `poll`).
    finished: bool,
    /// How long it has deferred to another client running rounds (`help::help_write`).
    deferral: Deferral,
    /// The time of its submission, for the first look of a waiter that waits at once
    /// (`Handle::execute_mut`): that look comes nanoseconds after the submission, and
    /// reading the clock again for it cost a synchronous write a few percent. A time that
    /// early only makes the look see a deadline or retry time later than it is; the next
    /// look reads the clock.
    submitted_at: Option<Time>,
}

impl<D: Dispatch> fmt::Debug for Ticket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("client", &self.client)
            .field("sequence", &self.write.numbers().sequence)
            .field("done", &self.is_done())
            .finish()
    }
}

/// What one look at a waiting write found (`Ticket::step`).
enum Step<R> {
    /// The outcome to report.
    Done(Result<R, Error>),
    /// Work was done for it (an announcement, a replica's round): look again at once.
    Progressed,
    /// Another client is running rounds that carry it (`help::help_write`): a waiting
    /// thread looks again at once, a task waits for its answer to wake it.
    Deferred,
    /// Nothing to do but wait.
    Idle,
}

// SAFETY: a ticket is its session's `Arc` in all but the reference count (see `Keep`), and
// `Arc<Session<D>>` is `Send` and `Sync` (`Session<D>` is both, checked below); its other
// fields are plain data.
unsafe impl<D: Dispatch> Send for Ticket<D> {}
// SAFETY: as above; `&Ticket` only reads the session (`is_done`).
unsafe impl<D: Dispatch> Sync for Ticket<D> {}

/// `Session<D>` and the ticket's other fields are `Send` and `Sync` for every `D`, which
/// the impls above rely on (a field added to `Ticket` belongs here too).
#[allow(dead_code)]
fn fields_are_send_and_sync<D: Dispatch>() {
    fn both<T: Send + Sync>() {}
    both::<Session<D>>();
    both::<(bool, ClientId, Address, Write, Deferral, Option<Time>)>();
}

impl<D: Dispatch> Ticket<D> {
    /// Opens a write of `op` in `session` and posts it to the board (see
    /// [`Handle::submit`](crate::Handle::submit)); `wake`: whether to wake the replica's
    /// thread to take it. Waits while the session has as many writes in flight as its lane
    /// has berths. `waits_at_once`: whether the caller waits for the ticket right away (see
    /// `Ticket::submitted_at`).
    ///
    /// # Safety
    /// Unless `counted`, the caller keeps `session` alive until the ticket is dropped or has
    /// returned its outcome (see [`Keep`]).
    pub(crate) unsafe fn submit(
        session: &Arc<Session<D>>,
        mut op: D::WriteOp,
        wake: bool,
        waits_at_once: bool,
        counted: bool,
    ) -> Result<Self, Error> {
        let shared = &*session.shared;
        let started = shared.recent_time();
        let mut now = started;
        let deadline = started.after(shared.options.timing.deadline);
        let mut idler = Idler::new(shared.options.idle, shared.options.spin, true);
        loop {
            // SAFETY: our caller's promise.
            match unsafe { Ticket::try_open(session, op, now, wake, counted) } {
                Ok(mut ticket) => {
                    ticket.submitted_at = waits_at_once.then_some(now);
                    return Ok(ticket);
                }
                Err(Refusal::NoLane(error)) => return Err(error),
                Err(Refusal::Full(back)) => op = back,
            }
            // Its lane is full: wait for the oldest of its writes to finish, running the
            // replicas' rounds that finish it meanwhile.
            if let Some(error) = ended(shared) {
                return Err(error);
            }
            if now >= deadline {
                return Err(no_quorum(now.since(started)));
            }
            if help_all(shared, write_target(shared, session.home), || false) {
                idler.reset();
            } else {
                let park = park_slice(shared.instant(deadline), shared.options.tick);
                idler.idle(|| std::thread::sleep(park));
            }
            now = shared.time();
        }
    }

    /// Opens a write of `op` in `session` at `now` and posts it, unless the session's lane
    /// is full (the operation comes back) or it has none; `wake`: whether to wake the
    /// replica the client machine announces it to.
    ///
    /// # Safety
    /// As for [`Ticket::submit`].
    pub(crate) unsafe fn try_open(
        session: &Arc<Session<D>>,
        op: D::WriteOp,
        now: Time,
        wake: bool,
        counted: bool,
    ) -> Result<Self, Refusal<D::WriteOp>> {
        let shared = &*session.shared;
        let (address, numbers) = session.open(op, now, counted.then_some(session))?;
        // No fence here for shutdown: a waiter looks at `stop` after the `SeqCst` fence of
        // `EventCount::prepare_wait` before it parks, which pairs with shutdown's fence
        // before its sweep of the board (`Cluster::stop_threads`).
        let mut ticket = Ticket {
            session: NonNull::from(&**session),
            counted,
            client: session.client,
            address,
            write: Write::new(numbers, session.home, now, &shared.options.timing),
            finished: false,
            deferral: Deferral::default(),
            submitted_at: None,
        };
        if let WriteStep::Submit(to) = ticket.write.next(now, shared) {
            ticket.announce(to, wake, now);
        }
        Ok(ticket)
    }

    /// Whether the write has been applied (so `wait` will not block).
    pub fn is_done(&self) -> bool {
        // SAFETY: not finished (checked first).
        self.finished || unsafe { self.session() }.has_answer(self.address, self.write.numbers().sequence)
    }

    /// The ticket's session.
    ///
    /// # Safety
    /// The ticket is not finished, and the reference is not used once it is: until then a
    /// counted ticket is counted by its session, which holds an `Arc` of itself while it
    /// counts any, and an uncounted one lives in a call that keeps the session alive
    /// (`submit`'s contract; see [`Keep`]). The reference's lifetime is not tied to the
    /// ticket's borrow, so that the ticket's other fields stay usable beside it.
    #[inline]
    unsafe fn session<'s>(&self) -> &'s Session<D> {
        debug_assert!(!self.finished, "a finished ticket touched its session");
        // SAFETY: the caller's promise.
        unsafe { self.session.as_ref() }
    }

    /// Waits for the write's response. While waiting, runs the replicas' rounds where
    /// their threads are parked, and tells a new leader of the write when leadership moves
    /// (every leader collects it from the board; duplicates are applied once).
    ///
    /// A ticket is also a [`Future`] with the same output: `handle.submit(op)?.await`
    /// keeps every promise of `wait` on any executor (see [`Ticket`]).
    ///
    /// # Errors
    /// As for [`Handle::execute_mut`](crate::Handle::execute_mut).
    pub fn wait(mut self) -> Result<D::Response, Error> {
        // Copied out rather than borrowed through a clone of the session's `Arc<Shared>`:
        // the clone would write the reference count, which shares its cache line with
        // what every call reads, on every write.
        // SAFETY: not finished (a ticket is finished only by the look that returns its
        // outcome, below).
        let shared = &*unsafe { self.session() }.shared;
        let (tick, deadline) = (shared.options.tick, shared.instant(self.write.deadline()));
        let mut idler = Idler::new(shared.options.idle, shared.options.spin, true);
        loop {
            match self.step() {
                Step::Done(outcome) => return outcome,
                Step::Progressed | Step::Deferred => idler.reset(),
                Step::Idle => {
                    // SAFETY: not finished (`step` returned no outcome).
                    let session = unsafe { self.session() };
                    let address = self.address;
                    idler.idle(|| {
                        let Some(answers) = session.answers() else { return };
                        let key = answers.prepare_wait();
                        if session.is_answered(address) || ended(&*session.shared).is_some() {
                            answers.cancel_wait(key);
                        } else {
                            answers.wait(key, park_slice(deadline, tick));
                        }
                    });
                }
            }
        }
    }

    /// One look at the write, shared by `wait` and `poll`: its outcome if it has one, else
    /// what the client machine says (end it, or announce it to a new leader), and a pass
    /// of replica rounds run for it (`help.rs`).
    fn step(&mut self) -> Step<D::Response> {
        // SAFETY: not finished (a finished ticket is not looked at again: `wait` returns,
        // `poll` asserts, `drop` skips it), and not used below once `finish` ends it.
        let session = unsafe { self.session() };
        let sequence = self.write.numbers().sequence;
        if session.is_answered(self.address) {
            // SAFETY: not finished.
            if let Some((outcome, keep)) = unsafe { Session::take(self.session, sequence, self.counted) } {
                return self.finish(outcome, keep);
            }
        }
        let now = self.submitted_at.take().unwrap_or_else(|| session.shared.time());
        match self.write.next(now, &*session.shared) {
            WriteStep::End(error) => {
                // SAFETY: not finished.
                return match unsafe { Session::give_up(self.session, sequence, self.counted) } {
                    (GaveUp::Retracted, keep) => self.finish(Err(error), keep),
                    (GaveUp::Answered(outcome), keep) => self.finish(outcome, keep),
                    // Its answer is being written: it lands in a moment. (A spin hint: under
                    // loom a yield, so that the model lets the answerer finish.)
                    (GaveUp::Answering, _) => {
                        spin_loop();
                        Step::Progressed
                    }
                };
            }
            WriteStep::Submit(to) => {
                // A new leader, or a long silence: make sure the replica it goes to runs.
                self.announce(to, true, now);
                let look_at = self.write.retry_at().min(self.write.deadline());
                session.look_at(sequence, look_at);
                return Step::Progressed;
            }
            WriteStep::Wait => {}
        }
        let shared = &session.shared;
        let address = self.address;
        let first = self.write.submitted_to().unwrap_or(session.home);
        // Run the replicas' rounds here rather than wait for their threads (`help.rs`):
        // the one the write was announced to first, which leads and proposes it.
        // Relaxed: a hint; a stale value only changes who runs the next rounds.
        if session.opened.load(Ordering::Relaxed) > sequence + DEFER_BEHIND {
            // Many more of this session's writes are behind this one: it pipelines deep.
            match help_write(shared, first, &mut self.deferral, || session.is_answered(address)) {
                Helped::Progressed => return Step::Progressed,
                Helped::Deferred => return Step::Deferred,
                Helped::Idle => {}
            }
        } else if help_all(shared, first, || session.is_answered(address)) {
            return Step::Progressed;
        }
        Step::Idle
    }

    /// Reports `outcome` (the session has closed the write and ended the ticket, and handed
    /// back `keep`, dropped here: the ticket no longer touches its session).
    fn finish(&mut self, outcome: Result<D::Response, Error>, keep: Keep<D>) -> Step<D::Response> {
        self.finished = true;
        drop(keep);
        Step::Done(outcome)
    }

    /// Tells the client machine the write went to replica `to` at `now`: every leader
    /// collects it from the board, so this only wakes that replica's thread (if `wake`) so
    /// that it runs.
    fn announce(&mut self, to: usize, wake: bool, now: Time) {
        // SAFETY: not finished (called while the write is open).
        let shared = &*unsafe { self.session() }.shared;
        if wake {
            shared.replicas[to].wake.notify();
        }
        self.write.submitted(to, now, shared, &shared.options.timing);
    }
}

impl<D: Dispatch> Drop for Ticket<D> {
    /// A ticket dropped before it took its outcome leaves its write on the board; its
    /// session lets go of it once it is answered or past its deadline (see [`Ticket`]).
    fn drop(&mut self) {
        if !self.finished {
            // SAFETY: not finished.
            let keep = unsafe { Session::abandon(self.session, self.write.numbers().sequence, self.counted) };
            self.finished = true;
            drop(keep);
        }
    }
}

/// Awaiting a ticket is [`Ticket::wait`] without blocking the thread: the task sleeps until
/// the write is answered, and the cluster wakes it for what `wait` would look at (a new
/// leader to announce it to, the retry interval, the deadline, shutdown; `reminder.rs`), so
/// it needs no executor timer and is never re-polled in a loop. Polling also runs the
/// replicas' rounds for the write when their threads are parked, as `wait` does.
///
/// # Panics
/// If polled again after it returned `Ready`, like most futures.
impl<D: Dispatch> Future for Ticket<D> {
    type Output = Result<D::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ticket = self.get_mut();
        assert!(!ticket.finished, "a corum Ticket was polled after it returned its outcome");
        loop {
            match ticket.step() {
                Step::Done(outcome) => return Poll::Ready(outcome),
                Step::Progressed => continue,
                // Another client runs the rounds: a task does not spin on it; its
                // answer wakes it.
                Step::Idle | Step::Deferred => {}
            }
            // SAFETY: not finished (`step` returned no outcome).
            let session = unsafe { ticket.session() };
            let Some(answers) = session.answers() else { unreachable!("a posted write's session has a lane") };
            let key = answers.prepare_wait();
            if session.is_answered(ticket.address) {
                answers.cancel_wait(key);
                continue; // answered meanwhile: the next step takes it
            }
            if !answers.wait_async(key, cx.waker()) {
                continue; // an answer on the lane landed meanwhile: look again
            }
            if !session.watched.load(Ordering::Relaxed) {
                // Relaxed: the flag only saves taking the reminder's lock again; it is
                // set after the session is watched.
                // The session's `Arc` of itself for its counted tickets (a polled ticket is
                // counted: only `Handle::execute_mut` makes uncounted ones, and waits).
                let watched = session.keeper().is_some_and(|me| session.shared.reminders.watch(&me));
                if watched {
                    session.watched.store(true, Ordering::Relaxed);
                } else {
                    // Unwatched (no thread could be started): ask to be polled again
                    // rather than sleep past a deadline nobody would report.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            // After leaving the waker: a change the reminder thread looked at before it
            // woke the lane is seen here (`reminder.rs`).
            if ended(&*session.shared).is_some() || ticket.write.routing_moved(&*session.shared) {
                continue;
            }
            return Poll::Pending;
        }
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use crate::runtime::test_support::Counter;
    use crate::sync::Arc;
    use crate::Builder;

    /// A session holds an `Arc` of itself exactly while it has counted tickets: they
    /// outlive the handle they came from, and the session goes with the last of them,
    /// whether it was waited for or dropped. A synchronous write's ticket is not counted.
    #[test]
    fn a_session_lives_as_long_as_its_counted_tickets_and_no_longer() {
        let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build().expect("build");
        let handle = cluster.handle();
        let session = Arc::downgrade(handle.session());
        assert_eq!(handle.execute_mut(1).expect("write"), 1);
        assert_eq!(Arc::strong_count(handle.session()), 1, "a synchronous write left a reference");
        let tickets: Vec<_> = (0..3).map(|_| handle.submit(1).expect("submit")).collect();
        assert_eq!(Arc::strong_count(handle.session()), 2, "three tickets: the handle's and the session's own");
        drop(handle);
        let [first, second, third] = <[_; 3]>::try_from(tickets).expect("three tickets");
        assert!(first.wait().expect("first") >= 2);
        drop(second);
        assert!(session.upgrade().is_some(), "the session went before its last ticket");
        assert!(third.wait().expect("third") >= 2);
        assert!(session.upgrade().is_none(), "the session outlived its last ticket");
        // Its lane went back with it: a new handle writes.
        assert_eq!(cluster.handle().execute_mut(1).expect("write"), 5);
        cluster.shutdown().expect("shutdown");
    }
}
