//! Tests of a replica's runtime environment (`io.rs`).

use std::time::{Duration, Instant};

use crate::protocol::{Message, ReplicaId};
use crate::runtime::test_support::{Counter, NO_ELECTION_TICKS, PATIENCE};
use crate::Builder;

/// A replica whose every round has input (a leader kept busy by clients' writes, say)
/// still ticks, within `BUSY_ROUNDS_PER_LOOK` rounds; one without input at once.
#[test]
fn a_replica_with_input_every_round_still_ticks() {
    use crate::driver::Environment;

    let cluster = Builder::new(Counter::default()).replicas(3).pin(false).build().expect("build");
    let handle = cluster.handle();
    handle.execute_mut(1).expect("write");
    let index = cluster.leader().expect("a leader");
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let mut tickets = Vec::new();
    cluster.shared.replicas[index].worker.take().with(|place| {
        let super::super::worker::Worker { driver, io, .. } = place.as_mut().expect("a worker");
        // The bound the docs give (a tick late by "a few tens" of rounds at most).
        for (rounds_with_input, bound) in [(true, 16), (false, 1)] {
            let due = Instant::now();
            (io.next_tick, io.busy_rounds) = (due, 0);
            let mut rounds = 0;
            while io.next_tick == due {
                assert!(rounds < bound, "no tick after {rounds} rounds (input each round: {rounds_with_input})");
                if rounds_with_input {
                    tickets.push(handle.submit(1).expect("room on the board"));
                }
                assert_eq!(io.feed(driver.core_mut()), rounds_with_input, "whether the round had input");
                rounds += 1;
            }
        }
    });
    drop(tickets);
    cluster.shutdown().expect("shutdown");
}

/// What a crashed peer sent before it died is dropped unread, however much of it waits.
/// A follower of a dead leader that read more of its messages than one round takes
/// (after the death notice) would take them as word from a live leader and so wait out
/// the election timeout (10 minutes here) instead of replacing it after the grace (3 ms).
#[test]
fn a_follower_does_not_take_a_dead_leaders_queued_messages_as_word_from_it() {
    replaced_after_the_grace(false);
}

/// The same when the leader is restarted before the follower runs a round again, so
/// that the follower never sees it crashed: the restart count tells it, and the
/// messages from before the crash are dropped too.
#[test]
fn a_follower_that_missed_its_leaders_crash_and_restart_still_replaces_it() {
    replaced_after_the_grace(true);
}

/// A follower, behind another replica in line that stays paused, whose leader crashes
/// (and, if `restart`, comes back at once) with more messages queued for it than a
/// round takes, campaigns after the grace.
fn replaced_after_the_grace(restart: bool) {
    let cluster = Builder::new(Counter::default())
        .replicas(3)
        .tick(Duration::from_millis(1))
        .election_ticks(NO_ELECTION_TICKS)
        .build()
        .expect("build");
    cluster.handle().execute_mut(1).expect("write");
    let leader = cluster.leader().expect("a leader");
    // The follower behind the other one in line: it replaces the leader only after the
    // grace, since the one ahead of it stays paused (stalled).
    let (ahead, follower) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let shared = &cluster.shared;
    let follows_leader = || {
        shared.replicas[follower].worker.try_take().is_some_and(|mut guard| {
            guard.with(|place| {
                place.as_ref().is_some_and(|worker| worker.driver.core().leader() == Some(ReplicaId::new(leader)))
            })
        })
    };
    let started = Instant::now();
    while !follows_leader() {
        assert!(started.elapsed() < PATIENCE, "replica {follower} never followed {leader}");
        std::thread::sleep(Duration::from_millis(1));
    }
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    // The leader's last words to the follower: more commit notices than a round takes.
    shared.replicas[leader].worker.take().with(|place| {
        let worker = place.as_mut().expect("a worker");
        let core = worker.driver.core();
        let (ballot, slot_committed, slot_truncate) =
            (core.ballot_promised(), core.slot_committed(), core.slot_truncated());
        let ring = worker.io.outgoing[follower].as_mut().expect("a ring to the follower");
        for _ in 0..2 * super::INPUT_BUDGET {
            assert!(ring.push(Message::Commit { ballot, slot_committed, slot_truncate }).is_ok(), "ring full");
        }
    });
    cluster.faults().crash(leader).expect("crash");
    if restart {
        cluster.faults().restart(leader).expect("restart");
    }
    let elections = cluster.stats()[follower].elections_started;
    cluster.faults().resume(follower).expect("resume");
    let started = Instant::now();
    while cluster.stats()[follower].elections_started == elections {
        assert!(
            started.elapsed() < PATIENCE,
            "replica {follower} did not campaign after the grace (replica {ahead}, ahead of it, is stalled)"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    cluster.faults().resume(ahead).expect("resume");
    cluster.handle().execute_mut(1).expect("a write after the failover");
    cluster.shutdown().expect("shutdown");
}
