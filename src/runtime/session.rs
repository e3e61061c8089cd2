//! A client session in the runtime: the client machine's session (`crate::client::session`:
//! numbers, floor, when a write leaves) and the session's lane on the cluster's write board
//! (`transport/board.rs`), under a lock its handle and tickets share, and what the reminder
//! thread looks at (`reminder.rs`).
//!
//! A session claims its lane at its first write and keeps it until it is dropped. Its
//! writes take the lane's numbers in order, one each: the write numbered `sequence` in the
//! session is number `base + sequence` in the lane, so a write's place on the board follows
//! from its sequence.
//!
//! A lane holds as many writes as it has berths. When the berth a new write needs still
//! holds an answered write whose ticket has not taken its answer yet (its task was not
//! polled, say, because every executor thread is busy submitting), the session moves that
//! answer to its *stash* and posts: a submission then never waits for a ticket to be
//! looked at, only for a write to be answered, which the replicas do on their own.

use std::ptr::NonNull;

use super::shared::{Posted, Shared};
use crate::client::session::{Numbers, Session as Writes};
use crate::client::Time;
use crate::exactly_once::ClientId;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::Arc;
use crate::transport::board::{Address, Board, LaneKey, Retracted};
use crate::transport::spin_lock::SpinLock;
use crate::{Dispatch, Error};

/// One client session's state, shared by its handle and tickets.
pub(crate) struct Session<D: Dispatch> {
    /// Answers moved out of the lane before their tickets took them (see the module docs):
    /// how many there are, a hint that saves looking under the lock when there are none.
    stashed: AtomicUsize,
    /// The cluster. Tickets reach it through their session: cloning this `Arc` for every
    /// write would make every client thread write one shared reference count per write.
    pub(crate) shared: Arc<Shared<D>>,
    pub(crate) client: ClientId,
    /// The replica whose copy serves this session's reads while it runs, and which takes
    /// its writes while no leader runs.
    pub(crate) home: usize,
    /// Its bookkeeping, taken by every write twice (`spin_lock.rs`: one locked
    /// instruction a use rather than two).
    state: SpinLock<SessionState<D>>,
    /// The session's lane, once claimed (`u32::MAX` before): its index, for looks at the
    /// board that need no lock (whether an answer is there, waiting for one).
    lane: AtomicU64,
    /// Whether the reminder thread watches this session (`reminder.rs`): set when one of
    /// its tickets is first awaited.
    pub(crate) watched: AtomicBool,
    /// The number after the last write opened: a ticket whose session has opened writes
    /// after it belongs to a writer that pipelines (`Ticket::step`).
    pub(crate) opened: AtomicU64,
}

/// [`Session::lane`] before the session claimed one.
const NO_LANE: u64 = u32::MAX as u64;

/// A session's writes and its lane, guarded by its lock.
struct SessionState<D: Dispatch> {
    /// The writes still in the session, by the client machine's rules.
    writes: Writes<Waiting>,
    /// The session's lane on the board, claimed at its first write.
    lane: Option<LaneKey>,
    /// The lane's number for the session's write numbered 0.
    base: u64,
    /// Answers moved out of the lane before their tickets took them, by sequence.
    stash: Vec<(u64, Result<D::Response, Error>)>,
    /// The counted tickets not finished yet (see [`Keep`]).
    tickets: usize,
    /// The session itself, held while it has counted tickets (see [`Keep`]).
    keep: Keep<D>,
}

/// A ticket that can outlive every handle of its session does not own an `Arc` of the
/// session (cloning and dropping one per write was two of a pipelined write's locked
/// instructions): the session counts such *counted* tickets, under the lock every write
/// takes anyway, and holds one `Arc` of itself while it has any. The ticket whose end
/// brings the count to zero gets that `Arc` back from the call that ended it, and drops it
/// once it no longer touches the session (after the call, not inside it, since the drop may
/// free the session). A ticket inside a call that borrows the session's handle for its
/// whole life (`Handle::execute_mut`) is not counted.
pub(crate) type Keep<D> = Option<Arc<Session<D>>>;

/// A write's outcome.
pub(crate) type Outcome<D> = Result<<D as Dispatch>::Response, Error>;

impl<D: Dispatch> SessionState<D> {
    /// Ends a ticket's hold on the session if it is `counted`: the session's `Arc` of
    /// itself if it was the last (see [`Keep`]).
    fn end_ticket(&mut self, counted: bool) -> Keep<D> {
        if !counted {
            return None;
        }
        self.tickets -= 1;
        if self.tickets == 0 {
            self.keep.take()
        } else {
            None
        }
    }

    /// Takes write `sequence`'s answer out of the stash, if it is there; `stashed` is the
    /// session's count of stashed answers, kept equal to the stash's length.
    fn unstash(&mut self, sequence: u64, stashed: &AtomicUsize) -> Option<Result<D::Response, Error>> {
        let index = self.stash.iter().position(|(held, _)| *held == sequence)?;
        let (_, answer) = self.stash.swap_remove(index);
        // Relaxed: a hint (see `Session::stashed`).
        stashed.store(self.stash.len(), Ordering::Relaxed);
        Some(answer)
    }

    /// Closes write `sequence` (its outcome is reported, or given up on) and tells the
    /// board that every write below the session's new floor is finished.
    fn close<W: Clone>(&mut self, board: &Board<W, Result<D::Response, Error>>, sequence: u64) {
        self.writes.close(sequence);
        if let Some(key) = self.lane.as_mut() {
            board.finished_below(key, self.base + self.writes.floor());
        }
    }
}

/// A write in its session: when it was opened, and when the reminder thread next wakes a
/// task awaiting it (`reminder.rs`): its retry time or its deadline, whichever comes first.
struct Waiting {
    sequence: u64,
    opened: Time,
    look_at: Time,
    /// Whether its ticket was dropped before it took the outcome: only then may the
    /// session let go of it once it is answered (a live ticket takes its answer itself,
    /// and a berth let go of may be posted to again, which drops the answer in it).
    dropped: bool,
}

/// Why [`Session::open`] opened no write; the operation comes back.
pub(crate) enum Refusal<Op> {
    /// The session has as many writes in flight as its lane has berths: wait for the
    /// oldest to finish.
    Full(Op),
    /// No lane was free for the session's first write.
    NoLane(Error),
}

/// What giving up on a write found ([`Session::give_up`]).
pub(crate) enum GaveUp<R> {
    /// It was retracted (no later leader proposes it); its outcome stays unknown.
    Retracted,
    /// Its answer came first: here it is.
    Answered(Result<R, Error>),
    /// Its answer is being written: look again.
    Answering,
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
            state: SpinLock::new(SessionState {
                writes: Writes::default(),
                lane: None,
                base: 0,
                stash: Vec::new(),
                tickets: 0,
                keep: None,
            }),
            stashed: AtomicUsize::new(0),
            lane: AtomicU64::new(NO_LANE),
            watched: AtomicBool::new(false),
            opened: AtomicU64::new(0),
        }
    }

    /// Opens a write of `op` at `now` and posts it to the session's lane (claiming one at
    /// the session's first write): writes whose tickets were dropped leave first, once
    /// answered or past their deadline (see [`Writes::open`]); then, if the lane has room,
    /// the new one is numbered and posted. Returns where its answer will be and the numbers
    /// it carries. `counted`: this session's own `Arc`, if the write's ticket is counted
    /// (see [`Keep`]).
    #[inline]
    pub(crate) fn open(
        &self,
        op: D::WriteOp,
        now: Time,
        counted: Option<&Arc<Session<D>>>,
    ) -> Result<(Address, Numbers), Refusal<D::WriteOp>> {
        let board = &self.shared.board;
        let timing = &self.shared.options.timing;
        let mut state = self.state.lock();
        let SessionState { writes, lane, base, stash, tickets, keep } = &mut *state;
        let key = match lane {
            Some(key) => key,
            None => {
                let Some(key) = board.claim() else {
                    return Err(Refusal::NoLane(Error::TooManyWriters { lanes: board.lanes() }));
                };
                *base = key.next() - writes.next_sequence();
                // Relaxed: read only by this session's own calls, after they took the lock
                // or saw a write opened through it.
                self.lane.store(u64::from(key.lane()), Ordering::Relaxed);
                lane.insert(key)
            }
        };
        let (base, lane_index) = (*base, key.lane());
        writes.let_go(
            now,
            |waiting| {
                waiting.dropped && board.is_answered_at(Address { lane: lane_index, number: base + waiting.sequence })
            },
            // Past its deadline with nobody waiting: no later leader proposes it. A task
            // still awaiting it must hear of its deadline: the reminder thread no longer
            // sees it once it leaves the session.
            |waiting| {
                let _ = board.retract(key, base + waiting.sequence);
                board.wake(lane_index);
            },
        );
        board.finished_below(key, base + writes.floor());
        if !board.can_post(key) {
            // The berth's write may be answered with its ticket not yet looking: stash the
            // answer (see the module docs).
            let Some(number) = key.next().checked_sub(board.berths()) else { return Err(Refusal::Full(op)) };
            let Some(answer) = board.take(key, number) else { return Err(Refusal::Full(op)) };
            if writes.get_mut(number - base).is_some() {
                stash.push((number - base, answer));
                // Relaxed: a hint; a ticket that misses it looks again after its wake-up.
                self.stashed.store(stash.len(), Ordering::Relaxed);
            }
            if !board.can_post(key) {
                return Err(Refusal::Full(op));
            }
        }
        let sequence = writes.next_sequence();
        let address = Address { lane: key.lane(), number: base + sequence };
        let numbers = writes.open(
            now,
            now.after(timing.deadline),
            |_| Waiting {
                opened: now,
                look_at: now.after(timing.retry_after.min(timing.deadline)),
                sequence,
                dropped: false,
            },
            |_| false,
            |_| {},
        );
        debug_assert_eq!(numbers.sequence, sequence);
        let posted = Posted { address, client: self.client, sequence, floor: numbers.floor, op };
        let number = board.post(key, posted).unwrap_or_else(|_| unreachable!("can_post said the berth is free"));
        debug_assert_eq!(number, address.number);
        if let Some(me) = counted {
            debug_assert!(std::ptr::eq(Arc::as_ptr(me), self), "a ticket counted with another session's Arc");
            *tickets += 1;
            if keep.is_none() {
                *keep = Some(Arc::clone(me));
            }
        }
        drop(state);
        // Relaxed: a hint for waiters of this session's writes (`Ticket::step`).
        self.opened.store(sequence + 1, Ordering::Relaxed);
        Ok((address, numbers))
    }

    /// Whether the answer of the write at `address` may be there: on the board, or (if
    /// the session stashed any) in the stash.
    #[inline]
    pub(crate) fn is_answered(&self, address: Address) -> bool {
        // Relaxed: see `stashed`.
        self.shared.board.is_answered_at(address) || self.stashed.load(Ordering::Relaxed) > 0
    }

    /// Whether write `sequence`, at `address`, has its answer on the board or in the stash:
    /// [`Session::is_answered`] without the stash's false positives.
    pub(crate) fn has_answer(&self, address: Address, sequence: u64) -> bool {
        self.shared.board.is_answered_at(address)
            // Relaxed: see `stashed`.
            || (self.stashed.load(Ordering::Relaxed) > 0
                && self.state.lock().stash.iter().any(|(held, _)| *held == sequence))
    }

    /// Takes write `sequence`'s answer, if it is there (on the board or in the stash), and
    /// closes the write: its outcome is reported, so the session's floor may pass it, and
    /// its ticket (`counted` or not) ends: drop what comes back with the answer after this
    /// call (see [`Keep`]).
    ///
    /// # Safety
    /// `this` is a live session (the ticket has not ended). The three calls that end a
    /// ticket take a pointer rather than `&self`: once one ends the last counted ticket
    /// and releases the lock, another thread's last `Arc` may free the session before the
    /// call returns, which a `&self` argument must outlive.
    #[inline]
    pub(crate) unsafe fn take(this: NonNull<Self>, sequence: u64, counted: bool) -> Option<(Outcome<D>, Keep<D>)> {
        // SAFETY: the caller's promise; a local reference, not `&self`, because another
        // thread may free the session as soon as the lock is released below.
        let this = unsafe { this.as_ref() };
        let board = &this.shared.board;
        let state = &mut *this.state.lock();
        let number = state.base + sequence;
        let answer = match state.lane.as_mut().and_then(|key| board.take(key, number)) {
            Some(answer) => answer,
            None => state.unstash(sequence, &this.stashed)?,
        };
        state.close(board, sequence);
        Some((answer, state.end_ticket(counted)))
    }

    /// Gives up on write `sequence` (its deadline passed, or the cluster stopped): retracts
    /// it from the board and closes it, unless its answer came first. Unless its answer is
    /// being written, its ticket (`counted` or not) ends: drop the [`Keep`] after this call.
    ///
    /// # Safety
    /// As for [`Session::take`].
    pub(crate) unsafe fn give_up(this: NonNull<Self>, sequence: u64, counted: bool) -> (GaveUp<D::Response>, Keep<D>) {
        // SAFETY: the caller's promise; a local reference, not `&self`, because another
        // thread may free the session as soon as the lock is released below.
        let this = unsafe { this.as_ref() };
        let board = &this.shared.board;
        let state = &mut *this.state.lock();
        let number = state.base + sequence;
        let outcome = if let Some(answer) = state.unstash(sequence, &this.stashed) {
            GaveUp::Answered(answer)
        } else {
            let Some(key) = state.lane.as_mut() else { return (GaveUp::Retracted, state.end_ticket(counted)) };
            match board.retract(key, number) {
                Retracted::Retracted => GaveUp::Retracted,
                Retracted::Answering => return (GaveUp::Answering, None),
                Retracted::Answered => board.take(key, number).map_or(GaveUp::Retracted, GaveUp::Answered),
            }
        };
        state.close(board, sequence);
        (outcome, state.end_ticket(counted))
    }

    /// Write `sequence`'s ticket (`counted` or not) was dropped before it took the outcome:
    /// the session lets go of the write once it is answered or past its deadline. Drop the
    /// [`Keep`] after this call.
    ///
    /// # Safety
    /// As for [`Session::take`].
    pub(crate) unsafe fn abandon(this: NonNull<Self>, sequence: u64, counted: bool) -> Keep<D> {
        // SAFETY: the caller's promise; a local reference, not `&self`, because another
        // thread may free the session as soon as the lock is released below.
        let this = unsafe { this.as_ref() };
        let state = &mut *this.state.lock();
        if let Some(waiting) = state.writes.get_mut(sequence) {
            waiting.dropped = true;
        }
        // An answer stashed for it has nobody to take it.
        if state.unstash(sequence, &this.stashed).is_some() {
            state.close(&this.shared.board, sequence);
        }
        state.end_ticket(counted)
    }

    /// An `Arc` of this session while it has counted tickets (see [`Keep`]): for a ticket
    /// that registers its session with the reminder thread.
    pub(crate) fn keeper(&self) -> Keep<D> {
        self.state.lock().keep.clone()
    }

    /// Write `sequence` was submitted (again): a task awaiting it is woken at `look_at`
    /// at the latest.
    #[inline]
    pub(crate) fn look_at(&self, sequence: u64, look_at: Time) {
        if let Some(waiting) = self.state.lock().writes.get_mut(sequence) {
            waiting.look_at = look_at;
        }
    }

    /// The event count this session's threads and tasks wait on for answers; `None` before
    /// its first write.
    pub(crate) fn answers(&self) -> Option<&crate::transport::event::EventCount> {
        // Relaxed: see `lane`.
        let lane = self.lane.load(Ordering::Relaxed);
        (lane != NO_LANE).then(|| self.shared.board.answers_of(lane as u32))
    }

    /// For the reminder thread: whether this session has writes not yet answered that a
    /// task awaiting them has to look at again: any of them if `all`, else those whose
    /// retry time or deadline has come (the reminder looks again a retry interval later).
    /// The caller wakes the session's lane.
    // The reminder thread is not built under loom.
    #[cfg_attr(corum_loom, allow(dead_code))]
    pub(crate) fn due(&self, all: bool, now: Time) -> Option<u32> {
        let timing = &self.shared.options.timing;
        let overdue_after = timing.retry_after.min(timing.deadline);
        let mut state = self.state.lock();
        let SessionState { writes, lane, base, .. } = &mut *state;
        let lane = lane.as_ref()?.lane();
        let mut due = false;
        for (sequence, waiting) in writes.iter_mut() {
            if !all && waiting.opened.after(overdue_after) > now {
                break; // kept in the order opened: every later write is younger
            }
            let answered = self.shared.board.is_answered_at(Address { lane, number: *base + sequence });
            if answered || !(all || waiting.look_at <= now) {
                continue;
            }
            waiting.look_at = now.after(timing.retry_after);
            due = true;
        }
        due.then_some(lane)
    }

    /// Writes held, closed ones behind the first one still open included.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.state.lock().writes.held()
    }
}

impl<D: Dispatch> Drop for Session<D> {
    /// Gives the session's lane back: its writes still posted are retracted (their tickets
    /// are gone with the session).
    fn drop(&mut self) {
        let lane = self.state.lock().lane.take();
        if let Some(key) = lane {
            self.shared.board.release(key);
        }
    }
}
