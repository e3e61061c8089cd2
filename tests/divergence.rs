//! Divergence detection: an object whose `dispatch_mut` is not deterministic on one
//! replica is found within `digest_every` slots and that copy replaced; with no majority
//! digest the cluster refuses calls; a deterministic object never reports divergence.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corum::{Builder, Cluster, Dispatch, Error};

/// Far above what anything here needs (see `tests/common`).
const PATIENCE: Duration = Duration::from_secs(120);

/// The write that misbehaves.
const TRIGGER: u64 = 1_000;

/// A counter whose first `glitches` applications of [`TRIGGER`] (on whichever replicas
/// apply it first) add a little extra, different each time: a per-replica quirk folded into
/// the state, as a clock or a random seed would be.
#[derive(Clone)]
struct Glitchy {
    sum: u64,
    glitches: Arc<AtomicU64>,
    extra: Arc<AtomicU64>,
}

impl Glitchy {
    fn new(glitches: u64) -> Self {
        Self { sum: 0, glitches: Arc::new(AtomicU64::new(glitches)), extra: Arc::new(AtomicU64::new(0)) }
    }
}

impl Dispatch for Glitchy {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;

    fn dispatch(&self, _: &()) -> u64 {
        self.sum
    }

    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.sum += add;
        let glitch = *add == TRIGGER
            && self.glitches.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |g| g.checked_sub(1)).is_ok();
        if glitch {
            self.sum += self.extra.fetch_add(1, Ordering::SeqCst) + 1;
        }
        self.sum
    }

    fn digest(&self) -> Option<u64> {
        Some(self.sum)
    }
}

fn cluster(glitches: u64, every: u64) -> Cluster<Glitchy> {
    Builder::new(Glitchy::new(glitches))
        .replicas(3)
        .pin(false)
        .digest_every(every)
        .deadline(PATIENCE)
        .build()
        .expect("build")
}

/// The highest slot below which some replica applied every slot.
fn applied_max(cluster: &Cluster<Glitchy>) -> u64 {
    cluster.stats().iter().map(|s| s.slot_applied.get()).max().unwrap()
}

/// Waits until every replica has applied every slot below `slot`.
fn all_applied(cluster: &Cluster<Glitchy>, slot: u64) {
    let deadline = Instant::now() + PATIENCE;
    while !cluster.stats().iter().all(|s| s.slot_applied.get() >= slot) {
        assert!(Instant::now() < deadline, "not every replica applied up to {slot}: {:#?}", cluster.stats());
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_copy_that_diverges_is_found_within_digest_every_slots_and_replaced() {
    let every = 8;
    let cluster = cluster(1, every);
    let handle = cluster.handle();
    for _ in 0..100 {
        handle.execute_mut(1).expect("write");
    }
    // Every replica at the same slot first: the guarantee is about the checkpoint after the
    // fork, which a majority must pass with one digest while the board keeps it (a replica
    // far behind on a loaded machine, or one that catches up by a snapshot, moves the
    // verdict to a later checkpoint; see `Builder::digest_every`).
    all_applied(&cluster, applied_max(&cluster));
    handle.execute_mut(TRIGGER).expect("the write one replica applies differently");
    // Every slot below this holds the trigger write (writes one at a time).
    let trigger_done = applied_max(&cluster);
    // The next checkpoint into the log, and every replica past it.
    for _ in 0..every {
        handle.execute_mut(1).expect("write");
    }
    all_applied(&cluster, trigger_done + every);
    let deadline = Instant::now() + PATIENCE;
    let mut after = every;
    let found = loop {
        handle.execute_mut(1).expect("writes go on while a copy is diverged");
        after += 1;
        let stats = cluster.stats();
        if let Some(found) = stats.iter().find(|s| s.divergences > 0 && !s.diverged) {
            break found.clone();
        }
        assert!(Instant::now() < deadline, "not found and repaired: {stats:#?}");
    };
    let detected = found.diverged_at.expect("where it was found").get();
    println!(
        "replica {} found diverged at checkpoint slot {detected}, the trigger write in a slot below {trigger_done}",
        found.replica
    );
    assert!(detected < trigger_done + every, "found at {detected}, more than {every} slots after {trigger_done}");
    let stats = cluster.stats();
    assert_eq!(stats.iter().map(|s| s.divergences).sum::<u64>(), 1, "one copy diverged once: {stats:#?}");
    // Reads from sessions homed on every replica see the majority's state, and every copy
    // holds it again.
    let expected = 100 + TRIGGER + after;
    for _ in 0..6 {
        assert_eq!(cluster.handle().execute(()).expect("read"), expected);
    }
    drop(handle);
    let copies = cluster.shutdown().expect("shutdown");
    let sums: Vec<u64> = copies.iter().map(|copy| copy.sum).collect();
    assert_eq!(sums, [expected; 3], "the copies after the repair");
}

#[test]
fn copies_with_no_majority_digest_make_the_cluster_refuse_calls() {
    let cluster = cluster(3, 4);
    let handle = cluster.handle();
    for _ in 0..20 {
        handle.execute_mut(1).expect("write");
    }
    // Each replica adds a different extra: three digests, no majority.
    let _ = handle.execute_mut(TRIGGER);
    let deadline = Instant::now() + PATIENCE;
    let refused = loop {
        match handle.execute_mut(1) {
            Ok(_) => assert!(Instant::now() < deadline, "never refused"),
            Err(error) => break error,
        }
    };
    let Error::Diverged { slot } = refused else { panic!("refused with {refused:?}") };
    assert_eq!(slot % 4, 0, "a checkpoint slot: {slot}");
    assert_eq!(handle.execute(()), Err(Error::Diverged { slot }), "reads are refused too");
    assert_eq!(cluster.handle().submit(1).err(), Some(Error::Diverged { slot }));
    drop(handle);
    cluster.shutdown().expect("shutdown still returns the copies");
}

#[test]
fn a_deterministic_object_never_reports_divergence() {
    // Glitches off: the same object, deterministic.
    let cluster = cluster(0, 2);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let handle = cluster.handle();
            scope.spawn(move || {
                for round in 0..2_000u64 {
                    if round % 8 == 0 {
                        let tickets: Vec<_> = (0..8).map(|_| handle.submit(1).expect("submit")).collect();
                        for ticket in tickets {
                            ticket.wait().expect("pipelined write");
                        }
                    } else {
                        handle.execute_mut(1).expect("write");
                    }
                }
            });
        }
    });
    // Every replica level first: one starved of its core may be far behind.
    all_applied(&cluster, applied_max(&cluster));
    let stats = cluster.stats();
    let checkpoints = stats.iter().map(|s| s.slot_applied.get() / 2).min().unwrap();
    assert!(checkpoints > 100, "{checkpoints} checkpoints passed");
    assert!(stats.iter().all(|s| s.divergences == 0), "{stats:#?}");
    let copies = cluster.shutdown().expect("shutdown");
    assert!(copies.iter().all(|copy| copy.sum == copies[0].sum));
}
