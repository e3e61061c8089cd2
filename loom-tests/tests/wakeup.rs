//! Parking and waking: the event count replica threads, readers and writers park on (a
//! thread sleeping, or a task's waker), and the reminder thread's hand-off. A lost wake-up shows as a deadlock, which
//! loom reports (timed waits are untimed under loom, so only a notification can end them).
#![cfg(corum_loom)]

use corum_loom_tests::check;

use std::task::Poll;
use std::time::Duration;

use corum::internals::{Board, EventCount};
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

/// The reminder's hand-off (`src/runtime/reminder.rs`): a task awaiting its write leaves
/// its waker in its lane's event count, then looks at the leader hint again; the reminder
/// thread looks at the hint, then wakes the lane under the event count's lock
/// (`Board::remind`). Whatever the interleaving, and with relaxed loads of the hint, the
/// task either sees the new leader itself or is woken: the event count's lock orders the
/// two looks. Three preemptions: exhaustively, the reminder's spin on the hint makes the
/// model too large to finish (over 20 minutes).
#[test]
fn a_task_is_woken_or_sees_the_new_leader_itself() {
    check("a_task_is_woken_or_sees_the_new_leader_itself", Some(3), || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let key = board.claim().unwrap();
        let lane = key.lane();
        let leader = Arc::new(AtomicUsize::new(0));
        // A replica becomes leader.
        let replica = {
            let leader = Arc::clone(&leader);
            thread::spawn(move || leader.store(1, Ordering::Relaxed))
        };
        // The reminder thread: looks each tick until it sees the change, then wakes.
        let reminder = {
            let (board, leader) = (Arc::clone(&board), Arc::clone(&leader));
            thread::spawn(move || {
                while leader.load(Ordering::Relaxed) == 0 {
                    thread::yield_now();
                }
                board.remind(lane);
            })
        };
        // Returns only if the task saw the change; loom reports a lost wake-up as a deadlock.
        loom::future::block_on(std::future::poll_fn(|cx| loop {
            if leader.load(Ordering::Relaxed) != 0 {
                return Poll::Ready(());
            }
            let wait = board.answers_of(key.lane()).prepare_wait();
            if !board.answers_of(key.lane()).wait_async(wait, cx.waker()) {
                continue;
            }
            // The look again after leaving the waker, as `Ticket::poll` does.
            return if leader.load(Ordering::Relaxed) != 0 { Poll::Ready(()) } else { Poll::Pending };
        }));
        replica.join().unwrap();
        reminder.join().unwrap();
    });
}
