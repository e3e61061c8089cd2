//! A bounded multi-producer queue: the submission path from client threads to a replica.
//!
//! Dmitry Vyukov's bounded MPMC queue (as in crossbeam's `ArrayQueue`): every slot carries a
//! sequence number that says whose turn it is. A producer claims position `p` by a CAS on
//! `enqueue_pos` once slot `p` has sequence `p`, writes the value, and sets the sequence to
//! `p + 1`; the consumer reads slot `p` once its sequence is `p + 1` and hands it back to the
//! producers of the next lap by setting it to `p + capacity`. A full queue hands the value
//! back to the caller.

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::plant::planted;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::UnsafeCell;

/// The ordering that publishes a pushed value; `Relaxed` only in the loom suite's planted bug.
const VALUE_PUBLISH: Ordering = if planted!("queue-publish-relaxed") { Ordering::Relaxed } else { Ordering::Release };

struct Cell<T> {
    /// Whose turn: `p` free for the producer of position `p`, `p + 1` full for the consumer.
    sequence: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// A bounded lock-free queue for many producers (and, in corum, one consumer).
pub struct Queue<T> {
    cells: Box<[Cell<T>]>,
    mask: usize,
    enqueue_pos: CachePadded<AtomicUsize>,
    dequeue_pos: CachePadded<AtomicUsize>,
}

// SAFETY: values move between threads through cells whose ownership the sequence numbers
// arbitrate (see push/pop); `T: Send` is all that needs.
unsafe impl<T: Send> Send for Queue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Queue<T> {}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("capacity", &(self.mask + 1)).finish()
    }
}

impl<T> Queue<T> {
    /// A queue of `capacity` values (rounded up to a power of two, at least 2).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2).next_power_of_two();
        let cells = (0..capacity)
            .map(|i| Cell { sequence: AtomicUsize::new(i), value: UnsafeCell::new(MaybeUninit::uninit()) })
            .collect();
        Self {
            cells,
            mask: capacity - 1,
            enqueue_pos: CachePadded::new(AtomicUsize::new(0)),
            dequeue_pos: CachePadded::new(AtomicUsize::new(0)),
        }
    }

    /// Appends `value`, or hands it back if the queue is full.
    pub fn push(&self, value: T) -> Result<(), T> {
        let mut pos = self.enqueue_pos.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            // Acquire pairs with the consumer's Release store in `pop`: its read of the
            // previous lap's value happens before we overwrite the cell.
            let sequence = cell.sequence.load(Ordering::Acquire);
            let lag = sequence.wrapping_sub(pos) as isize;
            if lag == 0 {
                match self.enqueue_pos.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the CAS made position `pos` ours alone, and the sequence
                        // says the consumer is done with the cell's previous value.
                        cell.value.with_mut(|slot| unsafe { (*slot).write(value) });
                        // Release pairs with the consumer's Acquire load in `pop`.
                        cell.sequence.store(pos.wrapping_add(1), VALUE_PUBLISH);
                        return Ok(());
                    }
                    Err(current) => pos = current,
                }
            } else if lag < 0 {
                return Err(value);
            } else {
                pos = self.enqueue_pos.load(Ordering::Relaxed);
            }
        }
    }

    /// Removes the oldest value, if any.
    pub fn pop(&self) -> Option<T> {
        let mut pos = self.dequeue_pos.load(Ordering::Relaxed);
        loop {
            let cell = &self.cells[pos & self.mask];
            // Acquire pairs with the producer's Release store in `push`.
            let sequence = cell.sequence.load(Ordering::Acquire);
            let lag = sequence.wrapping_sub(pos.wrapping_add(1)) as isize;
            if lag == 0 {
                match self.dequeue_pos.compare_exchange_weak(
                    pos,
                    pos.wrapping_add(1),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        // SAFETY: the producer of `pos` published the value (sequence pos+1)
                        // and the CAS made this read ours alone.
                        let value = cell.value.with(|slot| unsafe { (*slot).assume_init_read() });
                        // Release pairs with the next lap's producer's Acquire load.
                        cell.sequence.store(pos.wrapping_add(self.mask + 1), Ordering::Release);
                        return Some(value);
                    }
                    Err(current) => pos = current,
                }
            } else if lag < 0 {
                return None;
            } else {
                pos = self.dequeue_pos.load(Ordering::Relaxed);
            }
        }
    }

    /// Whether the queue looks empty to its consumer.
    pub fn is_empty(&self) -> bool {
        let pos = self.dequeue_pos.load(Ordering::Relaxed);
        // Acquire as in `pop`.
        self.cells[pos & self.mask].sequence.load(Ordering::Acquire) != pos.wrapping_add(1)
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        while self.pop().is_some() {}
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use super::Queue;
    use std::sync::Arc;

    #[test]
    fn fifo_full_and_empty() {
        let queue = Queue::new(2);
        assert!(queue.is_empty());
        queue.push(1).expect("room");
        queue.push(2).expect("room");
        assert_eq!(queue.push(3), Err(3));
        assert!(!queue.is_empty());
        assert_eq!(queue.pop(), Some(1));
        assert_eq!(queue.pop(), Some(2));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn many_producers_lose_nothing() {
        let queue = Arc::new(Queue::new(16));
        let producers: Vec<_> = (0..4u64)
            .map(|p| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        let mut value = p << 32 | i;
                        while let Err(back) = queue.push(value) {
                            value = back;
                            std::thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let mut next = [0u64; 4];
        let mut received = 0;
        while received < 40_000 {
            match queue.pop() {
                Some(value) => {
                    let (p, i) = ((value >> 32) as usize, value & 0xffff_ffff);
                    assert_eq!(i, next[p], "per-producer FIFO");
                    next[p] += 1;
                    received += 1;
                }
                None => std::thread::yield_now(),
            }
        }
        producers.into_iter().for_each(|p| p.join().expect("producer"));
    }
}
