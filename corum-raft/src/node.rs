//! A node: its settings ([`Builder`]), and the handle on a running one ([`Node`]): openraft
//! with the object as its state machine, its log on disk, its server (`server.rs`) and its
//! connections to peers (`peer.rs`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::net::TcpListener;

use crate::client::Client;
use crate::error::Error;
use crate::net::{Limits, Net};
use crate::peer::Factory;
use crate::server::Server;
use crate::space::{Probe, Space};
use crate::state_machine::StateMachine;
use crate::storage::{Disk, LogStore};
use crate::types::{NodeId, Replicated, Types};

/// The smallest frame limit a node takes ([`Builder::frame_limit`]).
const MIN_FRAME_LIMIT: usize = 64 << 10;
/// The largest snapshot chunk a node sends (openraft's default).
const SNAPSHOT_CHUNK: usize = 3 << 20;

/// Settings of a node; [`Builder::start`] checks them and starts it.
///
/// ```no_run
/// # use corum_raft::Builder;
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Counter(u64);
/// # impl corum::Dispatch for Counter {
/// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, a: &u64) -> u64 { self.0 += a; self.0 }
/// # }
/// # async fn run() -> Result<(), corum_raft::Error> {
/// let node = Builder::new(1, Counter::default())
///     .listen("127.0.0.1:7001".parse().unwrap())
///     .peer(2, "127.0.0.1:7002".parse().unwrap())
///     .peer(3, "127.0.0.1:7003".parse().unwrap())
///     .data_dir("/var/lib/counter/1")
///     .start()
///     .await?;
/// assert_eq!(node.execute_mut(5).await?, 5);
/// node.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Builder<D: Replicated> {
    id: NodeId,
    object: D,
    listen: Option<SocketAddr>,
    listener: Option<TcpListener>,
    peers: Vec<(NodeId, SocketAddr)>,
    data_dir: Option<PathBuf>,
    heartbeat: Duration,
    election: (Duration, Duration),
    timeout: Duration,
    snapshot_every: u64,
    session_expiry: Duration,
    initialize: Option<bool>,
    limits: Limits,
    min_free_disk: u64,
    free_disk_probe: Option<Probe>,
    bind_outgoing: Option<IpAddr>,
    advertise: Option<SocketAddr>,
}

impl<D: Replicated> Builder<D> {
    /// A node with id `id` whose object starts as `object` (on every node alike; it is
    /// replaced by a snapshot's copy if the data directory holds one).
    pub fn new(id: NodeId, object: D) -> Self {
        Builder {
            id,
            object,
            listen: None,
            listener: None,
            peers: Vec::new(),
            data_dir: None,
            heartbeat: Duration::from_millis(50),
            election: (Duration::from_millis(300), Duration::from_millis(600)),
            timeout: Duration::from_secs(5),
            snapshot_every: 10_000,
            session_expiry: Duration::from_secs(3600),
            initialize: None,
            limits: Limits::default(),
            min_free_disk: 64 << 20,
            free_disk_probe: None,
            bind_outgoing: None,
            advertise: None,
        }
    }

    /// The address to listen on for peers and clients (required, or [`listener`](Self::listener)).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = Some(addr);
        self
    }

    /// A listener already bound (for example to port 0); its local address is the node's.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Another member of the cluster and its address. Every node is given the same members.
    pub fn peer(mut self, id: NodeId, addr: SocketAddr) -> Self {
        self.peers.push((id, addr));
        self
    }

    /// Where the node keeps its log, vote and snapshot (required). A node restarted with
    /// the same directory carries on from what it holds there.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// How often the leader sends heartbeats (default 50 ms).
    pub fn heartbeat(mut self, every: Duration) -> Self {
        self.heartbeat = every;
        self
    }

    /// The range a follower's election timeout is drawn from (default 300 to 600 ms): how
    /// long a follower waits without hearing from a leader before it stands for election.
    pub fn election_timeout(mut self, min: Duration, max: Duration) -> Self {
        self.election = (min, max);
        self
    }

    /// How long a write or read through this node's client keeps trying (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Take a snapshot of the object every this many log entries, and drop the log before
    /// it (default 10,000).
    pub fn snapshot_every(mut self, entries: u64) -> Self {
        self.snapshot_every = entries;
        self
    }

    /// How long a client session is kept after its last write (default 1 hour), by the
    /// clock of the leaders that proposed the writes. A client whose session expired gets
    /// a new one on its next write, transparently.
    ///
    /// The exactly-once guarantee rests on it being much longer than any client's request
    /// timeout plus the clock skew between nodes: a write retried after its session
    /// expired would be refused, or if it were the session's first write, applied again.
    /// It must be at least twice this node's request timeout.
    pub fn session_expiry(mut self, expiry: Duration) -> Self {
        self.session_expiry = expiry;
        self
    }

    /// The longest frame body this node accepts from a peer or client, and sends (default
    /// 16 MiB; between 64 KiB and 4 GiB). A longer frame closes its connection before
    /// its body is read; an append request that would be longer is split by openraft, and
    /// snapshots travel in chunks of at most 3 MiB or half this, whichever is less. Every
    /// node of a cluster should have the same limit.
    pub fn frame_limit(mut self, bytes: usize) -> Self {
        self.limits.max_frame = bytes;
        self
    }

    /// The most incoming connections this node holds at once, in all (default 1,024) and
    /// from one IP address (default 128). A connection past either is closed at once,
    /// before any byte is read, and counted in [`NodeMetrics::refused_connections`].
    pub fn connection_limits(mut self, total: usize, per_ip: usize) -> Self {
        self.limits.max_connections = total;
        self.limits.max_connections_per_ip = per_ip;
        self
    }

    /// How long a frame may take from its first byte to its last (default 10 s), and how
    /// long a connection may stay without beginning one (default 5 minutes), before the
    /// node closes it: a sender too slow or silent for either holds no connection. Clients
    /// and peers open a new connection when they next call.
    pub fn frame_timeouts(mut self, frame: Duration, idle: Duration) -> Self {
        self.limits.frame_timeout = frame;
        self.limits.idle_timeout = idle;
        self
    }

    /// The free space below which this node takes no new log entries (default 64 MiB):
    /// as leader it refuses client writes with [`Error::DiskFull`] (not proposed, so
    /// never applied), as follower it refuses appends that carry entries (its leader sends
    /// them again later), while heartbeats, votes and reads go on. openraft would take a
    /// failed append for a fatal error and stop the node. Measured on the data directory's
    /// file system (Unix); 0 turns the check off.
    pub fn min_free_disk(mut self, bytes: u64) -> Self {
        self.min_free_disk = bytes;
        self
    }

    /// Tests only: measures the free space with `probe` instead of the file system, for a
    /// disk that fills (a test cannot mount a small file system). Not part of the API.
    #[doc(hidden)]
    pub fn free_disk_probe(mut self, probe: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        self.free_disk_probe = Some(Arc::new(probe));
        self
    }

    /// The local address this node's connections to its peers come from (default: the
    /// one the system's routes pick), for a host with several interfaces. (Tests give
    /// each node its own loopback address, so that a fault proxy tells them apart.)
    pub fn bind_outgoing(mut self, ip: IpAddr) -> Self {
        self.bind_outgoing = Some(ip);
        self
    }

    /// The address peers and clients reach this node at, where it differs from the one it
    /// listens on (behind a proxy or a port mapping; default: the listening address). The
    /// node that initialises the cluster records it in the membership, which is where
    /// every node looks its peers up.
    pub fn advertise(mut self, addr: SocketAddr) -> Self {
        self.advertise = Some(addr);
        self
    }

    /// Whether this node initialises the cluster on its first start (default: the member
    /// with the smallest id does). Initialising an already initialised cluster does nothing.
    pub fn initialize(mut self, yes: bool) -> Self {
        self.initialize = Some(yes);
        self
    }

    fn check(&self, listen: SocketAddr) -> Result<(BTreeMap<NodeId, SocketAddr>, PathBuf), Error> {
        let bad = |why: String| Err(Error::Config(why));
        let Some(dir) = self.data_dir.clone() else {
            return bad("no data directory (Builder::data_dir)".into());
        };
        let mut members = BTreeMap::new();
        members.insert(self.id, self.advertise.unwrap_or(listen));
        for &(id, addr) in &self.peers {
            if members.insert(id, addr).is_some() {
                return bad(format!("node id {id} is given twice"));
            }
        }
        if self.heartbeat.is_zero() || self.timeout.is_zero() {
            return bad("heartbeat and request timeout must be more than zero".into());
        }
        if self.election.0 <= self.heartbeat * 2 || self.election.1 <= self.election.0 {
            return bad(format!(
                "the election timeout range {:?}..{:?} must start above twice the heartbeat ({:?}) and not be empty",
                self.election.0, self.election.1, self.heartbeat
            ));
        }
        if self.session_expiry < self.timeout * 2 {
            return bad(format!(
                "the session expiry ({:?}) must be at least twice the request timeout ({:?})",
                self.session_expiry, self.timeout
            ));
        }
        if self.snapshot_every == 0 {
            return bad("snapshot_every must be at least 1".into());
        }
        let limits = &self.limits;
        if !(MIN_FRAME_LIMIT..=u32::MAX as usize).contains(&limits.max_frame) {
            return bad(format!(
                "the frame limit ({} bytes) must be between {MIN_FRAME_LIMIT} and {} bytes",
                limits.max_frame,
                u32::MAX
            ));
        }
        if limits.max_connections == 0 || limits.max_connections_per_ip == 0 {
            return bad("connection limits must be at least 1".into());
        }
        if limits.frame_timeout.is_zero() || limits.idle_timeout.is_zero() {
            return bad("frame timeouts must be more than zero".into());
        }
        Ok((members, dir))
    }

    /// Checks the settings, opens the data directory, binds the listener, starts openraft
    /// and the server, and initialises the cluster if this node is to.
    pub async fn start(mut self) -> Result<Node<D>, Error> {
        let listener = match (self.listener.take(), self.listen) {
            (Some(listener), _) => listener,
            (None, Some(addr)) => {
                TcpListener::bind(addr).await.map_err(|e| Error::Config(format!("cannot listen on {addr}: {e}")))?
            }
            (None, None) => return Err(Error::Config("no listen address (Builder::listen)".into())),
        };
        let listen = listener.local_addr().map_err(Error::Storage)?;
        let (members, dir) = self.check(listen)?;
        let config = openraft::Config {
            cluster_name: "corum-raft".into(),
            heartbeat_interval: self.heartbeat.as_millis() as u64,
            election_timeout_min: self.election.0.as_millis() as u64,
            election_timeout_max: self.election.1.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: 0,
            snapshot_max_chunk_size: (SNAPSHOT_CHUNK.min(self.limits.max_frame / 2)) as u64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))?;

        let space = Space::new(dir.clone(), self.min_free_disk, self.free_disk_probe.take());
        let (disk, recovered) = tokio::task::spawn_blocking(move || Disk::open(&dir))
            .await
            .map_err(|e| Error::Storage(std::io::Error::other(e)))?
            .map_err(Error::Storage)?;
        let log = LogStore::<D>::new(disk.clone(), &recovered).map_err(Error::Storage)?;
        let machine = StateMachine::new(self.object, disk.clone(), &recovered).map_err(Error::Storage)?;
        let image = machine.image.clone();
        let net = Arc::new(Net::new(self.limits, self.bind_outgoing));
        let factory = Factory { net: net.clone() };
        let raft = Raft::new(self.id, Arc::new(config), factory, log, machine)
            .await
            .map_err(|e| Error::Storage(std::io::Error::other(e.to_string())))?;

        let core =
            Server::start(self.id, raft.clone(), image, net, disk, listener, self.timeout, self.session_expiry, space);

        let initialize = self.initialize.unwrap_or(members.keys().next() == Some(&self.id));
        if initialize && !raft.is_initialized().await.map_err(|e| Error::Protocol(e.to_string()))? {
            let nodes: BTreeMap<NodeId, BasicNode> =
                members.iter().map(|(&id, addr)| (id, BasicNode { addr: addr.to_string() })).collect();
            // Another node may have initialised it first: that is fine.
            if let Err(e) = raft.initialize(nodes).await {
                tracing::info!("corum-raft: node {} did not initialise the cluster: {e}", self.id);
            }
        }
        let client = Client::for_node(core.clone(), members.into_iter().collect(), self.timeout);
        Ok(Node { core, client, listen })
    }
}

/// What a node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeMetrics {
    /// This node.
    pub id: NodeId,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its current term.
    pub term: u64,
    /// The index of the last entry in its log.
    pub last_log_index: Option<u64>,
    /// The index of the last entry applied to its copy of the object.
    pub last_applied: Option<u64>,
    /// The last index its latest snapshot covers.
    pub snapshot: Option<u64>,
    /// The last index dropped from its log.
    pub purged: Option<u64>,
    /// Client sessions its copy of the object keeps.
    pub sessions: usize,
    /// Client writes it has committed as leader.
    pub writes: u64,
    /// Log entries those writes took (several writes share an entry under load).
    pub write_entries: u64,
    /// Linearizable reads it has served as leader.
    pub reads: u64,
    /// Frames from peers or clients it could not decode.
    pub rejected_frames: u64,
    /// Snapshots it refused because they did not decode (or could not be checked), each
    /// answered with a rejection before openraft saw its last chunk.
    pub rejected_snapshots: u64,
    /// Client writes (as leader) and appends carrying entries (as follower) it refused
    /// because its disk was below its floor of free space ([`Builder::min_free_disk`]).
    pub refused_for_space: u64,
    /// Incoming connections it closed at once, past a limit
    /// ([`Builder::connection_limits`]).
    pub refused_connections: u64,
}

/// A running node. Writes and reads through it go to the leader wherever it is.
pub struct Node<D: Replicated> {
    core: Arc<Server<D>>,
    client: Client<D>,
    listen: SocketAddr,
}

impl<D: Replicated> Node<D> {
    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.core.id
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// Applies a write to the replicated object, once, and returns its response: proposed
    /// by the leader (this node or another, over TCP), committed by a majority's durable
    /// logs, and retried under the same session number across leader changes until the
    /// request timeout. See [`Client::execute_mut`].
    pub async fn execute_mut(&self, op: D::WriteOp) -> Result<D::Response, Error> {
        self.client.execute_mut(op).await
    }

    /// A linearizable read: served by the leader after it has confirmed its leadership
    /// with a quorum and applied everything committed before the read began.
    pub async fn execute(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        self.client.execute(op).await
    }

    /// A client that goes through this node (it can be cloned and shared by tasks).
    pub fn client(&self) -> Client<D> {
        self.client.clone()
    }

    /// Reads this node's own copy of the object, without asking anyone: as fresh as what
    /// this node has applied, not linearizable. For checks and monitoring.
    pub fn read_local<R>(&self, f: impl FnOnce(&D) -> R) -> R {
        let image = self.core.image.read().unwrap_or_else(|e| e.into_inner());
        f(&image.object)
    }

    /// What this node reports about itself.
    pub fn metrics(&self) -> NodeMetrics {
        let sessions = self.core.image.read().unwrap_or_else(|e| e.into_inner()).sessions();
        let m = self.core.metrics.borrow();
        NodeMetrics {
            id: self.core.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|id| id.index),
            snapshot: m.snapshot.map(|id| id.index),
            purged: m.purged.map(|id| id.index),
            sessions,
            writes: self.core.writes.load(Ordering::Relaxed),
            write_entries: self.core.entries.load(Ordering::Relaxed),
            reads: self.core.reads.load(Ordering::Relaxed),
            rejected_frames: self.core.rejected.load(Ordering::Relaxed),
            refused_connections: self.core.net.refused_connections.load(Ordering::Relaxed),
            rejected_snapshots: self.core.rejected_snapshots.load(Ordering::Relaxed),
            refused_for_space: self.core.refused_for_space.load(Ordering::Relaxed),
        }
    }

    /// The openraft instance underneath, for what this API does not cover (membership
    /// changes, triggering a snapshot, waiting on metrics).
    pub fn raft(&self) -> &Raft<Types<D>> {
        &self.core.raft
    }

    /// A network fault, for tests: closes every connection to and from this node and
    /// refuses new ones until [`reconnect`](Self::reconnect). The node runs on, cut off.
    pub fn disconnect(&self) {
        self.core.net.set_cut(true);
    }

    /// Ends a [`disconnect`](Self::disconnect).
    pub fn reconnect(&self) {
        self.core.net.set_cut(false);
    }

    /// Stops the node: its server, openraft, and its disk writer (after everything queued
    /// is on disk). Calls through it afterwards return [`Error::Shutdown`].
    pub async fn shutdown(&self) {
        if let Some(stopping) = self.stop() {
            stopping.await;
        }
    }

    /// Marks the node stopped and returns the rest of the work, unless it was already.
    fn stop(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if self.core.stopped.swap(true, Ordering::AcqRel) {
            return None;
        }
        let _ = self.core.stop.send(true);
        self.core.net.set_cut(true);
        let (raft, disk) = (self.core.raft.clone(), self.core.disk.clone());
        Some(async move {
            let _ = raft.shutdown().await;
            let _ = tokio::task::spawn_blocking(move || disk.close()).await;
        })
    }
}

/// Dropping a node stops it as [`Node::shutdown`] does, in the background of the tokio
/// runtime it is dropped in (call `shutdown` to wait until it has stopped).
impl<D: Replicated> Drop for Node<D> {
    fn drop(&mut self) {
        if let Some(stopping) = self.stop() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(stopping);
            }
        }
    }
}
