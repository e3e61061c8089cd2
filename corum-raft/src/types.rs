//! The openraft type configuration for a replicated [`Dispatch`] object, and what its log
//! entries carry.

use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;

use corum::Dispatch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A node's identifier: any `u64`, unique within the cluster.
pub type NodeId = u64;

/// A [`Dispatch`] object that corum-raft can replicate across machines: the object, its
/// operations and its responses travel over the network and into snapshots, so they are
/// `serde`-serialisable, and a response can be kept to answer a client's retry, so it is
/// `Clone`.
///
/// It is implemented for every type that meets the bounds; there is nothing to write but
/// the `Dispatch` implementation and the serde derives.
///
/// ```
/// use corum::Dispatch;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Clone, Default, Serialize, Deserialize)]
/// struct Counter(u64);
///
/// impl Dispatch for Counter {
///     type ReadOp = ();
///     type WriteOp = u64;
///     type Response = u64;
///     fn dispatch(&self, _op: &()) -> u64 {
///         self.0
///     }
///     fn dispatch_mut(&mut self, add: &u64) -> u64 {
///         self.0 += add;
///         self.0
///     }
/// }
///
/// fn replicable<D: corum_raft::Replicated>() {}
/// replicable::<Counter>();
/// ```
pub trait Replicated:
    Dispatch<
        ReadOp: Serialize + DeserializeOwned + Clone + Send + Sync,
        WriteOp: Serialize + DeserializeOwned + Clone,
        Response: Serialize + DeserializeOwned + Clone + Sync,
    > + Serialize
    + DeserializeOwned
{
}

impl<D> Replicated for D where
    D: Dispatch<
            ReadOp: Serialize + DeserializeOwned + Clone + Send + Sync,
            WriteOp: Serialize + DeserializeOwned + Clone,
            Response: Serialize + DeserializeOwned + Clone + Sync,
        > + Serialize
        + DeserializeOwned
{
}

/// A client's write, numbered in that client's session so that a
/// retry of the same write is answered from the session instead of being applied again.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Write<D: Replicated> {
    /// The client session that sent it.
    pub client: u64,
    /// Its number within the session (from 1).
    pub sequence: u64,
    /// Every write of the session numbered below this has had its response delivered, so
    /// the state machine may forget those responses.
    pub floor: u64,
    /// An earlier copy of this write may have reached a leader (this one is a retry).
    pub retry: bool,
    /// The operation.
    pub op: D::WriteOp,
}

impl<D: Replicated> Clone for Write<D> {
    fn clone(&self) -> Self {
        Write {
            client: self.client,
            sequence: self.sequence,
            floor: self.floor,
            retry: self.retry,
            op: self.op.clone(),
        }
    }
}

impl<D: Replicated> fmt::Debug for Write<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Write(client {:x}, sequence {}, floor {})", self.client, self.sequence, self.floor)
    }
}

/// What a log entry carries: the client writes a leader gathered while its previous
/// entries were being written (one entry, one disk flush, however many writes), and the
/// leader's clock, by which client sessions expire.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Batch<D: Replicated> {
    /// The proposing leader's wall clock, in milliseconds since the Unix epoch. Every node
    /// applies the log's time, so every copy expires the same sessions.
    pub millis: u64,
    /// Sessions with no write for this long (by the log's time) are forgotten.
    pub session_expiry_millis: u64,
    /// The writes.
    pub writes: Vec<Write<D>>,
}

impl<D: Replicated> Batch<D> {
    /// A batch of `writes` stamped with this machine's clock, with sessions expiring
    /// after `session_expiry`.
    pub fn new(writes: Vec<Write<D>>, session_expiry: std::time::Duration) -> Self {
        let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, millis);
        Batch { millis: now, session_expiry_millis: millis(session_expiry), writes }
    }
}

impl<D: Replicated> Clone for Batch<D> {
    fn clone(&self) -> Self {
        Batch { millis: self.millis, session_expiry_millis: self.session_expiry_millis, writes: self.writes.clone() }
    }
}

impl<D: Replicated> fmt::Debug for Batch<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Batch({} writes at {})", self.writes.len(), self.millis)
    }
}

/// What applying one write of a log entry gave.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Applied<D: Replicated> {
    /// The write's response: from applying it now, or kept from when it was first applied.
    Response(D::Response),
    /// A copy of a write whose response the client had already received and released: it
    /// was not applied again.
    Expired,
    /// The write's session is not known (it expired: no write for longer than the
    /// session expiry, by the log's clock) and the write is not a session's first write
    /// on its first try: not applied (it could be a copy of a write applied before the
    /// session expired).
    UnknownSession,
    /// `dispatch_mut` panicked on this write (on every node alike: it is deterministic).
    Panicked,
}

impl<D: Replicated> Clone for Applied<D> {
    fn clone(&self) -> Self {
        match self {
            Applied::Response(r) => Applied::Response(r.clone()),
            Applied::Expired => Applied::Expired,
            Applied::UnknownSession => Applied::UnknownSession,
            Applied::Panicked => Applied::Panicked,
        }
    }
}

impl<D: Replicated> fmt::Debug for Applied<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Applied::Response(_) => "Response",
            Applied::Expired => "Expired",
            Applied::UnknownSession => "UnknownSession",
            Applied::Panicked => "Panicked",
        })
    }
}

/// openraft's type configuration for the object `D`: `u64` node ids, [`BasicNode`]
/// addresses, in-memory snapshot buffers and tokio.
///
/// [`BasicNode`]: openraft::BasicNode
pub struct Types<D>(PhantomData<fn() -> D>);

impl<D> Clone for Types<D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<D> Copy for Types<D> {}
impl<D> Default for Types<D> {
    fn default() -> Self {
        Types(PhantomData)
    }
}
impl<D> fmt::Debug for Types<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Types")
    }
}
impl<D> PartialEq for Types<D> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<D> Eq for Types<D> {}
impl<D> PartialOrd for Types<D> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<D> Ord for Types<D> {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl<D: Replicated> openraft::RaftTypeConfig for Types<D> {
    type D = Batch<D>;
    type R = Vec<Applied<D>>;
    type NodeId = NodeId;
    type Node = openraft::BasicNode;
    type Entry = openraft::Entry<Self>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = openraft::TokioRuntime;
    type Responder = openraft::impls::OneshotResponder<Self>;
}

/// A log entry of the object `D`.
pub(crate) type Entry<D> = openraft::Entry<Types<D>>;
/// A log id.
pub(crate) type LogId = openraft::LogId<NodeId>;
/// A vote.
pub(crate) type Vote = openraft::Vote<NodeId>;
/// openraft's storage error.
pub(crate) type StorageError = openraft::StorageError<NodeId>;

/// A storage error for openraft from anything printable.
pub(crate) fn storage_error(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl fmt::Display,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

/// Encodes a value in corum-raft's wire and disk format (postcard).
pub(crate) fn encode<T: Serialize>(value: &T) -> std::io::Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Decodes a value from corum-raft's wire and disk format; bytes that do not decode are
/// an `InvalidData` error.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::io::Result<T> {
    postcard::from_bytes(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
