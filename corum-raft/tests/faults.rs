//! Network faults between nodes, through the fault proxy (`common/proxy.rs`): a leader
//! blackholed (no reset, as when its machine dies), a one-way partition, and delay, loss
//! and reordering of frames while clients run, with their history checked for
//! linearizability. The proxy reads the wire's frames: these runs use the plaintext wire.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::Fault;
use common::{Cluster, Counters};
use corum::sim::linearizability::{check, Call};

/// The leader the nodes other than `but` agree on, once they do and it is not `but`.
async fn leader_without(cluster: &Cluster, but: usize) -> usize {
    let deadline = Instant::now() + common::PATIENCE;
    loop {
        let views: Vec<_> =
            (0..cluster.nodes.len()).filter(|&i| i != but).map(|i| cluster.node(i).metrics().leader).collect();
        if let Some(Some(leader)) = views.first() {
            if views.iter().all(|view| *view == Some(*leader)) && *leader as usize - 1 != but {
                return *leader as usize - 1;
            }
        }
        assert!(Instant::now() < deadline, "no leader among the others: {views:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blackholed_leader_is_replaced_and_catches_up_when_healed() {
    let cluster = Cluster::start_proxied(3, 10_000, Duration::from_secs(10)).await;
    let proxies = cluster.proxies.clone().unwrap();
    let client = cluster.remote_client(common::PATIENCE);
    assert_eq!(client.execute_mut((1, 1)).await.unwrap(), 1);
    let leader = cluster.leader().await;
    // Its machine goes dark: every frame to and from it is swallowed, nobody is reset.
    proxies.isolate(leader, 3, Fault::Blackhole);
    let cut_at = Instant::now();
    assert_eq!(client.execute_mut((1, 1)).await.unwrap(), 2, "no write completed without the leader");
    let first_write = cut_at.elapsed();
    let new_leader = leader_without(&cluster, leader).await;
    assert_ne!(new_leader, leader);
    for expected in 3..=10 {
        assert_eq!(client.execute_mut((1, 1)).await.unwrap(), expected);
    }
    println!("blackholed leader: first write after the cut completed in {first_write:?}");
    proxies.heal();
    let copy = cluster.converged().await;
    assert_eq!(copy.0.get(&1).copied(), Some(10));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_one_way_is_replaced_and_steps_down() {
    let cluster = Cluster::start_proxied(3, 10_000, Duration::from_secs(10)).await;
    let proxies = cluster.proxies.clone().unwrap();
    let client = cluster.remote_client(common::PATIENCE);
    assert_eq!(client.execute_mut((1, 1)).await.unwrap(), 1);
    let leader = cluster.leader().await;
    // What the leader sends to its followers is lost; what they send it arrives.
    for follower in (0..3).filter(|&i| i != leader) {
        proxies.set(Some(leader), Some(follower), Fault::Blackhole);
    }
    let new_leader = leader_without(&cluster, leader).await;
    for expected in 2..=6 {
        assert_eq!(client.execute_mut((1, 1)).await.unwrap(), expected);
    }
    // It hears the new leader's term, so it no longer takes itself for the leader.
    let deadline = Instant::now() + common::PATIENCE;
    while cluster.node(leader).metrics().leader == Some(leader as u64 + 1) {
        assert!(Instant::now() < deadline, "the old leader never stepped down");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxies.heal();
    assert_eq!(cluster.leader().await, new_leader);
    let copy = cluster.converged().await;
    assert_eq!(copy.0.get(&1).copied(), Some(6));
    cluster.shutdown().await;
}

/// Operations per client in the history test: 60, or `CORUM_RAFT_HISTORY_OPS` for a long
/// run (`CORUM_RAFT_HISTORY_OPS=2000 cargo test --release -p corum-raft --test faults
/// clients_under`).
fn history_ops() -> usize {
    std::env::var("CORUM_RAFT_HISTORY_OPS").ok().and_then(|ops| ops.parse().ok()).unwrap_or(60)
}

/// The most writes of unknown outcome (an error: they may or may not have taken effect) a
/// history may hold: each is a branch the checker must try both ways, and more than a
/// few would mean the cluster failed most writes rather than a fault here and there.
const UNKNOWN_WRITES_MAX: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_under_loss_reordering_and_delay_stay_linearizable() {
    let cluster = Cluster::start_proxied(3, 50, Duration::from_secs(10)).await;
    let proxies = cluster.proxies.clone().unwrap();
    let clock = Arc::new(AtomicU64::new(0));
    // Frames lost and reordered on every link, clients' included.
    proxies.everywhere(3, Fault::Lossy { drop_permille: 10, reorder_permille: 50 });
    let finished = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for id in 0..4usize {
        // Enough operations that the loss acts while they run.
        let ops = history_ops();
        let client = cluster.remote_client(Duration::from_secs(20));
        tasks.push(tokio::spawn(common::history_client(client, id, ops, 4, clock.clone(), finished.clone())));
    }
    // Once half the operations ran under the loss, and it dropped and reordered frames
    // enough, it gives way to delay.
    let deadline = Instant::now() + common::PATIENCE * 10;
    let half = 4 * history_ops() as u64 / 2;
    while proxies.counts().1 < 5 || proxies.counts().2 < 5 || finished.load(Ordering::Relaxed) < half {
        assert!(Instant::now() < deadline, "the faults did not act: {:?}", proxies.counts());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxies.everywhere(3, Fault::Delay(Duration::from_millis(3)));
    let mut history = Vec::new();
    for task in tasks {
        history.extend(task.await.unwrap());
    }
    let (forwarded, dropped, reordered) = proxies.counts();
    println!("frames: {forwarded} forwarded, {dropped} dropped, {reordered} reordered");
    proxies.heal();
    let done = history.iter().filter(|op| op.returned.is_some()).count();
    assert!(done > history.len() / 2, "only {done} of {} operations completed", history.len());
    let unknown = history.iter().filter(|op| matches!(op.call, Call::Write(_)) && op.returned.is_none()).count();
    assert!(unknown <= UNKNOWN_WRITES_MAX, "{unknown} writes of unknown outcome");
    println!("history: {} operations, {done} completed, {unknown} writes of unknown outcome", history.len());
    let partition = |call: &Call<u64, (u64, u64)>| match call {
        Call::Read(key) | Call::Write((key, _)) => *key,
    };
    check(&Counters::default(), &history, Some(&partition)).unwrap();
    let copy = cluster.converged().await;
    let writes = history.iter().filter(|op| matches!(op.call, Call::Write(_)));
    let acknowledged = writes.clone().filter(|op| op.returned.is_some()).count() as u64;
    let total: u64 = copy.0.values().sum();
    assert!(acknowledged <= total && total <= writes.count() as u64, "applied {total}, acknowledged {acknowledged}");
    cluster.shutdown().await;
}
