//! TCP between nodes and from clients: length-prefixed frames, each carrying a request id,
//! so that one connection carries many requests at once and answers come back in any order.
//!
//! A frame is a little-endian `u32` body length, a little-endian `u64` request id, and the
//! body: a postcard-encoded [`Request`] or [`Response`]. What a node takes from the network
//! is bounded ([`Limits`]): a frame longer than `max_frame` closes the connection (its body
//! is read into a buffer that grows as bytes arrive, so a header alone allocates nothing);
//! a frame begun and not finished within `frame_timeout`, or no frame begun within
//! `idle_timeout`, closes it too; a node holds at most `max_connections` incoming
//! connections, `max_connections_per_ip` of them from one address, and closes any more at
//! once. A body that does not decode is answered with [`Response::Rejected`] and logged,
//! and the connection goes on.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::types::{NodeId, Replicated, Types, Write};

/// What a node or client accepts from the network (see the module docs and
/// `Builder::frame_limit`, `Builder::connection_limits`, `Builder::timeouts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The longest frame body accepted or sent.
    pub(crate) max_frame: usize,
    /// From a frame's first byte to its last.
    pub(crate) frame_timeout: Duration,
    /// With no frame begun.
    pub(crate) idle_timeout: Duration,
    /// Incoming connections held at once.
    pub(crate) max_connections: usize,
    /// Incoming connections held at once from one IP address.
    pub(crate) max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame: DEFAULT_MAX_FRAME,
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            max_connections_per_ip: 128,
        }
    }
}

/// The longest frame body a node accepts or sends by default: 16 MiB (openraft sends
/// snapshots in chunks of 3 MiB, and splits append requests that would not fit).
pub(crate) const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The most a frame's body buffer grows by before the bytes to fill it have arrived.
const READ_AHEAD: usize = 64 << 10;

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
    /// This node leads, and its disk is below its floor of free space: not proposed.
    DiskFull {
        /// The free bytes it measured.
        free: u64,
    },
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

    /// The bytes to send, as request `id`; a body over `max_frame` is refused.
    fn finish(mut self, id: u64, max_frame: usize) -> io::Result<Vec<u8>> {
        let len = self.body_len();
        if len > max_frame {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("a frame of {len} bytes is too long")));
        }
        self.0.resize(self.0.len().max(HEADER), 0);
        self.0[..4].copy_from_slice(&(len as u32).to_le_bytes());
        self.0[4..HEADER].copy_from_slice(&id.to_le_bytes());
        Ok(self.0)
    }
}

/// Reads one frame within `limits`; `Ok(None)` at a clean end of the stream.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    read: &mut R,
    limits: &Limits,
) -> io::Result<Option<(u64, Vec<u8>)>> {
    let timed_out = |what: &str| io::Error::new(io::ErrorKind::TimedOut, what.to_string());
    let mut header = [0u8; HEADER];
    match tokio::time::timeout(limits.idle_timeout, read.read(&mut header[..1])).await {
        Err(_) => return Err(timed_out("no frame begun within the idle timeout")),
        Ok(Ok(0)) => return Ok(None),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
    }
    let rest = async {
        read.read_exact(&mut header[1..]).await?;
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let id = u64::from_le_bytes(header[4..].try_into().expect("8 bytes"));
        if len > limits.max_frame {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a frame of {len} bytes is too long")));
        }
        // Grown as bytes arrive: a header claiming a long body allocates nothing by itself.
        let mut body = Vec::with_capacity(len.min(READ_AHEAD));
        (&mut *read).take(len as u64).read_to_end(&mut body).await?;
        if body.len() < len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the stream ended inside a frame"));
        }
        Ok(Some((id, body)))
    };
    tokio::time::timeout(limits.frame_timeout, rest).await.map_err(|_| timed_out("a frame not finished in time"))?
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
    limits: Limits,
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
    async fn open(addr: SocketAddr, timeout: Duration, limits: Limits, local: Option<IpAddr>) -> io::Result<Conn> {
        let connect = async {
            let Some(local) = local else { return TcpStream::connect(addr).await };
            let socket = if local.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
            socket.bind(SocketAddr::new(local, 0))?;
            socket.connect(addr).await
        };
        let stream = tokio::time::timeout(timeout, connect)
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
                while let Ok(Some((id, body))) = read_frame(&mut read, &limits).await {
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
        Ok(Conn { limits, queue, pending, closed, next_id: AtomicU64::new(1), reader })
    }

    async fn call(&self, frame: Frame, timeout: Duration) -> io::Result<Vec<u8>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = frame.finish(id, self.limits.max_frame)?;
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
    pub(crate) limits: Limits,
    /// The local address outgoing connections are made from (`Builder::bind_outgoing`).
    local: Option<IpAddr>,
    /// Incoming connections held now, in all and per IP address (the server's).
    incoming: Mutex<HashMap<IpAddr, usize>>,
    incoming_total: AtomicUsize,
    /// Incoming connections closed at once for a limit.
    pub(crate) refused_connections: AtomicU64,
}

type Slot = Arc<tokio::sync::Mutex<Option<Arc<Conn>>>>;

impl Net {
    /// A network bounded by `limits`, whose outgoing connections come from `local` (or
    /// wherever the system routes them).
    pub(crate) fn new(limits: Limits, local: Option<IpAddr>) -> Net {
        Net { limits, local, ..Net::default() }
    }

    /// Counts an incoming connection from `ip` if the limits allow one more; the
    /// returned guard gives it back.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut incoming = self.incoming.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = incoming.entry(ip).or_insert(0);
        if *from_ip >= self.limits.max_connections_per_ip
            || self.incoming_total.load(Ordering::Relaxed) >= self.limits.max_connections
        {
            if *from_ip == 0 {
                incoming.remove(&ip);
            }
            self.refused_connections.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *from_ip += 1;
        self.incoming_total.fetch_add(1, Ordering::Relaxed);
        Some(Admitted { net: self.clone(), ip })
    }

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
                    let opened = Conn::open(addr, timeout, self.limits, self.local).await;
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

/// An incoming connection counted against the limits (`Net::admit`), given back on drop.
pub(crate) struct Admitted {
    net: Arc<Net>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut incoming = self.net.incoming.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = incoming.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                incoming.remove(&self.ip);
            }
        }
        self.net.incoming_total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one incoming connection: each request is handled on its own task, and answers
/// go back as they are ready. Ends when the peer closes, on a broken frame, when `stop`
/// fires, or when `net` is cut.
pub(crate) async fn serve_connection<F, Fut>(
    stream: TcpStream,
    admitted: Admitted,
    mut stop: tokio::sync::watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Vec<u8>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Frame> + Send,
{
    let net = admitted.net.clone();
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    let (mut read, write) = stream.into_split();
    let (queue, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_frames(write, rx));
    let max_frame = net.limits.max_frame;
    loop {
        let next = tokio::select! {
            next = read_frame(&mut read, &net.limits) => next,
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
                    match answer.finish(id, max_frame) {
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
    drop(admitted);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::decode;

    #[derive(Clone, Default, Serialize, Deserialize)]
    struct Counter(u64);

    impl corum::Dispatch for Counter {
        type ReadOp = u64;
        type WriteOp = (u64, u64);
        type Response = u64;
        fn dispatch(&self, _: &u64) -> u64 {
            self.0
        }
        fn dispatch_mut(&mut self, &(_, add): &(u64, u64)) -> u64 {
            self.0 += add;
            self.0
        }
    }

    /// xorshift64*: arbitrary bytes, the same on every run.
    fn bytes(state: &mut u64, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                *state ^= *state >> 12;
                *state ^= *state << 25;
                *state ^= *state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    /// Every decoder a node runs on what it reads (requests, answers) takes arbitrary
    /// bytes, including prefixes of valid messages, without panicking: the bytes decode or
    /// are an error.
    #[test]
    fn decoders_take_arbitrary_bytes() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        let valid = [
            postcard::to_stdvec(&Request::<Counter>::Write(crate::types::Write {
                client: 7,
                sequence: 3,
                floor: 2,
                retry: false,
                op: (1, 1),
            }))
            .unwrap(),
            postcard::to_stdvec(&Request::<Counter>::Read(5)).unwrap(),
            postcard::to_stdvec(&Response::<Counter>::Client(Reply::NotLeader(Some(2)))).unwrap(),
        ];
        let mut decoded = 0;
        for round in 0..20_000usize {
            let len = (round % 97) * (1 + round % 5);
            let mut body = bytes(&mut state, len);
            if round % 4 == 0 {
                // A valid message, cut short or with a byte changed.
                let message = &valid[round % valid.len()];
                body = message[..len.min(message.len())].to_vec();
                if let Some(byte) = body.get_mut(len % message.len().max(1)) {
                    *byte ^= (round as u8) | 1;
                }
            }
            decoded += usize::from(decode::<Request<Counter>>(&body).is_ok());
            let _ = decode::<Response<Counter>>(&body);
        }
        // Some arbitrary bytes do decode (postcard is dense): the loop reached the decoders' success paths too.
        assert!(decoded > 0);
    }

    /// A frame reader fed arbitrary streams ends with a frame within the limit, a clean end,
    /// or an error: never a body over the limit, never a panic, and a header alone allocates
    /// no more than its read-ahead.
    #[tokio::test]
    async fn a_frame_reader_takes_arbitrary_streams() {
        let limits = Limits { max_frame: 4096, ..Limits::default() };
        let mut state = 0x2545_f491_4f6c_dd1d;
        let (mut frames, mut errors) = (0, 0);
        for round in 0..5_000usize {
            let mut stream = bytes(&mut state, round % 200);
            if round % 3 == 0 && stream.len() >= HEADER {
                // A plausible length: within the limit, or just past it.
                let len = (round * 37) % (limits.max_frame + 64);
                stream[..4].copy_from_slice(&(len as u32).to_le_bytes());
            }
            let mut reader = stream.as_slice();
            loop {
                match read_frame(&mut reader, &limits).await {
                    Ok(Some((_, body))) => {
                        assert!(body.len() <= limits.max_frame);
                        frames += 1;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
        }
        assert!(frames > 0 && errors > 0, "frames {frames}, errors {errors}");
        // A header claiming almost the whole limit with no body behind it ends short (an
        // error); the same header with its body behind it is read whole, past the buffer's
        // read-ahead.
        let limits = Limits { max_frame: 4 << 20, ..Limits::default() };
        let len = (4 << 20) - 1;
        let mut stream = (len as u32).to_le_bytes().to_vec();
        stream.extend_from_slice(&1u64.to_le_bytes());
        let ended = read_frame(&mut stream.as_slice(), &limits).await;
        assert!(matches!(&ended, Err(e) if e.kind() == io::ErrorKind::UnexpectedEof), "{ended:?}");
        stream.extend((0..len).map(|i| i as u8));
        let (id, body) = read_frame(&mut stream.as_slice(), &limits).await.unwrap().unwrap();
        assert_eq!((id, body.len(), body[len - 1]), (1, len, (len - 1) as u8));
    }
}
