//! The replica's log: entries by slot.
//!
//! Slots a replica holds are nearly contiguous (from the truncation point to a little past
//! the commit index, with holes where messages were lost or reordered), so a ring of
//! optional entries indexed by `slot - start` serves every access in constant time, where
//! a `BTreeMap` walked a tree of up to `log_window` entries for each lookup and rebuilt a
//! path for each truncation (with a peer down, its whole window is kept).
//!
//! A ring costs memory for every slot between its first and last entry, held or not. A
//! replica far behind that takes over leadership holds its old entries and new ones far
//! above them until it catches up; for such a log the entries move to a map
//! (`sparse`), and back to the ring once truncation brought them close together again. So
//! the memory stays proportional to the most entries held at once (at most four slots of
//! ring per entry, beyond a small fixed span), as with a map alone.

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::plant::planted;
use crate::protocol::Slot;

#[derive(Debug, Clone)]
pub(super) struct Log<E> {
    /// The slot of `entries[0]` (meaningless while `entries` is empty).
    start: u64,
    /// The ring: the first and the last entry, if any, are present.
    entries: VecDeque<Option<E>>,
    /// Entries present (the `Some`s of the ring, or the map's).
    len: usize,
    /// Every entry, while the ring would span far more slots than there are entries (the
    /// ring is empty then).
    sparse: Option<BTreeMap<Slot, E>>,
    /// The most slots the ring may span however few entries it holds; beyond, and beyond
    /// four slots per entry, the entries move to `sparse` (`Config::log_sparse_span`).
    span_free: u64,
    /// Times the entries moved to `sparse`, and back to the ring (counters only: left out
    /// of equality and hashing).
    made_sparse: u64,
    made_dense: u64,
}

impl<E> Log<E> {
    /// An empty log whose ring may span `span_free` slots however sparse it is.
    pub(super) fn new(span_free: u64) -> Self {
        Self { start: 0, entries: VecDeque::new(), len: 0, sparse: None, span_free, made_sparse: 0, made_dense: 0 }
    }

    /// Times the entries moved to the sparse form, and back to the ring.
    pub(super) fn form_changes(&self) -> (u64, u64) {
        (self.made_sparse, self.made_dense)
    }

    /// Entries present.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn index(&self, slot: Slot) -> Option<usize> {
        usize::try_from(slot.get().checked_sub(self.start)?).ok().filter(|&index| index < self.entries.len())
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&E> {
        if let Some(map) = &self.sparse {
            return map.get(&slot);
        }
        self.entries.get(self.index(slot)?)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut E> {
        if self.sparse.is_some() {
            return self.sparse.as_mut().and_then(|map| map.get_mut(&slot));
        }
        let index = self.index(slot)?;
        self.entries.get_mut(index)?.as_mut()
    }

    /// Whether a ring spanning `span` slots would be too sparse for the entries it holds.
    fn too_sparse(&self, span: u64) -> bool {
        span > self.span_free && span / 4 > self.len as u64
    }

    /// Moves every entry of the ring to the map.
    fn move_to_sparse(&mut self) {
        let start = self.start;
        let map = self
            .entries
            .drain(..)
            .enumerate()
            .filter_map(|(index, entry)| Some((Slot::new(start + index as u64), entry?)))
            .collect();
        self.sparse = Some(map);
        self.made_sparse += 1;
    }

    /// Moves every entry of the map back to a ring, if the ring would not be too sparse.
    fn move_to_ring_if_dense(&mut self) {
        let Some(map) = &self.sparse else { return };
        let span = match (map.first_key_value(), map.last_key_value()) {
            (Some((first, _)), Some((last, _))) => last.get() - first.get() + 1,
            _ => 0,
        };
        if self.too_sparse(span) {
            return;
        }
        let mut map = self.sparse.take().unwrap_or_default();
        if planted!("sparse-log-drops-last") {
            // Planted bug: the entries move back over a range that ends one entry short.
            if map.pop_last().is_some() {
                self.len -= 1;
            }
        }
        self.made_dense += 1;
        self.entries.clear();
        if let Some((first, _)) = map.first_key_value() {
            self.start = first.get();
        }
        for (slot, entry) in map {
            let index = (slot.get() - self.start) as usize;
            self.entries.resize_with(index, || None);
            self.entries.push_back(Some(entry));
        }
    }

    /// Puts `entry` at `slot`, replacing what was there.
    pub(super) fn insert(&mut self, slot: Slot, entry: E) {
        if self.sparse.is_none() && !self.entries.is_empty() {
            let end = self.start + self.entries.len() as u64;
            let span = end.max(slot.get() + 1) - self.start.min(slot.get());
            if self.too_sparse(span) {
                self.move_to_sparse();
            }
        }
        if let Some(map) = &mut self.sparse {
            if map.insert(slot, entry).is_none() {
                self.len += 1;
            }
            return;
        }
        let slot = slot.get();
        if self.entries.is_empty() {
            self.start = slot;
        } else if slot < self.start {
            // At most the span `too_sparse` allows.
            let gap = (self.start - slot) as usize;
            self.entries.reserve(gap);
            for _ in 0..gap {
                self.entries.push_front(None);
            }
            self.start = slot;
        }
        let index = (slot - self.start) as usize;
        if index >= self.entries.len() {
            self.entries.resize_with(index + 1, || None);
        }
        if self.entries[index].replace(entry).is_none() {
            self.len += 1;
        }
    }

    /// Frees every entry below `slot`.
    pub(super) fn remove_below(&mut self, slot: Slot) {
        if let Some(map) = &mut self.sparse {
            *map = map.split_off(&slot);
            self.len = map.len();
            self.move_to_ring_if_dense();
            return;
        }
        let slot = slot.get();
        if slot <= self.start {
            return;
        }
        let below = usize::try_from(slot - self.start).unwrap_or(usize::MAX);
        if below >= self.entries.len() {
            self.entries.clear();
            self.len = 0;
            return;
        }
        for entry in self.entries.drain(..below) {
            if entry.is_some() {
                self.len -= 1;
            }
        }
        self.start = slot;
        // Keep the front present.
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.start += 1;
        }
    }

    /// Entries present with their slots, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &E)> {
        self.from(Slot::ZERO)
    }

    /// Entries present at or above `from`, in slot order.
    pub(super) fn from(&self, from: Slot) -> impl Iterator<Item = (Slot, &E)> {
        // One of the two is empty: the map while the ring holds the entries, and the
        // other way round.
        let sparse = self.sparse.as_ref().map(|map| map.range(from..).map(|(&slot, entry)| (slot, entry)));
        let skip = usize::try_from(from.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let start = self.start;
        let ring = self
            .entries
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(index, entry)| Some((Slot::new(start + index as u64), entry.as_ref()?)));
        sparse.into_iter().flatten().chain(ring)
    }

    /// Entries present in `from..until`, mutable, in slot order.
    pub(super) fn range_mut(&mut self, from: Slot, until: Slot) -> impl Iterator<Item = &mut E> {
        let sparse =
            self.sparse.as_mut().filter(|_| from < until).map(|map| map.range_mut(from..until).map(|(_, entry)| entry));
        let first = usize::try_from(from.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let last = usize::try_from(until.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let (first, last) = (first.min(self.entries.len()), last.min(self.entries.len()));
        let ring = self.entries.range_mut(first..last.max(first)).filter_map(Option::as_mut);
        sparse.into_iter().flatten().chain(ring)
    }
}

impl<E: PartialEq> PartialEq for Log<E> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<E: Eq> Eq for Log<E> {}

impl<E: Hash> Hash for Log<E> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.len.hash(state);
        for (slot, entry) in self.iter() {
            slot.hash(state);
            entry.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Log;
    use crate::protocol::Slot;
    use std::collections::BTreeMap;

    /// The log against a `BTreeMap` model under random inserts (below, inside, past and far
    /// past the window), truncations and mutable ranges; with `span_free` small, the log
    /// moves between ring and map often. The ring never spans more than four slots per
    /// entry it held at most (or `span_free`).
    fn agrees_with_a_map_model(span_free: u64, seed: u64) {
        let mut log: Log<u64> = Log::new(span_free);
        let mut model: BTreeMap<Slot, u64> = BTreeMap::new();
        let mut state = seed;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let (mut floor, mut most, mut sparse_seen) = (0, 0, false);
        for step in 0..50_000u64 {
            match next(20) {
                0 | 1 => {
                    floor += next(6) + next(2) * next(3_000);
                    log.remove_below(Slot::new(floor));
                    model = model.split_off(&Slot::new(floor));
                }
                2 | 3 => {
                    let (from, until) = (floor + next(40), floor + next(80));
                    log.range_mut(Slot::new(from), Slot::new(until)).for_each(|value| *value += 1);
                    if from < until {
                        model.range_mut(Slot::new(from)..Slot::new(until)).for_each(|(_, value)| *value += 1);
                    }
                }
                4 => {
                    // A leader far behind: an entry far above everything else.
                    let slot = Slot::new(floor + 1_000 + next(100_000));
                    log.insert(slot, step);
                    model.insert(slot, step);
                }
                _ => {
                    let slot = Slot::new(floor + next(64));
                    log.insert(slot, step);
                    model.insert(slot, step);
                }
            }
            most = most.max(model.len() as u64);
            sparse_seen |= log.sparse.is_some();
            assert_eq!(log.len(), model.len());
            assert!(log.entries.len() as u64 <= span_free.max(4 * most) + 1, "ring of {} slots", log.entries.len());
            let probe = Slot::new(floor + next(70));
            assert_eq!(log.get(probe), model.get(&probe));
            assert_eq!(log.get_mut(probe).copied(), model.get(&probe).copied());
            assert_eq!(
                log.from(probe).collect::<Vec<_>>(),
                model.range(probe..).map(|(&s, v)| (s, v)).collect::<Vec<_>>()
            );
        }
        assert_eq!(log.iter().collect::<Vec<_>>(), model.iter().map(|(&s, v)| (s, v)).collect::<Vec<_>>());
        assert!(sparse_seen, "the far inserts made the log sparse at least once");
    }

    #[test]
    fn the_log_agrees_with_a_map_model() {
        agrees_with_a_map_model(crate::protocol::Config::new(3).log_sparse_span, 0x2545_f491_4f6c_dd1d);
    }

    #[test]
    fn the_log_agrees_with_a_map_model_moving_between_ring_and_map() {
        agrees_with_a_map_model(8, 0x9e37_79b9_7f4a_7c15);
    }

    #[test]
    fn equal_contents_compare_equal_however_they_were_built() {
        let mut a: Log<u32> = Log::new(1 << 14);
        let mut b: Log<u32> = Log::new(1 << 14);
        for slot in [5, 9, 7] {
            a.insert(Slot::new(slot), 1);
        }
        for slot in [2, 7, 9, 5, 3] {
            b.insert(Slot::new(slot), 1);
        }
        assert_ne!(a, b);
        b.remove_below(Slot::new(4));
        assert_eq!(a, b);
        let hash = |log: &Log<u32>| {
            use std::hash::{BuildHasher, BuildHasherDefault};
            BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(log)
        };
        assert_eq!(hash(&a), hash(&b));
        a.remove_below(Slot::new(100));
        b.remove_below(Slot::new(6));
        b.remove_below(Slot::new(10));
        assert_eq!(a, b, "both empty");
        assert_eq!(hash(&a), hash(&b));
    }
}
