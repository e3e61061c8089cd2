//! Hostile input against one node over loopback: the limits on frames, slow and silent
//! senders, too many connections and arbitrary bytes. The node closes what breaks a limit
//! and goes on serving.

mod common;

use std::time::Duration;

use common::Counters;
use corum_raft::{Builder, Node};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A one-node cluster (it leads itself) with short timeouts and small limits.
async fn node(dir: &std::path::Path, frame: Duration, idle: Duration) -> Node<Counters> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Builder::new(1, Counters::default())
        .listener(listener)
        .data_dir(dir)
        .heartbeat(Duration::from_millis(20))
        .election_timeout(Duration::from_millis(150), Duration::from_millis(300))
        .frame_limit(1 << 20)
        .connection_limits(16, 4)
        .frame_timeouts(frame, idle)
        .start()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while node.metrics().leader != Some(1) {
        assert!(tokio::time::Instant::now() < deadline, "the node never led");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node
}

/// Whether the node closed `stream` within `within` (a read that ends, or fails).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(tokio::time::timeout(within, stream.read_to_end(&mut rest)).await, Ok(Ok(_) | Err(_)))
}

fn header(len: u32, id: u64) -> Vec<u8> {
    let mut header = len.to_le_bytes().to_vec();
    header.extend_from_slice(&id.to_le_bytes());
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_past_the_limit_and_slow_or_silent_senders_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_millis(300), Duration::from_millis(1500)).await;
    let addr = node.addr();
    // A header claiming a body past the limit (2 MiB of 1 MiB): closed before any body.
    let mut long = TcpStream::connect(addr).await.unwrap();
    long.write_all(&header(2 << 20, 1)).await.unwrap();
    assert!(closed_within(&mut long, Duration::from_secs(5)).await, "a frame past the limit kept its connection");
    // A frame begun and never finished (a header, then half its body): closed after the
    // frame timeout, though the connection is live.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(&header(100, 2)).await.unwrap();
    slow.write_all(&[0u8; 50]).await.unwrap();
    assert!(!closed_within(&mut slow, Duration::from_millis(100)).await, "closed before the frame timeout");
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await, "a frame never finished kept its connection");
    // A connection that never begins a frame: closed after the idle timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(!closed_within(&mut silent, Duration::from_millis(500)).await, "closed before the idle timeout");
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await, "a silent connection was kept");
    // The node serves on.
    assert_eq!(node.execute_mut((1, 1)).await.unwrap(), 1);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_limit_are_closed_and_the_node_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_secs(10), Duration::from_secs(60)).await;
    let addr = node.addr();
    // Four from this address are held; the next ones are closed at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..3 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut extra, Duration::from_secs(5)).await, "a connection past the limit was kept");
    }
    assert_eq!(node.metrics().refused_connections, 3);
    for stream in &mut held {
        assert!(!closed_within(stream, Duration::from_millis(50)).await, "a held connection was closed");
    }
    // Given back, the room is there again: a remote client connects and writes. (The
    // node's own client calls itself through the same listener.)
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.execute_mut((1, 2)).await.unwrap(), 2);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn arbitrary_bytes_never_stop_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = node(dir.path(), Duration::from_millis(500), Duration::from_secs(5)).await;
    let addr = node.addr();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    for round in 0..200u64 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let len = (next() % 300) as usize;
        let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let bytes = if round % 2 == 0 {
            // Well-framed garbage: answered with a rejection (or decoded, if it happens to).
            let mut framed = header(len as u32, round);
            framed.extend_from_slice(&body);
            framed
        } else {
            // Unframed garbage: whatever header it makes.
            body
        };
        let _ = stream.write_all(&bytes).await;
        // Closed by us: the node must not wait for the rest.
        drop(stream);
        if round % 50 == 49 {
            assert_eq!(node.execute_mut((round, 1)).await.unwrap(), 1, "the node stopped serving");
        }
    }
    assert!(node.metrics().rejected_frames > 0, "no garbage frame was rejected");
    assert_eq!(node.execute(49).await.unwrap(), 1);
    node.shutdown().await;
}

/// A snapshot whose bytes do not decode as the object, sent to a follower in its
/// leader's term (as a buggy leader, or a stranger who copied its vote, would): refused
/// before openraft sees its last chunk, so the follower installs nothing and the cluster
/// serves on with it. (openraft takes a snapshot its state machine cannot install for a
/// storage error, fatal to the node: without the check, the follower stops.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_that_does_not_decode_is_refused_and_the_node_serves_on() {
    use openraft::raft::InstallSnapshotRequest;
    use openraft::{LogId, SnapshotMeta};
    let cluster = common::Cluster::start(3, 10_000).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    assert_eq!(cluster.node(follower).execute_mut((1, 1)).await.unwrap(), 1);
    let metrics = cluster.node(follower).raft().metrics().borrow().clone();
    let leader_id = *metrics.vote.leader_id();
    let chunks: [&[u8]; 2] = [&[0xff; 64], &[0x80; 32]];
    let mut stream = TcpStream::connect(cluster.addrs[follower]).await.unwrap();
    let mut offset = 0;
    for (index, data) in chunks.iter().enumerate() {
        let rpc = InstallSnapshotRequest::<corum_raft::Types<Counters>> {
            vote: metrics.vote,
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(leader_id, 1_000_000)),
                last_membership: metrics.membership_config.as_ref().clone(),
                snapshot_id: "forged".into(),
            },
            offset,
            data: data.to_vec(),
            done: index == chunks.len() - 1,
        };
        offset += data.len() as u64;
        // `Request::Snapshot` is the wire enum's third variant.
        let mut body = vec![2u8];
        body.extend(postcard::to_stdvec(&rpc).unwrap());
        let mut frame = header(body.len() as u32, index as u64);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.unwrap();
        let mut answer = [0u8; 12];
        stream.read_exact(&mut answer).await.unwrap();
        let mut rest = vec![0u8; u32::from_le_bytes(answer[..4].try_into().unwrap()) as usize];
        stream.read_exact(&mut rest).await.unwrap();
    }
    let metrics = cluster.node(follower).metrics();
    assert_eq!(metrics.rejected_snapshots, 1);
    assert_eq!(metrics.snapshot, None, "a snapshot was installed");
    // The follower goes on: it applies the next write, through its own client too.
    assert_eq!(cluster.node(follower).execute_mut((1, 1)).await.unwrap(), 2, "the follower stopped serving");
    let deadline = tokio::time::Instant::now() + common::PATIENCE;
    while cluster.node(follower).read_local(|copy| copy.0.get(&1).copied()) != Some(2) {
        assert!(tokio::time::Instant::now() < deadline, "the follower stopped applying");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.shutdown().await;
}
