//! Three nodes in one process over loopback sockets.

mod common;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Counters};
use corum::sim::linearizability::{check, Call};
use corum_raft::{Applied, Batch, Builder, Client, Error, Write};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_reads_reach_every_copy() {
    let cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let term = cluster.node(leader).metrics().term;
    let follower = (leader + 1) % 3;
    // Through a follower: forwarded to the leader over TCP.
    for i in 0..50u64 {
        assert_eq!(cluster.node(follower).execute_mut((i % 5, 1)).await.unwrap(), i / 5 + 1);
    }
    for key in 0..5 {
        assert_eq!(cluster.node((leader + 2) % 3).execute(key).await.unwrap(), 10);
    }
    let copy = cluster.converged().await;
    assert_eq!(copy.0.values().sum::<u64>(), 50);
    // Each node counts what it committed and served while it led. On a loaded machine a
    // late heartbeat can start an election halfway; then the counts are spread over the
    // leaders, and a write or read whose answer was lost on the way back is counted again
    // where it was retried (the copy above still holds each write once).
    let now = cluster.leader().await;
    let metrics = cluster.metrics();
    let (writes, reads) = metrics.iter().fold((0, 0), |(w, r), m| (w + m.writes, r + m.reads));
    if metrics.iter().all(|m| m.term == term) {
        assert_eq!(now, leader);
        assert_eq!((metrics[leader].writes, metrics[leader].reads), (50, 5));
        assert_eq!((writes, reads), (50, 5), "only the leader counts");
    } else {
        assert!(writes >= 50 && reads >= 5, "{metrics:?}");
    }
    assert!(metrics.iter().all(|m| m.leader == Some(now as u64 + 1)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_leader_is_replaced_and_restarts_from_its_disk() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let old = cluster.leader().await;
    let other = (old + 1) % 3;
    for _ in 0..20 {
        cluster.node(other).execute_mut((1, 1)).await.unwrap();
    }
    cluster.stop(old).await;
    // The survivors elect a new leader and go on.
    for _ in 0..20 {
        cluster.node(other).execute_mut((1, 1)).await.unwrap();
    }
    let new = cluster.leader().await;
    assert_ne!(new, old);
    cluster.restart(old).await;
    // It carries on from its log on disk and catches up with the rest.
    let copy = cluster.converged().await;
    assert_eq!(copy.0[&1], 40);
    assert_eq!(cluster.node(old).execute(1).await.unwrap(), 40);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_every_node_restarting() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let client = cluster.node(0).client();
    // The session's first write, alone: the concurrent writes below then retry within a
    // session the cluster knows. (A retried write of a session none of whose writes was
    // applied yet is refused with `SessionExpired`, as its doc says.)
    client.execute_mut((100, 1)).await.unwrap();
    let mut handles = Vec::new();
    for t in 0..8u64 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            for _ in 0..25 {
                client.execute_mut((t, 1)).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    for i in 0..3 {
        cluster.stop(i).await;
    }
    for i in 0..3 {
        cluster.restart(i).await;
    }
    cluster.leader().await;
    for t in 0..8u64 {
        assert_eq!(cluster.node(2).execute(t).await.unwrap(), 25, "key {t}");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_is_replaced_and_catches_up_when_healed() {
    let cluster = Cluster::start(3, 10_000).await;
    let old = cluster.leader().await;
    let other = (old + 1) % 3;
    cluster.node(other).execute_mut((7, 1)).await.unwrap();
    cluster.node(old).disconnect();
    for _ in 0..30 {
        cluster.node(other).execute_mut((7, 1)).await.unwrap();
    }
    let m = cluster.node(other).metrics();
    assert_ne!(m.leader, Some(old as u64 + 1), "the majority side elected a new leader");
    // The cut-off node cannot serve a linearizable read.
    let cut = tokio::time::timeout(Duration::from_secs(3), cluster.node(old).client().execute(7)).await;
    assert!(!matches!(cut, Ok(Ok(_))), "a cut-off node served a read: {cut:?}");
    cluster.node(old).reconnect();
    let copy = cluster.converged().await;
    assert_eq!(copy.0[&7], 31);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_follower_far_behind_catches_up_from_a_snapshot() {
    let cluster = Cluster::start(3, 50).await;
    let leader = cluster.leader().await;
    let behind = (leader + 1) % 3;
    cluster.node(behind).disconnect();
    for i in 0..300u64 {
        cluster.node(leader).execute_mut((i % 3, 1)).await.unwrap();
    }
    // The snapshot is built and the log purged behind it in the background, after the
    // writes were answered.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let m = cluster.node(leader).metrics();
        if m.snapshot.is_some() && m.purged.is_some() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the leader compacted its log: {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.node(behind).reconnect();
    let copy = cluster.converged().await;
    assert_eq!(copy.0.values().sum::<u64>(), 300);
    assert!(cluster.node(behind).metrics().snapshot.is_some(), "it installed the leader's snapshot");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_write_is_applied_once() {
    let cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let raft = cluster.node(leader).raft();
    let hour = Duration::from_secs(3600);
    let command = |sequence, floor| {
        Batch::<Counters>::new(vec![Write { client: 42, sequence, floor, retry: false, op: (9, 5) }], hour)
    };
    // The same write twice (a retry after a lost answer): the second is answered from the
    // session, not applied.
    let first = raft.client_write(command(1, 1)).await.unwrap().data.remove(0);
    let again = raft.client_write(command(1, 1)).await.unwrap().data.remove(0);
    assert!(matches!(first, Applied::Response(5)), "{first:?}");
    assert!(matches!(again, Applied::Response(5)), "{again:?}");
    // Once the client has moved on (its floor past it), a late copy is not applied either.
    let next = raft.client_write(command(2, 2)).await.unwrap().data.remove(0);
    assert!(matches!(next, Applied::Response(10)), "{next:?}");
    let late = raft.client_write(command(1, 1)).await.unwrap().data.remove(0);
    assert!(matches!(late, Applied::Expired), "{late:?}");
    // A write that panicked, retried: answered as panicked again, not run again.
    let poison = || {
        Batch::<Counters>::new(
            vec![Write { client: 42, sequence: 3, floor: 3, retry: false, op: (20, u64::MAX) }],
            hour,
        )
    };
    for _ in 0..2 {
        let outcome = raft.client_write(poison()).await.unwrap().data.remove(0);
        assert!(matches!(outcome, Applied::Panicked), "{outcome:?}");
    }
    let copy = cluster.converged().await;
    assert_eq!(copy.0[&9], 10);
    assert_eq!(copy.0[&20], 1, "the panicking write ran more than once");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_write_is_reported_and_the_cluster_goes_on() {
    let cluster = Cluster::start(3, 10_000).await;
    let node = cluster.node(0);
    assert!(matches!(node.execute_mut((1, u64::MAX)).await, Err(Error::OperationPanicked)));
    // Its partial change stays, the same on every copy.
    assert_eq!(node.execute_mut((1, 2)).await.unwrap(), 3);
    cluster.converged().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_across_leader_changes_are_linearizable() {
    let cluster = Arc::new(tokio::sync::Mutex::new(Cluster::start(3, 100).await));
    let clock = Arc::new(AtomicU64::new(0));
    let clients: Vec<Client<Counters>> = {
        let c = cluster.lock().await;
        (0..6).map(|i| c.node(i % 3).client()).collect()
    };
    let mut tasks = Vec::new();
    let finished = Arc::new(AtomicU64::new(0));
    for (id, client) in clients.into_iter().enumerate() {
        tasks.push(tokio::spawn(common::history_client(client, id, 40, 3, clock.clone(), finished.clone())));
    }
    // Leader changes while the clients run: a partition, then a crash and a restart.
    {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let c = cluster.lock().await;
        let l = c.leader().await;
        c.node(l).disconnect();
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.node(l).reconnect();
    }
    {
        let mut c = cluster.lock().await;
        let l = c.leader().await;
        c.stop(l).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.restart(l).await;
    }
    let mut history = Vec::new();
    for t in tasks {
        history.extend(t.await.unwrap());
    }
    let done = history.iter().filter(|op| op.returned.is_some()).count();
    assert!(done > history.len() / 2, "only {done} of {} operations completed", history.len());
    let partition = |call: &Call<u64, (u64, u64)>| match call {
        Call::Read(k) => *k,
        Call::Write((k, _)) => *k,
    };
    check(&Counters::default(), &history, Some(&partition)).unwrap();
    let c = cluster.lock().await;
    let copy = c.converged().await;
    let writes_ok =
        history.iter().filter(|op| matches!(op.call, Call::Write(_)) && op.returned.is_some()).count() as u64;
    let writes = history.iter().filter(|op| matches!(op.call, Call::Write(_))).count() as u64;
    let total: u64 = copy.0.values().sum();
    assert!(writes_ok <= total && total <= writes, "applied {total}, acknowledged {writes_ok}, sent {writes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_settings_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = "127.0.0.1:0".parse().unwrap();
    let no_dir = Builder::new(1, Counters::default()).listen(addr).start().await;
    assert!(matches!(no_dir, Err(Error::Config(_))));
    let twice = Builder::new(1, Counters::default())
        .listen(addr)
        .data_dir(tmp.path())
        .peer(2, addr)
        .peer(2, addr)
        .start()
        .await;
    assert!(matches!(twice, Err(Error::Config(_))));
    let timeouts = Builder::new(1, Counters::default())
        .listen(addr)
        .data_dir(tmp.path())
        .heartbeat(Duration::from_millis(100))
        .election_timeout(Duration::from_millis(150), Duration::from_millis(300))
        .start()
        .await;
    assert!(matches!(timeouts, Err(Error::Config(_))));
    let short_sessions = Builder::new(1, Counters::default())
        .listen(addr)
        .data_dir(tmp.path())
        .request_timeout(Duration::from_secs(5))
        .session_expiry(Duration::from_secs(6))
        .start()
        .await;
    assert!(matches!(short_sessions, Err(Error::Config(_))));
    let no_listen = Builder::new(1, Counters::default()).data_dir(tmp.path()).start().await;
    assert!(matches!(no_listen, Err(Error::Config(_))));
    let base = || Builder::new(1, Counters::default()).listen(addr).data_dir(tmp.path());
    for (what, limited) in [
        ("a frame limit below 64 KiB", base().frame_limit(1000)),
        ("a frame limit past 4 GiB", base().frame_limit(usize::MAX)),
        ("no connection at all", base().connection_limits(0, 1)),
        ("no connection per address", base().connection_limits(8, 0)),
        ("a zero frame timeout", base().frame_timeouts(Duration::ZERO, Duration::from_secs(1))),
        ("a zero idle timeout", base().frame_timeouts(Duration::from_secs(1), Duration::ZERO)),
    ] {
        let started = limited.start().await;
        assert!(matches!(started, Err(Error::Config(_))), "{what}: {:?}", started.err());
    }
    assert!(matches!(Client::<Counters>::builder().build(), Err(Error::Config(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_after_shutdown_and_without_quorum_are_typed_errors() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let survivor = cluster.node(0).client();
    let quick = cluster.remote_client(Duration::from_millis(1500));
    assert_eq!(cluster.remote_client(common::PATIENCE).execute_mut((1, 1)).await.unwrap(), 1);
    cluster.stop(1).await;
    cluster.stop(2).await;
    // One node of three: no quorum.
    let lone = quick.execute_mut((1, 1)).await;
    assert!(matches!(lone, Err(Error::NoQuorum { .. })), "{lone:?}");
    cluster.stop(0).await;
    assert!(matches!(survivor.execute_mut((1, 1)).await, Err(Error::Shutdown)));
    let nobody = quick.execute(1).await;
    assert!(matches!(nobody, Err(Error::Unreachable { .. })), "{nobody:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frame_that_does_not_decode_is_rejected_and_the_node_goes_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let cluster = Cluster::start(3, 10_000).await;
    let mut raw = tokio::net::TcpStream::connect(cluster.addrs[1]).await.unwrap();
    let garbage = [0xffu8, 0xff, 0xff, 0xff, 0x7f];
    let mut frame = (garbage.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(&7u64.to_le_bytes());
    frame.extend_from_slice(&garbage);
    raw.write_all(&frame).await.unwrap();
    // An answer to request 7 (a rejection), on a connection that stays open.
    let mut header = [0u8; 12];
    raw.read_exact(&mut header).await.unwrap();
    assert_eq!(u64::from_le_bytes(header[4..].try_into().unwrap()), 7);
    let mut body = vec![0u8; u32::from_le_bytes(header[..4].try_into().unwrap()) as usize];
    raw.read_exact(&mut body).await.unwrap();
    assert_eq!(cluster.node(1).metrics().rejected_frames, 1);
    // A frame longer than any node accepts closes the connection.
    let mut huge = u32::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(&8u64.to_le_bytes());
    raw.write_all(&huge).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
    assert!(matches!(closed, Ok(Ok(0))), "{closed:?}");
    // The node serves on.
    assert_eq!(cluster.node(1).execute_mut((3, 3)).await.unwrap(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_log_entries() {
    let cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let term = cluster.node(leader).metrics().term;
    let client = cluster.node(leader).client();
    // The session's first write, alone (see `acknowledged_writes_survive_every_node_restarting`).
    client.execute_mut((100, 1)).await.unwrap();
    let tasks: Vec<_> = (0..64u64)
        .map(|k| {
            let client = client.clone();
            tokio::spawn(async move { client.execute_mut((k, 1)).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    // Summed over the nodes, for an election on a loaded machine spreads the counts over
    // the leaders (and counts a write retried after a lost answer twice).
    let metrics = cluster.metrics();
    let (writes, entries) = metrics.iter().fold((0, 0), |(w, e), m| (w + m.writes, e + m.write_entries));
    if metrics.iter().all(|m| m.term == term) {
        assert_eq!(writes, 65);
    } else {
        assert!(writes >= 65, "{metrics:?}");
    }
    assert!(entries < writes / 2, "{writes} concurrent writes took {entries} log entries");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_left_alone_answers_its_own_writes_within_the_timeout() {
    let mut cluster = Cluster::start_with(3, 10_000, Duration::from_millis(1500), Duration::from_secs(3600)).await;
    let leader = cluster.leader().await;
    for i in (0..3).filter(|&i| i != leader) {
        cluster.stop(i).await;
    }
    // Through the leader's own client (no socket in the way): its entry cannot commit.
    let alone = tokio::time::timeout(Duration::from_secs(20), cluster.node(leader).execute_mut((1, 1))).await;
    assert!(matches!(alone, Ok(Err(Error::NoQuorum { .. }))), "{alone:?}");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_idle_past_the_session_expiry_gets_a_new_session() {
    // Nodes whose sessions expire after 2 s of the log's clock.
    let cluster = Cluster::start_with(3, 10_000, Duration::from_secs(1), Duration::from_secs(2)).await;
    let (a, b) = (cluster.remote_client(Duration::from_secs(10)), cluster.remote_client(Duration::from_secs(10)));
    assert_eq!(a.execute_mut((1, 1)).await.unwrap(), 1);
    assert_eq!(a.execute_mut((1, 1)).await.unwrap(), 2);
    assert_eq!(b.execute_mut((2, 1)).await.unwrap(), 1);
    let first = a.session();
    let sessions = |c: &Cluster| c.nodes.iter().flatten().map(|n| n.metrics().sessions).max().unwrap();
    assert_eq!(sessions(&cluster), 2);
    // a idles past the expiry while b keeps writing: the cluster forgets a's session.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        b.execute_mut((2, 1)).await.unwrap();
    }
    assert_eq!(sessions(&cluster), 1, "a's idle session was not forgotten");
    // a's next write is refused under the old session and goes through, once, under a new one.
    assert_eq!(a.execute_mut((1, 1)).await.unwrap(), 3);
    assert_ne!(a.session(), first);
    assert_eq!(a.execute(1).await.unwrap(), 3);
    assert_eq!(sessions(&cluster), 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_node_stops() {
    let mut cluster = Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    drop(cluster.nodes[leader].take());
    // Its listener closes, and the others go on without it.
    let deadline = std::time::Instant::now() + common::PATIENCE;
    while tokio::net::TcpStream::connect(cluster.addrs[leader]).await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "a dropped node still accepts connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let other = (leader + 1) % 3;
    assert_eq!(cluster.node(other).execute_mut((5, 1)).await.unwrap(), 1);
    assert_ne!(cluster.leader().await, leader);
    cluster.shutdown().await;
}
