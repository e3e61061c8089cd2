//! The smallest corum program: a replicated counter.
//!
//! Three replica threads each hold a copy of a `Counter`; writes are ordered by Multi-Paxos
//! and applied to every copy; reads are served by one copy once it is up to date.
//!
//! ```text
//! cargo run --release --example counter
//! ```

use corum::{Builder, Dispatch, Error};

/// A sequential, deterministic object: the same adds in the same order give the same count.
#[derive(Clone, Default, Debug)]
struct Counter(u64);

impl Dispatch for Counter {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;

    fn dispatch(&self, _op: &()) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.0 += add;
        self.0
    }
}

fn main() -> Result<(), Error> {
    let cluster = Builder::new(Counter::default()).replicas(3).build()?;

    // One handle per client thread: each is a session with its own exactly-once numbering.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let handle = cluster.handle();
            std::thread::spawn(move || -> Result<(), Error> {
                for _ in 0..10_000 {
                    handle.execute_mut(1)?;
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("client thread panicked")?;
    }

    let handle = cluster.handle();
    // Pipelining: many writes in flight from one thread, one ticket each.
    let tickets: Vec<_> = (0..1_000).map(|_| handle.submit(1)).collect::<Result<_, _>>()?;
    for ticket in tickets {
        ticket.wait()?;
    }
    println!("count after 41,000 adds: {}", handle.execute(())?);

    for stats in cluster.stats() {
        println!(
            "replica {}: {:?}, ballot {:?}, applied {:?}, {} batches proposed",
            stats.replica, stats.role, stats.ballot, stats.slot_applied, stats.batches_proposed
        );
    }

    let copies = cluster.shutdown()?;
    let counts: Vec<u64> = copies.iter().map(|copy| copy.0).collect();
    println!("final copies: {counts:?}");
    assert!(counts.iter().all(|&count| count == 41_000));
    Ok(())
}
