//! A node's server: it accepts connections from peers and clients, answers openraft's RPCs,
//! proposes client writes (gathered into log entries, a few in flight at a time) and serves
//! linearizable reads while this node leads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::raft::InstallSnapshotRequest;
use openraft::{BasicNode, Raft};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::net::{self, Frame, Net, Reply, Request, Response};
use crate::space::Space;
use crate::state_machine::Image;
use crate::storage::Disk;
use crate::types::{decode, Applied, Batch, NodeId, Replicated, Types, Write};

/// A node's server, shared by the node's handle and its client: openraft, the object's
/// image, the network, the write batcher, and the node's counters.
pub(crate) struct Server<D: Replicated> {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft<Types<D>>,
    /// openraft's metrics, subscribed once (read on every write to check leadership).
    pub(crate) metrics: watch::Receiver<openraft::RaftMetrics<NodeId, BasicNode>>,
    pub(crate) image: Arc<RwLock<Image<D>>>,
    pub(crate) net: Arc<Net>,
    pub(crate) disk: Arc<Disk>,
    pub(crate) stop: watch::Sender<bool>,
    pub(crate) stopped: AtomicBool,
    batcher: mpsc::UnboundedSender<Waiting<D>>,
    pub(crate) writes: AtomicU64,
    pub(crate) entries: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) rejected_snapshots: AtomicU64,
    /// The floor of free disk space, and how to measure it.
    space: Space,
    /// Client writes and appends refused for want of disk space.
    pub(crate) refused_for_space: AtomicU64,
    /// The snapshot being received, as openraft's own stream of it holds it (its id and
    /// the bytes so far), so that it is checked whole before its last chunk reaches
    /// openraft (see [`Server::check_snapshot_chunk`]).
    receiving: tokio::sync::Mutex<Option<(String, Vec<u8>)>>,
}

/// A client write waiting for a log entry, and where its answer goes.
type Waiting<D> = (Write<D>, oneshot::Sender<Reply<D>>);

/// Log entries a leader has proposed and not yet seen applied, at most. openraft 0.9
/// writes one entry to disk at a time, so the writes that arrive while these are in flight
/// wait and go together in the next entry: one flush for all of them.
const ENTRIES_IN_FLIGHT: usize = 4;
/// Client writes in one log entry, at most.
const BATCH_MAX: usize = 256;

/// Gathers client writes into log entries.
async fn batch_writes<D: Replicated>(
    core: std::sync::Weak<Server<D>>,
    raft: Raft<Types<D>>,
    mut queue: mpsc::UnboundedReceiver<Waiting<D>>,
    timeout: Duration,
    session_expiry: Duration,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(ENTRIES_IN_FLIGHT));
    while let Some(first) = queue.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
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
            // The permit is given back when this task ends, however it ends.
            let _permit = permit;
            let n = commands.len() as u64;
            // openraft answers a proposal when its entry is applied or truncated; a deposed
            // leader that installs a snapshot covering its pending entries does neither, so
            // the wait is bounded, and the permit given back, after the request timeout.
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

impl<D: Replicated> Server<D> {
    /// Starts serving peers and clients on `listener`, and gathering writes into log
    /// entries, for the node `id` running `raft`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        id: NodeId,
        raft: Raft<Types<D>>,
        image: Arc<RwLock<Image<D>>>,
        net: Arc<Net>,
        disk: Arc<Disk>,
        listener: TcpListener,
        timeout: Duration,
        session_expiry: Duration,
        space: Space,
    ) -> Arc<Self> {
        let (stop, stopped_rx) = watch::channel(false);
        let (batcher, queue) = mpsc::unbounded_channel();
        let server = Arc::new(Server {
            id,
            raft: raft.clone(),
            metrics: raft.metrics(),
            image,
            net,
            disk,
            stop,
            stopped: AtomicBool::new(false),
            batcher,
            writes: AtomicU64::new(0),
            entries: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rejected_snapshots: AtomicU64::new(0),
            space,
            refused_for_space: AtomicU64::new(0),
            receiving: tokio::sync::Mutex::new(None),
        });
        tokio::spawn(accept(listener, server.clone(), stopped_rx));
        tokio::spawn(batch_writes(Arc::downgrade(&server), raft, queue, timeout, session_expiry));
        server
    }

    /// Proposes a client's write, if this node leads: queued for the batcher, which puts
    /// it in the next log entry.
    pub(crate) async fn write_here(&self, command: Write<D>) -> Reply<D> {
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
        if let Some(free) = self.space.short() {
            self.refused_for_space.fetch_add(1, Ordering::Relaxed);
            return Reply::DiskFull { free };
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

    /// Follows a snapshot's chunks as openraft receives them and, at its last, checks that
    /// the whole decodes as an image of the object before openraft sees that chunk: openraft
    /// takes a snapshot its state machine cannot install for a storage error, fatal to the
    /// node. An error here answers the chunk with a rejection instead, which the sender's
    /// network layer takes for a transient failure (openraft's leader backs off and sends
    /// a snapshot again); the node goes on serving from what it has. A last chunk that
    /// does not follow the chunks seen before it (another stream, a gap) is refused too,
    /// since it cannot be checked.
    async fn check_snapshot_chunk(&self, rpc: &InstallSnapshotRequest<Types<D>>) -> Result<(), String> {
        let mut receiving = self.receiving.lock().await;
        if rpc.offset == 0 {
            *receiving = Some((rpc.meta.snapshot_id.clone(), Vec::new()));
        }
        let follows = receiving
            .as_ref()
            .is_some_and(|(id, bytes)| *id == rpc.meta.snapshot_id && bytes.len() as u64 == rpc.offset);
        if !follows {
            // openraft answers such a chunk with a mismatch, and its sender starts over.
            *receiving = None;
            return if rpc.done { Err("a snapshot's last chunk without the chunks before it".into()) } else { Ok(()) };
        }
        let (_, bytes) = receiving.as_mut().expect("follows");
        bytes.extend_from_slice(&rpc.data);
        if rpc.done {
            let (_, whole) = receiving.take().expect("follows");
            decode::<Image<D>>(&whole).map_err(|e| format!("a snapshot that does not decode: {e}"))?;
        }
        Ok(())
    }

    async fn serve(self: Arc<Self>, body: Vec<u8>) -> Frame {
        let response = match decode::<Request<D>>(&body) {
            Ok(Request::Append(rpc)) => match self.space.short().filter(|_| !rpc.entries.is_empty()) {
                // Taken by openraft, the entries would fail its log store, which stops the
                // node. Heartbeats (no entries) go on, so the node keeps its leader.
                Some(free) => {
                    self.refused_for_space.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("corum-raft: node {} refused entries: {free} bytes free on its disk", self.id);
                    Response::Rejected(format!("the disk has {free} bytes free, below its floor"))
                }
                None => Response::Append(self.raft.append_entries(rpc).await),
            },
            Ok(Request::Vote(rpc)) => Response::Vote(self.raft.vote(rpc).await),
            Ok(Request::Snapshot(rpc)) => match self.check_snapshot_chunk(&rpc).await {
                Ok(()) => Response::Snapshot(self.raft.install_snapshot(rpc).await),
                Err(why) => {
                    self.rejected_snapshots.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("corum-raft: node {} refused a snapshot: {why}", self.id);
                    Response::Rejected(why)
                }
            },
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

async fn accept<D: Replicated>(listener: TcpListener, core: Arc<Server<D>>, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, from)) => {
                if core.net.is_cut() {
                    drop(stream);
                    continue;
                }
                // Over a limit: closed at once, before any byte is read.
                let Some(admitted) = core.net.admit(from.ip()) else {
                    tracing::debug!("corum-raft: node {} refused a connection from {from}: too many", core.id);
                    drop(stream);
                    continue;
                };
                let served = core.clone();
                tokio::spawn(net::serve_connection(stream, admitted, stop.clone(), move |body| {
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
