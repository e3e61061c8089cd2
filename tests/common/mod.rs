//! A key-value object that records every write it applies, so tests can check that the
//! replicas agree, that each acknowledged write took effect exactly once, and that a
//! sequential replay of the applied writes gives the same state and responses.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use corum::Dispatch;

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
