//! Collection from the write board, per ballot (see the parent module, "Collection, per
//! ballot"): what one replica has collected, and its pass over the listed lanes.

use super::listing::QUIET_VISITS;
use super::{Address, Board, PIN, UNPIN};
use crate::sync::atomic::Ordering;

/// One replica's collection state: per lane, the next write it has not collected, valid
/// in one ballot (see the module docs), and how many passes in a row found the lane idle.
#[derive(Debug)]
pub struct Collector {
    ballot: Option<u64>,
    next: Vec<u64>,
    quiet: Vec<u32>,
    quiet_visits: u32,
    unlisted: u64,
}

impl Default for Collector {
    fn default() -> Self {
        Self::unlisting_after(QUIET_VISITS)
    }
}

impl Collector {
    /// A collector that takes a lane off the board's list of lanes to look at once it has
    /// found it idle (every write finished) on `passes` passes in a row (at least 1; the
    /// default is 64).
    pub fn unlisting_after(passes: u32) -> Self {
        Self { ballot: None, next: Vec::new(), quiet: Vec::new(), quiet_visits: passes.max(1), unlisted: 0 }
    }

    /// How many times this collector took an idle lane off the board's list.
    pub fn lanes_unlisted(&self) -> u64 {
        self.unlisted
    }

    /// Whether `board` may hold writes this collector has not collected in `ballot` (one
    /// load per listed lane).
    pub fn has_uncollected<W: Clone, R>(&self, board: &Board<W, R>, ballot: u64) -> bool {
        if self.ballot != Some(ballot) || self.next.len() != board.lanes.len() {
            return board.any_posted();
        }
        let mut any = false;
        board.visit_listed(|index| {
            // Acquire as in `collect`.
            any = board.lanes[index].posted.load(Ordering::Acquire) > self.next[index];
            !any
        });
        any
    }

    /// Hands `take` every write posted on `board` that this collector has not collected in
    /// `ballot` (all unfinished ones after a change of ballot), up to `budget` of them, with
    /// its address; returns how many. Never waits.
    pub fn collect<W: Clone, R>(
        &mut self,
        board: &Board<W, R>,
        ballot: u64,
        budget: usize,
        mut take: impl FnMut(Address, W),
    ) -> usize {
        if self.ballot != Some(ballot) || self.next.len() != board.lanes.len() {
            self.ballot = Some(ballot);
            self.next.clear();
            self.next.resize(board.lanes.len(), 0);
            self.quiet.resize(board.lanes.len(), 0);
        }
        let mut taken = 0;
        board.visit_listed(|index| {
            if taken == budget {
                return false;
            }
            let lane = &board.lanes[index];
            // Acquire pairs with the owner's Release store of `oldest`: the loads of
            // `posted` after it (here and in `unlist`) see the posts before that store.
            let oldest = lane.oldest.load(Ordering::Acquire);
            // Acquire pairs with the owner's Release store of `posted`: every berth below
            // it holds its posted write (or a later state of it).
            let posted = lane.posted.load(Ordering::Acquire);
            if oldest == posted {
                self.quiet[index] += 1;
                if self.quiet[index] >= self.quiet_visits {
                    self.quiet[index] = 0;
                    self.unlisted += u64::from(board.unlist(index, posted));
                }
            } else {
                self.quiet[index] = 0;
            }
            let next = &mut self.next[index];
            if *next >= posted {
                return true;
            }
            let mut number = (*next).max(oldest);
            while number < posted && taken < budget {
                let berth = board.berth(lane, number);
                if board.pin(berth, number) {
                    // SAFETY: the pin keeps the owner from overwriting the write (it posts
                    // only to berths without pins), and the pin's Acquire saw it written.
                    let write = berth.write.with(|slot| unsafe { (*slot).clone() });
                    berth.word.fetch_sub(PIN, UNPIN);
                    let write = write.expect("a posted berth holds its write");
                    take(Address { lane: index as u32, number }, write);
                    taken += 1;
                }
                number += 1;
            }
            *next = number;
            true
        });
        taken
    }
}
