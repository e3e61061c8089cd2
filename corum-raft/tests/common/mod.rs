//! A test object and a cluster of nodes in one process over loopback.
#![allow(dead_code)]

pub mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a test waits for what takes milliseconds on an idle machine: far above what
/// anything needs, so that only a broken guarantee, never a loaded machine, fails a test.
pub const PATIENCE: Duration = Duration::from_secs(120);

use corum::sim::linearizability::{Call, Operation};
use corum::Dispatch;
use corum_raft::{Builder, Client, Node, NodeMetrics};
use serde::{Deserialize, Serialize};

/// Counters by key: a write adds to a key's counter and returns the new value, so a write
/// applied twice shows in the total; a read returns a key's counter.
#[derive(Clone, Default, Debug, Hash, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters(pub BTreeMap<u64, u64>);

impl Dispatch for Counters {
    type ReadOp = u64;
    type WriteOp = (u64, u64);
    type Response = u64;
    fn dispatch(&self, key: &u64) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
    fn dispatch_mut(&mut self, &(key, add): &(u64, u64)) -> u64 {
        if add == u64::MAX {
            // A partial change, then a panic: a write run twice shows.
            *self.0.entry(key).or_insert(0) += 1;
            panic!("the test's poison write");
        }
        let v = self.0.entry(key).or_insert(0);
        *v += add;
        *v
    }
}

pub struct Cluster {
    pub nodes: Vec<Option<Node<Counters>>>,
    pub addrs: Vec<SocketAddr>,
    pub dirs: Vec<PathBuf>,
    pub snapshot_every: u64,
    pub request_timeout: Duration,
    pub session_expiry: Duration,
    /// Each node's free disk space as it sees it (`Builder::free_disk_probe`): plenty,
    /// until a test lowers it.
    pub free: Vec<Arc<AtomicU64>>,
    /// The fault proxies in front of the nodes, if the cluster was started with them
    /// ([`Cluster::start_proxied`]): then peers and clients reach node `i` at
    /// `proxies.addrs[i]`, and nodes call from their own loopback addresses.
    pub proxies: Option<Arc<proxy::Proxies>>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(n: usize, snapshot_every: u64) -> Cluster {
        Cluster::start_with(n, snapshot_every, Duration::from_secs(10), Duration::from_secs(3600)).await
    }

    /// A cluster whose every connection goes through a fault proxy ([`proxy`]).
    pub async fn start_proxied(n: usize, snapshot_every: u64, request_timeout: Duration) -> Cluster {
        Cluster::start_inner(n, snapshot_every, request_timeout, Duration::from_secs(3600), true).await
    }

    pub async fn start_with(
        n: usize,
        snapshot_every: u64,
        request_timeout: Duration,
        session_expiry: Duration,
    ) -> Cluster {
        Cluster::start_inner(n, snapshot_every, request_timeout, session_expiry, false).await
    }

    async fn start_inner(
        n: usize,
        snapshot_every: u64,
        request_timeout: Duration,
        session_expiry: Duration,
        proxied: bool,
    ) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let dirs: Vec<PathBuf> = (0..n).map(|i| tmp.path().join(format!("node{}", i + 1))).collect();
        let free = (0..n).map(|_| Arc::new(AtomicU64::new(u64::MAX))).collect();
        let proxies = if proxied { Some(Arc::new(proxy::Proxies::start(&addrs).await)) } else { None };
        let mut cluster = Cluster {
            nodes: Vec::new(),
            addrs,
            dirs,
            snapshot_every,
            request_timeout,
            session_expiry,
            free,
            proxies,
            _tmp: tmp,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let node = cluster.builder(i).listener(listener).start().await.unwrap();
            cluster.nodes.push(Some(node));
        }
        cluster.leader().await;
        cluster
    }

    pub fn builder(&self, i: usize) -> Builder<Counters> {
        let mut b = Builder::new(i as u64 + 1, Counters::default())
            .data_dir(&self.dirs[i])
            .heartbeat(Duration::from_millis(20))
            .election_timeout(Duration::from_millis(150), Duration::from_millis(300))
            .request_timeout(self.request_timeout)
            .session_expiry(self.session_expiry)
            .snapshot_every(self.snapshot_every)
            .free_disk_probe({
                let free = self.free[i].clone();
                move || free.load(Ordering::Relaxed)
            });
        if let Some(proxies) = &self.proxies {
            b = b.advertise(proxies.addrs[i]).bind_outgoing(proxy::node_ip(i));
        }
        for (j, addr) in self.reach().iter().enumerate() {
            if j != i {
                b = b.peer(j as u64 + 1, *addr);
            }
        }
        b
    }

    /// Where peers and clients reach each node: its proxy, or the node itself.
    pub fn reach(&self) -> Vec<SocketAddr> {
        self.proxies.as_ref().map_or_else(|| self.addrs.clone(), |p| p.addrs.clone())
    }

    /// A client from outside the nodes, with its own session.
    pub fn remote_client(&self, timeout: Duration) -> Client<Counters> {
        let mut b = Client::<Counters>::builder().timeout(timeout);
        for (j, a) in self.reach().iter().enumerate() {
            b = b.node(j as u64 + 1, *a);
        }
        b.build().unwrap()
    }

    pub fn node(&self, i: usize) -> &Node<Counters> {
        self.nodes[i].as_ref().expect("the node is running")
    }

    /// What each running node reports, in index order. Counts of what a leader did are
    /// summed over these: an election on a loaded machine spreads them over the leaders.
    pub fn metrics(&self) -> Vec<NodeMetrics> {
        self.nodes.iter().flatten().map(|n| n.metrics()).collect()
    }

    /// Waits until the running nodes agree on a leader that is one of them; its index.
    pub async fn leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let running: Vec<_> = self.nodes.iter().flatten().collect();
            let leaders: Vec<_> = running.iter().map(|n| n.metrics().leader).collect();
            if let Some(Some(l)) = leaders.first() {
                if leaders.iter().all(|x| *x == Some(*l)) && running.iter().any(|n| n.id() == *l) {
                    return *l as usize - 1;
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].take().expect("running");
        node.shutdown().await;
    }

    pub async fn restart(&mut self, i: usize) {
        let mut tries = 0;
        let node = loop {
            match self.builder(i).listen(self.addrs[i]).start().await {
                Ok(node) => break node,
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("restart of node {} waits: {e}", i + 1);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("node {} does not restart: {e}", i + 1),
            }
        };
        self.nodes[i] = Some(node);
    }

    /// Waits until every running node has applied the same entries, and returns the
    /// common copy of the object.
    pub async fn converged(&self) -> Counters {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let running: Vec<_> = self.nodes.iter().flatten().collect();
            let applied: Vec<_> = running.iter().map(|n| n.metrics().last_applied).collect();
            let copies: Vec<Counters> = running.iter().map(|n| n.read_local(|c| c.clone())).collect();
            if applied.windows(2).all(|w| w[0] == w[1]) && copies.windows(2).all(|w| w[0] == w[1]) {
                return copies[0].clone();
            }
            assert!(Instant::now() < deadline, "copies do not converge: applied {applied:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].is_some() {
                self.stop(i).await;
            }
        }
    }
}

/// One client's part of a history to check: `ops` operations on `keys` keys picked by a
/// xorshift seeded with `id`, a third of them reads, the rest writes adding 1, each stamped
/// on the shared `clock` when invoked and when it returns (`None` for an error: its outcome
/// is unknown). `finished` counts the operations done, for a test that waits on them.
pub async fn history_client(
    client: Client<Counters>,
    id: usize,
    ops: usize,
    keys: u64,
    clock: Arc<AtomicU64>,
    finished: Arc<AtomicU64>,
) -> Vec<Operation<Counters>> {
    let mut history = Vec::new();
    let mut x = id as u64 * 7919 + 1;
    for _ in 0..ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = x % keys;
        let invoked = clock.fetch_add(1, Ordering::SeqCst);
        let (call, result) = if (x >> 20).is_multiple_of(3) {
            (Call::Read(key), client.execute(key).await)
        } else {
            (Call::Write((key, 1)), client.execute_mut((key, 1)).await)
        };
        let returned = result.ok().map(|r| (clock.fetch_add(1, Ordering::SeqCst), r));
        history.push(Operation::<Counters> { client: id, call, invoked, returned });
        finished.fetch_add(1, Ordering::Relaxed);
    }
    history
}
