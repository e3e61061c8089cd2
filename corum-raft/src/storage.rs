//! Durable storage for a node: its log, its vote, the commit point and the latest snapshot
//! of the object, in one redb database file in the node's data directory.
//!
//! Writes go, in the order they were made, to one writer thread, which commits everything
//! queued since its last commit as one redb transaction (redb commits are durable: fsync'd
//! before `commit` returns) and then reports each write done. A log append is reported to
//! openraft only once it is on disk, so a write acknowledged to a client (which needs a
//! majority of nodes to report its entry flushed) survives the processes being killed. The
//! log is also kept in memory, where openraft reads it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

use crate::types::{self, decode, storage_error, Entry, LogId, Replicated, StorageError, Types, Vote};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const FILE: &str = "corum-raft.redb";

/// Something to write, in order.
enum Write {
    Entries(Vec<(u64, Vec<u8>)>),
    /// Remove the entries from this index on.
    TruncateFrom(u64),
    /// Remove the entries up to this index, and remember the last one's id.
    PurgeUpTo(u64, Vec<u8>),
    Meta(&'static str, Vec<u8>),
}

type Done = Box<dyn FnOnce(io::Result<()>) + Send>;
type Queue = mpsc::Sender<(Write, Option<Done>)>;

/// The database and its writer thread.
pub(crate) struct Disk {
    queue: Mutex<Option<Queue>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

/// What a node finds in its data directory when it starts.
pub(crate) struct Recovered {
    pub(crate) entries: BTreeMap<u64, Vec<u8>>,
    pub(crate) meta: BTreeMap<String, Vec<u8>>,
}

impl Disk {
    /// Opens (or creates) the database in `dir`, reads everything back, and starts the
    /// writer thread.
    pub(crate) fn open(dir: &Path) -> io::Result<(Arc<Disk>, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::create(dir.join(FILE)).map_err(io::Error::other)?;
        // Create the tables if this is a new database, then read them back.
        let txn = db.begin_write().map_err(io::Error::other)?;
        txn.open_table(LOG).map_err(io::Error::other)?;
        txn.open_table(META).map_err(io::Error::other)?;
        txn.commit().map_err(io::Error::other)?;
        let mut recovered = Recovered { entries: BTreeMap::new(), meta: BTreeMap::new() };
        {
            let read = db.begin_read().map_err(io::Error::other)?;
            let log = read.open_table(LOG).map_err(io::Error::other)?;
            for row in log.iter().map_err(io::Error::other)? {
                let (k, v) = row.map_err(io::Error::other)?;
                recovered.entries.insert(k.value(), v.value().to_vec());
            }
            let meta = read.open_table(META).map_err(io::Error::other)?;
            for row in meta.iter().map_err(io::Error::other)? {
                let (k, v) = row.map_err(io::Error::other)?;
                recovered.meta.insert(k.value().to_string(), v.value().to_vec());
            }
        }
        let (tx, rx) = mpsc::channel::<(Write, Option<Done>)>();
        let writer = thread::Builder::new().name("corum-raft-disk".into()).spawn(move || write_loop(db, rx))?;
        Ok((Arc::new(Disk { queue: Mutex::new(Some(tx)), writer: Mutex::new(Some(writer)) }), recovered))
    }

    fn send(&self, write: Write, done: Option<Done>) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.as_ref() {
            Some(tx) => {
                if let Err(mpsc::SendError((_, Some(done)))) = tx.send((write, done)) {
                    done(Err(io::Error::other("the disk writer has stopped")));
                }
            }
            None => {
                if let Some(done) = done {
                    done(Err(io::Error::other("the node's storage is closed")));
                }
            }
        }
    }

    /// Queues a write and waits until it is on disk.
    pub(crate) async fn write_durably(&self, write_meta: (&'static str, Vec<u8>)) -> io::Result<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(
            Write::Meta(write_meta.0, write_meta.1),
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.await.unwrap_or_else(|_| Err(io::Error::other("the disk writer has stopped")))
    }

    /// Stops the writer thread after it has written everything queued before this call.
    pub(crate) fn close(&self) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.join();
        }
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_loop(db: redb::Database, rx: mpsc::Receiver<(Write, Option<Done>)>) {
    let mut batch = Vec::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let result = commit(&db, &batch).map_err(|e| io::Error::other(e.to_string()));
        let failed = result.is_err();
        if let Err(e) = &result {
            tracing::error!("corum-raft: writing to disk failed, the node's storage stops: {e}");
        }
        for (_, done) in batch.drain(..) {
            if let Some(done) = done {
                done(match &result {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                });
            }
        }
        if failed {
            // Nothing after a failed write may reach the disk (the writes not waited for,
            // a truncation, a purge, would be lost while later ones land): every later
            // write fails, and openraft stops the node.
            return;
        }
    }
}

fn commit(db: &redb::Database, batch: &[(Write, Option<Done>)]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for (write, _) in batch {
            match write {
                Write::Entries(entries) => {
                    for (index, bytes) in entries {
                        log.insert(*index, bytes.as_slice())?;
                    }
                }
                Write::TruncateFrom(index) => {
                    log.retain_in(*index.., |_, _| false)?;
                }
                Write::PurgeUpTo(index, last) => {
                    log.retain_in(..=*index, |_, _| false)?;
                    meta.insert("purged", last.as_slice())?;
                }
                Write::Meta(key, bytes) => {
                    meta.insert(*key, bytes.as_slice())?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

// The error type is the one openraft's storage traits return.
#[allow(clippy::result_large_err)]
fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    types::encode(value).map_err(|e| storage_error(ErrorSubject::Store, ErrorVerb::Write, e))
}

/// The log as openraft sees it: in memory, written through to [`Disk`].
struct Log<D: Replicated> {
    entries: BTreeMap<u64, Entry<D>>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

/// A node's log store (openraft's [`RaftLogStorage`]) and its log reader.
pub(crate) struct LogStore<D: Replicated> {
    log: Arc<Mutex<Log<D>>>,
    disk: Arc<Disk>,
}

impl<D: Replicated> Clone for LogStore<D> {
    fn clone(&self) -> Self {
        LogStore { log: self.log.clone(), disk: self.disk.clone() }
    }
}

impl<D: Replicated> LogStore<D> {
    pub(crate) fn new(disk: Arc<Disk>, recovered: &Recovered) -> io::Result<Self> {
        let mut entries = BTreeMap::new();
        for (index, bytes) in &recovered.entries {
            entries.insert(*index, decode::<Entry<D>>(bytes)?);
        }
        let meta = |key: &str| recovered.meta.get(key).map(|b| b.as_slice());
        let log = Log {
            entries,
            last_purged: meta("purged").map(decode).transpose()?,
            vote: meta("vote").map(decode).transpose()?,
            committed: meta("committed").map(decode::<Option<LogId>>).transpose()?.flatten(),
        };
        Ok(LogStore { log: Arc::new(Mutex::new(log)), disk })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log<D>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<D: Replicated> RaftLogReader<Types<D>> for LogStore<D> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<D>>, StorageError> {
        let log = self.lock();
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        if let (Bound::Included(s), Bound::Excluded(e)) = (start, end) {
            if s >= e {
                return Ok(Vec::new());
            }
        }
        Ok(log.entries.range((start, end)).map(|(_, e)| e.clone()).collect())
    }
}

impl<D: Replicated> RaftLogStorage<Types<D>> for LogStore<D> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<Types<D>>, StorageError> {
        let log = self.lock();
        let last = log.entries.values().next_back().map(|e| e.log_id).or(log.last_purged);
        Ok(LogState { last_purged_log_id: log.last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let bytes = encode(vote)?;
        self.disk
            .write_durably(("vote", bytes))
            .await
            .map_err(|e| storage_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Not waited for: losing the commit point only means replaying less on restart.
        self.lock().committed = committed;
        self.disk.send(Write::Meta("committed", encode(&committed)?), None);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<Types<D>>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<D>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        {
            let mut log = self.lock();
            for entry in entries {
                rows.push((entry.log_id.index, encode(&entry)?));
                log.entries.insert(entry.log_id.index, entry);
            }
        }
        self.disk.send(Write::Entries(rows), Some(Box::new(move |result| callback.log_io_completed(result))));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock().entries.split_off(&log_id.index);
        self.disk.send(Write::TruncateFrom(log_id.index), None);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut log = self.lock();
            let kept = log.entries.split_off(&(log_id.index + 1));
            log.entries = kept;
            log.last_purged = Some(log_id);
        }
        self.disk.send(Write::PurgeUpTo(log_id.index, encode(&log_id)?), None);
        Ok(())
    }
}
