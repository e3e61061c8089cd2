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
//!   over: on 16 cores, clients running rounds regardless cost 10 to 20 % of synchronous
//!   write throughput against the replica threads alone, and helping parked replicas only
//!   is within noise of them there (BENCHMARKS.md). Where threads outnumber cores, an idle
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

use super::worker::{run_round, Round};
use super::{Shared, RUNNING};
use crate::sync::atomic::{fence, Ordering};
use crate::Dispatch;

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
        Some(mut guard) => run_round(shared, index, &mut guard, cfg!(corum_loom)),
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
