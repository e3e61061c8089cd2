//! A write in flight ([`Ticket`]): waited for by a thread ([`Ticket::wait`]) or awaited by a
//! task (its [`Future`]), both through one look at a time ([`Ticket::step`]) that drives the
//! client machine's write (`crate::client::write`): resubmit it where and when the machine
//! says, run replicas' rounds for it meanwhile (`help.rs`), report its outcome.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::help::{help_all, help_write, Deferral, Helped, DEFER_BEHIND};
use super::idle::{park_slice, Idler};
use super::session::Session;
use super::shared::Request;
use crate::client::session::Numbers;
use crate::client::write::{Step as WriteStep, Write};
use crate::client::{ended, Time};
use crate::sync::atomic::{fence, Ordering};
use crate::sync::Arc;
use crate::{Dispatch, Error};

/// A write in flight, from [`Handle::submit`](crate::Handle::submit). [`Ticket::wait`]
/// returns its response.
///
/// Writes submitted from one handle without waiting in between are concurrent operations:
/// they are normally applied in submission order, but a leader change may reorder them.
/// Wait for a ticket before submitting a write that must come after it. A ticket dropped
/// without waiting leaves its write submitted once: it is not retried if a leader fails,
/// and once the deadline has passed without it being applied, its outcome stays unknown
/// (as with [`Error::NoQuorum`]) and it no longer holds back the session's exactly-once
/// record.
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
    session: Arc<Session<D>>,
    request: Arc<Request<D>>,
    /// The client machine's write: where and when to submit it, when to give up.
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
            .field("client", &self.request.client)
            .field("sequence", &self.request.sequence)
            .field("done", &self.request.completion.is_done())
            .finish()
    }
}

/// What one look at a waiting write found (`Ticket::step`).
enum Step<R> {
    /// The outcome to report.
    Done(Result<R, Error>),
    /// Work was done for it (a resubmission, a replica's round): look again at once.
    Progressed,
    /// Another client is running rounds that carry it (`help::help_write`): a waiting
    /// thread looks again at once, a task waits for its completion to wake it.
    Deferred,
    /// Nothing to do but wait.
    Idle,
    /// A resubmission is due but the target's queue is full: wait for it to drain.
    Blocked,
}

impl<D: Dispatch> Ticket<D> {
    /// Opens a write of `op` in `session` and submits it (see
    /// [`Handle::submit`](crate::Handle::submit)); `wake`: whether to wake the replica's
    /// thread to take it. Waits while the target's queue is full. `waits_at_once`: whether
    /// the caller waits for the ticket right away (see `Ticket::submitted_at`).
    pub(crate) fn submit(
        session: &Arc<Session<D>>,
        op: D::WriteOp,
        wake: bool,
        waits_at_once: bool,
    ) -> Result<Self, Error> {
        let mut ticket = Ticket::open(session, op);
        let shared = &*session.shared;
        let mut now = ticket.write.started();
        let mut idler = Idler::new(shared.options.idle, shared.options.spin, true);
        loop {
            match ticket.write.next(now, shared) {
                WriteStep::Submit(to) if ticket.try_submit(to, wake, now) => {
                    ticket.submitted_at = waits_at_once.then_some(now);
                    return Ok(ticket);
                }
                WriteStep::End(error) => {
                    ticket.forget();
                    return Err(error);
                }
                // The queue is full: wait for the replica to drain it.
                WriteStep::Submit(_) | WriteStep::Wait => {}
            }
            let deadline = shared.instant(ticket.write.deadline());
            idler.idle(|| std::thread::sleep(park_slice(deadline, shared.options.tick)));
            now = shared.time();
        }
    }

    /// Opens a write of `op` in `session` without submitting it: its first look
    /// (`Ticket::step`, which a poll takes) submits it.
    pub(crate) fn open(session: &Arc<Session<D>>, op: D::WriteOp) -> Self {
        let shared = &*session.shared;
        let now = shared.time();
        let (request, numbers) = session.open(op, now);
        let write = Write::new(numbers, session.home, now, &shared.options.timing);
        Ticket {
            session: Arc::clone(session),
            request,
            write,
            finished: false,
            deferral: Deferral::default(),
            submitted_at: None,
        }
    }

    /// Takes a write that was opened and never submitted out of its session, so that its
    /// session's floor need not wait for its deadline: nothing can apply it.
    pub(crate) fn abandon_unsubmitted(&mut self) {
        if self.write.submitted_to().is_none() && !self.finished {
            self.forget();
            self.finished = true;
        }
    }

    /// Whether the write has been applied (so `wait` will not block).
    pub fn is_done(&self) -> bool {
        self.request.completion.is_done()
    }

    /// Waits for the write's response. While waiting, resubmits the write to a new leader
    /// if leadership moved, and to the current one after the retry interval; duplicates are
    /// applied once.
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
        let shared = &*self.session.shared;
        let (tick, deadline) = (shared.options.tick, shared.instant(self.write.deadline()));
        let mut idler = Idler::new(shared.options.idle, shared.options.spin, true);
        loop {
            match self.step() {
                Step::Done(outcome) => return outcome,
                Step::Progressed | Step::Deferred => idler.reset(),
                Step::Idle | Step::Blocked => {
                    let completion = &self.request.completion;
                    idler.idle(|| completion.wait_for(park_slice(deadline, tick)));
                }
            }
        }
    }

    /// One look at the write, shared by `wait` and `poll`: its outcome if it has one, else
    /// what the client machine says (end it, or submit it again), and a pass of replica
    /// rounds run for it (`help.rs`).
    fn step(&mut self) -> Step<D::Response> {
        if let Some(outcome) = self.request.completion.take() {
            return self.finish(outcome);
        }
        let now = self.submitted_at.take().unwrap_or_else(|| self.session.shared.time());
        let mut blocked = false;
        match self.write.next(now, &*self.session.shared) {
            WriteStep::End(error) => return self.finish(Err(error)),
            WriteStep::Submit(to) => {
                // A new leader, or a long silence: submit again. If the queue is full the
                // retry waits for the replica to take some of it.
                blocked = true;
                if self.try_submit(to, true, now) {
                    let look_at = self.write.retry_at().min(self.write.deadline());
                    self.session.look_at(self.request.sequence, look_at);
                    return Step::Progressed;
                }
            }
            WriteStep::Wait => {}
        }
        let shared = &self.session.shared;
        let request = &self.request;
        let first = self.write.submitted_to().unwrap_or(self.session.home);
        // Run the replicas' rounds here rather than wait for their threads (`help.rs`):
        // the one the write went to first, which proposes it.
        // Relaxed: a hint; a stale value only changes who runs the next rounds.
        if self.session.opened.load(Ordering::Relaxed) > request.sequence + DEFER_BEHIND {
            // Many more of this session's writes are behind this one: it pipelines deep.
            match help_write(shared, first, &mut self.deferral, || request.completion.is_done()) {
                Helped::Progressed => return Step::Progressed,
                // A resubmission waiting for room is still due: a task must look again
                // soon (`Blocked`), not sleep until its completion.
                Helped::Deferred => return if blocked { Step::Blocked } else { Step::Deferred },
                Helped::Idle => {}
            }
        } else if help_all(shared, first, || request.completion.is_done()) {
            return Step::Progressed;
        }
        if blocked {
            Step::Blocked
        } else {
            Step::Idle
        }
    }

    /// Reports `outcome`: the session's floor may pass the write from now on.
    fn finish(&mut self, outcome: Result<D::Response, Error>) -> Step<D::Response> {
        self.forget();
        self.finished = true;
        Step::Done(outcome)
    }

    /// Pushes the request to replica `to`'s queue at `now`; false if it is full. `wake`:
    /// whether to wake the replica's thread to take it.
    fn try_submit(&mut self, to: usize, wake: bool, now: Time) -> bool {
        debug_assert_eq!(
            self.write.numbers(),
            Numbers { sequence: self.request.sequence, floor: self.request.floor },
            "every submission carries the write's numbers, which its request holds"
        );
        let shared = &*self.session.shared;
        let replica = &shared.replicas[to];
        if replica.submissions.push(Arc::clone(&self.request)).is_err() {
            return false;
        }
        // SeqCst fence pairs with the one in `Cluster::stop_threads` (store buffering):
        // either shutdown's drain of the queue sees this write and fails it, which wakes
        // its waiter, or this thread's next look at `stop` (in `Ticket::wait`) sees the
        // shutdown. Without it, a write pushed while shutdown drained the queue could be
        // missed by both, and its waiter would wait out its deadline.
        fence(Ordering::SeqCst);
        if wake {
            replica.wake.notify();
        }
        self.write.submitted(to, now, shared, &shared.options.timing);
        true
    }

    /// Takes the write out of its session: its outcome has been reported (or given up on),
    /// so the session's floor may pass it.
    fn forget(&mut self) {
        self.session.close(self.request.sequence);
    }
}

/// Awaiting a ticket is [`Ticket::wait`] without blocking the thread: the task sleeps until
/// the write is applied, and the cluster wakes it for what `wait` would look at (a new
/// leader to resubmit to, the retry interval, the deadline, shutdown; `reminder.rs`), so it
/// needs no executor timer and is never re-polled in a loop. Polling also runs the
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
                // completion wakes it.
                Step::Idle | Step::Deferred => {}
                Step::Blocked => {
                    // Back-pressure: the queue drains as the replica's rounds run, which
                    // nothing announces. Yield to the executor and look again, as a
                    // waiting thread looks again after a short sleep.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            if ticket.request.completion.register(cx.waker()) {
                continue; // filled meanwhile: the next step takes it
            }
            let session = &ticket.session;
            if !session.watched.load(Ordering::Relaxed) {
                // Relaxed: the flag only saves taking the reminder's lock again; it is
                // set after the session is watched.
                if session.shared.reminders.watch(session) {
                    session.watched.store(true, Ordering::Relaxed);
                } else {
                    // Unwatched (no thread could be started): ask to be polled again
                    // rather than sleep past a deadline nobody would report.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            // After registering (the completion's lock): a change the reminder thread looked
            // at before taking that lock is seen here (`reminder.rs`).
            if ended(&*session.shared).is_some() || ticket.write.routing_moved(&*session.shared) {
                continue;
            }
            return Poll::Pending;
        }
    }
}
