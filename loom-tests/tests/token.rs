//! A replica's run token (`transport/token.rs`) with the replica's pinned thread and two
//! client threads helping, in the shape the runtime uses it (`runtime/replica.rs`,
//! `runtime/help.rs`): whoever holds the token runs the replica's round, one round at a
//! time; nothing is applied twice or lost; and the pinned thread, parked because a helper
//! held the token or because it had nothing to do, is never left parked (loom reports a
//! lost wake-up as a deadlock: timed waits are untimed under loom).
#![cfg(corum_loom)]

use std::time::Duration;

use corum::internals::{EventCount, RunToken};
use corum_loom_tests::check;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

const FOREVER: Duration = Duration::from_secs(3600);
const WRITES: usize = 2;

/// The replica's working state: how far it took its input, and what it applied.
#[derive(Default)]
struct Work {
    taken: usize,
    applied: [bool; WRITES],
}

/// What the threads share: the replica's token, its submission counter (write `i` is the
/// `i`-th submitted), each write's completion, its wake-up, and the stop flag.
struct Replica {
    token: RunToken<Work>,
    submitted: AtomicUsize,
    done: [AtomicBool; WRITES],
    wake: EventCount,
    stop: AtomicBool,
}

impl Replica {
    /// One round: applies every write submitted and not yet taken. Returns whether there
    /// was any.
    fn round(&self, work: &mut Work) -> bool {
        let submitted = self.submitted.load(Ordering::Acquire);
        for write in work.taken..submitted {
            assert!(!work.applied[write], "write {write} applied twice");
            work.applied[write] = true;
            self.done[write].store(true, Ordering::Release);
        }
        let progressed = submitted > work.taken;
        work.taken = submitted;
        progressed
    }

    /// The pinned thread's loop (`ReplicaThread::run` and `idle`).
    fn pinned(&self) {
        loop {
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            let Some(mut guard) = self.token.try_take() else {
                self.token.wait_released(FOREVER);
                continue;
            };
            let progressed = guard.with(|work| self.round(work));
            drop(guard);
            if progressed {
                continue;
            }
            let key = self.wake.prepare_wait();
            let ready = self.stop.load(Ordering::Acquire)
                || self
                    .token
                    .try_take()
                    .map_or(true, |mut guard| guard.with(|work| work.taken < self.submitted.load(Ordering::Acquire)));
            if ready {
                self.wake.cancel_wait(key);
            } else {
                self.wake.wait(key, FOREVER);
            }
        }
    }

    /// A client's write (`Handle::submit` with or without waking the replica, then
    /// `Ticket::wait` running rounds itself).
    fn client(&self, wake: bool) {
        let write = self.submitted.fetch_add(1, Ordering::Release);
        if wake {
            self.wake.notify();
        }
        while !self.done[write].load(Ordering::Acquire) {
            match self.token.try_take() {
                Some(mut guard) => {
                    guard.with(|work| self.round(work));
                }
                None => self.token.wait_released(FOREVER),
            }
        }
    }
}

/// The pinned thread and two helping clients: each write applied once, every client
/// returns, and the pinned thread wakes for shutdown. Under preemption bound 1 (9,918
/// executions, about a second); bound 2 explores 940,147 in 98 s here, too long for the
/// suite's budget. Bound 1 catches both planted hand-off bugs (`loom-tests/planted.sh`).
#[test]
fn pinned_thread_and_two_helpers() {
    check("pinned_thread_and_two_helpers", Some(1), || {
        let replica = Arc::new(Replica {
            token: RunToken::new(Work::default()),
            submitted: AtomicUsize::new(0),
            done: [AtomicBool::new(false), AtomicBool::new(false)],
            wake: EventCount::new(),
            stop: AtomicBool::new(false),
        });
        let pinned = {
            let replica = Arc::clone(&replica);
            thread::spawn(move || replica.pinned())
        };
        let clients: Vec<_> = [true, false]
            .into_iter()
            .map(|wake| {
                let replica = Arc::clone(&replica);
                thread::spawn(move || replica.client(wake))
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        replica.stop.store(true, Ordering::Release);
        replica.wake.notify();
        pinned.join().unwrap();
        replica.token.take().with(|work| assert_eq!(work.applied, [true; WRITES], "a write was lost"));
    });
}
