//! Client handles ([`Handle`]): linearizable writes, waited for at once or through tickets
//! (`ticket.rs`), and linearizable reads served by a replica's own copy, driven by the client
//! machine's read (`crate::client::read`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::futures::{ReadFuture, WriteFuture};
use super::help::help_all;
use super::idle::{park_slice, Idler};
use super::session::Session;
use super::shared::Shared;
use super::ticket::Ticket;
use crate::client::read::{self, may_serve, may_serve_instead, Read, Step as ReadStep};
use crate::client::{admit, route};
use crate::protocol::Slot;
use crate::state::ReplicaState;
use crate::sync::Arc;
use crate::transport::reader::Reader;
use crate::{Dispatch, Error};

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

impl<D: Dispatch> fmt::Debug for Handle<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("client", &self.session.client).field("home", &self.session.home).finish()
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
        Self { session: Arc::new(Session::new(shared)) }
    }

    /// The cluster this handle's session belongs to.
    fn shared(&self) -> &Shared<D> {
        &self.session.shared
    }

    /// The handle's session, for tests.
    #[cfg(test)]
    pub(crate) fn session(&self) -> &Arc<Session<D>> {
        &self.session
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
        admit(self.shared())?;
        // No need to wake the replica's thread when this thread runs its round next (see
        // `Ticket::wait`). The ticket is not counted by the session (no reference count
        // written per write): it lives only in this call, which borrows the handle, whose
        // `Arc` keeps the session alive until the ticket is gone, unwinding included.
        let wake = !self.shared().options.helping;
        // SAFETY: as just said, the session outlives the uncounted ticket.
        unsafe { Ticket::submit(&self.session, op, wake, true, false) }?.wait()
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
    /// forked; [`Error::NoQuorum`] if the handle had as many writes in flight as
    /// [`Builder::submission_capacity`](crate::Builder::submission_capacity) allows until
    /// the deadline; [`Error::TooManyWriters`] if this handle's first write found every
    /// lane of the write board taken
    /// ([`Builder::writing_handles`](crate::Builder::writing_handles)).
    pub fn submit(&self, op: D::WriteOp) -> Result<Ticket<D>, Error> {
        // Wake the replica's thread only where it has a core of its own; elsewhere it would
        // take a core from a client thread, and the write is proposed when a client waits
        // for a ticket (`Ticket::wait` runs the replicas' rounds), or at the replica's next
        // tick at the latest.
        admit(self.shared())?;
        // SAFETY: a counted ticket keeps its session alive itself.
        unsafe { Ticket::submit(&self.session, op, self.shared().options.wake_peers, false, true) }
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
        let shared = self.shared();
        admit(shared)?;
        let mut read = read::start(shared, self.session.home);
        // Most reads find their copy caught up: they serve it without reading the clock
        // (a tenth of a read's cost where reads are most of the load).
        if read.ready(shared) {
            return serve(&self.session, read.replica(), Some(read.watermark()), &op);
        }
        let options = &shared.options;
        let mut idler = Idler::new(options.idle, options.spin, true);
        loop {
            let replica = match look(&self.session, &mut read, &op) {
                Look::Done(outcome) => return outcome,
                Look::Again => {
                    idler.reset();
                    continue;
                }
                Look::Wait(replica) => replica,
            };
            let (target, watermark) = (&shared.replicas[replica], read.watermark());
            let deadline = read.deadline().map_or_else(crate::sync::now, |deadline| shared.instant(deadline));
            idler.idle(|| {
                let key = target.applied.prepare_wait();
                if may_serve(target.slot_applied(), watermark) || shared.is_stopped() {
                    target.applied.cancel_wait(key);
                } else {
                    target.applied.wait(key, park_slice(deadline, options.tick));
                }
            });
        }
    }

    /// [`Handle::execute`] as a future that never blocks its thread: where the copy that
    /// serves the read lags, the task sleeps until that copy catches up (its replica wakes
    /// it), and the cluster wakes it every tick meanwhile to look at its deadline and at
    /// moving to another copy, as a waiting thread looks, so no executor timer is needed.
    /// Polling also runs replicas' rounds for the read when their threads are parked, as
    /// `execute` does. The read's watermark is taken when this is called. The future is
    /// `Unpin`, and `Send` where the read operation is.
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
    /// assert_eq!(handle.execute_mut_async(5).await?, 5);
    /// assert_eq!(handle.execute_async(()).await?, 5);
    /// # cluster.shutdown()?;
    /// # Ok::<(), corum::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    /// As for [`Handle::execute`].
    pub fn execute_async(&self, op: D::ReadOp) -> ReadFuture<D> {
        ReadFuture::new(&self.session, op)
    }

    /// [`Handle::execute_mut`] as a future that never blocks its thread: the write is
    /// submitted when the future is first polled (where the handle already has as many
    /// writes in flight as [`Builder::submission_capacity`](crate::Builder::submission_capacity)
    /// allows, the task yields to its executor and tries again), then awaited as a [`Ticket`] is (see
    /// there: the cluster wakes the task when the write is applied and for everything a
    /// waiting thread looks at). The write's deadline counts from this call. Dropping the
    /// future before its first poll leaves nothing submitted. The future is `Send` and
    /// `Unpin`.
    ///
    /// # Errors
    /// As for [`Handle::execute_mut`].
    pub fn execute_mut_async(&self, op: D::WriteOp) -> WriteFuture<D> {
        WriteFuture::new(&self.session, op, admit(self.shared()))
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
        let shared = self.shared();
        admit(shared)?;
        let replica = route::serving_from(shared, self.session.home).unwrap_or(self.session.home);
        serve(&self.session, replica, None, &op)
    }
}

/// Serves `op` for `session` from replica `index`'s copy. If that copy's replica is
/// applying to it, another running copy that has applied up to `watermark` (the read's; a
/// stale read has none) serves it instead, so that a read does not queue behind an apply
/// while another copy may serve it; with none, the read waits for the apply.
#[inline]
pub(super) fn serve<D: Dispatch>(
    session: &Session<D>,
    index: usize,
    watermark: Option<Slot>,
    op: &D::ReadOp,
) -> Result<D::Response, Error> {
    session.shared.replicas[index].state.read_or_else(
        Reader::this_thread(session.client as usize),
        |state| dispatch(state, op),
        || serve_elsewhere(session, index, watermark, op),
    )
}

/// `op` served by the read-only `dispatch`, a panic in it reported.
#[inline]
fn dispatch<D: Dispatch>(state: &ReplicaState<D>, op: &D::ReadOp) -> Result<D::Response, Error> {
    catch_unwind(AssertUnwindSafe(|| state.object.dispatch(op))).map_err(|_| Error::OperationPanicked)
}

/// [`serve`] where replica `index` is applying to its copy: another copy's outcome, or
/// `None` (the read waits for its own copy). Out of the way of the common path, which it
/// would otherwise slow.
#[cold]
#[inline(never)]
fn serve_elsewhere<D: Dispatch>(
    session: &Session<D>,
    index: usize,
    watermark: Option<Slot>,
    op: &D::ReadOp,
) -> Option<Result<D::Response, Error>> {
    let shared = &*session.shared;
    let reader = Reader::this_thread(session.client as usize);
    let dispatch = |state: &ReplicaState<D>| dispatch(state, op);
    let watermark = watermark?;
    let replicas = shared.replicas.len();
    (1..replicas)
        .map(|offset| (index + offset) % replicas)
        .filter(|&other| may_serve_instead(shared, other, watermark))
        .find_map(|other| shared.replicas[other].state.try_read(reader, dispatch))
}

/// What one look at a read whose copy had not caught up found ([`look`]).
pub(super) enum Look<R> {
    /// Its outcome.
    Done(Result<R, Error>),
    /// Something moved (the read, or a replica's round ran for it): look again at once.
    Again,
    /// Nothing to do but wait for this replica's copy to catch up.
    Wait(usize),
}

/// One look at `read`, shared by [`Handle::execute`] and [`ReadFuture`]: serve it, end it,
/// or run replicas' rounds for it (`help.rs`), starting with the replica that serves it.
pub(super) fn look<D: Dispatch>(session: &Session<D>, read: &mut Read, op: &D::ReadOp) -> Look<D::Response> {
    let shared = &*session.shared;
    let replica = match read.next(shared.time(), shared, &shared.options.timing) {
        ReadStep::Serve(replica) => return Look::Done(serve(session, replica, Some(read.watermark()), op)),
        ReadStep::End(error) => return Look::Done(Err(error)),
        ReadStep::Moved(_) => return Look::Again,
        ReadStep::Wait(replica) => replica,
    };
    let (target, watermark) = (&shared.replicas[replica], read.watermark());
    if help_all(shared, replica, || may_serve(target.slot_applied(), watermark)) {
        return Look::Again;
    }
    Look::Wait(replica)
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::time::Duration;

    use crate::runtime::test_support::Counter;
    use crate::transport::reader::Reader;
    use crate::Builder;

    /// A read whose copy is being applied to (its writer flag held) is served by another
    /// running copy that has applied up to the read's watermark, never by one behind it:
    /// with the only other copy behind, it waits for its own.
    #[test]
    fn a_read_whose_copy_is_being_applied_to_is_served_by_another_caught_up_copy() {
        use crate::client::View;
        use crate::runtime::test_support::PATIENCE;
        use std::time::Instant;

        let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build().expect("build");
        let handle = cluster.handle();
        handle.execute_mut(1).expect("first write");
        let shared = &*handle.session.shared;
        let caught_up = |replica: usize| shared.slot_applied(replica) >= shared.watermark();
        // Whether `condition` came to hold within PATIENCE.
        let within_patience = |condition: &dyn Fn() -> bool| {
            let started = Instant::now();
            while !condition() {
                if started.elapsed() > PATIENCE {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            true
        };
        let eventually =
            |what: &str, condition: &dyn Fn() -> bool| assert!(within_patience(condition), "never: {what}");
        eventually("every copy applied the first write", &|| (0..3).all(caught_up));
        let (home, leader) = (handle.session.home, cluster.leader().expect("a leader"));
        // `behind`: a running replica whose rounds nobody runs (the test holds its token),
        // so that its copy misses the second write; `other`: the third one.
        let behind = (0..3).find(|&r| r != home && r != leader).unwrap_or((home + 1) % 3);
        let other = (0..3).find(|&r| r != home && r != behind).expect("three replicas");
        let token = shared.replicas[behind].worker.take();
        handle.execute_mut(1).expect("second write");
        eventually("the home and the other copy applied the second write", &|| caught_up(home) && caught_up(other));
        assert!(!caught_up(behind), "the held replica applied the second write");
        // The home copy held by a writer: the other copy, caught up, serves the read.
        std::thread::scope(|scope| {
            let (read, served) = shared.replicas[home].state.write(|_| {
                let read = scope.spawn(|| handle.execute(()));
                let served = within_patience(&|| read.is_finished());
                (read, served)
            });
            assert!(served, "the read waited for its copy while another caught-up copy could serve it");
            assert_eq!(read.join().expect("read").expect("read"), 2);
        });
        // The home and the other copy held: the copy behind may not serve it, so the read
        // waits for its own copy.
        std::thread::scope(|scope| {
            let read = shared.replicas[home].state.write(|_| {
                shared.replicas[other].state.write(|_| {
                    let read = scope.spawn(|| handle.execute(()));
                    std::thread::sleep(Duration::from_millis(50));
                    read
                })
            });
            assert_eq!(read.join().expect("read").expect("read"), 2, "served by the copy behind its watermark");
        });
        drop(token);
        drop(handle);
        cluster.shutdown().expect("shutdown");
    }

    /// A write whose ticket was dropped stays on the board, so the crash of the replica its
    /// session is homed at, with every replica paused before any took it, loses nothing:
    /// the next leader collects it.
    #[test]
    fn a_dropped_write_survives_the_crash_of_its_home() {
        let cluster = Builder::new(Counter::default()).replicas(3).build().expect("build");
        let handle = cluster.handle();
        handle.execute_mut(1).expect("first write");
        let home = handle.session.home;
        for replica in 0..3 {
            cluster.faults().pause(replica).expect("pause");
        }
        drop(handle.submit(100).expect("submit"));
        cluster.faults().crash(home).expect("crash");
        for replica in (0..3).filter(|&r| r != home) {
            cluster.faults().resume(replica).expect("resume");
        }
        handle.execute_mut(1).expect("a write after the crash");
        assert_eq!(handle.execute(()).expect("read"), 102, "the dropped write was lost");
        drop(handle);
        cluster.shutdown().expect("shutdown");
    }

    /// A write whose ticket was dropped and which no replica applied by its deadline must
    /// not pin its session's floor: the handle's next write retracts it from the board
    /// (no later leader proposes it) and the session lets it go, so the replicas'
    /// exactly-once records stop growing.
    #[test]
    fn a_dropped_write_past_its_deadline_is_retracted_and_stops_holding_the_floor() {
        let deadline = Duration::from_millis(300);
        let cluster = Builder::new(Counter::default()).replicas(3).deadline(deadline).build().expect("build");
        let handle = cluster.handle();
        handle.execute_mut(1).expect("first write");
        for replica in 0..3 {
            cluster.faults().pause(replica).expect("pause");
        }
        drop(handle.submit(100).expect("submit"));
        std::thread::sleep(deadline + Duration::from_millis(50));
        // Opened while every replica is still paused: it retracts the expired write first.
        let next = handle.submit(1).expect("submit");
        for replica in 0..3 {
            cluster.faults().resume(replica).expect("resume");
        }
        assert_eq!(next.wait(), Ok(2), "the retracted write was applied");
        for _ in 0..50 {
            handle.execute_mut(1).expect("write after the retraction");
        }
        assert_eq!(handle.execute(()).expect("read"), 52, "the retracted write was applied");
        let held = handle.session.held();
        assert!(held <= 1, "the session still holds {held} writes");
        let shared = &handle.session.shared;
        for replica in 0..3 {
            let remembered =
                shared.replicas[replica].state.read(Reader::shared(0), |state| state.exactly_once.remembered());
            assert!(remembered <= 2, "replica {replica} remembers {remembered} sequence numbers");
        }
        drop(handle);
        cluster.shutdown().expect("shutdown");
    }
}
