//! Answers on the write board: the first replica to apply a write answers it in its berth
//! and wakes the owner's waiters (see the parent module, "A berth's word").

use super::{is, number_of, Address, Board, ANSWERED, ANSWERING, PHASE, PINS, POSTED};
use crate::plant::planted;
use crate::sync::atomic::Ordering;
use crate::transport::event::EventCount;

impl<W: Clone, R> Board<W, R> {
    /// Whether the answer of the write at `address` is there; anyone may look.
    pub fn is_answered_at(&self, address: Address) -> bool {
        let Some(lane) = self.lanes.get(address.lane as usize) else { return false };
        // Acquire pairs with the answerer's Release.
        is(self.berth(lane, address.number).word.load(Ordering::Acquire), address.number, ANSWERED)
    }

    /// Answers every write posted and not yet answered with what `answer` gives, and wakes
    /// their owners (shutdown fails every write still waiting this way).
    pub fn answer_every_posted(&self, mut answer: impl FnMut() -> R) {
        for (index, lane) in self.lanes_in_use().iter().enumerate() {
            let mut any = false;
            for berth in lane.berths.iter() {
                // Acquire as in `answer_quietly`.
                let current = berth.word.load(Ordering::Acquire);
                if current & PHASE == POSTED {
                    let address = Address { lane: index as u32, number: number_of(current) };
                    any |= self.answer_quietly(address, answer());
                }
            }
            if any {
                self.wake(index as u32);
            }
        }
    }

    /// Wakes every waiter of lane `lane`'s owner under the event count's lock
    /// ([`EventCount::wake_all`]): for a thread that saw a change others made, which the
    /// waiters must look at.
    pub fn remind(&self, lane: u32) {
        if let Some(lane) = self.lanes.get(lane as usize) {
            lane.answered.wake_all();
        }
    }

    /// The event count lane `lane`'s owner waits on for answers (its threads need not hold
    /// the key).
    pub fn answers_of(&self, lane: u32) -> &EventCount {
        &self.lanes[lane as usize].answered
    }

    /// Answers the write at `address` with `answer` unless it was answered already, was
    /// retracted, or its berth holds another write by now; returns whether this call
    /// answered it. Wakes the owner's waiters.
    pub fn answer(&self, address: Address, answer: R) -> bool {
        let answered = self.answer_quietly(address, answer);
        if answered {
            self.wake(address.lane);
        }
        answered
    }

    /// [`Board::answer`] without waking the owner's waiters: for an applier that answers a
    /// batch, and then wakes each lane it answered once ([`Board::wake`]).
    pub fn answer_quietly(&self, address: Address, answer: R) -> bool {
        let Some(lane) = self.lanes.get(address.lane as usize) else { return false };
        let berth = self.berth(lane, address.number);
        // Acquire pairs with the owner's Release post: the take of the berth's previous
        // answer happened before we write this one.
        let mut current = berth.word.load(Ordering::Acquire);
        loop {
            if !is(current, address.number, POSTED) {
                return false;
            }
            match berth.word.compare_exchange_weak(
                current,
                current - POSTED + ANSWERING,
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        // SAFETY: the compare-exchange to ANSWERING made us the berth's one answerer; the
        // owner reads the answer only once it sees ANSWERED.
        berth.answer.with_mut(|slot| unsafe { *slot = Some(answer) });
        // Release pairs with the owner's Acquire load in `take`. With no pins when we
        // claimed it, nobody else changes the word until we publish: pins, retractions and
        // other answers all need POSTED, and the owner posts only to a berth answered and
        // taken. So a plain store publishes (one locked instruction per answer, not two).
        // With pins, their collectors unpin meanwhile: an add. (The planted bug
        // `board-publish-store-with-pins` stores anyway.)
        if current & PINS == 0 || planted!("board-publish-store-with-pins") {
            berth.word.store(current - POSTED + ANSWERED, Ordering::Release);
        } else {
            berth.word.fetch_add(ANSWERED - ANSWERING, Ordering::Release);
        }
        true
    }

    /// Wakes the waiters of lane `lane`'s owner: call it after answering there.
    pub fn wake(&self, lane: u32) {
        // (The planted bug `board-answer-no-notify` leaves them asleep.)
        if planted!("board-answer-no-notify") {
            return;
        }
        if let Some(lane) = self.lanes.get(lane as usize) {
            lane.answered.notify();
        }
    }
}
