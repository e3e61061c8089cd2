//! The list of lanes collectors look at: one bit per lane, so that a round finds the lanes
//! with writes without looking at every lane a session ever claimed (a server that opens a
//! handle per connection has many, most of them idle).
//!
//! - The owner puts its lane on the list when it posts to it idle (every earlier write
//!   finished), after storing `posted`: a swap of the lane's own `listed` flag (a line the
//!   owner writes anyway), and, if the flag was clear, an OR into the list. A lane with
//!   writes in flight is not touched again, so pipelined writes pay nothing here, and a
//!   write at a time one swap on its own line.
//! - A collector takes a lane off the list once it has found it idle (`oldest == posted`)
//!   on `quiet_visits` passes in a row: a compare-exchange of `listed` from set to clear,
//!   then the bit cleared, then `posted` loaded again; if it moved, the bit goes back.
//!
//! Why no write is hidden for good: the owner's swap and the collector's compare-exchange are
//! read-modify-writes of one flag, so one comes first. If the owner's swap (after a post to
//! an idle lane) comes first, the collector's compare-exchange reads it (Acquire, after the
//! owner's Release), so its second load of `posted` sees that post and it puts the bit
//! back. If the compare-exchange comes first, the swap finds the flag clear and the owner
//! sets the bit itself (an OR that a collector's later clear reads, and so sees `posted`
//! and sets it back). The writes the owner posts while the lane is busy come after such a
//! post to an idle lane. The collector's Acquire load of `oldest` pairs with the owner's
//! Release store of it, so every load of `posted` after it sees the posts before that
//! store: if `posted` then still equals that `oldest`, the owner had no write in flight
//! when it stored it, and its next post is one to an idle lane; if a stale `posted` looked
//! equal, the second look sees the truth and puts the bit back.
//!
//! Between a collector's clearing of the bit and its putting it back, other collectors do
//! not look at the lane: a collector preempted right there (a deposed leader that does not
//! know it yet, say) delays a post made meanwhile until it runs again. The window is three
//! instructions long; no write is lost to it.

use super::{Board, Lane};
use crate::plant::planted;
use crate::sync::atomic::Ordering;

/// A collector takes a lane off the list after finding it idle on this many passes in a
/// row. A write at a time comes back within a few passes, so its lane stays listed and its
/// owner's swap finds the flag set. (Under loom 1, so that the suite explores taking a lane
/// off while its owner posts.)
pub(super) const QUIET_VISITS: u32 = if cfg!(corum_loom) { 1 } else { 64 };

fn bit(index: usize) -> (usize, u64) {
    (index / 64, 1 << (index % 64))
}

impl<W: Clone, R> Board<W, R> {
    /// Puts lane `index` on the list unless its flag says it is there: called by the owner
    /// after it stored `posted` for a post to an idle lane.
    pub(super) fn list_lane(&self, lane: &Lane<W, R>, index: u32) {
        // Release pairs with the Acquire compare-exchange in `unlist`: a collector that
        // takes the lane off after this swap sees the posts before it.
        if !lane.listed.swap(true, Ordering::Release) {
            let (word, bit) = bit(index as usize);
            // Release pairs with the Acquire loads of the list: a collector that sees the
            // bit sees the posts before it.
            self.list[word].fetch_or(bit, Ordering::Release);
        }
    }

    /// Calls `visit` with the index of every lane on the list, lowest first, until it
    /// returns false.
    pub(super) fn visit_listed(&self, mut visit: impl FnMut(usize) -> bool) {
        let words = self.lanes_in_use().len().div_ceil(64);
        for (word, bits) in self.list[..words].iter().enumerate() {
            // Acquire pairs with the owner's Release OR (and a collector's putting back).
            let mut bits = bits.load(Ordering::Acquire);
            while bits != 0 {
                let index = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if !visit(index) {
                    return;
                }
            }
        }
    }

    /// Takes lane `index` off the list, found idle with `posted` writes posted (every one
    /// finished); puts it back if a post came in meanwhile (see the module docs). Returns
    /// whether it took the lane off and left it off.
    pub(super) fn unlist(&self, index: usize, posted: u64) -> bool {
        let lane = &self.lanes[index];
        // Acquire pairs with the owner's Release swap. Fails if another collector took it
        // off first, or its bit was put back below after a race with a post (then the lane
        // stays on the list until its owner's next post to it idle sets the flag again).
        if lane.listed.compare_exchange(true, false, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        let (word, bit) = bit(index);
        // Acquire pairs with the owner's Release OR, if this clears its bit.
        self.list[word].fetch_and(!bit, Ordering::Acquire);
        // (The planted bug `board-unlist-no-recheck` hides a write posted meanwhile.)
        if planted!("board-unlist-no-recheck") {
            return true;
        }
        // Acquire as in `Collector::collect`.
        if lane.posted.load(Ordering::Acquire) != posted {
            self.list[word].fetch_or(bit, Ordering::Release);
            return false;
        }
        true
    }

    /// Whether lane `index` is on the list (a snapshot, for tests).
    #[cfg(all(test, not(corum_loom)))]
    pub(super) fn is_listed(&self, index: usize) -> bool {
        let (word, bit) = bit(index);
        self.list[word].load(Ordering::Relaxed) & bit != 0
    }
}
