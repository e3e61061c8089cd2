//! Small objects for the simulator and its checkers: a register and a key-value map.

use std::collections::BTreeMap;

use super::world::hash_of;
use super::{ClientOp, SimRng};
use crate::sim::linearizability::Call;
use crate::Dispatch;

/// One `u64` register. Writes return the value they replaced, so a write applied twice
/// or out of order shows in its response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Register(pub u64);

/// Reads the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterRead;

/// Sets the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterWrite(pub u64);

impl Dispatch for Register {
    type ReadOp = RegisterRead;
    type WriteOp = RegisterWrite;
    type Response = u64;

    fn dispatch(&self, _: &RegisterRead) -> u64 {
        self.0
    }

    fn dispatch_mut(&mut self, write: &RegisterWrite) -> u64 {
        std::mem::replace(&mut self.0, write.0)
    }

    fn digest(&self) -> Option<u64> {
        Some(hash_of(self))
    }
}

impl Register {
    /// A workload for the simulator: half reads, half writes of fresh values.
    pub fn workload(rng: &mut SimRng, client: usize) -> ClientOp<Register> {
        if rng.chance(1, 2) {
            ClientOp::Read(RegisterRead)
        } else {
            // Unique values make every write's effect visible to the checker.
            ClientOp::Write(RegisterWrite((client as u64) << 32 | rng.below(1 << 32)))
        }
    }
}

/// A map from a few keys to values. Puts return the replaced value; adds return the sum.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KvMap(pub BTreeMap<u8, u64>);

/// Reads one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvGet(pub u8);

/// Changes one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvWrite {
    /// Sets the key; responds with the old value.
    Put(u8, u64),
    /// Adds to the key; responds with the new value.
    Add(u8, u64),
}

impl Dispatch for KvMap {
    type ReadOp = KvGet;
    type WriteOp = KvWrite;
    type Response = Option<u64>;

    fn dispatch(&self, get: &KvGet) -> Option<u64> {
        self.0.get(&get.0).copied()
    }

    fn dispatch_mut(&mut self, write: &KvWrite) -> Option<u64> {
        match *write {
            KvWrite::Put(key, value) => self.0.insert(key, value),
            KvWrite::Add(key, delta) => {
                let value = self.0.entry(key).or_insert(0);
                *value += delta;
                Some(*value)
            }
        }
    }

    fn digest(&self) -> Option<u64> {
        Some(hash_of(self))
    }
}

impl KvMap {
    /// Keys the simulator's workload uses.
    pub const KEYS: u8 = 4;

    /// A workload for the simulator: reads, puts and adds over [`KvMap::KEYS`] keys.
    pub fn workload(rng: &mut SimRng, client: usize) -> ClientOp<KvMap> {
        let key = rng.below(u64::from(Self::KEYS)) as u8;
        match rng.below(3) {
            0 => ClientOp::Read(KvGet(key)),
            1 => ClientOp::Write(KvWrite::Put(key, (client as u64) << 32 | rng.below(1 << 32))),
            _ => ClientOp::Write(KvWrite::Add(key, 1 + rng.below(9))),
        }
    }

    /// The key an operation touches: keys are independent, so the checker partitions by it.
    pub fn key(call: &Call<KvGet, KvWrite>) -> u64 {
        match call {
            Call::Read(KvGet(key)) | Call::Write(KvWrite::Put(key, _)) | Call::Write(KvWrite::Add(key, _)) => {
                u64::from(*key)
            }
        }
    }
}
