//! A node: openraft with the object as its state machine, its log on disk, and a TCP
//! server for its peers and clients.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{
    CheckIsLeaderError, ClientWriteError, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::client::Client;
use crate::error::Error;
use crate::net::{self, Frame, Net, Reply, Request, Response};
use crate::state_machine::{Image, StateMachine};
use crate::storage::{Disk, LogStore};
use crate::types::{decode, Applied, Batch, Command, NodeId, Replicated, Types};

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
        members.insert(self.id, listen);
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
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))?;

        let (disk, recovered) = tokio::task::spawn_blocking(move || Disk::open(&dir))
            .await
            .map_err(|e| Error::Storage(std::io::Error::other(e)))?
            .map_err(Error::Storage)?;
        let log = LogStore::<D>::new(disk.clone(), &recovered).map_err(Error::Storage)?;
        let machine = StateMachine::new(self.object, disk.clone(), &recovered).map_err(Error::Storage)?;
        let image = machine.image.clone();
        let net = Arc::new(Net::default());
        let factory = Factory { net: net.clone() };
        let raft = Raft::new(self.id, Arc::new(config), factory, log, machine)
            .await
            .map_err(|e| Error::Storage(std::io::Error::other(e.to_string())))?;

        let (stop, stopped_rx) = watch::channel(false);
        let (batcher, queue) = mpsc::unbounded_channel();
        let core = Arc::new(Core {
            id: self.id,
            raft: raft.clone(),
            metrics: raft.metrics(),
            image,
            net: net.clone(),
            disk,
            stop,
            stopped: AtomicBool::new(false),
            batcher,
            writes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        tokio::spawn(accept(listener, core.clone(), stopped_rx));
        tokio::spawn(batch_writes(Arc::downgrade(&core), raft.clone(), queue, self.timeout, self.session_expiry));

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

/// What a node's server, its client and its handle share.
pub(crate) struct Core<D: Replicated> {
    pub(crate) id: NodeId,
    raft: Raft<Types<D>>,
    /// openraft's metrics, subscribed once (read on every write to check leadership).
    metrics: watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    image: Arc<RwLock<Image<D>>>,
    pub(crate) net: Arc<Net>,
    disk: Arc<Disk>,
    stop: watch::Sender<bool>,
    pub(crate) stopped: AtomicBool,
    batcher: mpsc::UnboundedSender<Waiting<D>>,
    writes: AtomicU64,
    entries: AtomicU64,
    reads: AtomicU64,
    rejected: AtomicU64,
}

/// A client write waiting for a log entry, and where its answer goes.
type Waiting<D> = (Command<D>, oneshot::Sender<Reply<D>>);

/// Log entries a leader has proposed and not yet seen applied, at most. openraft 0.9
/// writes one entry to disk at a time, so the writes that arrive while these are in flight
/// wait and go together in the next entry: one flush for all of them.
const ENTRIES_IN_FLIGHT: usize = 4;
/// Client writes in one log entry, at most.
const BATCH_MAX: usize = 256;

/// Gathers client writes into log entries.
async fn batch_writes<D: Replicated>(
    core: std::sync::Weak<Core<D>>,
    raft: Raft<Types<D>>,
    mut queue: mpsc::UnboundedReceiver<Waiting<D>>,
    timeout: Duration,
    session_expiry: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let mut commands = vec![first.0];
        let mut waiters = vec![first.1];
        while commands.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok((command, waiter)) => {
                    commands.push(command);
                    waiters.push(waiter);
                }
                Err(_) => break,
            }
        }
        let (raft, core) = (raft.clone(), core.clone());
        tokio::spawn(async move {
            // The slot is freed when this task ends, however it ends.
            let _slot = slot;
            let n = commands.len() as u64;
            // openraft answers a proposal when its entry is applied or truncated; a deposed
            // leader that installs a snapshot covering its pending entries does neither, so
            // the wait is bounded, and the slot freed, after the request timeout.
            let written = tokio::time::timeout(timeout, raft.client_write(Batch::new(commands, session_expiry))).await;
            let failed = match written {
                Ok(Ok(written)) => {
                    if let Some(core) = core.upgrade() {
                        core.writes.fetch_add(n, Ordering::Relaxed);
                        core.entries.fetch_add(1, Ordering::Relaxed);
                    }
                    for (waiter, applied) in waiters.into_iter().zip(written.data) {
                        let _ = waiter.send(match applied {
                            Applied::Response(r) => Reply::Done(r),
                            Applied::Expired => Reply::Expired,
                            Applied::UnknownSession => Reply::UnknownSession,
                            Applied::Panicked => Reply::Panicked,
                        });
                    }
                    return;
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(to)))) => Reply::Deposed(to.leader_id),
                Ok(Err(e)) => Reply::Unavailable(e.to_string()),
                Err(_) => Reply::Unavailable("the entry was not applied in time".into()),
            };
            for waiter in waiters {
                let _ = waiter.send(failed.clone());
            }
        });
    }
}

impl<D: Replicated> Core<D> {
    /// Proposes a client's write, if this node leads: queued for the batcher, which puts
    /// it in the next log entry.
    pub(crate) async fn write_here(&self, command: Command<D>) -> Reply<D> {
        if self.stopped.load(Ordering::Acquire) {
            return Reply::Refused("the node is shut down".into());
        }
        // A follower answers without proposing (the client may then send the write
        // elsewhere as a first try); a leader deposed after proposing answers `Deposed`.
        let (leads, leader) = {
            let m = self.metrics.borrow();
            (m.state == openraft::ServerState::Leader && m.current_leader == Some(self.id), m.current_leader)
        };
        if !leads {
            return Reply::NotLeader(leader);
        }
        let (tx, rx) = oneshot::channel();
        if self.batcher.send((command, tx)).is_err() {
            return Reply::Refused("the node is shut down".into());
        }
        rx.await.unwrap_or_else(|_| Reply::Unavailable("the node shut down with the write queued".into()))
    }

    /// Serves a linearizable read, if this node leads: confirms its leadership with a
    /// quorum, waits until it has applied everything committed before, then reads its copy.
    pub(crate) async fn read_here(&self, op: &D::ReadOp) -> Reply<D> {
        if self.stopped.load(Ordering::Acquire) {
            return Reply::Refused("the node is shut down".into());
        }
        match self.raft.ensure_linearizable().await {
            Ok(_) => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                let image = self.image.read().unwrap_or_else(|e| e.into_inner());
                Reply::Done(image.object.dispatch(op))
            }
            Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(to))) => Reply::NotLeader(to.leader_id),
            Err(e) => Reply::Unavailable(e.to_string()),
        }
    }

    async fn serve(self: Arc<Self>, body: Vec<u8>) -> Frame {
        let response = match decode::<Request<D>>(&body) {
            Ok(Request::Append(rpc)) => Response::Append(self.raft.append_entries(rpc).await),
            Ok(Request::Vote(rpc)) => Response::Vote(self.raft.vote(rpc).await),
            Ok(Request::Snapshot(rpc)) => Response::Snapshot(self.raft.install_snapshot(rpc).await),
            Ok(Request::Write(command)) => Response::Client(self.write_here(command).await),
            Ok(Request::Read(op)) => Response::Client(self.read_here(&op).await),
            Err(e) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("corum-raft: node {} rejected a frame that does not decode: {e}", self.id);
                Response::Rejected(e.to_string())
            }
        };
        Frame::encode(&response).unwrap_or_else(|e| {
            Frame::encode(&Response::<D>::Rejected(format!("the answer does not encode: {e}"))).unwrap_or_default()
        })
    }
}

async fn accept<D: Replicated>(listener: TcpListener, core: Arc<Core<D>>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                if core.net.is_cut() {
                    drop(stream);
                    continue;
                }
                let served = core.clone();
                tokio::spawn(net::serve_connection(stream, core.net.clone(), stop.clone(), move |body| {
                    served.clone().serve(body)
                }));
            }
            Err(e) => {
                tracing::warn!("corum-raft: accepting a connection failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
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
}

/// A running node. Writes and reads through it go to the leader wherever it is.
pub struct Node<D: Replicated> {
    core: Arc<Core<D>>,
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

/// Opens connections to peers for openraft.
struct Factory {
    net: Arc<Net>,
}

impl<D: Replicated> RaftNetworkFactory<Types<D>> for Factory {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer { target, addr: node.addr.parse().ok(), net: self.net.clone() }
    }
}

/// openraft's view of one peer.
struct Peer {
    target: NodeId,
    addr: Option<SocketAddr>,
    net: Arc<Net>,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, BasicNode, E>>;

impl Peer {
    async fn call<D: Replicated, E: std::error::Error>(
        &self,
        request: Request<D>,
        timeout: Duration,
    ) -> RpcResult<Response<D>, E> {
        let Some(addr) = self.addr else {
            let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "the peer's address does not parse");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let frame = Frame::encode(&request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if frame.body_len() > net::MAX_FRAME {
            // openraft splits the entries and sends again; other requests cannot be split.
            if let Request::Append(rpc) = &request {
                let hint = (rpc.entries.len() as u64 / 2).max(1);
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(hint)));
            }
        }
        let answer =
            self.net.call(addr, frame, timeout).await.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        decode(&answer).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
}

fn unexpected<E: std::error::Error>(what: &str) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unexpected answer: {what}"));
    RPCError::Network(NetworkError::new(&e))
}

impl<D: Replicated> RaftNetwork<Types<D>> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Types<D>>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, RaftError<NodeId>> {
        match self.call::<D, _>(Request::Append(rpc), option.hard_ttl()).await? {
            Response::Append(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not an append answer")),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Types<D>>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        match self.call::<D, _>(Request::Snapshot(rpc), option.hard_ttl()).await? {
            Response::Snapshot(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not a snapshot answer")),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, RaftError<NodeId>> {
        match self.call::<D, _>(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(r) => r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e))),
            Response::Rejected(why) => Err(unexpected(&why)),
            _ => Err(unexpected("not a vote answer")),
        }
    }
}
