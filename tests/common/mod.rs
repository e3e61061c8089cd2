//! A key-value object that records every write it applies, so tests can check that the
//! replicas agree, that each acknowledged write took effect exactly once, and that a
//! sequential replay of the applied writes gives the same state and responses.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use corum::Dispatch;

/// How long a test waits for what takes milliseconds on an idle machine: the deadline of
/// its calls, and of anything it waits to see happen. Far above what anything needs, so
/// that only a broken guarantee, never a loaded machine, fails a test; how fast things
/// happen is for the benchmarks to measure.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// Waits up to [`PATIENCE`] for `value` to give something, looking every millisecond;
/// panics naming `what` if it never does.
#[track_caller]
pub fn eventually<T>(what: &str, mut value: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = value() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Repeats `call` until it succeeds, for a call on a cluster whose short deadline a test
/// needs elsewhere (to see `NoQuorum`): on a loaded machine an attempt may run out of it.
/// Gives up after [`PATIENCE`].
#[track_caller]
pub fn until_ok<T>(what: &str, mut call: impl FnMut() -> Result<T, corum::Error>) -> T {
    eventually(what, || match call() {
        Ok(value) => Some(value),
        Err(corum::Error::NoQuorum { .. }) => None,
        Err(error) => panic!("{what}: {error}"),
    })
}

/// A write: an id unique to the test (client, number) and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriteId {
    pub client: u32,
    pub number: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvWrite {
    /// Set a key; responds with the previous value.
    Put { id: WriteId, key: u64, value: u64 },
    /// Add to a key; responds with the new value.
    Add { id: WriteId, key: u64, delta: u64 },
    /// Panics inside `dispatch_mut` (deterministically, after changing nothing).
    Explode { id: WriteId },
}

impl KvWrite {
    pub fn id(&self) -> WriteId {
        match *self {
            KvWrite::Put { id, .. } | KvWrite::Add { id, .. } | KvWrite::Explode { id } => id,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvRead {
    Get(u64),
    /// How many writes this copy has applied.
    Applied,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kv {
    pub map: BTreeMap<u64, u64>,
    /// Every write applied, in order.
    pub history: Vec<KvWrite>,
}

impl Dispatch for Kv {
    type ReadOp = KvRead;
    type WriteOp = KvWrite;
    type Response = Option<u64>;

    fn dispatch(&self, op: &KvRead) -> Option<u64> {
        match *op {
            KvRead::Get(key) => self.map.get(&key).copied(),
            KvRead::Applied => Some(self.history.len() as u64),
        }
    }

    fn dispatch_mut(&mut self, op: &KvWrite) -> Option<u64> {
        self.history.push(*op);
        match *op {
            KvWrite::Put { key, value, .. } => self.map.insert(key, value),
            KvWrite::Add { key, delta, .. } => {
                let entry = self.map.entry(key).or_insert(0);
                *entry += delta;
                Some(*entry)
            }
            KvWrite::Explode { .. } => panic!("KvWrite::Explode applied (a planned panic)"),
        }
    }

    /// The map's digest (the history is checked at shutdown instead: hashing it at every
    /// checkpoint would cost time proportional to the run).
    fn digest(&self) -> Option<u64> {
        let mut hasher = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&self.map, &mut hasher);
        Some(std::hash::Hasher::finish(&hasher))
    }
}

/// Checks the final copies against what clients were told. `acked` maps each write that
/// returned Ok to its response; `submitted` holds every write ever submitted.
pub fn check_copies(copies: &[Kv], acked: &HashMap<WriteId, Option<u64>>, submitted: &HashMap<WriteId, KvWrite>) {
    assert!(!copies.is_empty(), "no copies to check");
    for copy in &copies[1..] {
        assert!(
            copy == &copies[0],
            "replicas differ: {} vs {} writes applied",
            copy.history.len(),
            copies[0].history.len()
        );
    }
    let copy = &copies[0];
    // Exactly once: no write applied twice, nothing applied that was never submitted.
    let mut seen = HashMap::new();
    for write in &copy.history {
        assert_eq!(submitted.get(&write.id()), Some(write), "applied a write never submitted: {write:?}");
        assert!(seen.insert(write.id(), ()).is_none(), "write applied twice: {write:?}");
    }
    // Nothing acknowledged is lost.
    for id in acked.keys() {
        assert!(seen.contains_key(id), "acknowledged write {id:?} is missing");
    }
    // A sequential replay gives the same state and the responses clients saw.
    let mut replay = Kv::default();
    for write in &copy.history {
        let response = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| replay.dispatch_mut(write)));
        if let (Ok(response), Some(acked)) = (response, acked.get(&write.id())) {
            assert_eq!(&response, acked, "client saw a response the replay does not give for {write:?}");
        }
    }
    assert_eq!(&replay, copy, "replay differs from the replicas' state");
}

/// A deterministic xorshift generator for test workloads.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
