//! The client submission queue (bounded MPSC) under loom.
#![cfg(corum_loom)]

use corum_loom_tests::check;

use corum::internals::Queue;
use loom::sync::Arc;
use loom::thread;

/// Two producers and the consumer: nothing lost, nothing duplicated, FIFO per producer.
#[test]
fn two_producers_lose_nothing() {
    check("two_producers_lose_nothing", None, || {
        let queue = Arc::new(Queue::new(2));
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let queue = Arc::clone(&queue);
                thread::spawn(move || {
                    let mut value = p;
                    while let Err(back) = queue.push(value) {
                        value = back;
                        thread::yield_now();
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            match queue.pop() {
                Some(value) => seen.push(value),
                None => thread::yield_now(),
            }
        }
        for producer in producers {
            producer.join().unwrap();
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1]);
        assert!(queue.pop().is_none());
    });
}

/// A full queue hands the value back and loses nothing already queued.
#[test]
fn full_queue_applies_back_pressure() {
    check("full_queue_applies_back_pressure", None, || {
        let queue = Arc::new(Queue::new(2));
        queue.push(1).unwrap();
        let producer = {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                queue.push(2).unwrap();
                queue.push(3)
            })
        };
        let first = queue.pop();
        let third = producer.join().unwrap();
        let mut seen: Vec<u32> = first.into_iter().collect();
        while let Some(value) = queue.pop() {
            seen.push(value);
        }
        match third {
            Ok(()) => assert_eq!(seen, vec![1, 2, 3]),
            Err(back) => {
                assert_eq!(back, 3);
                assert_eq!(seen, vec![1, 2]);
            }
        }
    });
}
