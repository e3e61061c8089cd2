//! The write board (`transport/board.rs`): sessions post writes, leaders collect them per
//! ballot, the first replica to apply a write answers it, and its owner takes the answer,
//! while berths are reused, writes retracted and leaders change. A data race on a berth's
//! write or answer, an answer paired with the wrong write, or a lost wake-up (a deadlock)
//! fails the check.
#![cfg(corum_loom)]

use corum_loom_tests::check;

use std::task::Poll;
use std::time::Duration;

use corum::internals::{Address, Board, Collector, Refused, Retracted};
use loom::sync::Arc;
use loom::thread;

/// Posts `write`, yielding while the berth is not free yet (a collector still reads the
/// write it held before).
fn post(board: &Board<u32, u32>, key: &mut corum::internals::LaneKey, mut write: u32) -> u64 {
    loop {
        match board.post(key, write) {
            Ok(number) => return number,
            Err(Refused::Full(back)) => {
                write = back;
                thread::yield_now();
            }
        }
    }
}

/// A leader's collection in ballot 1 on a thread of its own; joined, the writes it took.
fn collect_on_a_thread(board: &Arc<Board<u32, u32>>) -> thread::JoinHandle<Vec<u32>> {
    let board = Arc::clone(board);
    thread::spawn(move || {
        let mut writes = Vec::new();
        Collector::default().collect(&board, 1, 8, |_, write| writes.push(write));
        writes
    })
}

/// A collector clones a write while another replica answers it and its owner takes the
/// answer and posts the next write to the same berth: the owner waits for the unpin, so
/// the clone is of the whole first write (a race on the berth fails the check). The
/// planted bug `board-unpin-relaxed` opens that race.
#[test]
fn a_berth_is_reused_only_after_its_collector_let_go() {
    check("a_berth_is_reused_only_after_its_collector_let_go", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let mut key = board.claim().unwrap();
        let first = board.post(&mut key, 1).unwrap();
        let collector = collect_on_a_thread(&board);
        // Another replica applied it and answers; the owner takes the answer and reuses
        // the berth.
        assert!(board.answer(Address { lane: key.lane(), number: first }, 10));
        assert_eq!(board.take(&mut key, first), Some(10));
        post(&board, &mut key, 2);
        let writes = collector.join().unwrap();
        // Before the answer, after the second post, or in between (nothing posted).
        assert!(writes.is_empty() || writes == [1] || writes == [2], "collected {writes:?}");
    });
}

/// A late answer for a berth's previous write (a lagging replica applying it) arrives
/// while the owner has posted its next write there: only the next write's own answer
/// reaches the owner. The planted bug `board-answer-any-number` lets the late one land.
#[test]
fn a_late_answer_for_a_reused_berth_is_dropped() {
    check("a_late_answer_for_a_reused_berth_is_dropped", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let mut key = board.claim().unwrap();
        let first = board.post(&mut key, 1).unwrap();
        let old = Address { lane: key.lane(), number: first };
        assert!(board.answer(old, 10));
        assert_eq!(board.take(&mut key, first), Some(10));
        let second = post(&board, &mut key, 2);
        let lagging = {
            let board = Arc::clone(&board);
            thread::spawn(move || board.answer(old, 10))
        };
        let on_time = board.answer(Address { lane: key.lane(), number: second }, 20);
        let late = lagging.join().unwrap();
        assert!(!late, "a late answer for the berth's previous write landed");
        assert!(on_time);
        assert_eq!(board.take(&mut key, second), Some(20));
    });
}

/// The owner gives up on a write while a collector collects it: either the collector got
/// it whole before the retraction, or not at all; the berth is reused only once the
/// collector let go; and no collector of a later ballot collects it.
#[test]
fn a_give_up_racing_a_collection() {
    check("a_give_up_racing_a_collection", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let mut key = board.claim().unwrap();
        let first = board.post(&mut key, 1).unwrap();
        let collector = collect_on_a_thread(&board);
        assert_eq!(board.retract(&mut key, first), Retracted::Retracted);
        board.finished_below(&mut key, first + 1);
        let mut later = Vec::new();
        Collector::default().collect(&board, 2, 8, |_, write| later.push(write));
        assert!(later.is_empty(), "a retracted write was collected in a later ballot");
        post(&board, &mut key, 2);
        let writes = collector.join().unwrap();
        // Before the answer, after the second post, or in between (nothing posted).
        assert!(writes.is_empty() || writes == [1] || writes == [2], "collected {writes:?}");
    });
}

/// A leader collects a write and is deposed before it is chosen; the next leader, in a
/// higher ballot, collects the same write from the same berth (no resubmission), while
/// the deposed one's collector runs on.
#[test]
fn a_leader_change_mid_collection() {
    check("a_leader_change_mid_collection", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 2));
        let mut key = board.claim().unwrap();
        board.post(&mut key, 1).unwrap();
        let deposed = {
            let board = Arc::clone(&board);
            thread::spawn(move || {
                let mut collector = Collector::default();
                let mut writes = Vec::new();
                collector.collect(&board, 1, 8, |_, write| writes.push(write));
                collector.collect(&board, 1, 8, |_, write| writes.push(write));
                writes
            })
        };
        let mut next = Collector::default();
        let mut writes = Vec::new();
        next.collect(&board, 1, 8, |_, write| writes.push(write));
        // Its ballot changes (it became leader in ballot 3): it collects again.
        next.collect(&board, 3, 8, |_, write| writes.push(write));
        assert_eq!(writes, [1, 1]);
        assert_eq!(deposed.join().unwrap(), [1], "collected twice in one ballot");
    });
}

/// A collector on a thread of its own that takes a lane off the list after one idle pass;
/// joined, the collector (to collect again in the same ballot) and the writes it took.
fn unlisting_collector_on_a_thread(board: &Arc<Board<u32, u32>>) -> thread::JoinHandle<(Collector, Vec<u32>)> {
    let board = Arc::clone(board);
    thread::spawn(move || {
        let mut collector = Collector::unlisting_after(1);
        let mut writes = Vec::new();
        collector.collect(&board, 1, 8, |_, write| writes.push(write));
        (collector, writes)
    })
}

/// A collector takes an idle lane off the list (its only write given up on) while the
/// owner posts to it again: the post is never hidden, so the same collector's next pass in
/// the same ballot takes it if the first did not, and nobody takes it twice. The planted
/// bugs `board-unlist-no-recheck` and `board-listed-before-posted` hide it.
#[test]
fn a_lane_taken_off_the_list_while_its_owner_posts_keeps_the_post() {
    check("a_lane_taken_off_the_list_while_its_owner_posts_keeps_the_post", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 2));
        let mut key = board.claim().unwrap();
        let first = board.post(&mut key, 1).unwrap();
        assert_eq!(board.retract(&mut key, first), Retracted::Retracted);
        board.finished_below(&mut key, first + 1);
        let collector = unlisting_collector_on_a_thread(&board);
        board.post(&mut key, 2).unwrap();
        let (mut collector, mut writes) = collector.join().unwrap();
        collector.collect(&board, 1, 8, |_, write| writes.push(write));
        assert_eq!(writes, [2], "the post after the idle lane was hidden or taken twice");
    });
}

/// The owner posts two writes and finishes the first while a collector that takes idle
/// lanes off the list looks: it must not take the first finished for "every write
/// finished" while the second is posted (it loads `oldest`, stored with Release, before
/// `posted`). The planted bug `board-oldest-relaxed` lets it, and the second is hidden.
#[test]
fn a_lane_with_a_write_in_flight_stays_on_the_list() {
    check("a_lane_with_a_write_in_flight_stays_on_the_list", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 2));
        let mut key = board.claim().unwrap();
        let collector = unlisting_collector_on_a_thread(&board);
        let first = board.post(&mut key, 1).unwrap();
        board.post(&mut key, 2).unwrap();
        assert_eq!(board.retract(&mut key, first), Retracted::Retracted);
        board.finished_below(&mut key, first + 1);
        let (mut collector, mut writes) = collector.join().unwrap();
        collector.collect(&board, 1, 8, |_, write| writes.push(write));
        assert!(writes == [2] || writes == [1, 2], "collected {writes:?}");
    });
}

/// The owner parks on its lane's event count until its answer lands; the answerer is a
/// collector on another thread. A lost wake-up is a deadlock (timed waits are untimed
/// under loom). The planted bug `board-answer-no-notify` loses it.
#[test]
fn an_owner_waiting_for_its_answer_wakes() {
    check("an_owner_waiting_for_its_answer_wakes", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let mut key = board.claim().unwrap();
        let number = board.post(&mut key, 7).unwrap();
        let leader = {
            let board = Arc::clone(&board);
            thread::spawn(move || {
                let mut writes = Vec::new();
                Collector::default().collect(&board, 1, 8, |address, write| writes.push((address, write)));
                for (address, write) in writes {
                    board.answer(address, write * 10);
                }
            })
        };
        loop {
            if board.is_answered_at(Address { lane: key.lane(), number: number }) {
                break;
            }
            let wait = board.answers_of(key.lane()).prepare_wait();
            if board.is_answered_at(Address { lane: key.lane(), number: number }) {
                board.answers_of(key.lane()).cancel_wait(wait);
                break;
            }
            board.answers_of(key.lane()).wait(wait, Duration::from_secs(3600));
        }
        assert_eq!(board.take(&mut key, number), Some(70));
        leader.join().unwrap();
    });
}

/// The owner's task awaits its answer without blocking (its waker left in the lane's event
/// count) while a leader answers quietly, as it answers a batch, and then wakes the lane:
/// the task always wakes (a lost wake-up leaves `block_on` waiting forever, a deadlock to
/// loom).
#[test]
fn a_waker_left_while_the_answer_lands() {
    check("a_waker_left_while_the_answer_lands", None, || {
        let board = Arc::new(Board::<u32, u32>::new(1, 1));
        let mut key = board.claim().unwrap();
        let number = board.post(&mut key, 1).unwrap();
        let address = Address { lane: key.lane(), number };
        let leader = {
            let board = Arc::clone(&board);
            thread::spawn(move || {
                assert!(board.answer_quietly(address, 10));
                board.wake(address.lane);
            })
        };
        loom::future::block_on(std::future::poll_fn(|cx| loop {
            if board.is_answered_at(Address { lane: key.lane(), number: number }) {
                return Poll::Ready(());
            }
            let wait = board.answers_of(key.lane()).prepare_wait();
            if board.is_answered_at(Address { lane: key.lane(), number: number }) {
                board.answers_of(key.lane()).cancel_wait(wait);
                return Poll::Ready(());
            }
            if board.answers_of(key.lane()).wait_async(wait, cx.waker()) {
                return Poll::Pending;
            }
        }));
        assert_eq!(board.take(&mut key, number), Some(10));
        leader.join().unwrap();
    });
}
