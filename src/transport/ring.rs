//! A bounded single-producer single-consumer ring, one per ordered pair of replicas.
//!
//! Lamport's ring with cached indices (as in "FastForward"/`rtrb`): the producer owns
//! `tail`, the consumer owns `head`; each side reads the other's index only when its cached
//! copy says the ring is full (producer) or empty (consumer). Indices grow without bound and
//! are reduced modulo the capacity, a power of two, so a full ring and an empty one differ.
//! A full ring hands the value back ([`Producer::push`] returns `Err(value)`): the caller
//! decides how to apply back-pressure; nothing is dropped here.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::plant::planted;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, UnsafeCell};

/// The ordering that publishes a written slot; `Relaxed` only in the loom suite's planted bug.
const TAIL_PUBLISH: Ordering = if planted!("ring-tail-relaxed") { Ordering::Relaxed } else { Ordering::Release };
/// The ordering that hands a read slot back; `Relaxed` only in the loom suite's planted bug.
const HEAD_PUBLISH: Ordering = if planted!("ring-head-relaxed") { Ordering::Relaxed } else { Ordering::Release };

struct Ring<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next index to read. Written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Next index to write. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
}

// SAFETY: the ring moves `T`s from the producer's thread to the consumer's; each slot is
// accessed by one side at a time, as arbitrated by `head` and `tail` (see push/pop).
unsafe impl<T: Send> Send for Ring<T> {}
// SAFETY: as above; `&Ring` is shared by exactly one producer and one consumer.
unsafe impl<T: Send> Sync for Ring<T> {}

impl<T> Drop for Ring<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        for index in head..tail {
            // SAFETY: we are the last owner; slots in head..tail were written and never read.
            self.slots[index & self.mask].with_mut(|slot| unsafe { (*slot).assume_init_drop() });
        }
    }
}

/// The sending half of a ring.
pub struct Producer<T> {
    ring: Arc<Ring<T>>,
    tail: usize,
    head_cached: usize,
}

/// The receiving half of a ring.
pub struct Consumer<T> {
    ring: Arc<Ring<T>>,
    head: usize,
    tail_cached: usize,
}

impl<T> std::fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("tail", &self.tail).finish()
    }
}

impl<T> std::fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("head", &self.head).finish()
    }
}

/// A ring holding up to `capacity` values (rounded up to a power of two, at least 2).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity.max(2).next_power_of_two();
    let slots = (0..capacity).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let ring = Arc::new(Ring {
        slots,
        mask: capacity - 1,
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
    });
    (Producer { ring: Arc::clone(&ring), tail: 0, head_cached: 0 }, Consumer { ring, head: 0, tail_cached: 0 })
}

impl<T> Producer<T> {
    /// Appends `value`, or hands it back if the ring is full.
    pub fn push(&mut self, value: T) -> Result<(), T> {
        let capacity = self.ring.mask + 1;
        if self.tail.wrapping_sub(self.head_cached) == capacity {
            // Acquire pairs with the consumer's Release store of `head` in `pop`: the
            // consumer has finished reading every slot below the head we see.
            self.head_cached = self.ring.head.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cached) == capacity {
                return Err(value);
            }
        }
        // SAFETY: slot `tail` is outside head..tail, so the consumer does not touch it until
        // we publish it below; we are the only producer.
        self.ring.slots[self.tail & self.ring.mask].with_mut(|slot| unsafe { (*slot).write(value) });
        self.tail = self.tail.wrapping_add(1);
        // Release pairs with the consumer's Acquire load of `tail` in `pop`: it publishes
        // the value written above.
        self.ring.tail.store(self.tail, TAIL_PUBLISH);
        Ok(())
    }
}

impl<T> Consumer<T> {
    /// Removes the oldest value, if any.
    pub fn pop(&mut self) -> Option<T> {
        if self.head == self.tail_cached {
            // Acquire pairs with the producer's Release store of `tail` in `push`.
            self.tail_cached = self.ring.tail.load(Ordering::Acquire);
            if self.head == self.tail_cached {
                return None;
            }
        }
        // SAFETY: slot `head` is in head..tail: the producer wrote it (made visible by the
        // Acquire above) and will not reuse it until we publish the new head below.
        let value = self.ring.slots[self.head & self.ring.mask].with(|slot| unsafe { (*slot).assume_init_read() });
        self.head = self.head.wrapping_add(1);
        // Release pairs with the producer's Acquire load of `head` in `push`: our read of
        // the slot happens before the producer overwrites it.
        self.ring.head.store(self.head, HEAD_PUBLISH);
        Some(value)
    }

    /// Whether the ring holds no value the consumer has not taken.
    pub fn is_empty(&self) -> bool {
        // Acquire as in `pop`; used by a consumer deciding whether to park.
        self.head == self.ring.tail.load(Ordering::Acquire)
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use super::ring;

    #[test]
    fn fifo_order_full_and_empty() {
        let (mut tx, mut rx) = ring(4);
        assert_eq!(rx.pop(), None::<u32>);
        for i in 0..4 {
            tx.push(i).expect("room");
        }
        assert_eq!(tx.push(9), Err(9), "full ring hands the value back");
        assert_eq!(rx.pop(), Some(0));
        tx.push(4).expect("room after a pop");
        assert_eq!((1..5).map(|_| rx.pop().expect("value")).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert!(rx.is_empty());
    }

    #[test]
    fn wraps_around_many_times_across_threads() {
        let (mut tx, mut rx) = ring(8);
        let producer = std::thread::spawn(move || {
            for i in 0..100_000u64 {
                let mut value = i;
                while let Err(back) = tx.push(value) {
                    value = back;
                    std::thread::yield_now();
                }
            }
        });
        let mut expected = 0;
        while expected < 100_000u64 {
            match rx.pop() {
                Some(value) => {
                    assert_eq!(value, expected);
                    expected += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producer.join().expect("producer");
    }

    #[test]
    fn values_left_in_the_ring_are_dropped() {
        let marker = std::sync::Arc::new(());
        let (mut tx, rx) = ring(4);
        tx.push(std::sync::Arc::clone(&marker)).expect("room");
        tx.push(std::sync::Arc::clone(&marker)).expect("room");
        drop((tx, rx));
        assert_eq!(std::sync::Arc::strong_count(&marker), 1);
    }
}
