//! Parking and waking: the event count replica threads and readers park on, and the
//! completion a writing client waits on (a thread sleeping, or a task's waker). A lost wake-up shows as a deadlock, which
//! loom reports (timed waits are untimed under loom, so only a notification can end them).
#![cfg(corum_loom)]

use corum_loom_tests::check;

use std::task::Poll;
use std::time::Duration;

use corum::internals::{Completion, EventCount};
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;

/// A consumer parks until a producer publishes a flag: never a lost wake-up.
#[test]
fn event_count_never_loses_a_wake_up() {
    check("event_count_never_loses_a_wake_up", None, || {
        let event = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (event, flag) = (Arc::clone(&event), Arc::clone(&flag));
            thread::spawn(move || loop {
                if flag.load(Ordering::Acquire) {
                    return;
                }
                let key = event.prepare_wait();
                if flag.load(Ordering::Acquire) {
                    event.cancel_wait(key);
                    return;
                }
                event.wait(key, Duration::from_secs(3600));
            })
        };
        flag.store(true, Ordering::Release);
        event.notify();
        waiter.join().unwrap();
    });
}

/// A task waits on an event count without blocking (`EventCount::wait_async`, as an
/// awaited read waits for its copy) while a producer publishes a flag and notifies: the
/// task always wakes. A lost wake-up leaves `block_on` waiting forever, which loom reports as
/// a deadlock.
#[test]
fn event_count_wakes_an_awaiting_task() {
    check("event_count_wakes_an_awaiting_task", None, || {
        let event = Arc::new(EventCount::new());
        let flag = Arc::new(AtomicBool::new(false));
        let producer = {
            let (event, flag) = (Arc::clone(&event), Arc::clone(&flag));
            thread::spawn(move || {
                flag.store(true, Ordering::Release);
                event.notify();
            })
        };
        loom::future::block_on(std::future::poll_fn(|cx| loop {
            if flag.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            let key = event.prepare_wait();
            if flag.load(Ordering::Acquire) {
                event.cancel_wait(key);
                return Poll::Ready(());
            }
            if event.wait_async(key, cx.waker()) {
                return Poll::Pending;
            }
        }));
        producer.join().unwrap();
    });
}

/// A response is published exactly once, by the first of two racing replicas, and the
/// parked client sees it.
#[test]
fn completion_is_filled_once_and_the_waiter_wakes() {
    check("completion_is_filled_once_and_the_waiter_wakes", None, || {
        let completion = Arc::new(Completion::<u32>::new());
        let replicas: Vec<_> = (0..2u32)
            .map(|replica| {
                let completion = Arc::clone(&completion);
                thread::spawn(move || completion.complete(Ok(replica)))
            })
            .collect();
        while !completion.is_done() {
            completion.wait_for(Duration::from_secs(3600));
        }
        let outcome = completion.take().expect("filled").expect("ok");
        let filled: Vec<bool> = replicas.into_iter().map(|r| r.join().unwrap()).collect();
        assert_eq!(filled.iter().filter(|&&f| f).count(), 1, "exactly one replica filled it");
        assert!(filled[outcome as usize], "the value is the filler's");
        assert!(completion.take().is_none(), "taken once");
    });
}

/// A task awaiting a write registers its waker while a replica fills the completion and the
/// reminder thread wakes the task for something else: the task always wakes and takes the
/// outcome, once. A lost wake-up leaves `block_on` waiting forever, which loom reports as a
/// deadlock.
#[test]
fn an_awaiting_task_wakes_when_its_completion_is_filled() {
    check("an_awaiting_task_wakes_when_its_completion_is_filled", None, || {
        let completion = Arc::new(Completion::<u32>::new());
        let replica = {
            let completion = Arc::clone(&completion);
            thread::spawn(move || completion.complete(Ok(7)))
        };
        let reminder = {
            let completion = Arc::clone(&completion);
            thread::spawn(move || completion.wake())
        };
        let outcome = loom::future::block_on(std::future::poll_fn(|cx| {
            if completion.register(cx.waker()) {
                Poll::Ready(completion.take())
            } else {
                Poll::Pending
            }
        }));
        assert_eq!(outcome.expect("filled").expect("ok"), 7);
        assert!(completion.take().is_none(), "taken once");
        assert!(replica.join().unwrap(), "the only replica filled it");
        reminder.join().unwrap();
    });
}

/// The reminder's hand-off (`src/runtime/reminder.rs`): a task registers its waker, then
/// looks at the leader hint again; the reminder thread looks at the hint, then wakes the
/// registered waker through the completion's lock. Whatever the interleaving, and with
/// relaxed loads of the hint, the task either sees the new leader itself or is woken: the
/// completion's lock orders the two looks.
#[test]
fn a_task_is_woken_or_sees_the_new_leader_itself() {
    check("a_task_is_woken_or_sees_the_new_leader_itself", None, || {
        let completion = Arc::new(Completion::<u32>::new());
        let leader = Arc::new(AtomicUsize::new(0));
        // A replica becomes leader.
        let replica = {
            let leader = Arc::clone(&leader);
            thread::spawn(move || leader.store(1, Ordering::Relaxed))
        };
        // The reminder thread: looks each tick until it sees the change, then wakes.
        let reminder = {
            let (completion, leader) = (Arc::clone(&completion), Arc::clone(&leader));
            thread::spawn(move || {
                while leader.load(Ordering::Relaxed) == 0 {
                    thread::yield_now();
                }
                completion.wake();
            })
        };
        // Returns only if the task saw the change; loom reports a lost wake-up as a deadlock.
        loom::future::block_on(std::future::poll_fn(|cx| {
            if leader.load(Ordering::Relaxed) != 0 {
                return Poll::Ready(());
            }
            completion.register(cx.waker());
            // The look again after registering, as `Ticket::poll` does.
            if leader.load(Ordering::Relaxed) != 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }));
        replica.join().unwrap();
        reminder.join().unwrap();
    });
}
