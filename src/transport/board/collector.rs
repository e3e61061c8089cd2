//! Collection from the write board, per ballot (see the parent module, "Collection, per
//! ballot"): what one replica has collected, and its pass over the lanes.

use super::{Address, Board, PIN, UNPIN};
use crate::sync::atomic::Ordering;

/// One replica's collection state: per lane, the next write it has not collected, valid
/// in one ballot (see the module docs).
#[derive(Debug, Default)]
pub struct Collector {
    ballot: Option<u64>,
    next: Vec<u64>,
}

impl Collector {
    /// Whether `board` may hold writes this collector has not collected in `ballot` (one
    /// load per lane).
    pub fn has_uncollected<W: Clone, R>(&self, board: &Board<W, R>, ballot: u64) -> bool {
        if self.ballot != Some(ballot) || self.next.len() != board.lanes.len() {
            return board.any_posted();
        }
        // Acquire as in `collect`.
        board.lanes_in_use().iter().zip(&self.next).any(|(lane, &next)| lane.posted.load(Ordering::Acquire) > next)
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
        }
        let mut taken = 0;
        for (index, lane) in board.lanes_in_use().iter().enumerate() {
            if taken == budget {
                break;
            }
            // Acquire pairs with the owner's Release store of `posted`: every berth below
            // it holds its posted write (or a later state of it).
            let posted = lane.posted.load(Ordering::Acquire);
            let next = &mut self.next[index];
            if *next >= posted {
                continue;
            }
            // Relaxed: a hint (see `finished_below`).
            let mut number = (*next).max(lane.oldest.load(Ordering::Relaxed));
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
        }
        taken
    }
}
