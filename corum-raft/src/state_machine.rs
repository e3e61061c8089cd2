//! The replicated object as openraft's state machine: committed entries are applied to the
//! user's [`Dispatch`](corum::Dispatch) object, through client sessions that make a retried
//! write take effect once; snapshots are the serialised object and sessions.

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{BasicNode, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, StoredMembership};
use serde::{Deserialize, Serialize};

use crate::storage::{Disk, Recovered};
use crate::types::{
    decode, encode, storage_error, Applied, Batch, Entry, LogId, NodeId, Replicated, StorageError, Types, Write,
};

/// What a client session remembers: the responses it may still be asked for again.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Session<D: Replicated> {
    /// Every write numbered below this has been answered and released by the client.
    floor: u64,
    /// The log's clock at the session's last write.
    seen: u64,
    /// Outcomes of the writes at or above `floor` that were applied: the response, or
    /// `None` if `dispatch_mut` panicked (a retry must not run it again either).
    replies: BTreeMap<u64, Option<D::Response>>,
}

/// The object and everything applied with it; what a snapshot holds.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub(crate) struct Image<D: Replicated> {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: StoredMembership<NodeId, BasicNode>,
    pub(crate) object: D,
    pub(crate) sessions: BTreeMap<u64, Session<D>>,
    /// The log's clock: follows the leaders' times in the applied batches, never back, and
    /// at most a quarter of the expiry forward per batch (one leader whose clock jumps
    /// ahead cannot expire every session at once).
    clock: u64,
    /// The session expiry: the longest any leader has asked for (it never shrinks).
    expiry: u64,
    /// When (by the log's clock) idle sessions are next looked for.
    next_sweep: u64,
}

impl<D: Replicated> Image<D> {
    fn new(object: D) -> Self {
        Image {
            last_applied: None,
            membership: StoredMembership::default(),
            object,
            sessions: BTreeMap::new(),
            clock: 0,
            expiry: 0,
            next_sweep: 0,
        }
    }

    /// Applies a log entry's writes, after forgetting the sessions idle for longer than
    /// the batch's expiry by the log's clock.
    pub(crate) fn apply_batch(&mut self, batch: &Batch<D>) -> Vec<Applied<D>> {
        self.expiry = self.expiry.max(batch.session_expiry_millis);
        if self.clock == 0 {
            self.clock = batch.millis;
        } else if batch.millis > self.clock {
            self.clock += (batch.millis - self.clock).min((self.expiry / 4).max(1));
        }
        if self.clock >= self.next_sweep {
            let (clock, expiry) = (self.clock, self.expiry);
            self.sessions.retain(|_, session| session.seen.saturating_add(expiry) > clock);
            self.next_sweep = clock.saturating_add((expiry / 16).max(1));
        }
        batch.writes.iter().map(|command| self.apply(command)).collect()
    }

    /// Applies one client write through its session.
    fn apply(&mut self, command: &Write<D>) -> Applied<D> {
        let session = match self.sessions.entry(command.client) {
            std::collections::btree_map::Entry::Occupied(session) => session.into_mut(),
            // A client that had a write answered (a floor past 1), or that retries a write
            // an earlier copy of which may have been applied, had a session here that
            // expired. Its write is refused, not applied as the first of a new session (it
            // could be a copy of one applied before the session expired).
            std::collections::btree_map::Entry::Vacant(_) if command.floor > 1 || command.retry => {
                return Applied::UnknownSession
            }
            std::collections::btree_map::Entry::Vacant(vacant) => {
                vacant.insert(Session { floor: 0, seen: 0, replies: BTreeMap::new() })
            }
        };
        session.seen = self.clock;
        if command.floor > session.floor {
            session.floor = command.floor;
            session.replies = session.replies.split_off(&command.floor);
        }
        if command.sequence < session.floor {
            return Applied::Expired;
        }
        if let Some(kept) = session.replies.get(&command.sequence) {
            return kept.clone().map_or(Applied::Panicked, Applied::Response);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| self.object.dispatch_mut(&command.op))).ok();
        session.replies.insert(command.sequence, outcome.clone());
        outcome.map_or(Applied::Panicked, Applied::Response)
    }

    /// How many client sessions the object keeps.
    pub(crate) fn sessions(&self) -> usize {
        self.sessions.len()
    }
}

/// A snapshot kept on disk and in memory: its metadata and the serialised [`Image`].
#[derive(Serialize, Deserialize, Clone)]
struct Stored {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The current snapshot, in memory and on disk; shared by the state machine and its
/// snapshot builders.
struct Snapshots {
    current: Mutex<Option<Stored>>,
    /// Held while a snapshot is made current (see [`Snapshots::keep`]).
    keeping: tokio::sync::Mutex<()>,
    disk: Arc<Disk>,
}

impl Snapshots {
    /// Makes `stored` the current snapshot, on disk first, unless the current one is at
    /// least as new: openraft builds snapshots on a task of its own, so a build that read
    /// the object before a newer snapshot was installed can finish after the install, and
    /// must not replace it (the log before the newer one may already be purged).
    async fn keep(&self, stored: Stored) -> Result<(), StorageError> {
        let _one_at_a_time = self.keeping.lock().await;
        let newer =
            |current: &Option<Stored>| current.as_ref().is_none_or(|c| c.meta.last_log_id < stored.meta.last_log_id);
        if !newer(&self.current.lock().unwrap_or_else(|e| e.into_inner())) {
            return Ok(());
        }
        let bytes = encode(&stored).map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        self.disk
            .write_durably(("snapshot", bytes))
            .await
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(stored);
        Ok(())
    }

    fn current(&self) -> Option<Stored> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The state machine handed to openraft; the node keeps a second handle on `image` to
/// serve reads.
pub(crate) struct StateMachine<D: Replicated> {
    pub(crate) image: Arc<RwLock<Image<D>>>,
    snapshots: Arc<Snapshots>,
    built: u64,
}

impl<D: Replicated> StateMachine<D> {
    /// The state machine at its last snapshot on disk, or `initial` if there is none.
    pub(crate) fn new(initial: D, disk: Arc<Disk>, recovered: &Recovered) -> io::Result<Self> {
        let mut image = Image::new(initial);
        let mut current = None;
        if let Some(bytes) = recovered.meta.get("snapshot") {
            let stored: Stored = decode(bytes)?;
            image = decode(&stored.data)?;
            current = Some(stored);
        }
        let snapshots = Snapshots { current: Mutex::new(current), keeping: Default::default(), disk };
        Ok(StateMachine { image: Arc::new(RwLock::new(image)), snapshots: Arc::new(snapshots), built: 0 })
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Image<D>> {
        self.image.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Builds snapshots for openraft; shares the state machine's parts.
pub(crate) struct Builder<D: Replicated> {
    image: Arc<RwLock<Image<D>>>,
    snapshots: Arc<Snapshots>,
    number: u64,
}

impl<D: Replicated> RaftSnapshotBuilder<Types<D>> for Builder<D> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Types<D>>, StorageError> {
        let (data, last_applied, membership) = {
            let image = self.image.read().unwrap_or_else(|e| e.into_inner());
            let data = encode(&*image).map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e))?;
            (data, image.last_applied, image.membership.clone())
        };
        let id = format!("{}-{}", last_applied.map_or(0, |id| id.index), self.number);
        let meta = SnapshotMeta { last_log_id: last_applied, last_membership: membership, snapshot_id: id };
        self.snapshots.keep(Stored { meta: meta.clone(), data: data.clone() }).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl<D: Replicated> RaftStateMachine<Types<D>> for StateMachine<D> {
    type SnapshotBuilder = Builder<D>;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership<NodeId, BasicNode>), StorageError> {
        let image = self.image.read().unwrap_or_else(|e| e.into_inner());
        Ok((image.last_applied, image.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Applied<D>>>, StorageError>
    where
        I: IntoIterator<Item = Entry<D>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut image = self.write();
        let mut replies = Vec::new();
        for entry in entries {
            image.last_applied = Some(entry.log_id);
            replies.push(match &entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => image.apply_batch(batch),
                EntryPayload::Membership(membership) => {
                    image.membership = StoredMembership::new(Some(entry.log_id), membership.clone());
                    Vec::new()
                }
            });
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.built += 1;
        Builder { image: self.image.clone(), snapshots: self.snapshots.clone(), number: self.built }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: Image<D> = decode(&data)
            .map_err(|e| storage_error(ErrorSubject::Snapshot(Some(meta.signature())), ErrorVerb::Read, e))?;
        self.snapshots.keep(Stored { meta: meta.clone(), data }).await?;
        *self.write() = image;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Types<D>>>, StorageError> {
        Ok(self
            .snapshots
            .current()
            .map(|stored| Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId};

    use super::*;

    #[derive(Clone, Default, Serialize, Deserialize)]
    struct Sum(u64);

    impl corum::Dispatch for Sum {
        type ReadOp = ();
        type WriteOp = u64;
        type Response = u64;
        fn dispatch(&self, _: &()) -> u64 {
            self.0
        }
        fn dispatch_mut(&mut self, add: &u64) -> u64 {
            self.0 += add;
            self.0
        }
    }

    /// A batch at `millis` of (client, sequence, floor, retry, add), sessions expiring after 100.
    fn batch(millis: u64, commands: &[(u64, u64, u64, bool, u64)]) -> Batch<Sum> {
        let commands = commands
            .iter()
            .map(|&(client, sequence, floor, retry, op)| Write { client, sequence, floor, retry, op })
            .collect();
        Batch { millis, session_expiry_millis: 100, writes: commands }
    }

    fn one(image: &mut Image<Sum>, millis: u64, command: (u64, u64, u64, bool, u64)) -> Applied<Sum> {
        image.apply_batch(&batch(millis, &[command])).remove(0)
    }

    #[test]
    fn idle_sessions_expire_by_the_log_clock_and_their_late_writes_are_refused() {
        let mut image = Image::new(Sum::default());
        // Client 1 writes at 1000 and 1020 (its second write releases the first).
        assert!(matches!(one(&mut image, 1000, (1, 1, 1, false, 5)), Applied::Response(5)));
        assert!(matches!(one(&mut image, 1020, (1, 2, 2, false, 5)), Applied::Response(10)));
        // Client 2 writes every 20 until 1200: client 1, idle since 1020, is forgotten.
        for (i, t) in (1040..=1200).step_by(20).enumerate() {
            let i = i as u64 + 1;
            assert!(matches!(one(&mut image, t, (2, i, i, false, 1)), Applied::Response(_)));
        }
        assert_eq!(image.sessions(), 1);
        let before = image.object.0;
        // A late copy of client 1's second write: its session is gone, so it is refused,
        // not applied as a new session's write; so is a retry of a first write.
        assert!(matches!(one(&mut image, 1201, (1, 2, 2, false, 5)), Applied::UnknownSession));
        assert!(matches!(one(&mut image, 1202, (3, 1, 1, true, 5)), Applied::UnknownSession));
        assert_eq!(image.object.0, before);
        // A new session's first write on its first try is applied.
        assert!(matches!(one(&mut image, 1203, (4, 1, 1, false, 1)), Applied::Response(_)));
        assert_eq!(image.sessions(), 2);
    }

    #[test]
    fn one_leader_clock_far_ahead_does_not_expire_every_session_at_once() {
        let mut image = Image::new(Sum::default());
        assert!(matches!(one(&mut image, 1000, (1, 1, 1, false, 1)), Applied::Response(1)));
        assert!(matches!(one(&mut image, 1010, (2, 1, 1, false, 1)), Applied::Response(2)));
        // A leader whose clock is a day ahead: the log's clock moves a quarter of the
        // expiry, and both sessions (idle for less than that) stay.
        assert!(matches!(one(&mut image, 1010 + 86_400_000, (3, 1, 1, false, 1)), Applied::Response(3)));
        assert_eq!(image.sessions(), 3);
        // The clock never runs back: a leader behind it expires nothing early.
        assert!(matches!(one(&mut image, 500, (2, 2, 2, false, 1)), Applied::Response(4)));
        assert_eq!(image.sessions(), 3);
    }

    fn stored(index: u64) -> Stored {
        let last = Some(LogId::new(CommittedLeaderId::new(1, 1), index));
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: StoredMembership::default(),
            snapshot_id: format!("{index}"),
        };
        Stored { meta, data: vec![index as u8] }
    }

    #[tokio::test]
    async fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let (disk, recovered) = Disk::open(dir.path()).unwrap();
        let mut machine = StateMachine::new(Sum::default(), disk.clone(), &recovered).unwrap();
        // A snapshot installed from the leader at 10, then a build that read the object
        // at 5 finishing after it.
        machine.snapshots.keep(stored(10)).await.unwrap();
        machine.snapshots.keep(stored(5)).await.unwrap();
        let current = machine.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta.snapshot_id, "10");
        // And on disk.
        disk.close();
        drop(machine);
        drop(disk);
        let (_disk, recovered) = Disk::open(dir.path()).unwrap();
        let on_disk: Stored = decode(&recovered.meta["snapshot"]).unwrap();
        assert_eq!(on_disk.meta.snapshot_id, "10");
    }
}
