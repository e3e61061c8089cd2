//! TCP between nodes and from clients: length-prefixed frames, each carrying a request id,
//! so that one connection carries many requests at once and answers come back in any order.
//!
//! A frame is a little-endian `u32` body length, a little-endian `u64` request id, and the
//! body: a postcard-encoded [`Request`] or [`Response`]. A frame longer than
//! [`MAX_FRAME`] closes the connection; a body that does not decode is answered with
//! [`Response::Rejected`] and logged, and the connection goes on.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::types::{NodeId, Replicated, Types, Write};

/// The longest frame body a node accepts or sends: 64 MiB.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// What travels to a node.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Request<D: Replicated> {
    Append(AppendEntriesRequest<Types<D>>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<Types<D>>),
    Write(Write<D>),
    Read(D::ReadOp),
}

/// A node's answer to a client's write or read.
#[derive(Serialize, Deserialize, Clone)]
#[serde(bound = "")]
pub(crate) enum Reply<D: Replicated> {
    Done(D::Response),
    /// This node is not the leader, and did not propose the write; the leader it knows
    /// of, if any.
    NotLeader(Option<NodeId>),
    /// This node proposed the write as leader and lost its leadership before the write
    /// was applied: the write may still commit under another leader.
    Deposed(Option<NodeId>),
    /// The node did not serve it (shutting down) and did not propose it.
    Refused(String),
    /// The node could not serve it now (no quorum, not applied in time): it may have
    /// proposed the write.
    Unavailable(String),
    /// A write whose number is below what its session has released.
    Expired,
    /// A write whose session expired; not applied.
    UnknownSession,
    /// `dispatch_mut` panicked on this write.
    Panicked,
}

/// What travels back.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) enum Response<D: Replicated> {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Client(Reply<D>),
    /// The request's bytes did not decode.
    Rejected(String),
}

/// A frame's header: the body's length and the request id.
const HEADER: usize = 12;

/// A message encoded behind room for its frame header, so that sending it copies nothing.
#[derive(Default)]
pub(crate) struct Frame(Vec<u8>);

impl Frame {
    /// Encodes `value` as a frame's body.
    pub(crate) fn encode<T: Serialize>(value: &T) -> io::Result<Frame> {
        postcard::to_extend(value, vec![0u8; HEADER])
            .map(Frame)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// The body's length.
    pub(crate) fn body_len(&self) -> usize {
        self.0.len().saturating_sub(HEADER)
    }

    /// The bytes to send, as request `id`; a body over [`MAX_FRAME`] is refused.
    fn finish(mut self, id: u64) -> io::Result<Vec<u8>> {
        let len = self.body_len();
        if len > MAX_FRAME {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {len} bytes is too long")));
        }
        self.0.resize(self.0.len().max(HEADER), 0);
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.0[4..HEADER].copy_from_slice(&id.to_le_bytes());
        Ok(self.0)
    }
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
async fn read_frame(read: &mut OwnedReadHalf) -> io::Result<Option<(u64, Vec<u8>)>> {
    let mut header = [0u8; HEADER];
    match read.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let id = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is too long")));
    }
    let mut body = vec![0u8; len];
    read.read_exact(&mut body).await?;
    Ok(Some((id, body)))
}

/// Writes queued frames: a lone one as it is, several queued together in one write.
async fn write_frames(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut buf = Vec::new();
    while let Some(first) = queue.recv().await {
        let Ok(second) = queue.try_recv() else {
            if write.write_all(&first).await.is_err() {
                return;
            }
            continue;
        };
        buf.clear();
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second);
        while buf.len() < (1 << 20) {
            match queue.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if write.write_all(&buf).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// One outgoing connection, shared by every request to that address.
struct Conn {
    queue: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    async fn open(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::NotConnected, format!("connecting to {addr} timed out")))??;
        stream.set_nodelay(true)?;
        let (mut read, write) = stream.into_split();
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(write, rx));
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let reader = {
            let pending = pending.clone();
            let closed = closed.clone();
            tokio::spawn(async move {
                while let Ok(Some((id, body))) = read_frame(&mut read).await {
                    let waiter = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(body);
                    }
                }
                closed.store(true, Ordering::Release);
                // Dropping the senders fails every request still waiting.
                pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
            })
        };
        Ok(Conn { queue, pending, closed, next_id: AtomicU64::new(1), reader })
    }

    async fn call(&self, frame: Frame, timeout: Duration) -> io::Result<Vec<u8>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame.finish(id)?;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
        let lost = || io::Error::new(io::ErrorKind::ConnectionReset, "the connection closed");
        if self.closed.load(Ordering::Acquire) || self.queue.send(frame).is_err() {
            self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(lost());
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(lost()),
            Err(_) => {
                self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
                // The node took the request but did not answer in time (for a write: it
                // could not commit it): reachable, but no quorum behind it, or too slow.
                Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"))
            }
        }
    }
}

/// Outgoing connections of one node or client, one per address, opened when first needed
/// and again after one closes; and the switch that cuts them all (the partition fault).
#[derive(Default)]
pub(crate) struct Net {
    /// One slot per address: a connection being opened to one address (which can take
    /// the whole timeout when its host is down) holds up only calls to that address.
    conns: Mutex<HashMap<SocketAddr, Slot>>,
    cut: AtomicBool,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

impl Net {
    /// Sends `frame` to `addr` and waits up to `timeout` for the answer's body.
    pub(crate) async fn call(&self, addr: SocketAddr, frame: Frame, timeout: Duration) -> io::Result<Vec<u8>> {
        if self.is_cut() {
            return Err(io::Error::new(io::ErrorKind::NotConnected, "this node is disconnected"));
        }
        let slot = self.conns.lock().unwrap_or_else(|e| e.into_inner()).entry(addr).or_default().clone();
        let conn = {
            let mut slot = slot.lock().await;
            match slot.as_ref() {
                Some(conn) if !conn.closed.load(Ordering::Acquire) => conn.clone(),
                _ => {
                    // A connection not made: nothing was sent (the client counts on the kind).
                    let opened = Conn::open(addr, timeout).await;
                    let conn = Arc::new(opened.map_err(|e| io::Error::new(io::ErrorKind::NotConnected, e))?);
                    *slot = Some(conn.clone());
                    conn
                }
            }
        };
        conn.call(frame, timeout).await
    }

    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Acquire)
    }

    /// Cuts (or restores) this node's network: closes its outgoing connections; the server
    /// closes incoming ones while cut.
    pub(crate) fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::Release);
        if cut {
            self.conns.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
    }
}

/// Serves one incoming connection: each request is handled on its own task, and answers
/// go back as they are ready. Ends when the peer closes, on a broken frame, when `stop`
/// fires, or when `net` is cut.
pub(crate) async fn serve_connection<F, Fut>(
    stream: TcpStream,
    net: Arc<Net>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Frame> + Send,
{
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (mut read, write) = stream.into_split();
    let (queue, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_frames(write, rx));
    loop {
        let next = tokio::select! {
            next = read_frame(&mut read) => next,
            _ = stop.changed() => break,
        };
        match next {
            Ok(Some((id, body))) => {
                if net.is_cut() {
                    break;
                }
                let handle = handle.clone();
                let queue = queue.clone();
                tokio::spawn(async move {
                    let answer = handle(body).await;
                    match answer.finish(id) {
                        Ok(f) => {
                            let _ = queue.send(f);
                        }
                        Err(e) => tracing::warn!("corum-raft: answer to {peer:?} not sent: {e}"),
                    }
                });
            }
            Ok(None) => break,
            Err(e) => {
                tracing::warn!("corum-raft: closing the connection from {peer:?}: {e}");
                break;
            }
        }
    }
    drop(queue);
    writer.abort();
}
