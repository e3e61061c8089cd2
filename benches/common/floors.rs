//! The floors a corum write is compared against: a core-to-core round trip, and the message
//! pattern of one write relayed over channels.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::harness::record;

/// Core-to-core round trips: two threads bounce a counter through one cache line, `n`
/// times. Returns the time for all of them (the floor every corum write pays twice).
pub fn atomic_ping_pong(n: u64) -> Duration {
    let line = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peer = {
        let line = Arc::clone(&line);
        std::thread::spawn(move || {
            // Both threads run before the clock starts: this round trip is not timed.
            line.store(u64::MAX, Ordering::Release);
            for i in 0..n {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    while line.load(Ordering::Acquire) != u64::MAX {
        std::hint::spin_loop();
    }
    let started = Instant::now();
    for i in 0..n {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let elapsed = started.elapsed();
    peer.join().expect("peer");
    elapsed
}

/// The message pattern of one corum write, relayed naively over crossbeam channels with
/// blocking receives: client -> leader -> two acceptors -> leader (after the first
/// acknowledgement: with its own, a majority of 3) -> client; `n` writes, one at a time.
/// Returns the time for all of them, and records each one's latency if asked.
pub fn crossbeam_relay(n: u64, mut latency: Option<&mut Histogram<u64>>) -> Duration {
    use crossbeam_channel::{unbounded, Receiver, Sender};
    let (to_leader, leader_inbox) = unbounded::<u64>();
    let (to_client, client_inbox) = unbounded::<u64>();
    let (acks, ack_inbox) = unbounded::<u64>();
    let acceptors: Vec<(Sender<u64>, std::thread::JoinHandle<()>)> = (0..2)
        .map(|_| {
            let (to_acceptor, inbox): (Sender<u64>, Receiver<u64>) = unbounded();
            let acks = acks.clone();
            let thread = std::thread::spawn(move || {
                for sequence in inbox {
                    if acks.send(sequence).is_err() {
                        break;
                    }
                }
            });
            (to_acceptor, thread)
        })
        .collect();
    drop(acks);
    let senders: Vec<Sender<u64>> = acceptors.iter().map(|(sender, _)| sender.clone()).collect();
    let leader = std::thread::spawn(move || {
        for sequence in leader_inbox {
            for acceptor in &senders {
                acceptor.send(sequence).expect("acceptor");
            }
            // The first acknowledgement of this write makes a majority; older ones are late.
            while ack_inbox.recv().expect("ack") != sequence {}
            to_client.send(sequence).expect("client");
        }
    });
    let started = Instant::now();
    for sequence in 0..n {
        let begin = Instant::now();
        to_leader.send(sequence).expect("leader");
        let reply = client_inbox.recv().expect("reply");
        debug_assert_eq!(reply, sequence);
        if let Some(latency) = latency.as_deref_mut() {
            record(latency, begin);
        }
    }
    let elapsed = started.elapsed();
    drop(to_leader);
    leader.join().expect("leader");
    for (sender, thread) in acceptors {
        drop(sender);
        thread.join().expect("acceptor");
    }
    elapsed
}
