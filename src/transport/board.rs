//! The write board: where client sessions leave their writes for whichever replica leads
//! to collect, and where the replica that applies a write first leaves its answer for the
//! session to take. (node-replication's per-thread contexts, with the difference that the
//! board belongs to the cluster, not to one replica, so a new leader collects the same
//! writes and a change of leader needs no resubmission.)
//!
//! A session owns one *lane* at a time ([`Board::claim`], its [`LaneKey`]): a ring of
//! *berths*, each holding one write and, later, its answer. The lane numbers its writes
//! with its own counter, which never repeats, also across owners, so that a number names
//! one write for good: write `n` sits in berth `n % berths`.
//!
//! # A berth's word
//! Each berth has one atomic word: the number of the write it holds (or last held), how
//! many collectors are reading that write now (*pins*), and a phase:
//! `EMPTY` (no write to collect), `POSTED` (a write to collect and answer), `ANSWERING`
//! (one answerer is writing the answer), `ANSWERED`.
//! - The owner posts write `n` (writes it into the berth, then stores `n, POSTED` with
//!   Release, then raises the lane's `posted` counter with Release) only when the berth is
//!   empty or answered and taken, and has no pins: nobody reads the berth's old write or
//!   answer then, and nobody can start to (a pin and an answer both need `POSTED`), so the
//!   owner needs no read-modify-write to post.
//! - A collector pins write `n` with a compare-exchange that succeeds only on `n, POSTED`
//!   (Acquire: it sees the write the owner stored before), clones the write, and unpins
//!   with a Release decrement, which the owner's Acquire load before its next post pairs
//!   with: the clone happens before the berth is overwritten.
//! - The first answerer moves `n, POSTED` to `n, ANSWERING` (a compare-exchange, so only
//!   one answers), writes the answer, and adds the difference to `ANSWERED` with Release;
//!   a late or second answer, or one for a write the berth no longer holds (a later
//!   number), finds the word changed and is dropped. The owner takes the answer after an
//!   Acquire load that sees `n, ANSWERED`.
//! - The owner retracts a write it gives up on (`n, POSTED` to `n, EMPTY`): no collector
//!   pins it from then on, so no later leader proposes it; a copy already collected may
//!   still be applied, whose answer then finds the berth empty.
//!
//! # Collection, per ballot
//! A [`Collector`] (one per replica) keeps, per lane, the number of the next write it has
//! not collected, and starts over from each lane's oldest unfinished write whenever it
//! collects in a new ballot. So a deposed leader that collected a write cannot hide it
//! from the next leader, which collects it again; the exactly-once table applies it once.
//! Collecting never waits: a write not yet posted is simply not collected yet.
//!
//! # Costs
//! Per write: the owner's stores (no read-modify-write to post or take; one swap of its
//! lane's own flag when it posts to an idle lane), one pin and one unpin by each
//! collector, one compare-exchange and one store by the first answerer (an add instead of
//! the store if a collector held a pin when it claimed the berth; the others, one load),
//! and one event count notification (a fence and a load when nobody waits) per answer, or
//! per lane and batch for an applier that answers quietly and wakes each lane once. A collector's pass looks only at the lanes on the board's list (one bit per
//! lane, `listing`): a lane found idle on 64 passes in a row leaves it, and its owner's next
//! post puts it back, so a round does not look at every idle session that ever wrote.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::plant::planted;
use crate::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::sync::UnsafeCell;
use crate::transport::event::EventCount;

/// Phases, in the low two bits of a berth's word.
const EMPTY: u64 = 0;
const POSTED: u64 = 1;
const ANSWERING: u64 = 2;
const ANSWERED: u64 = 3;
const PHASE: u64 = 0b11;
/// One pin, in bits 2..16: at most one per collector at a time, so far below the limit.
const PIN: u64 = 1 << 2;
const PINS: u64 = 0x3fff << 2;
/// The write's number, in the top 48 bits.
const NUMBER_SHIFT: u32 = 16;

/// The ordering of a collector's unpin; `Relaxed` only in the loom suite's planted bug.
const UNPIN: Ordering = if planted!("board-unpin-relaxed") { Ordering::Relaxed } else { Ordering::Release };

/// The ordering of the owner's stores of `oldest`; `Relaxed` only in the loom suite's
/// planted bug.
const OLDEST: Ordering = if planted!("board-oldest-relaxed") { Ordering::Relaxed } else { Ordering::Release };

fn word(number: u64, phase: u64) -> u64 {
    number << NUMBER_SHIFT | phase
}

fn number_of(word: u64) -> u64 {
    word >> NUMBER_SHIFT
}

/// Whether `word` is write `number` in `phase` (pins aside).
fn is(word: u64, number: u64, phase: u64) -> bool {
    let same_number = number_of(word) == number || planted!("board-answer-any-number");
    same_number && word & PHASE == phase
}

/// Where a collected write sits: its lane and its number there. Its answer goes back here
/// ([`Board::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Address {
    /// The lane's index on the board.
    pub lane: u32,
    /// The write's number in its lane.
    pub number: u64,
}

struct Berth<W, R> {
    word: AtomicU64,
    write: UnsafeCell<Option<W>>,
    answer: UnsafeCell<Option<R>>,
}

/// One session's ring of berths. The counters are written by the owner only.
struct Lane<W, R> {
    /// Whether the lane is on the board's list of lanes collectors look at, or about to be
    /// (see the `listing` module): set by the owner's swap when it posts to an idle lane,
    /// cleared by a collector's compare-exchange when it takes an idle lane off the list.
    listed: AtomicBool,
    /// The number of the next write to post: every write numbered below it was posted.
    posted: AtomicU64,
    /// Every write numbered below it is finished (taken, retracted or let go of):
    /// collectors start here.
    oldest: AtomicU64,
    /// Whether a session owns the lane.
    claimed: AtomicBool,
    berths: Box<[Berth<W, R>]>,
    /// The owner's threads and tasks wait here for answers.
    answered: EventCount,
}

/// See the module docs. `W`: a write as collectors clone it; `R`: its answer.
pub struct Board<W, R> {
    lanes: Box<[CachePadded<Lane<W, R>>]>,
    /// One more than the highest lane ever claimed: collectors look at the lanes below it
    /// only. Claims take the lowest free lane, so it stays near the number of sessions
    /// that write at once. Raised (Release) by `claim`, never lowered.
    in_use: AtomicUsize,
    /// One bit per lane: the lanes collectors look at (see the `listing` module).
    list: CachePadded<Box<[AtomicU64]>>,
    mask: u64,
    /// Tells one board's keys from another's (see [`LaneKey`]).
    id: usize,
}

// SAFETY: writes and answers move between threads through berths whose access the berth
// words arbitrate (see the module docs): a write is cloned by collectors on other threads
// while the owner may read it (`W: Sync`) and is dropped wherever the owner overwrites it
// (`W: Send`); an answer is written on one thread and taken on another (`R: Send`).
unsafe impl<W: Send + Sync, R: Send> Send for Board<W, R> {}
// SAFETY: as above.
unsafe impl<W: Send + Sync, R: Send> Sync for Board<W, R> {}

impl<W, R> fmt::Debug for Board<W, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Board").field("lanes", &self.lanes.len()).field("berths", &(self.mask + 1)).finish()
    }
}

/// A session's ownership of one lane: the owner's operations take it by `&mut`, so one
/// thread at a time posts, takes and retracts there. Given back with [`Board::release`].
#[derive(Debug)]
pub struct LaneKey {
    lane: u32,
    board: usize,
    /// The number of the next write to post (the lane's `posted`, which only we write).
    next: u64,
    /// Every write numbered below it is finished (the lane's `oldest`, which only we write).
    oldest: u64,
}

impl LaneKey {
    /// The lane's index.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    /// The number the next posted write gets.
    pub fn next(&self) -> u64 {
        self.next
    }
}

/// Why a post was refused; the write comes back.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<W> {
    /// The berth still holds an unfinished write, or a collector still reads its old
    /// write: the lane has as many writes in flight as berths. Try again once one is
    /// finished.
    Full(W),
}

/// What [`Board::retract`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Retracted {
    /// The write was retracted (or had been): no collector takes it from now on.
    Retracted,
    /// Its answer is being written: retract again, or wait for it.
    Answering,
    /// Its answer is there: take it.
    Answered,
}

impl<W: Clone, R> Board<W, R> {
    /// A board of `lanes` lanes of `berths` berths each (rounded up to a power of two).
    pub fn new(lanes: usize, berths: usize) -> Self {
        static BOARDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let berths = berths.max(1).next_power_of_two();
        let lanes: Box<[CachePadded<Lane<W, R>>]> = (0..lanes)
            .map(|_| {
                CachePadded::new(Lane {
                    listed: AtomicBool::new(false),
                    posted: AtomicU64::new(0),
                    oldest: AtomicU64::new(0),
                    claimed: AtomicBool::new(false),
                    berths: (0..berths)
                        .map(|_| Berth {
                            word: AtomicU64::new(word(0, EMPTY)),
                            write: UnsafeCell::new(None),
                            answer: UnsafeCell::new(None),
                        })
                        .collect(),
                    answered: EventCount::new(),
                })
            })
            .collect();
        // Relaxed: only needs to be unique.
        let id = BOARDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let list = CachePadded::new((0..lanes.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect());
        Self { lanes, in_use: AtomicUsize::new(0), list, mask: berths as u64 - 1, id }
    }

    /// How many lanes the board has.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// The lanes ever claimed (and the free ones among them).
    fn lanes_in_use(&self) -> &[CachePadded<Lane<W, R>>] {
        // Acquire pairs with the Release raise in `claim`.
        &self.lanes[..self.in_use.load(Ordering::Acquire)]
    }

    /// How many berths each lane has: the most writes a lane holds in flight.
    pub fn berths(&self) -> u64 {
        self.mask + 1
    }

    /// Claims a free lane for a session; `None` if every lane is owned.
    pub fn claim(&self) -> Option<LaneKey> {
        self.lanes.iter().enumerate().find_map(|(index, lane)| {
            // Acquire pairs with the Release store in `release`: the previous owner's
            // counters are seen.
            lane.claimed.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
            // Relaxed: written by the previous owner before its Release of `claimed`.
            let next = lane.posted.load(Ordering::Relaxed);
            // Release pairs with a collector's Acquire load: it looks at this lane from now.
            self.in_use.fetch_max(index + 1, Ordering::Release);
            Some(LaneKey { lane: index as u32, board: self.id, next, oldest: next })
        })
    }

    /// Gives a lane back: its writes still posted are retracted first (answers on their
    /// way are dropped when they land, or when the berth is next posted to).
    pub fn release(&self, mut key: LaneKey) {
        for number in key.oldest..key.next {
            let _ = self.retract(&mut key, number);
        }
        let lane = self.lane(&key);
        // Release as in `finished_below`.
        lane.oldest.store(key.next, OLDEST);
        // Release pairs with the Acquire in `claim`.
        lane.claimed.store(false, Ordering::Release);
    }

    fn lane(&self, key: &LaneKey) -> &Lane<W, R> {
        assert_eq!(key.board, self.id, "a lane key used on another board");
        &self.lanes[key.lane as usize]
    }

    fn berth<'a>(&self, lane: &'a Lane<W, R>, number: u64) -> &'a Berth<W, R> {
        &lane.berths[(number & self.mask) as usize]
    }

    /// Posts `write` as the lane's next write; returns its number, or the write back if its
    /// berth is not free yet.
    pub fn post(&self, key: &mut LaneKey, write: W) -> Result<u64, Refused<W>> {
        let lane = self.lane(key);
        let number = key.next;
        let berth = self.berth(lane, number);
        if !self.can_post(key) {
            return Err(Refused::Full(write));
        }
        // SAFETY: `can_post`: the berth is empty or answered and taken, with no pins: no collector reads
        // its write and none can start (a pin needs POSTED), no answerer writes its answer
        // and none can start (an answer needs POSTED); we are the lane's one owner.
        berth.write.with_mut(|slot| unsafe { *slot = Some(write) });
        // SAFETY: as above; a previous owner's answer nobody took is dropped here.
        berth.answer.with_mut(|answer| unsafe { *answer = None });
        // Release pairs with the Acquire of a collector's pin and an answerer's claim.
        berth.word.store(word(number, POSTED), Ordering::Release);
        key.next = number + 1;
        // Every earlier write is finished: a collector may have taken the lane off the
        // list. It goes back after `posted`, which a collector that sees it listed must
        // see. (The planted bug `board-listed-before-posted` lists it first;
        // `board-idle-post-unlisted` lists it at its first post only.)
        let relist = key.oldest == number && (!planted!("board-idle-post-unlisted") || number == 0);
        let early = planted!("board-listed-before-posted");
        if relist && early {
            self.list_lane(lane, key.lane);
        }
        // Release pairs with a collector's Acquire load: every berth below it is posted.
        lane.posted.store(key.next, Ordering::Release);
        if relist && !early {
            self.list_lane(lane, key.lane);
        }
        Ok(number)
    }

    /// Whether the lane's next post would be taken now: its berth is empty, or answered
    /// and taken (or a previous owner's answer nobody took), and no collector reads its old
    /// write. Once true it stays true until the owner posts (pins and answers need POSTED).
    pub fn can_post(&self, key: &LaneKey) -> bool {
        let lane = self.lane(key);
        let berth = self.berth(lane, key.next);
        // Acquire pairs with a collector's Release unpin (its clone of the old write
        // happens before the owner overwrites it) and with the answerer's Release (its
        // answer, which a take moved out, is not being written any more).
        let current = berth.word.load(Ordering::Acquire);
        let free = match current & PHASE {
            EMPTY => true,
            // SAFETY: at ANSWERED only the owner touches the answer, and we are the owner.
            ANSWERED => number_of(current) < key.oldest || berth.answer.with(|answer| unsafe { (*answer).is_none() }),
            _ => false,
        };
        free && current & PINS == 0
    }

    /// Whether any write is posted and not yet answered or retracted.
    pub fn any_posted(&self) -> bool {
        // Relaxed: a snapshot for a caller that looks again.
        self.lanes_in_use()
            .iter()
            .any(|lane| lane.berths.iter().any(|berth| berth.word.load(Ordering::Relaxed) & PHASE == POSTED))
    }

    /// Takes write `number`'s answer, if it is there and not taken yet.
    pub fn take(&self, key: &mut LaneKey, number: u64) -> Option<R> {
        let lane = self.lane(key);
        let berth = self.berth(lane, number);
        // Acquire pairs with the answerer's Release: its answer is seen.
        if !is(berth.word.load(Ordering::Acquire), number, ANSWERED) {
            return None;
        }
        // SAFETY: at ANSWERED the answerer is done and only the owner (we) touches the
        // answer; the berth is not posted to again before this returns.
        berth.answer.with_mut(|answer| unsafe { (*answer).take() })
    }

    /// Retracts write `number`, which its owner gives up on (see [`Retracted`]).
    pub fn retract(&self, key: &mut LaneKey, number: u64) -> Retracted {
        let lane = self.lane(key);
        let berth = self.berth(lane, number);
        let mut current = berth.word.load(Ordering::Acquire);
        loop {
            if number_of(current) != number {
                return Retracted::Retracted;
            }
            let phase = current & PHASE;
            match phase {
                EMPTY => return Retracted::Retracted,
                ANSWERING => return Retracted::Answering,
                ANSWERED => return Retracted::Answered,
                _ => {}
            }
            // Pins kept: their collectors unpin later.
            match berth.word.compare_exchange_weak(
                current,
                current - POSTED + EMPTY,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Retracted::Retracted,
                Err(now) => current = now,
            }
        }
    }

    /// Every write numbered below `number` is finished: collectors need not look at them.
    pub fn finished_below(&self, key: &mut LaneKey, number: u64) {
        debug_assert!(number <= key.next, "finished writes that were never posted");
        if number > key.oldest {
            key.oldest = number;
            // Release pairs with a collector's Acquire load, before it loads `posted`: a
            // collector that sees every write finished sees every post before (see the
            // `listing` module). Otherwise a hint that saves collectors looking at finished
            // writes; one that looks anyway finds them answered or empty.
            self.lane(key).oldest.store(number, OLDEST);
        }
    }

    /// Pins write `number` of `lane` if it is posted; returns whether it did.
    fn pin(&self, berth: &Berth<W, R>, number: u64) -> bool {
        let mut current = berth.word.load(Ordering::Relaxed);
        loop {
            if !is(current, number, POSTED) {
                return false;
            }
            // Acquire pairs with the owner's Release post: the write is seen.
            match berth.word.compare_exchange_weak(current, current + PIN, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }
}

mod answers;
mod collector;
mod listing;

pub use collector::Collector;

#[cfg(all(test, not(corum_loom)))]
mod tests;
