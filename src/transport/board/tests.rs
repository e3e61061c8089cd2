//! The write board's unit tests: collection per ballot, answers by number, retraction,
//! release, budgets, and owners and collectors on threads.

use super::{Address, Board, Collector, Refused, Retracted};
use std::sync::Arc;

fn collected(collector: &mut Collector, board: &Board<u64, u64>, ballot: u64) -> Vec<(Address, u64)> {
    let mut writes = Vec::new();
    collector.collect(board, ballot, usize::MAX, |address, write| writes.push((address, write)));
    writes
}

#[test]
fn a_write_is_collected_once_per_ballot_answered_once_and_taken() {
    let board = Board::<u64, u64>::new(2, 4);
    let mut key = board.claim().expect("a lane");
    let first = board.post(&mut key, 10).expect("room");
    let second = board.post(&mut key, 20).expect("room");
    let mut leader = Collector::default();
    let writes = collected(&mut leader, &board, 1);
    assert_eq!(writes.iter().map(|(_, w)| *w).collect::<Vec<_>>(), [10, 20]);
    assert!(collected(&mut leader, &board, 1).is_empty(), "collected again in the same ballot");
    // A new leader (or the same one in a new ballot) collects what is unfinished again.
    let mut next_leader = Collector::default();
    assert_eq!(collected(&mut next_leader, &board, 2).len(), 2);
    assert!(board.answer(writes[0].0, 11));
    assert!(!board.answer(writes[0].0, 12), "a second answer lands");
    assert!(!board.is_answered_at(Address { lane: key.lane(), number: second }));
    assert_eq!(board.take(&mut key, first), Some(11));
    assert_eq!(board.take(&mut key, first), None, "taken twice");
    board.finished_below(&mut key, first + 1);
    assert_eq!(collected(&mut next_leader, &board, 3).iter().map(|(_, w)| *w).collect::<Vec<_>>(), [20]);
}

#[test]
fn a_full_lane_refuses_and_a_late_answer_for_a_reused_berth_is_dropped() {
    let board = Board::<u64, u64>::new(1, 1);
    let mut key = board.claim().expect("a lane");
    assert!(board.claim().is_none(), "the only lane was claimed twice");
    let first = board.post(&mut key, 1).expect("room");
    assert_eq!(board.post(&mut key, 2), Err(Refused::Full(2)), "posted over an unfinished write");
    let address = collected(&mut Collector::default(), &board, 1)[0].0;
    assert!(board.answer(address, 100));
    assert_eq!(board.post(&mut key, 2), Err(Refused::Full(2)), "posted over an answer not taken");
    assert_eq!(board.take(&mut key, first), Some(100));
    let second = board.post(&mut key, 2).expect("room once taken");
    assert!(!board.answer(address, 101), "a late answer for the berth's previous write landed");
    assert!(!board.is_answered_at(Address { lane: key.lane(), number: second }));
    assert_eq!(board.take(&mut key, second), None);
}

#[test]
fn a_retracted_write_is_not_collected_and_its_late_answer_is_dropped() {
    let board = Board::<u64, u64>::new(1, 2);
    let mut key = board.claim().expect("a lane");
    let number = board.post(&mut key, 5).expect("room");
    let address = collected(&mut Collector::default(), &board, 1)[0].0;
    assert_eq!(board.retract(&mut key, number), Retracted::Retracted);
    assert!(collected(&mut Collector::default(), &board, 2).is_empty(), "a retracted write was collected");
    assert!(!board.answer(address, 1), "an answer for a retracted write landed");
    // An answered write is not retracted: its answer is taken instead.
    let answered = board.post(&mut key, 6).expect("room");
    let address = collected(&mut Collector::default(), &board, 3)[0].0;
    assert!(board.answer(address, 60));
    assert_eq!(board.retract(&mut key, answered), Retracted::Answered);
    assert_eq!(board.take(&mut key, answered), Some(60));
}

#[test]
fn a_released_lane_is_claimed_afresh_with_numbers_that_never_repeat() {
    let board = Board::<u64, u64>::new(1, 2);
    let mut key = board.claim().expect("a lane");
    let old = board.post(&mut key, 1).expect("room");
    let address = collected(&mut Collector::default(), &board, 1)[0].0;
    board.release(key);
    let mut key = board.claim().expect("the released lane");
    assert!(key.next() > old);
    assert!(!board.answer(address, 1), "the previous owner's write was answered after release");
    let new = board.post(&mut key, 2).expect("room");
    assert_ne!(new, old);
    let writes = collected(&mut Collector::default(), &board, 2);
    assert_eq!(writes.iter().map(|(_, w)| *w).collect::<Vec<_>>(), [2], "a released write was collected");
}

#[test]
fn a_budget_leaves_the_rest_for_the_next_pass() {
    let board = Board::<u64, u64>::new(3, 8);
    let mut keys: Vec<_> = (0..3).map(|_| board.claim().expect("a lane")).collect();
    for (i, key) in keys.iter_mut().enumerate() {
        for j in 0..4 {
            board.post(key, (i * 10 + j) as u64).expect("room");
        }
    }
    let mut collector = Collector::default();
    let mut all = Vec::new();
    while all.len() < 12 {
        let before = all.len();
        collector.collect(&board, 1, 5, |_, write| all.push(write));
        assert!(all.len() - before <= 5);
    }
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
}

/// An owner posting and taking while two collectors (leaders of alternating ballots)
/// collect and answer: every write answered exactly once with its own answer.
#[test]
fn owners_and_collectors_on_threads_pair_every_answer_with_its_write() {
    const WRITES: u64 = 20_000;
    let board = Arc::new(Board::<u64, u64>::new(2, 4));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collectors: Vec<_> = (0..2u64)
        .map(|c| {
            let (board, stop) = (Arc::clone(&board), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut collector = Collector::default();
                let mut round = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    let ballot = round / 64 * 2 + c;
                    let mut writes = Vec::new();
                    collector.collect(&board, ballot, 16, |address, write| writes.push((address, write)));
                    for (address, write) in writes {
                        board.answer(address, write * 2);
                    }
                }
            })
        })
        .collect();
    let owners: Vec<_> = (0..2u64)
        .map(|o| {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                let mut key = board.claim().expect("a lane");
                let mut in_flight = std::collections::VecDeque::new();
                let mut sent = 0;
                while sent < WRITES || !in_flight.is_empty() {
                    if sent < WRITES {
                        let write = o << 32 | sent;
                        if let Ok(number) = board.post(&mut key, write) {
                            in_flight.push_back((number, write));
                            sent += 1;
                            continue;
                        }
                    }
                    // Refused with nothing in flight: a collector still holds its pin on the
                    // berth's last write (it unpins right after its clone).
                    let Some(&(number, write)) = in_flight.front() else {
                        std::thread::yield_now();
                        continue;
                    };
                    if let Some(answer) = board.take(&mut key, number) {
                        assert_eq!(answer, write * 2, "write {number} got another write's answer");
                        in_flight.pop_front();
                        board.finished_below(&mut key, number + 1);
                    } else {
                        std::thread::yield_now();
                    }
                }
                board.release(key);
            })
        })
        .collect();
    owners.into_iter().for_each(|owner| owner.join().expect("owner"));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    collectors.into_iter().for_each(|collector| collector.join().expect("collector"));
}

/// A lane found idle on enough passes in a row leaves the list, and a collector no longer
/// looks at it (a lane cleared of writes by hand is not visited); its owner's next post puts
/// it back, and a busy lane is never taken off.
#[test]
fn an_idle_lane_leaves_the_list_and_its_next_post_puts_it_back() {
    let board = Board::<u64, u64>::new(3, 4);
    let mut idle = board.claim().expect("a lane");
    let mut busy = board.claim().expect("a lane");
    assert!(!board.is_listed(0) && !board.is_listed(1), "listed before any post");
    let first = board.post(&mut idle, 1).expect("room");
    board.post(&mut busy, 2).expect("room");
    assert!(board.is_listed(0) && board.is_listed(1));
    let mut collector = Collector::unlisting_after(3);
    assert_eq!(collected(&mut collector, &board, 1).len(), 2);
    assert!(board.answer(Address { lane: idle.lane(), number: first }, 10));
    assert_eq!(board.take(&mut idle, first), Some(10));
    board.finished_below(&mut idle, first + 1);
    for pass in 0..2 {
        assert!(collected(&mut collector, &board, 1).is_empty());
        assert!(board.is_listed(0), "taken off after {} idle passes", pass + 1);
    }
    assert!(collected(&mut collector, &board, 1).is_empty());
    assert!(!board.is_listed(0), "an idle lane stays listed");
    assert!(board.is_listed(1), "a lane with a write in flight was taken off");
    // Unlisted, the lane is not looked at: a write stored behind the owner's back (a post
    // without its listing) stays uncollected.
    let second = idle.next();
    board.lanes[0].posted.store(second + 1, std::sync::atomic::Ordering::Release);
    assert!(!collector.has_uncollected(&board, 1));
    board.lanes[0].posted.store(second, std::sync::atomic::Ordering::Release);
    // The owner's next post puts it back, and it is collected.
    board.post(&mut idle, 3).expect("room");
    assert!(board.is_listed(0));
    assert!(collector.has_uncollected(&board, 1));
    assert_eq!(collected(&mut collector, &board, 1).iter().map(|(_, w)| *w).collect::<Vec<_>>(), [3]);
}
