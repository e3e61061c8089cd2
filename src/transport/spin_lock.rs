//! A lock for short critical sections that are seldom contended: taking it is one
//! compare-exchange and releasing it one plain store. A lock that parks its waiters (`std`'s,
//! parking_lot's) must release with a read-modify-write, to see whether anyone sleeps, so
//! each use of it costs two locked instructions; here it costs one.
//!
//! A thread that finds the lock taken spins briefly, then yields its core until the lock is
//! free. Nobody is ever woken, so no wake-up can be lost; the price is that a holder
//! descheduled inside the critical section costs its waiters their time slices. It guards a
//! client session's bookkeeping (`runtime/session.rs`), which the session's own threads
//! take a few hundred nanoseconds at a time, and which another thread (the reminder thread,
//! a ticket waited for elsewhere) takes only now and then.
//!
//! Taking it with Acquire pairs with the Release store of the previous holder's release:
//! whatever a holder did to the value happens before the next holder's access.

use std::fmt;
use std::ops::{Deref, DerefMut};

use crate::plant::planted;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{spin_loop, yield_now, MutPtr, UnsafeCell};

/// Spins before a waiting thread starts yielding its core (under loom every spin yields).
const SPINS: u32 = 64;

/// The ordering of the release; `Relaxed` only in the loom suite's planted bug.
const RELEASE: Ordering = if planted!("spin-lock-release-relaxed") { Ordering::Relaxed } else { Ordering::Release };

/// See the module docs.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands `&mut T` to one thread at a time, on any thread, so it may be
// shared and sent wherever `T` may be sent.
unsafe impl<T: Send> Send for SpinLock<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SpinLock<T> {}

impl<T> fmt::Debug for SpinLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a diagnostic snapshot.
        f.debug_struct("SpinLock").field("locked", &self.locked.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

/// Access to a [`SpinLock`]'s value; releases the lock when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// The access, given up just before the release (loom tracks it while it lives).
    value: Option<MutPtr<T>>,
}

impl<T> SpinLock<T> {
    /// `value` behind a free lock.
    pub fn new(value: T) -> Self {
        Self { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Takes the lock, spinning and then yielding while another thread holds it.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        // Acquire pairs with the previous holder's Release store.
        while self.locked.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            self.wait_free();
        }
        SpinGuard { lock: self, value: Some(self.value.get_mut()) }
    }

    /// Returns once the lock was seen free (the caller tries again).
    #[cold]
    fn wait_free(&self) {
        let mut spins = 0;
        // Relaxed: only a hint to try again; the compare-exchange decides.
        while self.locked.load(Ordering::Relaxed) {
            if spins < SPINS {
                spins += 1;
                spin_loop();
            } else {
                yield_now();
            }
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        let value = self.value.as_ref().unwrap_or_else(|| unreachable!("given up only when dropped"));
        // SAFETY: we hold the lock, so no other guard exists.
        unsafe { value.deref() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        let value = self.value.as_ref().unwrap_or_else(|| unreachable!("given up only when dropped"));
        // SAFETY: we hold the lock, so no other guard exists, and `&mut self` makes this the
        // only reference through this one.
        unsafe { value.deref() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // The access ends before the release (loom would otherwise see it overlap the next
        // holder's).
        self.value = None;
        // Release pairs with the next holder's Acquire: what we did happens before it.
        self.lock.locked.store(false, RELEASE);
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::sync::Arc;

    use super::SpinLock;

    /// Four threads adding under the lock lose no addition.
    #[test]
    fn no_update_under_the_lock_is_lost() {
        let lock = Arc::new(SpinLock::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    for _ in 0..50_000 {
                        let mut value = lock.lock();
                        let read = *value;
                        std::hint::black_box(&read);
                        *value = read + 1;
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().expect("thread"));
        assert_eq!(*lock.lock(), 200_000);
    }
}
