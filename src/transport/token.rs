//! A run token: the right to run one replica's next round, a try-lock around the
//! replica's working state (its protocol core, its ring ends, its clock).
//!
//! The replica's pinned thread takes it for each of its rounds; a client thread waiting for
//! that replica to make progress may take it too and run the round itself (see
//! `runtime/help.rs`). A thread that finds the token held does not wait for it: another
//! thread is running that replica's round right now, so it goes on to other work (another
//! replica's round) or parks. Only fault injection and shutdown, which must get a replica
//! out of everybody's hands, wait for the token ([`RunToken::take`]).
//!
//! # Ordering
//! One flag, `held`. Taking the token is a compare-exchange `false -> true` with Acquire;
//! giving it back is a store of `false` with Release. So everything one holder did to the
//! value (and to anything else it writes only while holding the token: the replica's ring
//! producers and consumers, its applied slot, its stats) happens before whatever the next
//! holder does, and the value and those are written by one thread at a time: the token's
//! hand-off is the happens-before edge that keeps them single-writer, whichever thread runs
//! the round. The planted bug `token-release-relaxed` gives the token back with a relaxed
//! store; the loom suite catches the data race it opens.
//!
//! A thread that must have the token parks on the event count `released` until the holder
//! gives it back; the holder notifies it after its release store (the event count's fences
//! make sure one of the two sees the other, see `event.rs`). The planted bug
//! `token-release-no-notify` skips the notification; the loom suite reports the deadlock.

use std::fmt;
use std::time::Duration;

use crate::plant::planted;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::UnsafeCell;
use crate::transport::event::EventCount;

/// The ordering that gives the token back; `Relaxed` only in the loom suite's planted bug.
const RELEASE: Ordering = if planted!("token-release-relaxed") { Ordering::Relaxed } else { Ordering::Release };

/// See the module docs.
pub struct RunToken<T> {
    held: AtomicBool,
    /// Threads waiting in [`RunToken::take`] park here.
    released: EventCount,
    value: UnsafeCell<T>,
}

// SAFETY: the token moves access to `T` between threads, one holder at a time; a `T` that
// may be sent between threads may be reached this way.
unsafe impl<T: Send> Send for RunToken<T> {}
// SAFETY: `&RunToken` gives access to `T` only through a `TokenGuard`, and at most one guard
// exists at a time (the compare-exchange in `try_take`); the Acquire/Release pair on `held`
// orders one holder's accesses before the next's.
unsafe impl<T: Send> Sync for RunToken<T> {}

/// Holding the token: access to the value until dropped, which gives the token back.
#[must_use = "the token is given back as soon as the guard is dropped"]
pub struct TokenGuard<'a, T> {
    token: &'a RunToken<T>,
}

impl<T> fmt::Debug for RunToken<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a diagnostic snapshot.
        f.debug_struct("RunToken").field("held", &self.held.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl<T> fmt::Debug for TokenGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenGuard").finish_non_exhaustive()
    }
}

impl<T> RunToken<T> {
    /// A free token guarding `value`.
    pub fn new(value: T) -> Self {
        Self { held: AtomicBool::new(false), released: EventCount::new(), value: UnsafeCell::new(value) }
    }

    /// Takes the token if nobody holds it.
    pub fn try_take(&self) -> Option<TokenGuard<'_, T>> {
        // A plain load first: a held token is common under contention, and a failed
        // compare-exchange would still take the cache line exclusive.
        if self.held.load(Ordering::Relaxed) {
            return None;
        }
        // Acquire pairs with the Release store in `TokenGuard::drop`: the previous holder's
        // writes happen before ours.
        self.held.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).ok()?;
        Some(TokenGuard { token: self })
    }

    /// Takes the token, parking until its holder gives it back.
    pub fn take(&self) -> TokenGuard<'_, T> {
        loop {
            if let Some(guard) = self.try_take() {
                return guard;
            }
            self.wait_released(Duration::from_secs(3600));
        }
    }

    /// Parks until the token is given back or `timeout` passes (loom: until given back);
    /// returns at once if it is free now.
    pub fn wait_released(&self, timeout: Duration) {
        let key = self.released.prepare_wait();
        // Relaxed suffices: the fence in `prepare_wait` orders this load after the
        // announcement, and the caller takes the token (Acquire) before touching anything.
        if !self.held.load(Ordering::Relaxed) {
            self.released.cancel_wait(key);
            return;
        }
        self.released.wait(key, timeout);
    }
}

impl<T> TokenGuard<'_, T> {
    /// Runs `f` with the value.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut T) -> R) -> R {
        // SAFETY: this guard is the only one (see `try_take`), it is borrowed mutably here,
        // and the previous holder's accesses happen before ours (Acquire in `try_take`
        // against Release in `drop`), so nothing else reads or writes the value meanwhile.
        self.token.value.with_mut(|value| f(unsafe { &mut *value }))
    }
}

impl<T> Drop for TokenGuard<'_, T> {
    fn drop(&mut self) {
        self.token.held.store(false, RELEASE);
        if !planted!("token-release-no-notify") {
            self.token.released.notify();
        }
    }
}
