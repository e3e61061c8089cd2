//! The replica-to-replica SPSC ring under loom.
#![cfg(corum_loom)]

use corum_loom_tests::check;

use corum::internals::ring;
use loom::thread;

/// FIFO across threads, through wrap-around, with the producer retrying on a full ring.
#[test]
fn fifo_through_wrap_around_with_back_pressure() {
    check("fifo_through_wrap_around_with_back_pressure", None, || {
        let (mut tx, mut rx) = ring::<u32>(2);
        let producer = thread::spawn(move || {
            for value in 0..3 {
                let mut value = value;
                while let Err(back) = tx.push(value) {
                    value = back;
                    thread::yield_now();
                }
            }
        });
        let mut expected = 0;
        while expected < 3 {
            match rx.pop() {
                Some(value) => {
                    assert_eq!(value, expected);
                    expected += 1;
                }
                None => thread::yield_now(),
            }
        }
        producer.join().unwrap();
        assert!(rx.pop().is_none());
    });
}

/// Sender and receiver race on the last free slot: the value is never lost, overwritten
/// or read before it is written (loom's cell tracking catches the latter two).
#[test]
fn racing_on_the_last_slot() {
    check("racing_on_the_last_slot", None, || {
        let (mut tx, mut rx) = ring::<u32>(2);
        tx.push(1).unwrap();
        let producer = thread::spawn(move || {
            tx.push(2).unwrap();
            // Full now unless the consumer already took one.
            tx.push(3).is_ok()
        });
        let first = rx.pop();
        let third_fit = producer.join().unwrap();
        let mut seen: Vec<u32> = first.into_iter().collect();
        while let Some(value) = rx.pop() {
            seen.push(value);
        }
        let want: Vec<u32> = if third_fit { vec![1, 2, 3] } else { vec![1, 2] };
        assert_eq!(seen, want);
    });
}
