//! The futures of [`Handle::execute_async`](crate::Handle::execute_async) and
//! [`Handle::execute_mut_async`](crate::Handle::execute_mut_async): a read and a write
//! awaited without blocking the thread.
//!
//! A read that finds its copy caught up is served in its first poll. One whose copy lags
//! runs replicas' rounds for it (`help.rs`) as a waiting thread does, then leaves its waker
//! in that copy's event count (`ReplicaShared::applied`, notified whenever the copy applies
//! more) and with the reminder thread (`reminder.rs`), which wakes it every tick while it
//! waits so that it looks at its deadline and at moving to another copy. A write is posted
//! to the board by its first poll (or a later one, while its session's lane is full), then
//! awaited as its [`Ticket`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::handle::{look, serve, Look};
use super::session::{Refusal, Session};
use super::ticket::Ticket;
use crate::client::read::{self, may_serve, Read};
use crate::client::{admit, ended, no_quorum, Time};
use crate::sync::Arc;
use crate::{Dispatch, Error};

/// Rounds of replicas a poll of a read runs (`Look::Again`) before it yields to its
/// executor: a read whose copy keeps being one write behind under a stream of writes must
/// not hold its executor's thread.
const LOOKS_PER_POLL: u32 = 64;

/// A read awaited without blocking the thread, from
/// [`Handle::execute_async`](crate::Handle::execute_async): its output is what
/// [`Handle::execute`](crate::Handle::execute) returns. `Unpin`, and `Send` where
/// `D::ReadOp` is.
///
/// # Panics
/// If polled again after it returned `Ready`, like most futures.
#[must_use = "a future does nothing unless polled"]
pub struct ReadFuture<D: Dispatch> {
    session: Arc<Session<D>>,
    op: D::ReadOp,
    /// The read, or why it ended before it began (`Err`, taken when reported).
    read: Result<Read, Option<Error>>,
    finished: bool,
}

// The future never pins its fields: the operation is only ever borrowed, so moving the
// future between polls is sound whatever the operation's type.
impl<D: Dispatch> Unpin for ReadFuture<D> {}

impl<D: Dispatch> fmt::Debug for ReadFuture<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadFuture").field("client", &self.session.client).finish_non_exhaustive()
    }
}

impl<D: Dispatch> ReadFuture<D> {
    pub(super) fn new(session: &Arc<Session<D>>, op: D::ReadOp) -> Self {
        let shared = &*session.shared;
        let read = admit(shared).map(|()| read::start(shared, session.home)).map_err(Some);
        Self { session: Arc::clone(session), op, read, finished: false }
    }
}

impl<D: Dispatch> Future for ReadFuture<D> {
    type Output = Result<D::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        assert!(!this.finished, "a corum ReadFuture was polled after it returned its outcome");
        let outcome = poll_read(this, cx);
        this.finished = outcome.is_ready();
        outcome
    }
}

fn poll_read<D: Dispatch>(future: &mut ReadFuture<D>, cx: &mut Context<'_>) -> Poll<Result<D::Response, Error>> {
    let ReadFuture { session, op, read, .. } = future;
    let read = match read {
        Ok(read) => read,
        Err(error) => return Poll::Ready(Err(error.take().expect("reported once"))),
    };
    let shared = &session.shared;
    if read.ready(&**shared) {
        return Poll::Ready(serve(session, read.replica(), Some(read.watermark()), op));
    }
    for _ in 0..LOOKS_PER_POLL {
        let replica = match look(session, read, op) {
            Look::Done(outcome) => return Poll::Ready(outcome),
            Look::Again => continue,
            Look::Wait(replica) => replica,
        };
        let target = &shared.replicas[replica];
        let key = target.applied.prepare_wait();
        if may_serve(target.slot_applied(), read.watermark()) || shared.is_stopped() {
            target.applied.cancel_wait(key);
            continue;
        }
        if !target.applied.wait_async(key, cx.waker()) {
            continue; // the copy applied more meanwhile: look again
        }
        if !shared.reminders.remind(cx.waker(), shared) {
            // No reminder thread could be started: ask to be polled again rather than
            // sleep past a deadline nobody would report.
            cx.waker().wake_by_ref();
        }
        return Poll::Pending;
    }
    // Progress in every look: let the executor run other tasks, then look again.
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// A write awaited without blocking the thread, from
/// [`Handle::execute_mut_async`](crate::Handle::execute_mut_async): its output is what
/// [`Handle::execute_mut`](crate::Handle::execute_mut) returns.
///
/// # Panics
/// If polled again after it returned `Ready`, like most futures.
#[must_use = "a future does nothing unless polled: its write is submitted by the first poll"]
pub struct WriteFuture<D: Dispatch> {
    stage: WriteStage<D>,
}

/// Where a [`WriteFuture`] is.
enum WriteStage<D: Dispatch> {
    /// Not posted yet (its first poll posts it, or a later one where the session's lane
    /// was full): the session, the operation, and when the call was made.
    Unposted { session: Arc<Session<D>>, op: D::WriteOp, started: Time },
    /// Posted: awaited as its ticket.
    Posted(Ticket<D>),
    /// Ended before it was posted (the error, taken when reported).
    Ended(Option<Error>),
}

// The future never pins what it holds (the operation is moved into the board, the ticket
// is polled through `Pin::new`, which needs it `Unpin`, and it is), so it is `Unpin`
// whatever the operation is.
impl<D: Dispatch> Unpin for WriteFuture<D> {}

impl<D: Dispatch> fmt::Debug for WriteFuture<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stage {
            WriteStage::Unposted { session, .. } => {
                f.debug_struct("WriteFuture").field("client", &session.client).finish()
            }
            WriteStage::Posted(ticket) => f.debug_struct("WriteFuture").field("ticket", ticket).finish(),
            WriteStage::Ended(error) => f.debug_struct("WriteFuture").field("error", error).finish(),
        }
    }
}

impl<D: Dispatch> WriteFuture<D> {
    /// A write of `op` in `session`, or one that ended at once with `error`.
    pub(super) fn new(session: &Arc<Session<D>>, op: D::WriteOp, admitted: Result<(), Error>) -> Self {
        let stage = match admitted {
            Ok(()) => WriteStage::Unposted { session: Arc::clone(session), op, started: session.shared.time() },
            Err(error) => WriteStage::Ended(Some(error)),
        };
        Self { stage }
    }
}

impl<D: Dispatch> Future for WriteFuture<D> {
    type Output = Result<D::Response, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let future = self.get_mut();
        loop {
            match &mut future.stage {
                WriteStage::Posted(ticket) => return Pin::new(ticket).poll(cx),
                WriteStage::Ended(error) => {
                    let error = error.take().expect("a corum WriteFuture was polled after it returned its outcome");
                    return Poll::Ready(Err(error));
                }
                WriteStage::Unposted { session, started, .. } => {
                    let shared = &*session.shared;
                    let now = shared.time();
                    if let Some(error) = ended(shared) {
                        future.stage = WriteStage::Ended(Some(error));
                        continue;
                    }
                    if now >= started.after(shared.options.timing.deadline) {
                        future.stage = WriteStage::Ended(Some(no_quorum(now.since(*started))));
                        continue;
                    }
                    let WriteStage::Unposted { session, op, started } =
                        std::mem::replace(&mut future.stage, WriteStage::Ended(None))
                    else {
                        unreachable!("matched above")
                    };
                    let wake = session.shared.options.wake_peers;
                    // SAFETY: a counted ticket keeps its session alive itself.
                    future.stage = match unsafe { Ticket::try_open(&session, op, now, wake, true) } {
                        Ok(ticket) => WriteStage::Posted(ticket),
                        Err(Refusal::NoLane(error)) => WriteStage::Ended(Some(error)),
                        Err(Refusal::Full(op)) => {
                            // Back-pressure: the session's oldest writes finish as the
                            // replicas' rounds run, which nothing announces. Yield to the
                            // executor and look again, as a waiting thread looks again
                            // after a short sleep.
                            future.stage = WriteStage::Unposted { session, op, started };
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    };
                }
            }
        }
    }
}
