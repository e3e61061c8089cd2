//! Work-conserving waiting: a client thread waiting for a replica to make progress runs
//! that replica's round itself instead of giving its core to the scheduler.
//!
//! With more threads than cores, every hop of a write (client to leader, leader to
//! followers, followers to leader, leader to client) used to wait for a thread that was not
//! running. Now a client waiting for its write takes the run token of each replica in turn
//! (the one it submitted to first, so that its write is proposed, then the others, which
//! accept it, then the first again, which commits and applies it) and runs the round the
//! replica's own thread would have run. The rounds are the same driver rounds the pinned
//! threads run (`worker.rs`), one holder per replica at a time, so nothing about the
//! protocol changes; only which thread does the work.
//!
//! - A client runs the rounds of a replica only while that replica's own thread is parked
//!   (waiting for work or for its token). A replica thread that is awake (spinning on a
//!   core of its own, or running) does its own work faster than a client could take it
//!   over: on 16 cores, clients running rounds regardless cost synchronous writes a good
//!   share of their throughput, and helping parked replicas only did not (docs/BENCHMARKS.md,
//!   "What the design rests on"). Where threads outnumber cores, an idle
//!   replica thread parks at once, so clients do nearly all the work.
//! - When many clients help one leader, whoever holds its token proposes everyone's queued
//!   writes as one batch: the others find the token held and help elsewhere or park.
//! - A token held by a thread that was preempted mid-round is skipped, like a slow
//!   replica: a majority of the others commits without it.
//! - A replica stopped by [`Faults`](crate::Faults) (paused, crashed, or slowed) models a
//!   stopped or slow core and is never helped.
//! - A helper does not wake the pinned threads of the replicas it sends to (it runs their
//!   rounds next itself), so helping costs no context switches; what it leaves behind wakes
//!   those threads by their tick at the latest.
//! - Where replicas share cores, a client waiting for a write that has more of its
//!   session's writes behind it (a writer that pipelines) leaves the rounds to another
//!   client already running them ([`help_write`]): the holder of `Shared::helper` proposes
//!   everyone's queued writes in large batches and carries them through, with the
//!   replicas' state staying in its core's cache, while the other spins on its answer
//!   (and goes on submitting once it completes). Pipelined writes gained by it, and
//!   synchronous writers lost when they deferred too (their batches stay single writes, so
//!   waiting only idles a core; docs/BENCHMARKS.md, "What the design rests on"), so only
//!   writers with `DEFER_BEHIND` writes behind defer. A writer
//!   defers only while the holder keeps beginning passes: one pass that lasts
//!   `HELPER_WAIT_LOOKS` of its looks (the holder's thread was preempted) and it runs
//!   rounds alongside, as without the flag.

use super::shared::{Shared, RUNNING};
use super::worker::{run_round, Round};
use crate::sync::atomic::{fence, Ordering};
use crate::Dispatch;

/// Looks at its answer (each well under a microsecond) a waiting writer takes while
/// one pass of another client's rounds lasts, before it runs rounds itself too: a pass
/// takes a few microseconds, so this bound is reached only when the holder's thread was
/// preempted mid-pass, which then delays the others by a few hundred microseconds at most.
/// (Under loom 2, so that the suite explores both running out of looks and deferring.)
pub(crate) const HELPER_WAIT_LOOKS: u32 = if cfg!(corum_loom) { 2 } else { 1024 };

/// Writes of its session behind a waited-for write (submitted after it) that make its
/// waiter defer to another client running rounds ([`help_write`]): a writer that pipelines
/// this deep is carried in large batches by those rounds. With fewer behind, batches stay
/// small and waiting gains nothing.
/// (Under loom 1, so that two writes in flight make a deep writer.)
pub(crate) const DEFER_BEHIND: u64 = if cfg!(corum_loom) { 1 } else { 16 };

/// What [`help_write`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Helped {
    /// A round did work.
    Progressed,
    /// Nothing to run.
    Idle,
    /// Another client is running rounds: look at the answer again soon.
    Deferred,
}

/// Runs one round of replica `index` for a waiting client, if the replica runs at full
/// speed, its own thread is parked, and no other thread runs its round right now.
fn help<D: Dispatch>(shared: &Shared<D>, index: usize) -> Round {
    let replica = &shared.replicas[index];
    // SeqCst fence pairs with the one between a replica thread marking itself parked and
    // looking for input (`ReplicaThread::idle`): input this thread added before (a write
    // submitted without waking, a message sent in a round it ran) is either seen by that
    // thread's look, or this thread sees the flag set and runs the round itself.
    fence(Ordering::SeqCst);
    // Relaxed: a setting, as the replica's own thread reads it; a hint.
    if replica.status() != RUNNING
        || replica.slowness_nanos.load(Ordering::Relaxed) != 0
        || !replica.parked.load(Ordering::Relaxed)
    {
        return Round::Skipped;
    }
    match replica.worker.try_take() {
        // A helper runs the peers' rounds next itself: it does not wake them. Under loom it
        // does, so that the loom suite explores replica threads racing with helpers (for
        // example a replica thread applying while a reader looks at its copy); the ticks
        // that wake them in production never come under loom's frozen clock.
        Some(mut guard) => run_round(shared, index, &mut guard, cfg!(corum_loom), false),
        None => Round::Skipped,
    }
}

/// One pass over the replicas, starting at `first` and wrapping around, running a round
/// of each that can be helped, until `done` holds; nothing unless clients run rounds
/// (`Builder::helping`). Returns whether any round did work.
pub(crate) fn help_all<D: Dispatch>(shared: &Shared<D>, first: usize, done: impl Fn() -> bool) -> bool {
    if !shared.options.helping {
        return false;
    }
    let n = shared.replicas.len();
    let mut progressed = false;
    for offset in 0..n {
        if done() {
            break;
        }
        progressed |= help(shared, (first + offset) % n) == Round::Progressed;
    }
    progressed
}

/// A waiting writer's view of `Shared::helper`: the pass it last saw running, and how many
/// looks in a row it has deferred to that pass.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Deferral {
    pass: u64,
    looks: u32,
}

/// [`help_all`] for a client waiting for its write. Where every replica has a core of its
/// own it is just that. Where replicas share cores, only one client at a time runs rounds
/// for writes (the holder of `Shared::helper`, for a pass); another one defers to it while
/// it keeps beginning passes, and runs rounds too once a single pass lasts
/// `HELPER_WAIT_LOOKS` of its looks (the holder was preempted mid-pass).
pub(crate) fn help_write<D: Dispatch>(
    shared: &Shared<D>,
    first: usize,
    deferral: &mut Deferral,
    done: impl Fn() -> bool,
) -> Helped {
    let outcome = |progressed: bool| if progressed { Helped::Progressed } else { Helped::Idle };
    if shared.options.wake_peers || !shared.options.helping {
        return outcome(help_all(shared, first, done));
    }
    let helper = &shared.helper;
    // Relaxed: a hint; the rounds' own tokens order everything they touch.
    let seen = helper.load(Ordering::Relaxed);
    let held = seen & 1 == 1;
    if !held && helper.compare_exchange(seen, seen + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
        *deferral = Deferral::default();
        // Given back however the pass ends (a panic outside the rounds' own catch too):
        // a flag left held would make every deep writer wait out its bound on every pass.
        struct EndPass<'a>(&'a crate::sync::atomic::AtomicU64, u64);
        impl Drop for EndPass<'_> {
            fn drop(&mut self) {
                self.0.store(self.1, Ordering::Relaxed);
            }
        }
        let _end = EndPass(helper, seen + 2);
        return outcome(help_all(shared, first, done));
    }
    if held {
        if deferral.pass != seen {
            *deferral = Deferral { pass: seen, looks: 0 };
        }
        if deferral.looks < HELPER_WAIT_LOOKS {
            deferral.looks += 1;
            crate::sync::spin_loop();
            return Helped::Deferred;
        }
    }
    // A pass that lasts (or a lost race for a free flag): run rounds alongside.
    outcome(help_all(shared, first, done))
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use super::*;
    use crate::runtime::test_support::Counter;
    use crate::{available_cores, Builder, Cluster};

    /// A cluster with more replicas than the machine has cores, so that they share cores
    /// and writers defer to one another; `None` where that would take more replicas than
    /// a cluster may have.
    fn sharing_cores() -> Option<Cluster<Counter>> {
        let replicas = available_cores() + 1;
        if replicas > crate::protocol::MAX_REPLICAS {
            return None;
        }
        let cluster = Builder::new(Counter::default()).replicas(replicas).build().expect("build");
        assert!(!cluster.shared.options.wake_peers, "replicas share cores");
        Some(cluster)
    }

    #[test]
    fn a_writer_defers_to_another_clients_rounds_only_while_they_keep_moving() {
        let Some(cluster) = sharing_cores() else { return };
        let shared = &cluster.shared;
        // `done` holds at once: `help_all` runs no round, so only the deferral is tested.
        let done = || true;
        // Another client began a pass and never ends it (its thread was preempted).
        shared.helper.store(1, Ordering::Relaxed);
        let mut deferral = Deferral::default();
        for look in 0..HELPER_WAIT_LOOKS {
            assert_eq!(help_write(shared, 0, &mut deferral, done), Helped::Deferred, "look {look}");
        }
        assert_ne!(
            help_write(shared, 0, &mut deferral, done),
            Helped::Deferred,
            "past the bound it runs rounds alongside the stuck pass"
        );
        // A holder that keeps beginning passes is deferred to all along.
        let mut deferral = Deferral::default();
        for pass in 1..5u64 {
            shared.helper.store(2 * pass + 1, Ordering::Relaxed);
            for look in 0..HELPER_WAIT_LOOKS {
                assert_eq!(help_write(shared, 0, &mut deferral, done), Helped::Deferred, "pass {pass} look {look}");
            }
        }
        // A free flag is taken for one pass and given back, one pass later.
        shared.helper.store(10, Ordering::Relaxed);
        assert_ne!(help_write(shared, 0, &mut Deferral::default(), done), Helped::Deferred);
        assert_eq!(shared.helper.load(Ordering::Relaxed), 12);
        cluster.shutdown().expect("shutdown");
    }
}
