//! A disk that fills (`Builder::min_free_disk`, measured through the test hook
//! `free_disk_probe`): the node stays up, refuses what it cannot store with a typed error
//! or a refusal its leader retries, and loses nothing acknowledged.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Cluster;
use corum_raft::Error;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_writes_and_loses_nothing_acknowledged() {
    let cluster = Cluster::start(3, 10_000).await;
    let client = cluster.remote_client(Duration::from_secs(3));
    let mut acknowledged = 0u64;
    let write = async |acknowledged: &mut u64| {
        let result = client.execute_mut((1, 1)).await;
        if result.is_ok() {
            *acknowledged += 1;
        }
        result
    };
    assert_eq!(write(&mut acknowledged).await.unwrap(), 1);
    let leader = cluster.leader().await;
    let (a, b) = ((leader + 1) % 3, (leader + 2) % 3);
    let full = 1 << 20;

    // The leader's disk: refused at once with a typed error, not proposed.
    cluster.free[leader].store(full, Ordering::Relaxed);
    let refused = write(&mut acknowledged).await;
    assert!(
        matches!(refused, Err(Error::DiskFull { node, free }) if node == leader as u64 + 1 && free == full),
        "{refused:?}"
    );
    cluster.free[leader].store(u64::MAX, Ordering::Relaxed);

    // One follower's disk: the leader and the other follower commit; the full one takes
    // no entries but keeps its leader (heartbeats go on).
    cluster.free[a].store(full, Ordering::Relaxed);
    for _ in 0..5 {
        write(&mut acknowledged).await.expect("a majority has room");
    }
    assert!(cluster.node(a).metrics().refused_for_space > 0, "the full follower took entries");
    assert_eq!(cluster.leader().await, leader, "a full follower disturbed the leader");

    // Both followers' disks: nothing commits; the write fails with a typed error after
    // its timeout, and every node stays up.
    cluster.free[b].store(full, Ordering::Relaxed);
    let stuck = write(&mut acknowledged).await;
    assert!(matches!(stuck, Err(Error::NoQuorum { .. })), "{stuck:?}");

    // Room again: the followers take the entries they refused, the write that failed
    // may commit too (its outcome was unknown), and nothing acknowledged is lost.
    cluster.free[a].store(u64::MAX, Ordering::Relaxed);
    cluster.free[b].store(u64::MAX, Ordering::Relaxed);
    let after = client.execute_mut((1, 1)).await.expect("writes go on once there is room");
    acknowledged += 1;
    assert!(after == acknowledged || after == acknowledged + 1, "{after} after {acknowledged} acknowledged");
    let copy = cluster.converged().await;
    assert_eq!(copy.0.get(&1).copied(), Some(after));
    cluster.shutdown().await;
}
