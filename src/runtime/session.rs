//! A client session in the runtime: the client machine's session (`crate::client::session`:
//! numbers, floor, when a write leaves) under a lock its handle and tickets share, the
//! requests of finished writes kept for reuse, and what the reminder thread looks at
//! (`reminder.rs`).

use std::collections::VecDeque;

use super::completion::Completion;
use super::shared::{Request, Shared};
use crate::client::session::{Numbers, Session as Writes};
use crate::client::Time;
use crate::exactly_once::ClientId;
use crate::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use crate::sync::{Arc, Mutex};
use crate::Dispatch;

/// One client session's state, shared by its handle and tickets.
pub(crate) struct Session<D: Dispatch> {
    /// The cluster. Tickets reach it through their session: cloning this `Arc` for every
    /// write would make every client thread write one shared reference count per write.
    pub(crate) shared: Arc<Shared<D>>,
    pub(crate) client: ClientId,
    /// The replica whose copy serves this session's reads while it runs, and which takes
    /// its writes while no leader runs.
    pub(crate) home: usize,
    state: Mutex<SessionState<D>>,
    /// Whether the reminder thread watches this session (`reminder.rs`): set when one of
    /// its tickets is first awaited.
    pub(crate) watched: AtomicBool,
    /// The number after the last write opened: a ticket whose session has opened writes
    /// after it belongs to a writer that pipelines (`Ticket::step`).
    pub(crate) opened: AtomicU64,
}

/// Requests of finished writes a session keeps to reuse for its next writes
/// ([`SessionState::spare`]).
const SPARE_REQUESTS: usize = 32;

/// A session's writes, guarded by its lock.
struct SessionState<D: Dispatch> {
    /// The writes still in the session, by the client machine's rules.
    writes: Writes<Waiting<D>>,
    /// The requests of up to [`SPARE_REQUESTS`] of its writes whose outcome was reported,
    /// oldest first. A new write reuses the oldest once nothing else holds it, instead of
    /// allocating, so that a request's memory stays with the client thread that allocated
    /// it: freed by whichever thread ran the round that let go of it last, requests went
    /// through the allocator's slow paths on both threads (docs/BENCHMARKS.md, "What the
    /// design rests on"). A spare
    /// keeps its write's operation until it is reused or the handle is dropped.
    spare: VecDeque<Arc<Request<D>>>,
}

/// A write in its session: its request, and when the reminder thread next wakes a task
/// awaiting it (`reminder.rs`): its retry time or its deadline, whichever comes first.
struct Waiting<D: Dispatch> {
    request: Arc<Request<D>>,
    opened: Time,
    look_at: Time,
}

impl<D: Dispatch> SessionState<D> {
    fn new() -> Self {
        Self { writes: Writes::default(), spare: VecDeque::new() }
    }

    /// A request for a new write: the oldest of `spare` if nothing else holds it any more,
    /// else a new one.
    #[inline]
    fn request(spare: &mut VecDeque<Arc<Request<D>>>, request: Request<D>) -> Arc<Request<D>> {
        if let Some(reused) = spare.front_mut().and_then(Arc::get_mut) {
            *reused = request;
            return spare.pop_front().expect("the front was there");
        }
        Arc::new(request)
    }

    /// Keeps the request of a write whose outcome was reported, for
    /// [`SessionState::request`], if only the session and the write's ticket hold it. One a
    /// replica's log still holds is left to be freed where the log lets go of it: kept too,
    /// they stayed held for longer than the spares last where logs truncate late, and only
    /// added work (docs/BENCHMARKS.md, "What the design rests on").
    #[inline]
    fn keep(&mut self, request: Arc<Request<D>>) {
        // A hint: `request` reuses a spare only once `Arc::get_mut` finds it unshared.
        // A write that ended without an outcome (its deadline, shutdown) may still hold
        // the waker of a task that awaited it: not kept, so that nothing keeps the task.
        if Arc::strong_count(&request) > 2 || !request.completion.is_done() {
            return;
        }
        if self.spare.len() == SPARE_REQUESTS {
            self.spare.pop_front();
        }
        self.spare.push_back(request);
    }
}

impl<D: Dispatch> Session<D> {
    /// A new session on `shared`, with the next client id.
    pub(crate) fn new(shared: Arc<Shared<D>>) -> Self {
        // Relaxed: ids only need to be unique, which the RMW guarantees.
        let client = shared.next_client.fetch_add(1, Ordering::Relaxed);
        let home = (client % shared.replicas.len() as u64) as usize;
        Self {
            shared,
            client,
            home,
            state: Mutex::new(SessionState::new()),
            watched: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// Opens a write of `op` at `now` (see [`Writes::open`]): writes whose tickets were
    /// dropped leave once applied or past their deadline, then the new one is numbered.
    /// Returns its request and the numbers it carries.
    #[inline]
    pub(crate) fn open(&self, op: D::WriteOp, now: Time) -> (Arc<Request<D>>, Numbers) {
        let timing = &self.shared.options.timing;
        let mut state = self.state.lock();
        let SessionState { writes, spare } = &mut *state;
        let mut opened = None;
        let numbers = writes.open(
            now,
            now.after(timing.deadline),
            |numbers| {
                let request = SessionState::request(
                    spare,
                    Request {
                        client: self.client,
                        sequence: numbers.sequence,
                        floor: numbers.floor,
                        op,
                        completion: Completion::new(),
                    },
                );
                opened = Some(Arc::clone(&request));
                Waiting { request, opened: now, look_at: now.after(timing.retry_after.min(timing.deadline)) }
            },
            |waiting| waiting.request.completion.is_done(),
            // A task still awaiting it must hear of its deadline: the reminder thread no
            // longer sees it once it leaves the session.
            |waiting| waiting.request.completion.wake(),
        );
        drop(state);
        // Relaxed: a hint for waiters of this session's writes (`Ticket::step`).
        self.opened.store(numbers.sequence + 1, Ordering::Relaxed);
        (opened.expect("the write was opened"), numbers)
    }

    /// Closes write `sequence`: its outcome has been reported (or given up on), so the
    /// session's floor may pass it. Keeps its request for reuse.
    #[inline]
    pub(crate) fn close(&self, sequence: u64) {
        let mut state = self.state.lock();
        if let Some(waiting) = state.writes.close(sequence) {
            state.keep(waiting.request);
        }
    }

    /// Write `sequence` was submitted (again): a task awaiting it is woken at `look_at`
    /// at the latest.
    #[inline]
    pub(crate) fn look_at(&self, sequence: u64, look_at: Time) {
        if let Some(waiting) = self.state.lock().writes.get_mut(sequence) {
            waiting.look_at = look_at;
        }
    }

    /// For the reminder thread: adds to `due` this session's writes not yet complete that
    /// a task awaiting them has to look at again: all of them if `all`, else those whose
    /// retry time or deadline has come (the reminder looks again a retry interval later).
    // The reminder thread is not built under loom.
    #[cfg_attr(corum_loom, allow(dead_code))]
    pub(crate) fn due(&self, all: bool, now: Time, due: &mut Vec<Arc<Request<D>>>) {
        let timing = &self.shared.options.timing;
        let overdue_after = timing.retry_after.min(timing.deadline);
        let mut state = self.state.lock();
        for (_, waiting) in state.writes.iter_mut() {
            if !all && waiting.opened.after(overdue_after) > now {
                break; // kept in the order opened: every later write is younger
            }
            if waiting.request.completion.is_done() || !(all || waiting.look_at <= now) {
                continue;
            }
            waiting.look_at = now.after(timing.retry_after);
            due.push(Arc::clone(&waiting.request));
        }
    }

    /// Writes held, closed ones behind the first one still open included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.state.lock().writes.held()
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::collections::VecDeque;

    use super::{Completion, Request, SessionState, SPARE_REQUESTS};
    use crate::runtime::test_support::Counter;
    use crate::sync::Arc;

    fn request(sequence: u64) -> Request<Counter> {
        Request { client: 7, sequence, floor: sequence, op: sequence, completion: Completion::new() }
    }

    /// A finished write's request is reused for a later write once nothing else holds it,
    /// never while a replica's log (or a ticket) still does, and a session keeps only a
    /// few.
    #[test]
    fn a_session_reuses_the_request_of_a_finished_write_once_nothing_else_holds_it() {
        let mut state = SessionState::<Counter>::new();
        // Finished, and its ticket still alive (the session's reference and the ticket's).
        let first = SessionState::request(&mut state.spare, request(0));
        let ticket = Arc::clone(&first);
        assert!(first.completion.complete(Ok(1)));
        state.keep(first);
        // While the ticket holds it, a new write gets a new request.
        let second = SessionState::request(&mut state.spare, request(1));
        assert!(!Arc::ptr_eq(&second, &ticket));
        // Once the ticket is gone, the next write reuses it, filled afresh.
        let address = Arc::as_ptr(&ticket);
        drop(ticket);
        let third = SessionState::request(&mut state.spare, request(2));
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
        let mut state = SessionState::<Counter> { writes: Default::default(), spare: VecDeque::new() };
        let unfinished = SessionState::request(&mut state.spare, request(0));
        assert!(!unfinished.completion.register(&std::task::Waker::from(std::sync::Arc::clone(&task))));
        let ticket = Arc::clone(&unfinished);
        state.keep(unfinished);
        drop(ticket);
        assert!(state.spare.is_empty(), "an unfinished write's request was kept");
        assert_eq!(std::sync::Arc::strong_count(&task), 1, "the task's waker is still held");
    }
}
