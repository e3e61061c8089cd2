//! What the measuring examples (`allocations`, `idle_handles`) share: the sweep's kv
//! workload as a plain object.

use std::collections::HashMap;

use corum::Dispatch;

/// A map of 10,000 keys, as the sweep's kv workload (its values overwritten in place, so
/// the map itself allocates nothing once full).
#[derive(Clone, Default)]
pub struct Kv(pub HashMap<u64, u64>);

impl Dispatch for Kv {
    type ReadOp = u64;
    type WriteOp = (u64, u64);
    type Response = Option<u64>;

    fn dispatch(&self, key: &u64) -> Option<u64> {
        self.0.get(key).copied()
    }

    fn dispatch_mut(&mut self, &(key, value): &(u64, u64)) -> Option<u64> {
        self.0.insert(key, value)
    }
}

/// The map's keys.
pub const KEYS: u64 = 10_000;

/// The map with every key present.
pub fn full_map() -> Kv {
    Kv((0..KEYS).map(|key| (key, 0)).collect())
}
