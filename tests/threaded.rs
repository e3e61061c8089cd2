//! The threaded runtime end to end: real replica threads, real client threads, checked
//! histories.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{check_copies, eventually, until_ok, Kv, KvRead, KvWrite, Rng, WriteId, PATIENCE};
use corum::{Builder, Handle, LeaderPolicy, RoleKind};

type Acked = Arc<Mutex<HashMap<WriteId, Option<u64>>>>;
type Submitted = Arc<Mutex<HashMap<WriteId, KvWrite>>>;

/// Each client owns key `1_000_000 + client`, to which only it adds 1: a linearizable read
/// of that key must return exactly the value of the client's last acknowledged add. Other
/// writes are puts on 100 shared keys. Every fourth write goes through a pipelined burst.
fn client_workload(
    handle: Handle<Kv>,
    client: u32,
    ops: u32,
    acked: Acked,
    submitted: Submitted,
    progress: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(client + 1));
    let own_key = 1_000_000 + u64::from(client);
    let mut own_value = 0u64;
    let mut number = 0u32;
    let mut next_id = || {
        number += 1;
        WriteId { client, number }
    };
    let mut done = 0;
    while done < ops && !stop.load(Ordering::Relaxed) {
        match rng.below(8) {
            0..=3 => {
                let read = handle.execute(KvRead::Get(own_key)).expect("read");
                assert_eq!(read.unwrap_or(0), own_value, "client {client} read a stale value of its own key");
                handle.execute(KvRead::Get(rng.below(100))).expect("read");
                done += 2;
            }
            4 => {
                let write = KvWrite::Add { id: next_id(), key: own_key, delta: 1 };
                submitted.lock().unwrap().insert(write.id(), write);
                let response = handle.execute_mut(write).expect("write");
                own_value += 1;
                assert_eq!(response, Some(own_value));
                acked.lock().unwrap().insert(write.id(), response);
                done += 1;
            }
            5 | 6 => {
                let write = KvWrite::Put { id: next_id(), key: rng.below(100), value: rng.next() };
                submitted.lock().unwrap().insert(write.id(), write);
                let response = handle.execute_mut(write).expect("write");
                acked.lock().unwrap().insert(write.id(), response);
                done += 1;
            }
            _ => {
                let writes: Vec<KvWrite> =
                    (0..16).map(|_| KvWrite::Put { id: next_id(), key: rng.below(100), value: rng.next() }).collect();
                submitted.lock().unwrap().extend(writes.iter().map(|w| (w.id(), *w)));
                let tickets: Vec<_> = writes.iter().map(|w| handle.submit(*w).expect("submit")).collect();
                for (write, ticket) in writes.iter().zip(tickets) {
                    let response = ticket.wait().expect("pipelined write");
                    acked.lock().unwrap().insert(write.id(), response);
                }
                done += 16;
            }
        }
        progress.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cluster of `Kv` whose calls wait up to [`PATIENCE`] (tests that need `NoQuorum` set a
/// short deadline of their own).
fn kv() -> Builder<Kv> {
    Builder::new(Kv::default()).deadline(PATIENCE)
}

/// The replica leading now, waited for (leadership may be moving).
#[track_caller]
fn leader(cluster: &corum::Cluster<Kv>) -> usize {
    eventually("a leader", || cluster.leader())
}

/// Client threads running `client_workload` against one cluster, with what they record.
struct Run {
    acked: Acked,
    submitted: Submitted,
    threads: Vec<std::thread::JoinHandle<()>>,
    progress: Arc<AtomicUsize>,
    /// Set by `finish` when the clients run `UNTIL_FINISHED`: they end after their
    /// current step.
    stop: Arc<AtomicBool>,
    until_finished: bool,
}

/// Operations enough that clients run until `Run::finish`, for tests that wait for
/// progress (`Run::wait_for`) rather than for the clients to end.
const UNTIL_FINISHED: u32 = u32::MAX;

impl Run {
    /// Starts `clients` client threads, each ending after `ops` operations (with
    /// `UNTIL_FINISHED`, at `finish`).
    fn start(cluster: &corum::Cluster<Kv>, clients: u32, ops: u32) -> Self {
        let acked: Acked = Arc::default();
        let submitted: Submitted = Arc::default();
        let progress = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|client| {
                let (handle, acked, submitted, progress, stop) = (
                    cluster.handle(),
                    Arc::clone(&acked),
                    Arc::clone(&submitted),
                    Arc::clone(&progress),
                    Arc::clone(&stop),
                );
                std::thread::spawn(move || client_workload(handle, client, ops, acked, submitted, progress, stop))
            })
            .collect();
        Self { acked, submitted, threads, progress, stop, until_finished: ops == UNTIL_FINISHED }
    }

    /// Waits until the clients made `steps` steps between them. Fails if one of them ended
    /// first: it failed (its own panic says why), or the clients ran out of work, and what
    /// the caller wanted to see happen under load would go unchecked.
    #[track_caller]
    fn wait_for(&self, steps: usize) {
        eventually("the clients' progress", || {
            if self.progress.load(Ordering::Relaxed) >= steps {
                return Some(());
            }
            assert!(
                !self.threads.iter().any(|t| t.is_finished()),
                "a client ended after {} of the {steps} steps waited for: it failed, or ran out of work",
                self.progress.load(Ordering::Relaxed)
            );
            None
        });
    }

    /// Waits until the clients made `steps` more steps between them.
    #[track_caller]
    fn wait_for_more(&self, steps: usize) {
        self.wait_for(self.progress.load(Ordering::Relaxed) + steps);
    }

    /// Joins the clients (each panics if a call failed), shuts the cluster down, and checks
    /// that `live` copies came back and agree with what the clients saw.
    fn finish(self, cluster: corum::Cluster<Kv>, live: usize) -> HashMap<WriteId, Option<u64>> {
        if self.until_finished {
            self.stop.store(true, Ordering::Relaxed);
        }
        for thread in self.threads {
            thread.join().expect("client thread: every call succeeded");
        }
        let stats = cluster.stats();
        assert!(stats.iter().all(|s| s.divergences == 0), "a deterministic copy found diverged: {stats:#?}");
        let copies = cluster.shutdown().expect("shutdown");
        assert_eq!(copies.len(), live, "live replicas returned by shutdown");
        let acked = self.acked.lock().unwrap().clone();
        check_copies(&copies, &acked, &self.submitted.lock().unwrap());
        acked
    }
}

#[test]
fn three_replicas_four_clients_100k_mixed_ops_agree_with_a_sequential_replay() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 4, 25_000);
    while run.threads.iter().any(|thread| !thread.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = cluster.stats();
    let acked = run.finish(cluster, 3);
    assert!(acked.len() > 20_000, "{} writes acknowledged", acked.len());
    let batches: u64 = stats.iter().map(|s| s.batches_proposed).sum();
    assert!(batches < acked.len() as u64, "writes were batched: {batches} batches for {} writes", acked.len());
}

/// With `Builder::helping(false)` only the replicas' own threads run their rounds (they wake
/// each other and are woken by submissions), and the same workload agrees just as well.
#[test]
fn without_helping_the_replica_threads_do_all_the_work() {
    let cluster = kv().replicas(3).helping(false).build().expect("build");
    let run = Run::start(&cluster, 4, 5_000);
    while run.threads.iter().any(|thread| !thread.is_finished()) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let acked = run.finish(cluster, 3);
    assert!(acked.len() > 4_000, "{} writes acknowledged", acked.len());
}

#[test]
fn a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost_or_doubled() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    run.wait_for(1_000);
    let old_leader = leader(&cluster);
    cluster.faults().crash(old_leader).expect("crash the leader");
    // The clients go on after the crash (their writes are checked at `finish`).
    run.wait_for_more(1_000);
    eventually("one new leader", || {
        let stats = cluster.stats();
        (stats.iter().filter(|s| s.role == RoleKind::Leader && s.replica != old_leader).count() == 1).then_some(())
    });
    run.finish(cluster, 2);
}

#[test]
fn a_crashed_follower_serving_reads_is_replaced_for_its_clients() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    run.wait_for(500);
    let leader = leader(&cluster);
    cluster.faults().crash((leader + 1) % 3).expect("crash a follower");
    run.finish(cluster, 2);
}

#[test]
fn five_replicas_survive_two_crashes() {
    let cluster = kv().replicas(5).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(300);
    let leader = leader(&cluster);
    cluster.faults().crash(leader).expect("crash");
    cluster.faults().crash((leader + 2) % 5).expect("crash");
    run.finish(cluster, 3);
}

#[test]
fn one_thread_keeps_many_writes_in_flight() {
    let cluster = kv().replicas(3).build().expect("build");
    let handle = cluster.handle();
    let mut expected = 0;
    for round in 0..100u32 {
        let tickets: Vec<_> = (0..100u32)
            .map(|i| {
                let id = WriteId { client: 0, number: round * 100 + i };
                handle.submit(KvWrite::Add { id, key: 7, delta: 1 }).expect("submit")
            })
            .collect();
        let mut responses: Vec<u64> = tickets.into_iter().map(|t| t.wait().expect("wait").expect("value")).collect();
        responses.sort_unstable();
        let want: Vec<u64> = (expected + 1..=expected + 100).collect();
        assert_eq!(responses, want, "each add saw a distinct count");
        expected += 100;
    }
    assert_eq!(handle.execute(KvRead::Get(7)).expect("read"), Some(10_000));
    // Summed over the replicas: on a loaded machine leadership may have moved meanwhile.
    let proposed: u64 = cluster.stats().iter().map(|s| s.batches_proposed).sum();
    assert!(proposed < 10_000, "pipelined writes share batches: {proposed} batches for 10,000 writes");
    cluster.shutdown().expect("shutdown");
}

#[test]
fn reads_wait_for_the_home_replica_to_catch_up() {
    // Every handle reads from its home replica; a write through one handle must be visible
    // to a read through another handle at once, whichever replica serves it.
    let cluster = kv().replicas(3).build().expect("build");
    let handles: Vec<_> = (0..3).map(|_| cluster.handle()).collect();
    for number in 0..300u32 {
        let writer = &handles[number as usize % 3];
        let id = WriteId { client: 0, number };
        writer.execute_mut(KvWrite::Put { id, key: 1, value: u64::from(number) }).expect("write");
        for reader in &handles {
            assert_eq!(reader.execute(KvRead::Get(1)).expect("read"), Some(u64::from(number)));
        }
    }
    cluster.shutdown().expect("shutdown");
}

#[test]
fn stats_describe_every_replica() {
    // Leadership stays where it is: only one leader change to count (no election timeout
    // that a thread waiting for a core could let expire, no policy to move it).
    let cluster = no_elections().leader_policy(LeaderPolicy::Any).build().expect("build");
    let handle = cluster.handle();
    for number in 0..50 {
        handle.execute_mut(KvWrite::Add { id: WriteId { client: 0, number }, key: 0, delta: 1 }).expect("write");
    }
    // Followers learn the last commit with the leader's next message; wait for it.
    let stats = eventually("every replica applied as far", || {
        let stats = cluster.stats();
        stats.iter().all(|s| s.slot_applied == stats[0].slot_applied).then_some(stats)
    });
    assert_eq!(stats.len(), 3);
    assert_eq!(stats.iter().filter(|s| s.role == RoleKind::Leader).count(), 1);
    assert!(stats.iter().all(|s| s.slot_applied.get() >= 1 && s.slot_applied == stats[0].slot_applied), "{stats:#?}");
    assert!(stats.iter().all(|s| s.status == corum::ReplicaStatus::Running));
    let leader = stats.iter().find(|s| s.role == RoleKind::Leader).expect("leader");
    assert_eq!(leader.leader_changes, 1);
    assert!(stats.iter().all(|s| s.ballot == leader.ballot));
    cluster.shutdown().expect("shutdown");
}

#[test]
fn more_replicas_than_cores_still_make_progress() {
    let replicas = corum::available_cores().max(1) * 2 + 1;
    let cluster = kv().replicas(replicas.min(9)).build().expect("build");
    let handle = cluster.handle();
    for number in 0..200 {
        handle.execute_mut(KvWrite::Add { id: WriteId { client: 0, number }, key: 0, delta: 1 }).expect("write");
    }
    assert_eq!(handle.execute(KvRead::Get(0)).expect("read"), Some(200));
    cluster.shutdown().expect("shutdown");
}

#[test]
fn eager_retries_are_applied_exactly_once() {
    // Clients resubmit every write after 50 us: most writes are committed several times,
    // and the replicated exactly-once table must apply each once.
    let cluster = kv().replicas(3).retry_after(Duration::from_micros(50)).build().expect("build");
    Run::start(&cluster, 3, 3_000).finish(cluster, 3);
}

/// Waits until `replica` has applied every slot committed so far.
fn wait_until_caught_up(cluster: &corum::Cluster<Kv>, replica: usize) {
    eventually("the replica caught up", || {
        let stats = cluster.stats();
        let committed = stats.iter().map(|s| s.slot_committed).max().expect("replicas");
        (stats[replica].slot_applied >= committed).then_some(())
    });
}

#[test]
fn a_crashed_follower_restarts_from_a_snapshot_and_catches_up() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    run.wait_for(500);
    let follower = (leader(&cluster) + 1) % 3;
    cluster.faults().crash(follower).expect("crash");
    assert!(matches!(cluster.faults().crash(follower), Ok(())), "crashing twice does nothing");
    run.wait_for(1_500);
    cluster.faults().restart(follower).expect("restart");
    assert!(
        matches!(cluster.faults().restart(follower), Err(corum::Error::FaultRefused { .. })),
        "a running replica cannot be restarted"
    );
    let stats = cluster.stats();
    assert_eq!(stats[follower].status, corum::ReplicaStatus::Running);
    assert!(stats[follower].snapshots_installed >= 1, "{stats:#?}");
    run.finish(cluster, 3);
}

#[test]
fn a_crashed_leader_restarts_and_the_cluster_keeps_all_three_copies() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    run.wait_for(500);
    let leader = leader(&cluster);
    cluster.faults().crash(leader).expect("crash");
    run.wait_for(1_500);
    cluster.faults().restart(leader).expect("restart");
    run.wait_for(2_500);
    wait_until_caught_up(&cluster, leader);
    run.finish(cluster, 3);
}

#[test]
fn a_paused_replica_does_not_hold_the_log_back_and_catches_up_by_snapshot() {
    let window = 64;
    // Small rings, so that what the paused replica misses cannot all wait in its inbox.
    let cluster = kv().replicas(3).log_window(window).ring_capacity(64).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(200);
    let paused = (leader(&cluster) + 1) % 3;
    cluster.faults().pause(paused).expect("pause");
    let applied_at_pause = cluster.stats()[paused].slot_applied.get();
    // Let the others commit far more than the window while the replica sleeps.
    let mut largest_log = 0;
    eventually("the others committed 400 windows", || {
        let stats = cluster.stats();
        largest_log =
            largest_log.max(stats.iter().filter(|s| s.replica != paused).map(|s| s.log_len).max().unwrap_or(0));
        let committed = stats.iter().map(|s| s.slot_committed.get()).max().unwrap_or(0);
        assert!(!run.threads.iter().any(|t| t.is_finished()), "a client ended (it failed) before the log moved on");
        (committed > applied_at_pause + 400 * window).then_some(())
    });
    assert_eq!(cluster.stats()[paused].slot_applied.get(), applied_at_pause, "a paused replica applies nothing");
    // Entries are freed at each heartbeat: the log holds the window plus what commits
    // between two heartbeats (a few windows here), not the 400 windows committed since the
    // pause, which it would hold if the paused replica held it back. The bound, half of
    // that, leaves room for heartbeats delayed by a loaded machine.
    assert!(largest_log < 200 * window, "the log grew to {largest_log} entries while a replica was paused");
    cluster.faults().resume(paused).expect("resume");
    wait_until_caught_up(&cluster, paused);
    // Its statistics are published at the end of the round that installed the snapshot,
    // after the applied slot.
    eventually("caught up from a snapshot", || (cluster.stats()[paused].snapshots_installed >= 1).then_some(()));
    run.finish(cluster, 3);
}

#[test]
fn a_slow_leader_steps_down_and_a_responsive_replica_takes_over() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(300);
    let slow = leader(&cluster);
    // Past half an election timeout (50 ms by default) per round.
    cluster.faults().slow(slow, Duration::from_millis(80)).expect("slow");
    eventually("a responsive replica leads in a higher ballot", || {
        let stats = cluster.stats();
        stats
            .iter()
            .any(|s| s.replica != slow && s.role == RoleKind::Leader && s.ballot > stats[slow].ballot)
            .then_some(())
    });
    cluster.faults().slow(slow, Duration::ZERO).expect("full speed");
    run.finish(cluster, 3);
}

#[test]
fn a_lost_majority_fails_calls_with_no_quorum_until_it_is_back() {
    let cluster = kv().replicas(3).deadline(Duration::from_millis(300)).build().expect("build");
    let handle = cluster.handle();
    let put = |number: u32, value: u64| KvWrite::Put { id: WriteId { client: 0, number }, key: 1, value };
    assert_eq!(until_ok("the first write", || handle.execute_mut(put(0, 10))), None);
    let leader = leader(&cluster);
    cluster.faults().crash((leader + 1) % 3).expect("crash");
    cluster.faults().crash((leader + 2) % 3).expect("crash");
    assert!(matches!(handle.execute_mut(put(1, 11)), Err(corum::Error::NoQuorum { .. })));
    cluster.faults().restart((leader + 1) % 3).expect("restart");
    // The write that timed out may take effect (its outcome is unknown), but nothing
    // acknowledged is lost: the next write replaces 10 or 11 (or 12, where an attempt of it
    // ran out of the short deadline on a loaded machine, and took effect).
    let replaced = until_ok("a write once a majority is back", || handle.execute_mut(put(2, 12)));
    assert!(matches!(replaced, Some(10..=12)), "{replaced:?}");
    assert_eq!(until_ok("a read", || handle.execute(KvRead::Get(1))), Some(12));
    let copies = cluster.shutdown().expect("shutdown");
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|copy| copy.map.get(&1) == Some(&12)));
}

// ----- leadership: failover on death, transfer ------------------------------------------

/// A cluster whose election timeout (10 minutes) is far beyond its calls' deadline
/// ([`PATIENCE`], 2 minutes): a write that completes after the leader died was served by a
/// replica that took over on the death notice, not on the timeout, however loaded the
/// machine. (How fast failover is, `examples/faults.rs` measures.)
fn no_election_timeout_within_the_deadline() -> Builder<Kv> {
    kv().replicas(3).tick(Duration::from_millis(1)).election_ticks(600_000)
}

#[test]
fn a_dead_leader_is_replaced_at_once_not_after_the_election_timeout() {
    let cluster = no_election_timeout_within_the_deadline().build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    for _ in 0..3 {
        run.wait_for_more(200);
        let leader = leader(&cluster);
        cluster.faults().crash(leader).expect("crash the leader");
        run.wait_for_more(200);
        cluster.faults().restart(leader).expect("restart");
    }
    run.finish(cluster, 3);
}

#[test]
fn leadership_moves_where_it_is_asked_to_under_load_and_nothing_is_lost() {
    // Under `Any` and with no election timeout, only the transfers move leadership.
    let cluster = no_elections().leader_policy(LeaderPolicy::Any).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    for round in 0..12 {
        run.wait_for_more(50);
        let to = round % 3;
        cluster.transfer_leadership(to).expect("transfer");
        let stats = cluster.stats();
        assert_eq!(stats[to].role, RoleKind::Leader, "{stats:#?}");
    }
    run.finish(cluster, 3);
}

#[test]
fn a_transfer_to_a_stopped_or_unknown_replica_is_refused() {
    // A short deadline, to see a transfer without a majority fail; under `Any`, only the
    // transfers move leadership.
    let cluster =
        no_elections().deadline(Duration::from_millis(300)).leader_policy(LeaderPolicy::Any).build().expect("build");
    // Right after start no replica may lead yet: replica 1 is elected at once.
    until_ok("elect replica 1", || cluster.transfer_leadership(1));
    let leader = leader(&cluster);
    assert_eq!(leader, 1);
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    assert_eq!(cluster.transfer_leadership(3), Err(corum::Error::NoSuchReplica { replica: 3, replicas: 3 }));
    assert_eq!(until_ok("the leader leads already", || cluster.transfer_leadership(leader)), ());
    cluster.faults().pause(a).expect("pause");
    assert_eq!(
        cluster.transfer_leadership(a),
        Err(corum::Error::ReplicaDown { replica: a, status: corum::ReplicaStatus::Paused })
    );
    cluster.faults().resume(a).expect("resume");
    cluster.faults().crash(a).expect("crash");
    assert_eq!(
        cluster.transfer_leadership(a),
        Err(corum::Error::ReplicaDown { replica: a, status: corum::ReplicaStatus::Crashed })
    );
    // With `a` crashed and the leader paused, `b` alone is no majority.
    cluster.faults().pause(leader).expect("pause");
    assert!(matches!(cluster.transfer_leadership(b), Err(corum::Error::NoQuorum { .. })));
    cluster.faults().resume(leader).expect("resume");
    until_ok("a majority runs again", || cluster.transfer_leadership(b));
    assert_eq!(cluster.leader(), Some(b));
}

#[test]
fn transfers_racing_crashes_lose_and_double_nothing() {
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 3, UNTIL_FINISHED);
    for round in 0..8 {
        run.wait_for_more(50);
        let leader = cluster.leader().unwrap_or(0);
        // Half the time the old leader crashes, half the time the target does.
        let to = (leader + 1) % 3;
        let victim = if round % 2 == 0 { leader } else { to };
        std::thread::scope(|scope| {
            let transfer = scope.spawn(|| cluster.transfer_leadership(to));
            std::thread::sleep(Duration::from_micros(50 * (round as u64 % 4)));
            cluster.faults().crash(victim).expect("crash");
            match transfer.join().expect("transfer thread") {
                Ok(()) => {}
                Err(corum::Error::ReplicaDown { replica, .. }) => assert_eq!(replica, victim),
                Err(error) => panic!("transfer to {to} racing a crash of {victim}: {error}"),
            }
        });
        cluster.faults().restart(victim).expect("restart");
    }
    run.finish(cluster, 3);
}

// ----- leadership follows the fastest core ----------------------------------------------
//
// The policy's decision is a pure function, tested deterministically in
// `src/runtime/leadership.rs` (a hand-over after three checks in a row, none back, none
// between replicas slowed or stopped alike). These tests check that what the replica threads
// measure reaches it and that leadership moves as it says. They assert no exact number of
// leader changes: on a loaded machine a thread's rounds really do run slower now and then,
// and the policy may rightly act on it.

/// A cluster whose election timeout (10 minutes) no test here outlasts: only the leader
/// policy (or a transfer, or a death) moves leadership. (The policy checks every tenth of
/// an election timeout, so the tests of its hand-overs keep the default one.)
fn no_elections() -> Builder<Kv> {
    kv().replicas(3).tick(Duration::from_millis(1)).election_ticks(600_000)
}

#[test]
fn a_slowed_leader_hands_leadership_to_a_faster_replica() {
    // The policy checks every tenth of an election timeout: the default one (100 ms), which
    // the slowed leader's heartbeats (every 10 of its 2 ms rounds) keep from expiring.
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(300);
    let slow = leader(&cluster);
    // 2 ms per round: far below the step-down limit (half an election timeout), so only
    // the leader policy moves leadership.
    cluster.faults().slow(slow, Duration::from_millis(2)).expect("slow");
    // Leadership leaves it once its slowness was measured. On a loaded machine it may move
    // sooner for another reason (an election while the threads wait for a core): then it
    // is given back.
    eventually("leadership leaves the slowed replica, its slowness measured", || {
        let moved = cluster.leader().is_some_and(|leader| leader != slow);
        let measured = cluster.stats()[slow].round_time >= Duration::from_millis(1);
        if moved && !measured {
            // A refused or late transfer is tried again at the next look.
            let _ = cluster.transfer_leadership(slow);
        }
        (moved && measured).then_some(())
    });
    cluster.faults().slow(slow, Duration::ZERO).expect("full speed");
    run.finish(cluster, 3);
}

/// Pauses `replica` for 5 ms, then lets it run for 45 ms (a core taken away a tenth of
/// the time).
fn pause_once(cluster: &corum::Cluster<Kv>, replica: usize) {
    cluster.faults().pause(replica).expect("pause");
    std::thread::sleep(Duration::from_millis(5));
    cluster.faults().resume(replica).expect("resume");
    std::thread::sleep(Duration::from_millis(45));
}

#[test]
fn a_leader_that_keeps_being_paused_hands_leadership_to_a_replica_that_is_not() {
    // As above: pauses of 5 ms are far below the default election timeout (100 ms).
    let cluster = kv().replicas(3).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(300);
    let noisy = leader(&cluster);
    // Its core keeps being taken away until leadership has moved away from it with its
    // pauses counted (15 ms or more). On a loaded machine leadership may move sooner for
    // another reason (an election while the threads wait for a core, a leader that runs
    // late): then it is given back, and the pauses go on. The policy moves it within a
    // few pauses (its share of the time stopped, a tenth, is twice the threshold); without
    // the policy it stays for thousands.
    let mut pauses = 0;
    eventually("leadership leaves the replica that keeps stopping", || {
        if cluster.leader() != Some(noisy) {
            // A refused or late transfer is tried again at the next turn.
            let _ = cluster.transfer_leadership(noisy);
            return None;
        }
        assert!(pauses < 200, "replica {noisy} kept leading through {pauses} pauses");
        pause_once(&cluster, noisy);
        pauses += 1;
        let counted = cluster.stats()[noisy].stalled >= Duration::from_millis(15);
        (counted && cluster.leader().is_some_and(|leader| leader != noisy)).then_some(())
    });
    run.finish(cluster, 3);
}

#[test]
fn every_replicas_slowness_and_stalls_are_measured() {
    let cluster = no_elections().leader_policy(LeaderPolicy::Any).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(200);
    for replica in 0..3 {
        cluster.faults().slow(replica, Duration::from_micros(500)).expect("slow");
    }
    eventually("every replica's rounds measured slow", || {
        cluster.stats().iter().all(|s| s.round_time >= Duration::from_micros(400)).then_some(())
    });
    for replica in 0..3 {
        cluster.faults().slow(replica, Duration::ZERO).expect("full speed");
    }
    // Each replica in turn, 5 ms stopped and 10 ms running, until each was counted
    // stopped for 40 ms: eight of its pauses, of at most fifteen (a thread that waited for
    // a core through a whole pause never saw it).
    let mut turn = 0;
    while !cluster.stats().iter().all(|s| s.stalled >= Duration::from_millis(40)) {
        assert!(turn < 45, "after {turn} pauses, not every replica was counted stopped: {:#?}", cluster.stats());
        cluster.faults().pause(turn % 3).expect("pause");
        std::thread::sleep(Duration::from_millis(5));
        cluster.faults().resume(turn % 3).expect("resume");
        std::thread::sleep(Duration::from_millis(10));
        turn += 1;
    }
    run.finish(cluster, 3);
}

#[test]
fn with_any_leader_a_paused_or_slowed_leader_keeps_leading() {
    let cluster = no_elections().leader_policy(LeaderPolicy::Any).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    run.wait_for(200);
    let noisy = leader(&cluster);
    for _ in 0..12 {
        pause_once(&cluster, noisy);
    }
    cluster.faults().slow(noisy, Duration::from_millis(2)).expect("slow");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(cluster.leader(), Some(noisy), "{:#?}", cluster.stats());
    cluster.faults().slow(noisy, Duration::ZERO).expect("full speed");
    run.finish(cluster, 3);
}

#[test]
fn a_preferred_replica_leads_whenever_it_runs() {
    let cluster = kv().replicas(3).leader_policy(LeaderPolicy::Prefer(1)).build().expect("build");
    let run = Run::start(&cluster, 2, UNTIL_FINISHED);
    eventually("replica 1 leads", || (cluster.leader() == Some(1)).then_some(()));
    run.wait_for(200);
    cluster.faults().crash(1).expect("crash");
    eventually("another replica leads", || cluster.leader().filter(|&leader| leader != 1));
    run.wait_for_more(100);
    cluster.faults().restart(1).expect("restart");
    eventually("replica 1 leads again", || (cluster.leader() == Some(1)).then_some(()));
    run.finish(cluster, 3);
}

/// A handle whose lane is full of answered writes nobody has looked at yet (their tickets
/// not waited for) still submits: the session keeps their answers aside, and each ticket
/// then returns its own.
#[test]
fn answers_not_yet_taken_never_block_a_submission() {
    let cluster = kv().submission_capacity(2).build().expect("build");
    let handle = cluster.handle();
    let put = |number: u32| KvWrite::Put { id: WriteId { client: 0, number }, key: u64::from(number), value: 10 };
    let tickets: Vec<_> = (0..2).map(|number| handle.submit(put(number)).expect("submit")).collect();
    eventually("both answered", || tickets.iter().all(corum::Ticket::is_done).then_some(()));
    // Both berths hold answers nobody took: these reuse them.
    let later: Vec<_> = (2..6).map(|number| handle.submit(put(number)).expect("submit past a full lane")).collect();
    for ticket in tickets.into_iter().chain(later) {
        assert_eq!(ticket.wait(), Ok(None), "a ticket got another write's answer");
    }
    for key in 0..6 {
        assert_eq!(handle.execute(KvRead::Get(key)), Ok(Some(10)));
    }
    drop(handle);
    cluster.shutdown().expect("shutdown");
}

/// A counter whose reads can be told to stop inside `dispatch` until a gate opens, as a
/// reader descheduled in the middle of its read would.
#[derive(Clone)]
struct Gated {
    value: u64,
    gate: Arc<(Mutex<bool>, std::sync::Condvar)>,
    inside: Arc<AtomicUsize>,
}

impl corum::Dispatch for Gated {
    /// Whether the read stops at the gate.
    type ReadOp = bool;
    type WriteOp = u64;
    type Response = u64;

    fn dispatch(&self, &stop: &bool) -> u64 {
        if stop {
            self.inside.fetch_add(1, Ordering::SeqCst);
            let (open, opened) = &*self.gate;
            let mut open = open.lock().expect("gate");
            while !*open {
                open = opened.wait(open).expect("gate");
            }
        }
        self.value
    }

    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.value += add;
        self.value
    }
}

/// A reader stuck inside `dispatch` on every copy holds back what the copies apply, never
/// the replicas' votes: the writes still commit (the leader stays, the commit index moves
/// past what any copy applied), and once the readers leave, every copy applies them and
/// every write is answered. (A replica that waited for its readers inside its round would
/// stop voting: nothing past the first write would commit.)
#[test]
fn a_reader_stuck_inside_dispatch_holds_back_its_copy_never_the_votes() {
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let object = Gated { value: 0, gate: Arc::clone(&gate), inside: Arc::clone(&inside) };
    let cluster = Builder::new(object).replicas(3).pin(false).build().expect("build");
    let writer = cluster.handle();
    assert_eq!(writer.execute_mut(1), Ok(1));
    let leader = eventually("a leader", || cluster.leader());
    // Three sessions homed on the three copies (homes go round the replicas by client id),
    // each reading its home copy without waiting for a watermark.
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let handle = cluster.handle();
            std::thread::spawn(move || handle.execute_stale(true))
        })
        .collect();
    eventually("a reader inside every copy", || (inside.load(Ordering::SeqCst) == 3).then_some(()));
    let applied: Vec<_> = cluster.stats().iter().map(|stats| stats.slot_applied).collect();
    // Two waves, each committed in a slot of its own: the leader goes on voting, round
    // after round, with no copy free to apply.
    let mut tickets = Vec::new();
    let mut committed = applied[leader];
    for _ in 0..2 {
        tickets.extend((0..10).map(|_| writer.submit(1).expect("submit")));
        committed = eventually("the writes commit while no copy can apply them", || {
            let now = cluster.stats()[leader].slot_committed;
            (now > committed).then_some(now)
        });
    }
    assert_eq!(cluster.leader(), Some(leader), "the leader kept leading");
    let stats = cluster.stats();
    for (replica, before) in applied.iter().enumerate() {
        assert_eq!(stats[replica].slot_applied, *before, "replica {replica} applied with a reader inside");
    }
    assert!(stats[leader].applies_put_off > 0, "the leader's stats show no apply put off");
    assert!(tickets.iter().all(|ticket| !ticket.is_done()), "a write was answered with no copy applying");
    *gate.0.lock().expect("gate") = true;
    gate.1.notify_all();
    for reader in readers {
        // A stale read of a copy that had applied the first write, or not yet.
        let read = reader.join().expect("reader");
        assert!(matches!(read, Ok(0 | 1)), "{read:?}");
    }
    let answers: Vec<u64> = tickets.into_iter().map(|ticket| ticket.wait().expect("write")).collect();
    assert_eq!(answers, (2..22).collect::<Vec<_>>());
    assert_eq!(writer.execute(false), Ok(21));
    drop(writer);
    let copies = cluster.shutdown().expect("shutdown");
    assert!(copies.iter().all(|copy| copy.value == 21));
}

/// A reader that stays in the leader's copy for longer than a whole log window of writes:
/// the leader puts off applying until `log_window` slots wait, then its own thread's round
/// waits for the reader, so it stops voting; its followers elect another leader, which
/// goes on committing and answering every write. The writer, which runs rounds for parked
/// replicas, never runs that waiting round (it would be stuck behind the reader: this test
/// hung so before). Once the reader leaves, the old leader applies what it owes and
/// catches up, and every copy ends equal.
#[test]
fn a_reader_in_the_leaders_copy_for_a_whole_window_moves_leadership() {
    const WINDOW: u64 = 8;
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let inside = Arc::new(AtomicUsize::new(0));
    let object = Gated { value: 0, gate: Arc::clone(&gate), inside: Arc::clone(&inside) };
    let cluster = Builder::new(object)
        .replicas(3)
        .pin(false)
        .log_window(WINDOW)
        .election_ticks(20)
        .deadline(PATIENCE)
        .build()
        .expect("build");
    let writer = cluster.handle();
    assert_eq!(writer.execute_mut(1), Ok(1));
    let leader = eventually("a leader", || cluster.leader());
    // A session homed on the leader's copy (homes go round the replicas by client id).
    let reader = std::iter::repeat_with(|| cluster.handle())
        .find(|handle| handle.client_id() % 3 == leader as u64)
        .expect("a handle homed on the leader");
    let reader = std::thread::spawn(move || reader.execute_stale(true));
    eventually("a reader inside the leader's copy", || (inside.load(Ordering::SeqCst) == 1).then_some(()));
    let applied_before = cluster.stats()[leader].slot_applied;
    // One write at a time, each in a slot of its own: far more than a window.
    for expected in 2..(2 + 4 * WINDOW) {
        assert_eq!(writer.execute_mut(1), Ok(expected));
    }
    let new_leader = eventually("another leader", || cluster.leader().filter(|&now| now != leader));
    let stats = cluster.stats();
    assert!(
        stats[leader].slot_applied.get() <= applied_before.get() + WINDOW,
        "replica {leader} applied {:?} with a reader inside (from {applied_before:?})",
        stats[leader].slot_applied
    );
    assert!(stats[new_leader].slot_applied > stats[leader].slot_applied);
    assert!(stats[leader].applies_put_off > 0, "the old leader's stats show no apply put off");
    *gate.0.lock().expect("gate") = true;
    gate.1.notify_all();
    assert!(matches!(reader.join().expect("reader"), Ok(1)), "the stale read saw the first write");
    let target = cluster.stats()[new_leader].slot_applied;
    eventually("the old leader catches up", || (cluster.stats()[leader].slot_applied >= target).then_some(()));
    assert_eq!(writer.execute(false), Ok(1 + 4 * WINDOW));
    drop(writer);
    let copies = cluster.shutdown().expect("shutdown");
    assert!(copies.iter().all(|copy| copy.value == 1 + 4 * WINDOW));
}
