//! Client handles: linearizable writes (synchronous or pipelined through tickets) and
//! linearizable reads served by a replica's own copy.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use super::completion::Completion;
use super::help::help_all;
use super::idle::{now, park_slice, Idler};
use super::{Command, Request, Shared, RUNNING};
use crate::session::{ClientId, Outstanding};
use crate::state::may_serve;
use crate::sync::atomic::{fence, Ordering};
use crate::sync::{Arc, Mutex};
use crate::{Dispatch, Error};

/// One client session's state, shared by its handle and tickets.
struct Session<D: Dispatch> {
    /// The cluster. Tickets reach it through their session: cloning this `Arc` for every
    /// write would make every client thread write one shared reference count per write.
    shared: Arc<Shared<D>>,
    client: ClientId,
    /// The replica whose copy serves this session's reads while it runs.
    home: usize,
    /// Next sequence number and the writes not yet known complete. The lowest of those is
    /// the session's floor (see `crate::session`).
    state: Mutex<SessionState<D>>,
}

/// The session's writes not yet known complete, each with the time it was first
/// submitted; the lowest of them is the session's floor (see `crate::session`).
type SessionState<D> = Outstanding<(Command<D>, Instant)>;

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
#[must_use = "a write's outcome is only known by waiting for its ticket"]
pub struct Ticket<D: Dispatch> {
    session: Arc<Session<D>>,
    command: Command<D>,
    submitted_to: usize,
    /// The leader hint when the write was last submitted: a new leader means the write may
    /// have been lost with the old one (or on its way to it), so it is submitted again.
    leader_seen: usize,
    started: Instant,
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
        let state = Mutex::new(SessionState::default());
        Self { session: Arc::new(Session { shared, client, home, state }) }
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
    /// [`Error::Shutdown`] after shutdown; [`Error::NoQuorum`] if it did not complete
    /// within the deadline (it may still take effect); [`Error::OperationPanicked`] if the
    /// object's `dispatch_mut` panicked on it.
    pub fn execute_mut(&self, op: D::WriteOp) -> Result<D::Response, Error> {
        // No need to wake the replica's thread when this thread runs its round next (see
        // `Ticket::wait`).
        self.submit_and(op, !self.shared().options.helping)?.wait()
    }

    /// Submits `op` and returns at once with a [`Ticket`] for its response, so one thread
    /// can keep many writes in flight (they share batches and rounds of the protocol).
    /// Where the process has no more cores than replicas, the replica's thread is not woken
    /// for it: the write is proposed when a client waits for a ticket (waiting runs the
    /// replicas' rounds, see [`Builder::helping`](crate::Builder::helping)), or at the
    /// replica's next tick at the latest.
    ///
    /// # Errors
    /// [`Error::Shutdown`] after shutdown; [`Error::NoQuorum`] if the submission queue
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
        if self.shared().is_closed() {
            return Err(Error::Shutdown);
        }
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
            state.pop_front_while(|(command, submitted)| {
                command.completion.is_done() || started.saturating_duration_since(*submitted) >= options.deadline
            });
            // The first write left is not known complete: it is the floor (or, with none
            // left, this one).
            let (sequence, floor) = (state.next_sequence(), state.floor());
            let command =
                Arc::new(Request { client: self.session.client, sequence, floor, op, completion: Completion::new() });
            state.push((Arc::clone(&command), started));
            command
        };
        let mut ticket =
            Ticket { session: Arc::clone(&self.session), command, submitted_to: 0, leader_seen: usize::MAX, started };
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
    /// [`Error::Shutdown`] after shutdown; [`Error::NoQuorum`] if no running replica caught
    /// up within the deadline; [`Error::OperationPanicked`] if `dispatch` panicked.
    pub fn execute(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        if self.shared().is_closed() {
            return Err(Error::Shutdown);
        }
        let started = now();
        let options = &self.shared().options;
        let deadline = started + options.deadline;
        // Every write completed before this point is below the watermark.
        let watermark = self.shared().slot_committed();
        let mut replica = self.shared().running_from(self.session.home).unwrap_or(self.session.home);
        let mut switch_at = started + options.election;
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            let target = &self.shared().replicas[replica];
            if may_serve(target.slot_applied(), watermark) {
                let state = target.state.read();
                return catch_unwind(AssertUnwindSafe(|| state.object.dispatch(&op)))
                    .map_err(|_| Error::OperationPanicked);
            }
            if self.shared().is_stopped() {
                return Err(Error::Shutdown);
            }
            let time = now();
            if time >= deadline {
                return Err(Error::NoQuorum { waited: time.saturating_duration_since(started) });
            }
            if time >= switch_at || target.status() != RUNNING {
                let next = self.shared().running_from((replica + 1) % self.shared().replicas.len()).unwrap_or(replica);
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
    /// [`Error::Shutdown`] after shutdown; [`Error::OperationPanicked`] if `dispatch` panicked.
    pub fn execute_stale(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        if self.shared().is_closed() {
            return Err(Error::Shutdown);
        }
        let replica = self.shared().running_from(self.session.home).unwrap_or(self.session.home);
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
    /// # Errors
    /// As for [`Handle::execute_mut`].
    pub fn wait(mut self) -> Result<D::Response, Error> {
        let options = &self.session.shared.options;
        let (retry_after, tick) = (options.retry_after, options.tick);
        let deadline = self.started + options.deadline;
        let mut retry_at = self.started + retry_after;
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            if let Some(outcome) = self.command.completion.take() {
                self.forget();
                return outcome;
            }
            if self.session.shared.is_stopped() {
                self.forget();
                return Err(Error::Shutdown);
            }
            let time = now();
            if time >= deadline {
                self.forget();
                return Err(Error::NoQuorum { waited: time.saturating_duration_since(self.started) });
            }
            let target = self.session.shared.write_target(self.session.home);
            // Relaxed: the hint only steers retries.
            let leader = self.session.shared.leader.load(Ordering::Relaxed);
            if target != self.submitted_to || leader != self.leader_seen || time >= retry_at {
                // A new leader, or a long silence: submit again. If the queue is full the
                // retry simply waits for the next round.
                if self.try_submit(true) {
                    retry_at = time + retry_after;
                    idler.reset();
                }
            }
            let command = &self.command;
            // Run the replicas' rounds here rather than wait for their threads (`help.rs`):
            // the one the write went to first, which proposes it.
            if help_all(&self.session.shared, self.submitted_to, || command.completion.is_done()) {
                idler.reset();
                continue;
            }
            idler.idle(|| command.completion.wait_for(park_slice(deadline, tick)));
        }
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
        self.session.state.lock().forget(self.command.sequence);
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::time::Duration;

    use crate::runtime::test_support::Counter;
    use crate::Builder;

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
            handle.session.state.lock().held() <= 1,
            "the session still holds {} writes",
            handle.session.state.lock().held()
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
