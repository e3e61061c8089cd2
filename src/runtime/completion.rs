//! The completion of one write: filled once by whichever replica applies the write
//! first, read once by the client waiting for it. Travels inside the write's request, so every
//! replica that applies the write can complete it, also after the leader that took it died.
//!
//! A client waits in one of two ways: a thread sleeps on the completion's condition variable
//! ([`Completion::wait_for`]), or a task registers its [`Waker`] ([`Completion::register`])
//! and returns `Pending`. The filler wakes both.
//!
//! The waker hand-off: the waker and the outcome live under one lock, so a registration
//! and the filling are ordered by it. A registration that comes first leaves its waker for
//! the filler to take and wake (it takes it under the lock, after storing the outcome); a
//! registration that comes second finds the completion filled and reports it, so the task does
//! not sleep. Either way no wake-up is lost; a waker is woken at most once per
//! registration, since whoever wakes it takes it out.

use std::task::Waker;
use std::time::Duration;

use crate::plant::planted;
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Condvar, Mutex};
use crate::Error;

/// See the module docs. `done` is written once, under `stage`'s lock, with the outcome.
#[derive(Debug)]
pub struct Completion<R> {
    done: AtomicBool,
    stage: Mutex<Stage<R>>,
    condvar: Condvar,
}

/// What [`Completion`] keeps under its lock. A waiting task's waker and the outcome are
/// never needed together (the filler takes the waker out as it stores the outcome), so
/// they share the space: a request stays as small as it was before tasks could await it,
/// which keeps its allocation in the allocator's fast size classes.
#[derive(Debug)]
enum Stage<R> {
    /// Not filled, and no task waiting.
    Empty,
    /// Not filled; this task's waker is to be woken when it is.
    Waiting(Waker),
    /// Filled; the outcome not yet taken.
    Filled(Result<R, Error>),
    /// Filled, and the outcome taken.
    Taken,
}

impl<R> Default for Completion<R> {
    fn default() -> Self {
        Self::new()
    }
}

impl<R> Completion<R> {
    /// An empty completion.
    pub fn new() -> Self {
        Self { done: AtomicBool::new(false), stage: Mutex::new(Stage::Empty), condvar: Condvar::new() }
    }

    /// Fills the completion unless it is already filled; returns whether this call filled it.
    /// Wakes the thread or task waiting for it.
    pub fn complete(&self, outcome: Result<R, Error>) -> bool {
        // Acquire pairs with the Release store below (made by another replica): a completion seen
        // filled stays filled, so the common case for the second and third replica to apply
        // a write is this one load.
        if self.done.load(Ordering::Acquire) {
            return false;
        }
        // The planted bug `completion-waker-early` takes the waker before the outcome is
        // stored, in a lock of its own: a task registering in between finds the completion empty
        // and sleeps, and its waker is never woken.
        let early = if planted!("completion-waker-early") { take_waker(&mut self.stage.lock()) } else { None };
        let mut stage = self.stage.lock();
        if self.done.load(Ordering::Relaxed) {
            return false;
        }
        let before = std::mem::replace(&mut *stage, Stage::Filled(outcome));
        // Release pairs with the Acquire loads in `is_done` and `complete`: the outcome
        // written above is visible to whoever sees `done`.
        self.done.store(true, Ordering::Release);
        drop(stage);
        let waker = match before {
            _ if planted!("completion-waker-early") => early,
            Stage::Waiting(waker) => Some(waker),
            _ => None,
        };
        // The waiter checks `done` under the lock before it sleeps, so notifying after
        // releasing the lock cannot be lost. (The planted bug `completion-no-notify` skips it.)
        if !planted!("completion-no-notify") {
            self.condvar.notify_all();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether the completion has been filled.
    pub fn is_done(&self) -> bool {
        // Acquire pairs with the Release store in `complete`.
        self.done.load(Ordering::Acquire)
    }

    /// Takes the outcome out, if the completion is filled and not yet taken.
    pub fn take(&self) -> Option<Result<R, Error>> {
        if !self.is_done() {
            return None;
        }
        match std::mem::replace(&mut *self.stage.lock(), Stage::Taken) {
            Stage::Filled(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Sleeps until the completion is filled or `timeout` passes (loom: until filled).
    pub fn wait_for(&self, timeout: Duration) {
        let mut stage = self.stage.lock();
        if !self.done.load(Ordering::Relaxed) {
            self.condvar.wait_for(&mut stage, timeout);
        }
    }

    /// Leaves `waker` to be woken when the completion is filled (or by [`Completion::wake`]),
    /// unless it is filled already: returns whether it is (then nothing is registered, and
    /// the caller takes the outcome rather than sleep). Replaces a waker registered before.
    pub fn register(&self, waker: &Waker) -> bool {
        let mut stage = self.stage.lock();
        // Relaxed: `done` is written under this lock.
        if self.done.load(Ordering::Relaxed) {
            return true;
        }
        match &*stage {
            Stage::Waiting(registered) if registered.will_wake(waker) => {}
            _ => *stage = Stage::Waiting(waker.clone()),
        }
        false
    }

    /// Wakes the registered task, if any, without filling the completion: it has something to
    /// look at (a new leader to resubmit to, its retry time, its deadline, a shutdown).
    pub fn wake(&self) {
        let waker = take_waker(&mut self.stage.lock());
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Takes the waiting task's waker out of `stage`, if one is there.
fn take_waker<R>(stage: &mut Stage<R>) -> Option<Waker> {
    match std::mem::replace(stage, Stage::Empty) {
        Stage::Waiting(waker) => Some(waker),
        other => {
            *stage = other;
            None
        }
    }
}
