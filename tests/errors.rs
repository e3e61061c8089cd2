//! Every misuse and fault a user can cause gets a typed error, never a hang or a panic in a
//! replica thread.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, until_ok, Kv, KvRead, KvWrite, WriteId, PATIENCE};
use corum::{Builder, ConfigError, Error, ReplicaStatus};

fn id(number: u32) -> WriteId {
    WriteId { client: 0, number }
}

#[test]
fn zero_replicas_is_a_config_error() {
    let error = Builder::new(Kv::default()).replicas(0).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::ZeroReplicas));
}

#[test]
fn too_many_replicas_is_a_config_error() {
    let error = Builder::new(Kv::default()).replicas(65).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::TooManyReplicas { requested: 65, max: 64 }));
}

#[test]
fn a_preferred_leader_outside_the_cluster_is_a_config_error() {
    let error =
        Builder::new(Kv::default()).replicas(3).leader_policy(corum::LeaderPolicy::Prefer(3)).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::PreferredReplicaMissing { replica: 3, replicas: 3 }));
}

#[test]
fn a_core_that_does_not_exist_is_a_config_error() {
    let available = corum::available_cores();
    let error = Builder::new(Kv::default()).cores([0, available + 7]).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::CoreUnavailable { core: available + 7, available }));
    let error = Builder::new(Kv::default()).cores([]).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::NoCores));
}

#[test]
fn zero_sizes_and_durations_are_config_errors() {
    let cases: Vec<(Builder<Kv>, &str)> = vec![
        (Builder::new(Kv::default()).batch_max(0), "batch_max"),
        (Builder::new(Kv::default()).window(0), "window"),
        (Builder::new(Kv::default()).ring_capacity(0), "ring_capacity"),
        (Builder::new(Kv::default()).submission_capacity(0), "submission_capacity"),
        (Builder::new(Kv::default()).heartbeat_ticks(0), "heartbeat_ticks"),
        (Builder::new(Kv::default()).tick(Duration::ZERO), "tick"),
        (Builder::new(Kv::default()).deadline(Duration::ZERO), "deadline"),
        (Builder::new(Kv::default()).retry_after(Duration::ZERO), "retry_after"),
    ];
    for (builder, setting) in cases {
        assert_eq!(builder.build().unwrap_err(), Error::Config(ConfigError::Zero { setting }));
    }
    let max = Duration::from_secs(24 * 60 * 60);
    let error = Builder::new(Kv::default()).deadline(Duration::MAX).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::TooLong { setting: "deadline", max }));
    let error = Builder::new(Kv::default()).tick(max * 2).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::TooLong { setting: "tick", max }));
    let error = Builder::new(Kv::default()).heartbeat_ticks(10).election_ticks(10).build().unwrap_err();
    assert_eq!(error, Error::Config(ConfigError::ElectionNotAboveHeartbeat));
}

#[test]
fn every_call_after_shutdown_is_refused() {
    let cluster = Builder::new(Kv::default()).replicas(3).deadline(PATIENCE).build().expect("build");
    let handle = cluster.handle();
    handle.execute_mut(KvWrite::Put { id: id(0), key: 1, value: 1 }).expect("write before shutdown");
    cluster.shutdown().expect("shutdown");
    assert_eq!(handle.execute_mut(KvWrite::Put { id: id(1), key: 1, value: 2 }), Err(Error::Shutdown));
    assert_eq!(handle.submit(KvWrite::Put { id: id(2), key: 1, value: 2 }).unwrap_err(), Error::Shutdown);
    assert_eq!(handle.execute(KvRead::Get(1)), Err(Error::Shutdown));
    assert_eq!(handle.execute_stale(KvRead::Get(1)), Err(Error::Shutdown));
    assert_eq!(handle.clone().execute(KvRead::Get(1)), Err(Error::Shutdown));
}

#[test]
fn dropping_a_cluster_stops_it_and_its_handles_get_errors() {
    let cluster = Builder::new(Kv::default()).replicas(3).deadline(PATIENCE).build().expect("build");
    let handle = cluster.handle();
    drop(cluster);
    assert_eq!(handle.execute_mut(KvWrite::Put { id: id(0), key: 1, value: 1 }), Err(Error::Shutdown));
}

#[test]
fn fault_injection_on_a_missing_replica_is_an_error() {
    let cluster = Builder::new(Kv::default()).replicas(3).deadline(PATIENCE).build().expect("build");
    assert_eq!(cluster.faults().crash(3), Err(Error::NoSuchReplica { replica: 3, replicas: 3 }));
    assert_eq!(cluster.faults().pause(9), Err(Error::NoSuchReplica { replica: 9, replicas: 3 }));
    assert_eq!(cluster.faults().restart(4), Err(Error::NoSuchReplica { replica: 4, replicas: 3 }));
    assert!(matches!(cluster.faults().restart(0), Err(Error::FaultRefused { replica: 0, .. })), "0 is running");
    cluster.shutdown().expect("shutdown");
}

#[test]
fn without_a_majority_writes_fail_with_no_quorum_within_the_deadline() {
    let deadline = Duration::from_millis(300);
    // Under `Any` and with no election timeout (10 minutes), leadership stays where it is,
    // however long a thread waits for a core.
    let cluster = Builder::new(Kv::default())
        .replicas(3)
        .deadline(deadline)
        .tick(Duration::from_millis(1))
        .election_ticks(600_000)
        .leader_policy(corum::LeaderPolicy::Any)
        .build()
        .expect("build");
    let handle = cluster.handle();
    until_ok("a write with a majority", || handle.execute_mut(KvWrite::Put { id: id(0), key: 1, value: 1 }));
    // The leader survives: it applied everything committed.
    let leader = eventually("a leader", || cluster.leader());
    for replica in (0..3).filter(|&replica| replica != leader) {
        cluster.faults().crash(replica).expect("crash");
    }
    let started = Instant::now();
    let outcome = handle.execute_mut(KvWrite::Put { id: id(1), key: 1, value: 2 });
    let waited = started.elapsed();
    assert!(matches!(outcome, Err(Error::NoQuorum { .. })), "{outcome:?}");
    assert!(waited >= deadline, "failed only after the deadline: {waited:?}");
    assert!(waited < deadline + PATIENCE / 4, "and not much later: {waited:?}");
    // Reads of what was committed still succeed: the survivor applied it.
    assert_eq!(handle.execute(KvRead::Get(1)), Ok(Some(1)));
    let stats = cluster.stats();
    assert_eq!(stats[(leader + 1) % 3].status, ReplicaStatus::Crashed);
    let copies = cluster.shutdown().expect("the survivor applied everything committed");
    assert_eq!(copies.len(), 1);
    assert_eq!(copies[0].map.get(&1), Some(&1), "the write that timed out never committed");
}

/// A deadline long enough that a write's start is read from the coarse clock (on Linux,
/// at least 256 of its ticks): the write still fails with `NoQuorum` at about its deadline,
/// neither at once nor early by more than the coarse clock's slack (a timer tick that the
/// kernel may run late; 50 ms is far more than either).
#[test]
fn a_long_deadline_read_from_the_coarse_clock_still_holds() {
    let deadline = Duration::from_millis(1_200);
    let cluster = Builder::new(Kv::default()).replicas(3).deadline(deadline).build().expect("build");
    let handle = cluster.handle();
    until_ok("a write with a majority", || handle.execute_mut(KvWrite::Put { id: id(0), key: 1, value: 1 }));
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let started = Instant::now();
    let outcome = handle.execute_mut(KvWrite::Put { id: id(1), key: 1, value: 2 });
    let waited = started.elapsed();
    assert!(matches!(outcome, Err(Error::NoQuorum { .. })), "{outcome:?}");
    assert!(waited + Duration::from_millis(50) >= deadline, "failed {waited:?} into a deadline of {deadline:?}");
    for replica in 0..3 {
        cluster.faults().resume(replica).expect("resume");
    }
    drop(handle);
    cluster.shutdown().expect("shutdown");
}

#[test]
fn a_panicking_write_fails_alone_and_the_replicas_stay_equal() {
    let cluster = Builder::new(Kv::default()).replicas(3).deadline(PATIENCE).build().expect("build");
    let handle = cluster.handle();
    handle.execute_mut(KvWrite::Add { id: id(0), key: 5, delta: 1 }).expect("write");
    assert_eq!(handle.execute_mut(KvWrite::Explode { id: id(1) }), Err(Error::OperationPanicked));
    // The cluster keeps serving, and applies the next write once.
    assert_eq!(handle.execute_mut(KvWrite::Add { id: id(2), key: 5, delta: 1 }), Ok(Some(2)));
    assert_eq!(handle.execute(KvRead::Get(5)), Ok(Some(2)));
    let copies = cluster.shutdown().expect("shutdown");
    assert_eq!(copies.len(), 3);
    assert!(copies.iter().all(|copy| copy == &copies[0]), "replicas equal after the panic");
    assert_eq!(copies[0].history.len(), 3, "the panicking write is recorded once, like every other");
}

#[test]
fn a_panicking_read_is_an_error_for_its_caller_only() {
    #[derive(Clone, Default)]
    struct Fragile;
    impl corum::Dispatch for Fragile {
        type ReadOp = bool;
        type WriteOp = ();
        type Response = u8;
        fn dispatch(&self, explode: &bool) -> u8 {
            assert!(!explode, "a planned panic in dispatch");
            1
        }
        fn dispatch_mut(&mut self, _: &()) -> u8 {
            2
        }
    }
    let cluster = Builder::new(Fragile).replicas(3).deadline(PATIENCE).build().expect("build");
    let handle = cluster.handle();
    assert_eq!(handle.execute(true), Err(Error::OperationPanicked));
    assert_eq!(handle.execute(false), Ok(1));
    assert_eq!(handle.execute_mut(()), Ok(2));
    cluster.shutdown().expect("shutdown");
}

/// More handles writing than the board has lanes: the first write of one handle too many
/// fails with a typed error and submits nothing; once a writing handle is dropped, its
/// lane serves the next.
#[test]
fn a_handle_past_the_boards_lanes_gets_a_typed_error_until_a_lane_is_free() {
    let cluster = Builder::new(Kv::default()).replicas(3).pin(false).writing_handles(1).build().expect("build");
    let first = cluster.handle();
    let second = cluster.handle();
    assert_eq!(first.execute_mut(KvWrite::Put { id: id(0), key: 1, value: 1 }), Ok(None));
    let refused = second.execute_mut(KvWrite::Put { id: WriteId { client: 1, number: 0 }, key: 2, value: 2 });
    assert_eq!(refused, Err(Error::TooManyWriters { lanes: 1 }));
    assert_eq!(second.execute(KvRead::Get(2)), Ok(None), "the refused write was applied");
    // Reads need no lane.
    assert_eq!(second.execute(KvRead::Get(1)), Ok(Some(1)));
    drop(first);
    assert_eq!(second.execute_mut(KvWrite::Put { id: WriteId { client: 1, number: 1 }, key: 2, value: 2 }), Ok(None));
    cluster.shutdown().expect("shutdown");
}
