//! Client handles: linearizable writes (synchronous or pipelined through tickets) and
//! linearizable reads served by a replica's own copy.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use super::completion::Completion;
use super::help::{help_all, help_write, Deferral, Helped, DEFER_BEHIND};
use super::idle::{now, park_slice, Idler};
use super::{Command, Request, Shared, RUNNING};
use crate::session::{ClientId, Outstanding};
use crate::state::may_serve;
use crate::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};
use crate::{Dispatch, Error};

/// One client session's state, shared by its handle and tickets.
pub(crate) struct Session<D: Dispatch> {
    /// The cluster. Tickets reach it through their session: cloning this `Arc` for every
    /// write would make every client thread write one shared reference count per write.
    pub(crate) shared: Arc<Shared<D>>,
    client: ClientId,
    /// The replica whose copy serves this session's reads while it runs.
    home: usize,
    /// Next sequence number and the writes not yet known complete. The lowest of those is
    /// the session's floor (see `crate::session`).
    state: Mutex<SessionState<D>>,
    /// Whether the reminder thread watches this session (`reminder.rs`): set when one of
    /// its tickets is first awaited.
    watched: AtomicBool,
    /// The sequence number after the last write submitted: a ticket whose session has
    /// submitted writes after it belongs to a writer that pipelines (`Ticket::step`).
    submitted: AtomicU64,
}

/// Requests of finished writes a session keeps to reuse for its next writes
/// ([`SessionState::spare`]).
const SPARE_REQUESTS: usize = 32;

/// A session's writes, guarded by its lock.
struct SessionState<D: Dispatch> {
    /// The writes not yet known complete; the lowest of them is the session's floor (see
    /// `crate::session`).
    outstanding: Outstanding<Waiting<D>>,
    /// The requests of up to [`SPARE_REQUESTS`] of its writes whose outcome was reported,
    /// oldest first. A new write reuses the oldest once nothing else holds it, instead of
    /// allocating, so that a request's memory stays with the client thread that allocated
    /// it. Freed by whichever thread ran the round that let go of it last, requests went
    /// through the allocator's slow paths on both threads (16 % of the time in a profile
    /// of pipelined writes to one replica from two clients). A spare keeps its write's
    /// operation until it is reused or the handle is dropped.
    spare: VecDeque<Command<D>>,
}

impl<D: Dispatch> SessionState<D> {
    /// A request for a new write: the oldest spare one if nothing else holds it any more,
    /// else a new one.
    fn request(&mut self, request: Request<D>) -> Command<D> {
        if let Some(spare) = self.spare.front_mut().and_then(Arc::get_mut) {
            *spare = request;
            return self.spare.pop_front().expect("the front was there");
        }
        Arc::new(request)
    }

    /// Keeps the request of a write whose outcome was reported, for [`SessionState::request`],
    /// if only the session and the write's ticket hold it. One a replica's log still holds
    /// is left to be freed where the log lets go of it: kept too, they stayed held for
    /// longer than the spares last where logs truncate late, and only added work (10 % of
    /// pipelined writes with 3 replicas and 2 clients on 2 cores).
    fn keep(&mut self, command: Command<D>) {
        // A hint: `request` reuses a spare only once `Arc::get_mut` finds it unshared.
        // A write that ended without an outcome (its deadline, shutdown) may still hold
        // the waker of a task that awaited it: not kept, so that nothing keeps the task.
        if Arc::strong_count(&command) > 2 || !command.completion.is_done() {
            return;
        }
        if self.spare.len() == SPARE_REQUESTS {
            self.spare.pop_front();
        }
        self.spare.push_back(command);
    }
}

/// A write of the session not yet known complete.
struct Waiting<D: Dispatch> {
    command: Command<D>,
    /// When it was first submitted.
    submitted: Instant,
    /// When the reminder thread next wakes a task awaiting it (`reminder.rs`): its retry
    /// time or its deadline, whichever comes first.
    look_at: Instant,
}

/// A client's handle on a cluster: one session with its own client id.
///
/// Writes ([`Handle::execute_mut`], [`Handle::submit`]) are linearizable and take effect
/// exactly once, also when they are retried across a leader change. Reads
/// ([`Handle::execute`]) are linearizable and served from a replica's own copy, so they
/// scale with replicas. Cloning a handle opens a new session; give each thread its own.
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
/// std::thread::scope(|scope| {
///     for _ in 0..4 {
///         let handle = cluster.handle(); // one session per thread
///         scope.spawn(move || handle.execute_mut(1));
///     }
/// });
/// assert_eq!(cluster.handle().execute(())?, 4); // sees every write that completed
/// # cluster.shutdown()?;
/// # Ok::<(), corum::Error>(())
/// ```
pub struct Handle<D: Dispatch> {
    session: Arc<Session<D>>,
}

/// A write in flight, from [`Handle::submit`]. [`Ticket::wait`] returns its response.
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
    command: Command<D>,
    submitted_to: usize,
    /// The leader hint when the write was last submitted: a new leader means the write may
    /// have been lost with the old one (or on its way to it), so it is submitted again.
    leader_seen: usize,
    started: Instant,
    /// When the write is submitted again if it has not completed by then.
    retry_at: Instant,
    /// Whether the outcome has been returned (by `poll`).
    finished: bool,
    /// How long it has deferred to another client running rounds (`help::help_write`).
    deferral: Deferral,
}

impl<D: Dispatch> fmt::Debug for Handle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("client", &self.session.client).field("home", &self.session.home).finish()
    }
}

impl<D: Dispatch> fmt::Debug for Ticket<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ticket")
            .field("client", &self.command.client)
            .field("sequence", &self.command.sequence)
            .field("done", &self.command.completion.is_done())
            .finish()
    }
}

impl<D: Dispatch> Clone for Handle<D> {
    /// Opens a new session (a new client id) on the same cluster.
    fn clone(&self) -> Self {
        Handle::new(Arc::clone(&self.session.shared))
    }
}

impl<D: Dispatch> Handle<D> {
    pub(crate) fn new(shared: Arc<Shared<D>>) -> Self {
        // Relaxed: ids only need to be unique, which the RMW guarantees.
        let client = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let home = (client % shared.replicas.len() as u64) as usize;
        let state = Mutex::new(SessionState { outstanding: Outstanding::default(), spare: VecDeque::new() });
        Self {
            session: Arc::new(Session {
                shared,
                client,
                home,
                state,
                watched: AtomicBool::new(false),
                submitted: AtomicU64::new(0),
            }),
        }
    }

    /// The cluster this handle's session belongs to.
    fn shared(&self) -> &Shared<D> {
        &self.session.shared
    }

    /// This session's client id.
    pub fn client_id(&self) -> u64 {
        self.session.client
    }

    /// Applies `op` to the replicated object, linearizably and exactly once, and returns
    /// its response. Waits for a majority to commit it and a replica to apply it.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after shutdown; [`Error::Diverged`] once the copies were found
    /// forked; [`Error::NoQuorum`] if it did not complete
    /// within the deadline (it may still take effect); [`Error::OperationPanicked`] if the
    /// object's `dispatch_mut` panicked on it.
    pub fn execute_mut(&self, op: D::WriteOp) -> Result<D::Response, Error> {
        // No need to wake the replica's thread when this thread runs its round next (see
        // `Ticket::wait`).
        self.submit_and(op, !self.shared().options.helping)?.wait()
    }

    /// Submits `op` and returns at once with a [`Ticket`] for its response, so one thread
    /// can keep many writes in flight (they share batches and rounds of the protocol).
    /// Where replicas share cores with clients (the process has at most one core more than
    /// it has replicas), the replica's thread is not woken for it: the write is proposed
    /// when a client waits for a ticket (waiting runs the replicas' rounds, see
    /// [`Builder::helping`](crate::Builder::helping)), or at the replica's next tick at the
    /// latest.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after shutdown; [`Error::Diverged`] once the copies were found
    /// forked; [`Error::NoQuorum`] if the submission queue
    /// stayed full until the deadline.
    pub fn submit(&self, op: D::WriteOp) -> Result<Ticket<D>, Error> {
        // Wake the replica's thread only where it has a core of its own; elsewhere it would
        // take a core from a client thread, and the write is proposed when a client waits
        // for a ticket (`Ticket::wait` runs the replicas' rounds), or at the replica's next
        // tick at the latest.
        self.submit_and(op, self.shared().options.wake_peers)
    }

    /// [`Handle::submit`]; `wake`: whether to wake the replica's thread to take the write.
    fn submit_and(&self, op: D::WriteOp, wake: bool) -> Result<Ticket<D>, Error> {
        self.shared().accepting()?;
        let options = &self.shared().options;
        let started = now();
        let deadline = started + options.deadline;
        let command = {
            let mut state = self.session.state.lock();
            // Writes whose tickets were dropped leave the outstanding set once applied, or
            // once their deadline has passed: a write not applied by then may have been
            // lost with a replica, and its dropped ticket will not retry it. Past the
            // deadline its outcome is unknown, as `Error::NoQuorum` says of a waited-for
            // write: if it is still in flight, it is applied only if it is ordered before
            // the first write that carries the raised floor (every replica decides alike).
            // Without this, one lost write would pin the session's floor and its
            // exactly-once record would grow with every later write.
            state.outstanding.pop_front_while(|waiting| {
                if waiting.command.completion.is_done() {
                    return true;
                }
                let expired = started.saturating_duration_since(waiting.submitted) >= options.deadline;
                if expired {
                    // A task still awaiting it must hear of its deadline: the reminder
                    // thread no longer sees it once it leaves the session.
                    waiting.command.completion.wake();
                }
                expired
            });
            // The first write left is not known complete: it is the floor (or, with none
            // left, this one).
            let (sequence, floor) = (state.outstanding.next_sequence(), state.outstanding.floor());
            let command = state.request(Request {
                client: self.session.client,
                sequence,
                floor,
                op,
                completion: Completion::new(),
            });
            let look_at = started + options.retry_after.min(options.deadline);
            state.outstanding.push(Waiting { command: Arc::clone(&command), submitted: started, look_at });
            // Relaxed: a hint for waiters of this session's writes (`Ticket::step`).
            self.session.submitted.store(sequence + 1, Ordering::Relaxed);
            command
        };
        let mut ticket = Ticket {
            session: Arc::clone(&self.session),
            command,
            submitted_to: 0,
            leader_seen: usize::MAX,
            started,
            retry_at: started + options.retry_after,
            finished: false,
            deferral: Deferral::default(),
        };
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            if ticket.try_submit(wake) {
                return Ok(ticket);
            }
            if self.shared().is_stopped() {
                ticket.forget();
                return Err(Error::Shutdown);
            }
            if now() >= deadline {
                ticket.forget();
                return Err(Error::NoQuorum { waited: now().saturating_duration_since(started) });
            }
            // The queue is full: wait for the replica to drain it.
            idler.idle(|| std::thread::sleep(park_slice(deadline, options.tick)));
        }
    }

    /// Serves `op` from a replica's copy, linearizably: the copy has applied every write
    /// that completed before this call began. Runs on the calling thread, concurrently with
    /// other reads, on this session's home replica (another one if the home is paused or
    /// crashed, or does not catch up within an election timeout).
    ///
    /// # Errors
    /// [`Error::Shutdown`] after shutdown; [`Error::Diverged`] once the copies were found
    /// forked; [`Error::NoQuorum`] if no running replica caught
    /// up within the deadline; [`Error::OperationPanicked`] if `dispatch` panicked.
    pub fn execute(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        self.shared().accepting()?;
        // Every write completed before this point is below the watermark.
        let watermark = self.shared().slot_committed();
        let mut replica = self.shared().serving_from(self.session.home).unwrap_or(self.session.home);
        let serve = |index: usize| {
            let state = self.shared().replicas[index].state.read();
            catch_unwind(AssertUnwindSafe(|| state.object.dispatch(&op))).map_err(|_| Error::OperationPanicked)
        };
        // Most reads find their copy caught up: they serve it without reading the clock
        // (a tenth of a read's cost where reads are most of the load).
        let target = &self.shared().replicas[replica];
        // Acquire pairs with the Release swap that marks a copy diverged.
        if may_serve(target.slot_applied(), watermark) && !target.diverged.load(Ordering::Acquire) {
            return serve(replica);
        }
        let started = now();
        let options = &self.shared().options;
        let deadline = started + options.deadline;
        let mut switch_at = started + options.election;
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            let target = &self.shared().replicas[replica];
            // Acquire pairs with the Release swap that marks a copy diverged.
            let diverged = target.diverged.load(Ordering::Acquire);
            if may_serve(target.slot_applied(), watermark) && !diverged {
                return serve(replica);
            }
            if self.shared().is_stopped() {
                return Err(Error::Shutdown);
            }
            if let Some(slot) = self.shared().forked() {
                return Err(Error::Diverged { slot });
            }
            let time = now();
            if time >= deadline {
                return Err(Error::NoQuorum { waited: time.saturating_duration_since(started) });
            }
            if time >= switch_at || target.status() != RUNNING || diverged {
                let next = self.shared().serving_from((replica + 1) % self.shared().replicas.len()).unwrap_or(replica);
                switch_at = time + options.election;
                if next != replica {
                    replica = next;
                    idler.reset();
                    continue;
                }
                // No other replica runs: wait here, not in a busy loop.
            }
            // Apply up to the watermark here rather than wait for the replica's thread
            // (`help.rs`), starting with the replica that serves the read.
            if help_all(self.shared(), replica, || may_serve(target.slot_applied(), watermark)) {
                idler.reset();
                continue;
            }
            idler.idle(|| {
                let key = target.applied.prepare_wait();
                if may_serve(target.slot_applied(), watermark) || self.shared().is_stopped() {
                    target.applied.cancel_wait(key);
                } else {
                    target.applied.wait(key, park_slice(deadline, options.tick));
                }
            });
        }
    }

    /// Serves `op` from this session's home replica's copy as it is, without waiting for it
    /// to catch up: cheaper than [`Handle::execute`], but it may miss writes that completed
    /// recently (those a lagging replica has not applied yet). Never older than the last
    /// write this copy applied.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after shutdown; [`Error::Diverged`] once the copies were found
    /// forked; [`Error::OperationPanicked`] if `dispatch` panicked.
    pub fn execute_stale(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        self.shared().accepting()?;
        let replica = self.shared().serving_from(self.session.home).unwrap_or(self.session.home);
        let state = self.shared().replicas[replica].state.read();
        catch_unwind(AssertUnwindSafe(|| state.object.dispatch(&op))).map_err(|_| Error::OperationPanicked)
    }
}

impl<D: Dispatch> Ticket<D> {
    /// Whether the write has been applied (so `wait` will not block).
    pub fn is_done(&self) -> bool {
        self.command.completion.is_done()
    }

    /// Waits for the write's response. While waiting, resubmits the write to a new leader
    /// if leadership moved, and to the current one after the retry interval; duplicates are
    /// applied once.
    ///
    /// A ticket is also a [`Future`] with the same output: `handle.submit(op)?.await`
    /// keeps every promise of `wait` on any executor (see [`Ticket`]).
    ///
    /// # Errors
    /// As for [`Handle::execute_mut`].
    pub fn wait(mut self) -> Result<D::Response, Error> {
        let options = &self.session.shared.options;
        let (deadline, tick) = (self.started + options.deadline, options.tick);
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            match self.step() {
                Step::Done(outcome) => return outcome,
                Step::Progressed | Step::Deferred => idler.reset(),
                Step::Idle | Step::Blocked => {
                    let completion = &self.command.completion;
                    idler.idle(|| completion.wait_for(park_slice(deadline, tick)));
                }
            }
        }
    }

    /// One look at the write, shared by `wait` and `poll`: its outcome if it has one (or
    /// shutdown, or the deadline, has come), else a resubmission if leadership moved or
    /// the retry time came, and a pass of replica rounds run for it (`help.rs`).
    fn step(&mut self) -> Step<D::Response> {
        if let Some(outcome) = self.command.completion.take() {
            return self.finish(outcome);
        }
        if self.session.shared.is_stopped() {
            return self.finish(Err(Error::Shutdown));
        }
        if let Some(slot) = self.session.shared.forked() {
            return self.finish(Err(Error::Diverged { slot }));
        }
        let options = &self.session.shared.options;
        let (deadline, retry_after) = (self.started + options.deadline, options.retry_after);
        let time = now();
        if time >= deadline {
            return self.finish(Err(Error::NoQuorum { waited: time.saturating_duration_since(self.started) }));
        }
        let mut blocked = false;
        if self.routing_moved() || time >= self.retry_at {
            // A new leader, or a long silence: submit again. If the queue is full the
            // retry waits for the replica to take some of it.
            blocked = true;
            if self.try_submit(true) {
                self.retry_at = time + retry_after;
                let look_at = self.retry_at.min(deadline);
                if let Some(waiting) = self.session.state.lock().outstanding.get_mut(self.command.sequence) {
                    waiting.look_at = look_at;
                }
                return Step::Progressed;
            }
        }
        let command = &self.command;
        // Run the replicas' rounds here rather than wait for their threads (`help.rs`):
        // the one the write went to first, which proposes it.
        // Relaxed: a hint; a stale value only changes who runs the next rounds.
        if self.session.submitted.load(Ordering::Relaxed) > command.sequence + DEFER_BEHIND {
            // Many more of this session's writes are behind this one: it pipelines deep.
            match help_write(&self.session.shared, self.submitted_to, &mut self.deferral, || {
                command.completion.is_done()
            }) {
                Helped::Progressed => return Step::Progressed,
                // A resubmission waiting for room is still due: a task must look again
                // soon (`Blocked`), not sleep until its completion.
                Helped::Deferred => return if blocked { Step::Blocked } else { Step::Deferred },
                Helped::Idle => {}
            }
        } else if help_all(&self.session.shared, self.submitted_to, || command.completion.is_done()) {
            return Step::Progressed;
        }
        if blocked {
            Step::Blocked
        } else {
            Step::Idle
        }
    }

    /// Whether the write would now go elsewhere than where it was last submitted, or the
    /// leader hint moved since (the write may have been lost with the old leader).
    fn routing_moved(&self) -> bool {
        let shared = &self.session.shared;
        // Relaxed: the hint only steers retries.
        shared.write_target(self.session.home) != self.submitted_to
            || shared.leader.load(Ordering::Relaxed) != self.leader_seen
    }

    /// Reports `outcome`: the session's floor may pass the write from now on.
    fn finish(&mut self, outcome: Result<D::Response, Error>) -> Step<D::Response> {
        self.forget();
        self.finished = true;
        Step::Done(outcome)
    }

    /// Pushes the command to the current write target's queue; false if it is full.
    /// `wake`: whether to wake the target's thread to take it.
    fn try_submit(&mut self, wake: bool) -> bool {
        let target = self.session.shared.write_target(self.session.home);
        let replica = &self.session.shared.replicas[target];
        if replica.submissions.push(Arc::clone(&self.command)).is_err() {
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
        self.submitted_to = target;
        self.leader_seen = self.session.shared.leader.load(Ordering::Relaxed);
        true
    }

    /// Removes the write from its session's outstanding set: its outcome has been
    /// reported (or given up on), so the session's floor may pass it.
    fn forget(&mut self) {
        let mut state = self.session.state.lock();
        if let Some(waiting) = state.outstanding.forget(self.command.sequence) {
            state.keep(waiting.command);
        }
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
            if ticket.command.completion.register(cx.waker()) {
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
            if session.shared.is_stopped() || session.shared.forked().is_some() || ticket.routing_moved() {
                continue;
            }
            return Poll::Pending;
        }
    }
}

impl<D: Dispatch> Session<D> {
    /// For the reminder thread: adds to `due` this session's writes not yet complete that
    /// a task awaiting them has to look at again: all of them if `all`, else those whose
    /// retry time or deadline has come (the reminder looks again a retry interval later).
    // The reminder thread is not built under loom.
    #[cfg_attr(corum_loom, allow(dead_code))]
    pub(crate) fn due(&self, all: bool, now: Instant, due: &mut Vec<Command<D>>) {
        let options = &self.shared.options;
        let overdue_after = options.retry_after.min(options.deadline);
        let mut state = self.state.lock();
        for (_, waiting) in state.outstanding.iter_mut() {
            if !all && waiting.submitted + overdue_after > now {
                break; // kept in submission order: every later write is younger
            }
            if waiting.command.completion.is_done() || !(all || waiting.look_at <= now) {
                continue;
            }
            waiting.look_at = now + options.retry_after;
            due.push(Arc::clone(&waiting.command));
        }
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::{Completion, Outstanding, Request, SessionState, SPARE_REQUESTS};
    use crate::runtime::test_support::Counter;
    use crate::sync::Arc;
    use crate::Builder;

    fn request(sequence: u64) -> Request<Counter> {
        Request { client: 7, sequence, floor: sequence, op: sequence, completion: Completion::new() }
    }

    /// A finished write's request is reused for a later write once nothing else holds it,
    /// never while a replica's log (or a ticket) still does, and a session keeps only a
    /// few.
    #[test]
    fn a_session_reuses_the_request_of_a_finished_write_once_nothing_else_holds_it() {
        let mut state = SessionState::<Counter> { outstanding: Outstanding::default(), spare: VecDeque::new() };
        // Finished, and its ticket still alive (the session's reference and the ticket's).
        let first = state.request(request(0));
        let ticket = Arc::clone(&first);
        assert!(first.completion.complete(Ok(1)));
        state.keep(first);
        // While the ticket holds it, a new write gets a new request.
        let second = state.request(request(1));
        assert!(!Arc::ptr_eq(&second, &ticket));
        // Once the ticket is gone, the next write reuses it, filled afresh.
        let address = Arc::as_ptr(&ticket);
        drop(ticket);
        let third = state.request(request(2));
        assert_eq!(Arc::as_ptr(&third), address, "the spare request was reused");
        assert_eq!((third.sequence, third.op), (2, 2));
        assert!(!third.completion.is_done(), "a reused request starts with an empty completion");
        // A request a replica's log still holds (a third reference) is not kept at all.
        let log = Arc::clone(&second);
        let ticket = Arc::clone(&second);
        state.keep(second);
        assert!(state.spare.is_empty());
        drop((log, ticket));
        // At most `SPARE_REQUESTS` are kept.
        for sequence in 0..2 * SPARE_REQUESTS as u64 {
            let finished = Arc::new(request(sequence));
            assert!(finished.completion.complete(Ok(1)));
            state.keep(finished);
        }
        assert_eq!(state.spare.len(), SPARE_REQUESTS);
        drop(third);
    }

    /// The request of a write that ended without an outcome (its deadline passed, the
    /// cluster shut down) is not kept: it may still hold the waker of the task that awaited
    /// it, which a spare would keep alive until its reuse.
    #[test]
    fn a_write_that_ended_without_an_outcome_leaves_no_spare() {
        struct Task;
        impl std::task::Wake for Task {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let task = std::sync::Arc::new(Task);
        let mut state = SessionState::<Counter> { outstanding: Outstanding::default(), spare: VecDeque::new() };
        let unfinished = state.request(request(0));
        assert!(!unfinished.completion.register(&std::task::Waker::from(std::sync::Arc::clone(&task))));
        let ticket = Arc::clone(&unfinished);
        state.keep(unfinished);
        drop(ticket);
        assert!(state.spare.is_empty(), "an unfinished write's request was kept");
        assert_eq!(std::sync::Arc::strong_count(&task), 1, "the task's waker is still held");
    }

    /// A write whose ticket was dropped and which was lost with a crashed replica must not
    /// pin its session's floor: past the deadline the session lets it go, and the
    /// replicas' exactly-once records stop growing.
    #[test]
    fn a_lost_write_with_a_dropped_ticket_stops_holding_the_floor() {
        let deadline = Duration::from_millis(300);
        let cluster = Builder::new(Counter::default()).replicas(3).deadline(deadline).build().expect("build");
        let handle = cluster.handle();
        handle.execute_mut(1).expect("first write");
        let home = handle.session.home;
        // With every replica paused, the write goes to the home replica's queue; that
        // replica then crashes without taking it, and nobody retries the dropped ticket.
        for replica in 0..3 {
            cluster.faults().pause(replica).expect("pause");
        }
        drop(handle.submit(100).expect("submit"));
        cluster.faults().crash(home).expect("crash");
        for replica in (0..3).filter(|&r| r != home) {
            cluster.faults().resume(replica).expect("resume");
        }
        std::thread::sleep(deadline + Duration::from_millis(50));
        for _ in 0..50 {
            handle.execute_mut(1).expect("write after the loss");
        }
        assert_eq!(handle.execute(()).expect("read"), 51, "the lost write was not applied");
        assert!(
            handle.session.state.lock().outstanding.held() <= 1,
            "the session still holds {} writes",
            handle.session.state.lock().outstanding.held()
        );
        let shared = &handle.session.shared;
        for replica in (0..3).filter(|&r| r != home) {
            let remembered = shared.replicas[replica].state.read().sessions.remembered();
            assert!(remembered <= 2, "replica {replica} remembers {remembered} sequence numbers");
        }
        drop(handle);
        cluster.shutdown().expect("shutdown");
    }
}
