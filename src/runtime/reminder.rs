//! The reminder thread: wakes tasks awaiting tickets when they have something to look at.
//!
//! A thread in [`Ticket::wait`](crate::Ticket::wait) wakes up at least every tick to look
//! at the leader hint, its retry time and its deadline. A task awaiting a ticket sleeps
//! until its waker is woken, and nothing may depend on the executor polling it again or on
//! an executor's timer. So an answer landing on its session's lane of the write board wakes
//! it (`transport/board.rs`), and this thread wakes it for everything else a waiting
//! thread looks at:
//!
//! - every outstanding write of the watched sessions, when the write target may have moved
//!   (the leader hint or a replica's status changed since the last look): the ticket
//!   announces it to the new target at once, as `wait` does;
//! - a write whose retry time or deadline has come, and again every retry interval while
//!   it stays unanswered: the ticket announces it again, or reports
//!   [`Error::NoQuorum`](crate::Error::NoQuorum) past its deadline. A session keeps its
//!   writes in submission order, so only the writes older than the retry interval (or the
//!   deadline, if shorter) at its front are looked at, and a task is not re-polled every
//!   tick;
//! - every outstanding write when the cluster stops (the ticket reports
//!   [`Error::Shutdown`](crate::Error::Shutdown)).
//!
//! - a task awaiting a read ([`Handle::execute_async`](crate::Handle::execute_async))
//!   whose copy has not caught up: every tick while it waits, so that it looks at its
//!   deadline and at the time to move to another copy; its copy catching up wakes it
//!   sooner (through that copy's event count).
//!
//! The thread starts when the first ticket or read returns `Pending` (a cluster whose tickets are
//! only waited for synchronously never has one), looks every tick while a watched session
//! is alive, and sleeps on its condition variable otherwise. A look costs one lock per
//! watched session; writes that complete normally (well inside the retry interval) are
//! never touched. Under loom no thread is started: the loom models check the board's waker
//! hand-off, which is the hand-written part.
//!
//! Ordering: a task leaves its waker in its lane's event count, under that count's lock,
//! and then looks at the leader hint, the statuses and `stop` once more (`Ticket::poll`);
//! this thread reads them and then wakes the lane under the same lock
//! (`EventCount::wake_all`, not the lock-free `notify`, whose fences pair only with a
//! change the notifier published itself). Whichever takes the lock second sees what the
//! other did before it, so a change is never missed by both.

pub(crate) use imp::Reminders;

#[cfg(not(corum_loom))]
mod imp {
    use std::sync::{Arc, Weak};
    use std::task::Waker;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use super::super::session::Session;
    use super::super::shared::Shared;
    use crate::client::View;
    use crate::sync::atomic::Ordering;
    use crate::sync::{Condvar, Mutex};
    use crate::Dispatch;

    /// What decides where a write goes (the leader hint and every replica's status), and
    /// whether the cluster still takes writes (not once its copies forked).
    #[derive(PartialEq, Eq)]
    struct Routing {
        leader: usize,
        statuses: Vec<u8>,
        forked: bool,
    }

    impl Routing {
        fn of<D: Dispatch>(shared: &Shared<D>) -> Self {
            // Relaxed: the hint only steers retries (see `crate::client::route`).
            let leader = shared.leader.load(Ordering::Relaxed);
            let statuses = shared.replicas.iter().map(|replica| replica.status()).collect();
            Self { leader, statuses, forked: shared.forked().is_some() }
        }
    }

    /// The sessions the reminder thread watches, and the thread.
    pub(crate) struct Reminders<D: Dispatch> {
        state: Mutex<Watched<D>>,
        /// The thread sleeps here; a new session and shutdown notify it.
        condvar: Condvar,
    }

    struct Watched<D: Dispatch> {
        sessions: Vec<Weak<Session<D>>>,
        /// Tasks awaiting reads, and when each left its waker: woken at the first look a
        /// tick or more later (and then let go of: one still waiting leaves its waker again).
        reads: Vec<(Waker, Instant)>,
        thread: Option<JoinHandle<()>>,
        started: bool,
    }

    impl<D: Dispatch> Default for Reminders<D> {
        fn default() -> Self {
            let state = Watched { sessions: Vec::new(), reads: Vec::new(), thread: None, started: false };
            Self { state: Mutex::new(state), condvar: Condvar::new() }
        }
    }

    impl<D: Dispatch> Reminders<D> {
        /// Watches `session` from now on, starting the thread if it is not running.
        /// Returns whether a thread watches it: false if the operating system refused the
        /// thread, or shutdown has begun (the caller then wakes its task itself rather
        /// than sleep unwatched).
        pub(crate) fn watch(&self, session: &Arc<Session<D>>) -> bool {
            let mut state = self.state.lock();
            // Tasks of one session may ask at once (before any of them set its flag):
            // watch it once, or every look would scan it once per asker.
            if !state.sessions.iter().any(|watched| std::ptr::eq(watched.as_ptr(), Arc::as_ptr(session))) {
                state.sessions.push(Arc::downgrade(session));
            }
            if !state.started {
                state.started = start(&mut state, &session.shared);
            }
            self.condvar.notify_all();
            state.started
        }

        /// Wakes the task of `waker`, awaiting a read, at the next tick (or shutdown),
        /// starting the thread if it is not running. Returns false where no thread runs (as
        /// [`Reminders::watch`]): the caller then asks to be polled again itself.
        pub(crate) fn remind(&self, waker: &Waker, shared: &Arc<Shared<D>>) -> bool {
            let mut state = self.state.lock();
            let asleep = state.sessions.is_empty() && state.reads.is_empty();
            if !state.reads.iter().any(|(left, _)| left.will_wake(waker)) {
                state.reads.push((waker.clone(), crate::sync::now()));
            }
            if !state.started {
                state.started = start(&mut state, shared);
            }
            // Only a thread in its long sleep needs the news (to look every tick from now
            // on); waking it otherwise would wake the task again at once.
            if asleep {
                self.condvar.notify_all();
            }
            state.started
        }

        /// Called by shutdown once `stop` is set: the thread wakes every watched write
        /// (their tickets see `stop`) and exits; this returns once it has.
        pub(crate) fn stop(&self) {
            let thread = {
                let mut state = self.state.lock();
                self.condvar.notify_all();
                state.thread.take()
            };
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }

    fn start<D: Dispatch>(state: &mut Watched<D>, shared: &Arc<Shared<D>>) -> bool {
        let shared = Arc::clone(shared);
        if shared.is_stopped() {
            // Shutdown has taken (or is taking) the thread's handle: nothing would join a
            // new one.
            return false;
        }
        let spawned = std::thread::Builder::new().name("corum-reminder".into()).spawn(move || run(&shared));
        match spawned {
            Ok(thread) => {
                state.thread = Some(thread);
                true
            }
            Err(_) => false,
        }
    }

    /// The reminder thread's loop (see the module docs).
    fn run<D: Dispatch>(shared: &Shared<D>) {
        let reminders = &shared.reminders;
        let options = &shared.options;
        let mut routing = Routing::of(shared);
        let mut due: Vec<u32> = Vec::new();
        let mut reads: Vec<Waker> = Vec::new();
        let tick = options.tick;
        loop {
            let sessions: Vec<_> = {
                let mut state = reminders.state.lock();
                state.sessions.retain(|session| session.strong_count() > 0);
                if !shared.is_stopped() {
                    // With nothing to watch, sleep until something comes (or shutdown); the
                    // timeout only bounds the wait.
                    let idle = state.sessions.is_empty() && state.reads.is_empty();
                    let sleep = if idle { Duration::from_secs(3600) } else { options.tick };
                    reminders.condvar.wait_for(&mut state, sleep);
                }
                let (now, stopped) = (crate::sync::now(), shared.is_stopped());
                state.reads.retain(|(waker, left_at)| {
                    let due = stopped || now.saturating_duration_since(*left_at) >= tick;
                    if due {
                        reads.push(waker.clone());
                    }
                    !due
                });
                state.sessions.iter().filter_map(Weak::upgrade).collect()
            };
            reads.drain(..).for_each(Waker::wake);
            let stopped = shared.is_stopped();
            let now = shared.time();
            let current = Routing::of(shared);
            let moved = current != routing;
            routing = current;
            for session in &sessions {
                due.extend(session.due(stopped || moved, now));
            }
            drop(sessions);
            // Woken outside the sessions' locks: a woken task may run at once and take them.
            for lane in due.drain(..) {
                shared.board.remind(lane);
            }
            if stopped {
                return;
            }
        }
    }
}

/// Under loom no reminder thread runs: loom's clock stands still, so no retry time or
/// deadline comes, and the models check the board's waker hand-off on its own.
#[cfg(corum_loom)]
mod imp {
    use super::super::session::Session;
    use crate::sync::Arc;
    use crate::Dispatch;

    pub(crate) struct Reminders<D: Dispatch>(std::marker::PhantomData<fn() -> D>);

    impl<D: Dispatch> Default for Reminders<D> {
        fn default() -> Self {
            Self(std::marker::PhantomData)
        }
    }

    impl<D: Dispatch> Reminders<D> {
        pub(crate) fn watch(&self, _: &Arc<Session<D>>) -> bool {
            true
        }

        pub(crate) fn remind(&self, _: &std::task::Waker, _: &Arc<super::super::shared::Shared<D>>) -> bool {
            true
        }

        pub(crate) fn stop(&self) {}
    }
}
