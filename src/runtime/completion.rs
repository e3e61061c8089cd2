//! The completion slot of one write: filled once by whichever replica applies the write
//! first, read once by the client waiting for it. Travels inside the command, so every
//! replica that applies the write can complete it, also after the leader that took it died.

use std::time::Duration;

use crate::plant::planted;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex};
use crate::Error;

/// See the module docs. `done` is written once, under `value`'s lock, after `value`.
#[derive(Debug)]
pub struct Completion<R> {
    done: AtomicBool,
    value: Mutex<Option<Result<R, Error>>>,
    condvar: Condvar,
}

impl<R> Completion<R> {
    /// An empty slot.
    pub fn new() -> Self {
        Self { done: AtomicBool::new(false), value: Mutex::new(None), condvar: Condvar::new() }
    }

    /// Fills the slot unless it is already filled; returns whether this call filled it.
    pub fn complete(&self, outcome: Result<R, Error>) -> bool {
        // Acquire pairs with the Release store below (made by another replica): a slot seen
        // filled stays filled, so the common case for the second and third replica to apply
        // a write is this one load.
        if self.done.load(Ordering::Acquire) {
            return false;
        }
        let mut value = self.value.lock();
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        *value = Some(outcome);
        // Release pairs with the Acquire loads in `is_done` and `complete`: the outcome
        // written above is visible to whoever sees `done`.
        self.done.store(true, Ordering::Release);
        drop(value);
        // The waiter checks `done` under the lock before it sleeps, so notifying after
        // releasing the lock cannot be lost. (The planted bug `completion-no-notify` skips it.)
        if !planted!("completion-no-notify") {
            self.condvar.notify_all();
        }
        true
    }

    /// Whether the slot has been filled.
    pub fn is_done(&self) -> bool {
        // Acquire pairs with the Release store in `complete`.
        self.done.load(Ordering::Acquire)
    }

    /// Takes the outcome out, if the slot is filled and not yet taken.
    pub fn take(&self) -> Option<Result<R, Error>> {
        if !self.is_done() {
            return None;
        }
        self.value.lock().take()
    }

    /// Sleeps until the slot is filled or `timeout` passes (loom: until filled).
    pub fn wait_for(&self, timeout: Duration) {
        let mut value = self.value.lock();
        if !self.done.load(Ordering::Relaxed) {
            self.condvar.wait_for(&mut value, timeout);
        }
    }
}
