//! An event count: lets a thread park until "something may have changed" without lost
//! wake-ups, while a notifier with nobody waiting pays one fence and one load.
//!
//! The waiter announces itself (`prepare_wait`), re-checks its condition, and only then
//! sleeps, unless the epoch moved since it announced. The notifier publishes its change,
//! then looks for announced waiters. Both sides put a SeqCst fence between their write and
//! their read (the store-buffering pattern), so at least one of them sees the other: either
//! the waiter's re-check sees the change, or the notifier sees the waiter and bumps the
//! epoch under the lock the waiter sleeps on. (The scheme of folly's `EventCount`.)
//!
//! A task waits the same way without blocking its thread: it announces itself, re-checks,
//! and leaves its waker under the lock ([`EventCount::wait_async`]) unless the epoch moved;
//! the notifier takes the wakers out under that lock after bumping the epoch, and wakes
//! them. The epoch check under the lock orders the two exactly as for a sleeping thread.

use crate::plant::planted;
use crate::sync::atomic::{fence, AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Condvar, Mutex};
use std::task::Waker;
use std::time::Duration;

/// See the module docs.
#[derive(Debug)]
pub struct EventCount {
    epoch: AtomicU64,
    /// Threads between `prepare_wait` and the end of their wait, and tasks from their
    /// `prepare_wait` until a notification takes their waker out.
    waiters: AtomicUsize,
    /// The wakers of waiting tasks.
    lock: Mutex<Vec<Waker>>,
    condvar: Condvar,
}

/// A waiter's ticket from [`EventCount::prepare_wait`].
#[derive(Debug)]
#[must_use = "a prepared wait must be completed with wait or cancel_wait"]
pub struct WaitKey(u64);

impl Default for EventCount {
    fn default() -> Self {
        Self::new()
    }
}

impl EventCount {
    /// An event count with no waiter.
    pub fn new() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(Vec::new()),
            condvar: Condvar::new(),
        }
    }

    /// Announces a waiter. The caller must re-check its condition afterwards, then call
    /// [`EventCount::wait`] or [`EventCount::cancel_wait`].
    pub fn prepare_wait(&self) -> WaitKey {
        self.waiters.fetch_add(1, Ordering::Relaxed);
        // SeqCst fence pairs with the one in `notify`: our announcement above and the
        // notifier's change cannot both be missed by the two subsequent reads.
        fence(Ordering::SeqCst);
        // Acquire pairs with the Release increment in `notify`: if we already see a bumped
        // epoch, we also see the change published before it, so the caller's re-check
        // cannot miss a change whose notification our key has already absorbed.
        WaitKey(self.epoch.load(Ordering::Acquire))
    }

    /// Withdraws a prepared wait (the condition turned out to hold).
    pub fn cancel_wait(&self, key: WaitKey) {
        let _ = key;
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sleeps until a notification after `prepare_wait`, or until `timeout` passes (loom:
    /// until a notification). May return early; callers re-check their condition.
    pub fn wait(&self, key: WaitKey, timeout: Duration) {
        let mut guard = self.lock.lock();
        // Under the lock: a notifier bumps the epoch before taking the lock to notify, so
        // an unchanged epoch here means its notification is still to come.
        if self.epoch.load(Ordering::Relaxed) == key.0 {
            self.condvar.wait_for(&mut guard, timeout);
        }
        drop(guard);
        self.waiters.fetch_sub(1, Ordering::Relaxed);
    }

    /// Leaves `waker` to be woken by the next notification, for a task that prepared with
    /// `key` and found its condition still false: returns true if it is left (the task
    /// returns `Pending`), false if a notification came since `prepare_wait` (the task
    /// re-checks at once). Either way the prepared wait is completed. A waker that would
    /// wake the same task as one already left is not left twice.
    pub fn wait_async(&self, key: WaitKey, waker: &Waker) -> bool {
        let mut wakers = self.lock.lock();
        // Under the lock, as in `wait`: an unchanged epoch means the notification is still
        // to come, and it takes the wakers out under this lock. (The planted bug
        // `event-waker-unchecked` leaves the waker without looking.)
        if self.epoch.load(Ordering::Relaxed) != key.0 && !planted!("event-waker-unchecked") {
            drop(wakers);
            self.waiters.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        if wakers.iter().any(|left| left.will_wake(waker)) {
            // Already counted as a waiter through the waker left before.
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        } else {
            wakers.push(waker.clone());
        }
        true
    }

    /// Wakes every waiter that prepared before this call. Call it after publishing the
    /// change waiters wait for.
    pub fn notify(&self) {
        // SeqCst fence pairs with the one in `prepare_wait` (see the module docs). The loom
        // suite's planted bug `event-no-fence` removes it.
        if !planted!("event-no-fence") {
            fence(Ordering::SeqCst);
        }
        if self.waiters.load(Ordering::Relaxed) == 0 {
            return;
        }
        self.wake_all();
    }

    /// Wakes every waiter, under the lock whatever the count of waiters says: for a caller
    /// that did not publish the change itself (another thread did, and the caller only saw
    /// it), where the fences of `notify` pair with nothing. A waiter that left its waker
    /// before the lock is woken; one that takes the lock after finds the epoch moved, and
    /// sees everything this caller saw before.
    pub fn wake_all(&self) {
        // Release pairs with the Acquire load in `prepare_wait`.
        self.epoch.fetch_add(1, Ordering::Release);
        let mut wakers = self.lock.lock();
        self.condvar.notify_all();
        if wakers.is_empty() {
            return;
        }
        let woken = std::mem::take(&mut *wakers);
        self.waiters.fetch_sub(woken.len(), Ordering::Relaxed);
        drop(wakers);
        // Outside the lock: a woken task may run at once and prepare again.
        woken.into_iter().for_each(Waker::wake);
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use super::EventCount;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_waiter_is_woken_by_a_later_notify() {
        let event = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (event, flag) = (Arc::clone(&event), Arc::clone(&flag));
            std::thread::spawn(move || {
                while !flag.load(Ordering::Acquire) {
                    let key = event.prepare_wait();
                    if flag.load(Ordering::Acquire) {
                        event.cancel_wait(key);
                        break;
                    }
                    // A long timeout: only the notification can end this wait in time.
                    event.wait(key, Duration::from_secs(60));
                }
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::Release);
        event.notify();
        waiter.join().expect("waiter woke");
    }
}
