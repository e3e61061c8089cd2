//! Clients: writes that take effect once across retries and leader changes, and
//! linearizable reads, sent to the leader wherever it is.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::net::{Frame, Net, Reply, Request, Response};
use crate::server::Server;
use crate::types::{decode, NodeId, Replicated, Write};

const NO_LEADER: u64 = u64::MAX;

/// Settings of a [`Client`] that reaches a cluster over TCP from outside its nodes.
///
/// ```no_run
/// # #[derive(Clone, Default, serde::Serialize, serde::Deserialize)] struct Counter(u64);
/// # impl corum::Dispatch for Counter {
/// #     type ReadOp = (); type WriteOp = u64; type Response = u64;
/// #     fn dispatch(&self, _: &()) -> u64 { self.0 }
/// #     fn dispatch_mut(&mut self, a: &u64) -> u64 { self.0 += a; self.0 }
/// # }
/// # async fn run() -> Result<(), corum_raft::Error> {
/// use std::time::Duration;
/// use corum_raft::Client;
///
/// let client = Client::<Counter>::builder()
///     .node(1, "127.0.0.1:7001".parse().unwrap())
///     .node(2, "127.0.0.1:7002".parse().unwrap())
///     .node(3, "127.0.0.1:7003".parse().unwrap())
///     .timeout(Duration::from_secs(2))
///     .build()?;
/// client.execute_mut(1).await?;
/// let total = client.execute(()).await?;
/// # Ok(()) }
/// ```
pub struct ClientBuilder<D> {
    members: Vec<(NodeId, SocketAddr)>,
    timeout: Duration,
    follow_leader: bool,
    object: std::marker::PhantomData<fn() -> D>,
}

impl<D: Replicated> ClientBuilder<D> {
    /// A member of the cluster and its address.
    pub fn node(mut self, id: NodeId, addr: SocketAddr) -> Self {
        self.members.push((id, addr));
        self
    }

    /// How long a write or read keeps trying before it gives up (default 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether to follow the leader hints nodes give (default `true`). With `false`, a call
    /// goes to the first node only and a follower's answer is [`Error::NotLeader`].
    pub fn follow_leader(mut self, follow: bool) -> Self {
        self.follow_leader = follow;
        self
    }

    /// Checks the settings; connections are opened when first needed.
    pub fn build(self) -> Result<Client<D>, Error> {
        if self.members.is_empty() {
            return Err(Error::Config("a client needs at least one node (ClientBuilder::node)".into()));
        }
        let mut ids: Vec<NodeId> = self.members.iter().map(|m| m.0).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::Config("a node id is given twice".into()));
        }
        if self.timeout.is_zero() {
            return Err(Error::Config("the timeout must be more than zero".into()));
        }
        Ok(Client::new(None, self.members, self.timeout, self.follow_leader, Arc::new(Net::default())))
    }
}

/// A client's session: its id in the state machine's session table, the next write's
/// number, and the numbers of the writes still waiting for their response.
struct Session {
    id: u64,
    next_sequence: u64,
    outstanding: BTreeSet<u64>,
}

impl Session {
    fn new() -> Self {
        Session { id: session_id(), next_sequence: 1, outstanding: BTreeSet::new() }
    }
}

/// How a call through [`Client::retry`] ended.
enum Outcome<R> {
    Done(Result<R, Error>),
    /// The write's session has expired on the cluster; `retried`: an earlier copy of the
    /// write may have reached a leader.
    UnknownSession {
        retried: bool,
    },
}

/// A write's number in its session, waited for until this is dropped (also when the
/// caller drops the write's future: otherwise the number would hold the floor back, and the
/// session's kept responses would grow, for the rest of the session).
struct Numbered<'a, D: Replicated> {
    client: &'a Client<D>,
    id: u64,
    sequence: u64,
}

impl<D: Replicated> Drop for Numbered<'_, D> {
    fn drop(&mut self) {
        let mut session = self.client.lock_session();
        if session.id == self.id {
            // This number is no longer waited for: later writes tell the state machine
            // to forget its response, and a copy of it that commits after that is not
            // applied.
            session.outstanding.remove(&self.sequence);
        }
    }
}

struct Inner<D: Replicated> {
    session: Mutex<Session>,
    members: Vec<(NodeId, SocketAddr)>,
    local: Option<Arc<Server<D>>>,
    net: Arc<Net>,
    timeout: Duration,
    follow_leader: bool,
    leader: AtomicU64,
    cursor: AtomicUsize,
}

/// A session with the cluster: writes and linearizable reads, from many tasks at once
/// (clone it freely; clones share the session).
///
/// Every write gets the next number in the session, and every retry of it (after a lost
/// connection, a timeout or a leader change) carries the same number, so the state machine
/// applies it once and answers retries from the response it kept. A write that returned
/// `Ok` is applied exactly once. A session the cluster has forgotten (no write for longer
/// than [`Builder::session_expiry`](crate::Builder::session_expiry)) is replaced by a new
/// one on the next write, which the cluster refused under the old one and is sent again.
pub struct Client<D: Replicated> {
    inner: Arc<Inner<D>>,
}

impl<D: Replicated> Clone for Client<D> {
    fn clone(&self) -> Self {
        Client { inner: self.inner.clone() }
    }
}

fn session_id() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNT.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

impl<D: Replicated> Client<D> {
    /// Settings for a client outside the cluster's nodes.
    pub fn builder() -> ClientBuilder<D> {
        ClientBuilder {
            members: Vec::new(),
            timeout: Duration::from_secs(5),
            follow_leader: true,
            object: std::marker::PhantomData,
        }
    }

    pub(crate) fn for_node(core: Arc<Server<D>>, members: Vec<(NodeId, SocketAddr)>, timeout: Duration) -> Self {
        let net = core.net.clone();
        let first = members.iter().position(|m| m.0 == core.id).unwrap_or(0);
        let client = Client::new(Some(core), members, timeout, true, net);
        client.inner.cursor.store(first, Ordering::Relaxed);
        client
    }

    fn new(
        local: Option<Arc<Server<D>>>,
        members: Vec<(NodeId, SocketAddr)>,
        timeout: Duration,
        follow_leader: bool,
        net: Arc<Net>,
    ) -> Self {
        Client {
            inner: Arc::new(Inner {
                session: Mutex::new(Session::new()),
                members,
                local,
                net,
                timeout,
                follow_leader,
                leader: AtomicU64::new(NO_LEADER),
                cursor: AtomicUsize::new(0),
            }),
        }
    }

    /// This session's id (a new one after the cluster expired the last: see
    /// [`Builder::session_expiry`](crate::Builder::session_expiry)).
    pub fn session(&self) -> u64 {
        self.lock_session().id
    }

    fn lock_session(&self) -> std::sync::MutexGuard<'_, Session> {
        self.inner.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The node that answered this session's last successful call as leader, if the
    /// session has not since lost track of it.
    pub fn leader(&self) -> Option<NodeId> {
        Some(self.inner.leader.load(Ordering::Relaxed)).filter(|&l| l != NO_LEADER)
    }

    /// Applies a write to the replicated object once and returns its response.
    ///
    /// Errors: [`Error::NoQuorum`] or [`Error::Unreachable`] when no leader committed it
    /// within the timeout (it may still take effect, once); [`Error::OperationPanicked`];
    /// [`Error::Shutdown`] when this client's node has been shut down; [`Error::NotLeader`]
    /// only with `follow_leader(false)`.
    pub async fn execute_mut(&self, op: D::WriteOp) -> Result<D::Response, Error> {
        let start = Instant::now();
        let deadline = start + self.inner.timeout;
        loop {
            // Numbered and recorded as outstanding under one lock: otherwise a later number
            // could be sent with a floor above this one before this one is recorded, and
            // the state machine would refuse this write as already released.
            let number = {
                let mut session = self.lock_session();
                let sequence = session.next_sequence;
                session.next_sequence += 1;
                session.outstanding.insert(sequence);
                Numbered { client: self, id: session.id, sequence }
            };
            let (id, sequence) = (number.id, number.sequence);
            let outcome = self
                .retry(
                    start,
                    deadline,
                    |retry| {
                        let session = self.lock_session();
                        let floor = match session.id == id {
                            true => *session.outstanding.first().unwrap_or(&sequence),
                            false => sequence,
                        };
                        Write { client: id, sequence, floor, retry, op: op.clone() }
                    },
                    |core, command| async move { core.write_here(command).await },
                    Request::Write,
                )
                .await;
            drop(number);
            match outcome {
                Outcome::Done(result) => return result,
                // The session was idle past its expiry and the cluster forgot it; this copy
                // of the write was refused. Start a new session (once, whichever of the
                // session's writes hears it first). If no other copy of the write can have
                // reached a leader, send it again as a new write; otherwise an earlier copy
                // may have been applied, and sending it again could apply it twice.
                Outcome::UnknownSession { retried } => {
                    let mut session = self.lock_session();
                    if session.id == id {
                        *session = Session::new();
                    }
                    if retried {
                        return Err(Error::SessionExpired);
                    }
                }
            }
        }
    }

    /// A linearizable read, served by the leader once it has confirmed its leadership with
    /// a quorum and applied every write committed before the read began.
    pub async fn execute(&self, op: D::ReadOp) -> Result<D::Response, Error> {
        let start = Instant::now();
        let outcome = self
            .retry(
                start,
                start + self.inner.timeout,
                |_| op.clone(),
                |core, op| async move { core.read_here(&op).await },
                Request::Read,
            )
            .await;
        match outcome {
            Outcome::Done(result) => result,
            Outcome::UnknownSession { .. } => {
                Err(Error::Protocol("a read answered as a write of an unknown session".into()))
            }
        }
    }

    async fn retry<T, Make, Local, LocalFut>(
        &self,
        start: Instant,
        deadline: Instant,
        make: Make,
        local: Local,
        wrap: fn(T) -> Request<D>,
    ) -> Outcome<D::Response>
    where
        Make: Fn(bool) -> T,
        Local: Fn(Arc<Server<D>>, T) -> LocalFut,
        LocalFut: std::future::Future<Output = Reply<D>>,
    {
        let inner = &self.inner;
        let mut backoff = Duration::from_millis(5);
        let mut answered = false;
        let mut last_io: Option<io::Error> = None;
        let mut last_leader = None;
        // Whether an earlier attempt may have reached a leader (a write's copy may be in a log).
        let mut delivered = false;
        loop {
            if let Some(core) = &inner.local {
                if core.stopped.load(Ordering::Acquire) {
                    return Outcome::Done(Err(Error::Shutdown));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Outcome::Done(Err(match (answered, last_io) {
                    (false, Some(last)) => Error::Unreachable { waited: now - start, last },
                    _ => Error::NoQuorum { waited: now - start, leader: last_leader },
                }));
            }
            let target = self.target();
            let (id, addr) = inner.members[target];
            let attempt = (deadline - now).min(Duration::from_secs(2));
            let request = make(delivered);
            let retried = delivered;
            let reply = match &inner.local {
                Some(core) if core.id == id => {
                    match tokio::time::timeout(attempt, local(core.clone(), request)).await {
                        Ok(reply) => Ok(reply),
                        // As for a remote node that took the request and did not answer in time.
                        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time")),
                    }
                }
                _ => self.remote(addr, wrap(request), attempt).await,
            };
            let mut wait = true;
            if let Ok(Reply::Deposed(_)) = reply {
                // Proposed before the node lost its leadership: it may still commit.
                delivered = true;
            }
            match reply {
                Ok(Reply::Done(response)) => {
                    inner.leader.store(id, Ordering::Relaxed);
                    return Outcome::Done(Ok(response));
                }
                Ok(Reply::Expired) => return Outcome::Done(Err(Error::Expired)),
                Ok(Reply::UnknownSession) => return Outcome::UnknownSession { retried },
                Ok(Reply::Panicked) => return Outcome::Done(Err(Error::OperationPanicked)),
                Ok(Reply::DiskFull { free }) if !delivered => {
                    return Outcome::Done(Err(Error::DiskFull { node: id, free }))
                }
                Ok(Reply::DiskFull { .. }) => {
                    // An earlier copy may be in a log: the write's outcome is unknown, as
                    // when no quorum answers in time (not applied twice either way).
                    answered = true;
                    last_leader = Some(id);
                    self.next();
                }
                Ok(Reply::NotLeader(leader) | Reply::Deposed(leader)) => {
                    answered = true;
                    last_leader = leader;
                    if !inner.follow_leader {
                        return Outcome::Done(Err(Error::NotLeader { leader }));
                    }
                    match leader {
                        Some(l) if l != id && inner.members.iter().any(|m| m.0 == l) => {
                            inner.leader.store(l, Ordering::Relaxed);
                            wait = false;
                        }
                        _ => self.next(),
                    }
                }
                Ok(Reply::Refused(_)) => {
                    answered = true;
                    self.next();
                }
                Ok(Reply::Unavailable(_)) => {
                    // The node may have proposed it before failing (a leader deposed with
                    // the entry in its log, an entry not applied in time).
                    answered = true;
                    delivered = true;
                    self.next();
                }
                Err(e) => {
                    // A request a node took but did not answer in time: it was reached.
                    answered |= e.kind() == io::ErrorKind::TimedOut;
                    // Only a connection that was never made, or a request that never
                    // encoded or decoded, certainly did not reach a leader.
                    delivered |= !matches!(
                        e.kind(),
                        io::ErrorKind::NotConnected | io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData
                    );
                    last_io = Some(e);
                    self.next();
                }
            }
            if wait {
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(backoff.min(left)).await;
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
    }

    /// The member to ask: the known leader, or the one at the cursor.
    fn target(&self) -> usize {
        let inner = &self.inner;
        let leader = inner.leader.load(Ordering::Relaxed);
        if leader != NO_LEADER && inner.follow_leader {
            if let Some(i) = inner.members.iter().position(|m| m.0 == leader) {
                return i;
            }
        }
        if inner.follow_leader {
            inner.cursor.load(Ordering::Relaxed) % inner.members.len()
        } else {
            0
        }
    }

    /// Forgets the leader and moves the cursor on.
    fn next(&self) {
        self.inner.leader.store(NO_LEADER, Ordering::Relaxed);
        self.inner.cursor.fetch_add(1, Ordering::Relaxed);
    }

    async fn remote(&self, addr: SocketAddr, request: Request<D>, timeout: Duration) -> io::Result<Reply<D>> {
        let answer = self.inner.net.call(addr, Frame::encode(&request)?, timeout).await?;
        match decode::<Response<D>>(&answer)? {
            Response::Client(reply) => Ok(reply),
            Response::Rejected(why) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, format!("the node rejected the request: {why}")))
            }
            _ => Err(io::Error::new(io::ErrorKind::InvalidData, "an answer of the wrong kind")),
        }
    }
}
