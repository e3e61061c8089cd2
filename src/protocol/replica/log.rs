//! The replica's log: entries by slot over a window that starts at the lowest slot held.
//!
//! Slots a replica holds are nearly contiguous (from the truncation point to a little past
//! the commit index, with holes where messages were lost or reordered), so a ring of
//! optional entries indexed by `slot - start` serves every access in constant time, where
//! a `BTreeMap` walked a tree of up to `log_window` entries for each lookup and rebuilt a
//! path for each truncation (with a peer down, its whole window is kept).
//!
//! Canonical: the first and the last entry of `entries`, if any, are present, so equal
//! logs have equal representations (`start` included, except when empty, which equality
//! and hashing ignore).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

use crate::protocol::Slot;

#[derive(Debug, Clone)]
pub(super) struct Log<E> {
    /// The slot of `entries[0]`.
    start: u64,
    entries: VecDeque<Option<E>>,
    /// Entries present (the `Some`s).
    len: usize,
}

impl<E> Default for Log<E> {
    fn default() -> Self {
        Self { start: 0, entries: VecDeque::new(), len: 0 }
    }
}

impl<E> Log<E> {
    /// Entries present.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn index(&self, slot: Slot) -> Option<usize> {
        usize::try_from(slot.get().checked_sub(self.start)?).ok().filter(|&index| index < self.entries.len())
    }

    pub(super) fn get(&self, slot: Slot) -> Option<&E> {
        self.entries.get(self.index(slot)?)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, slot: Slot) -> Option<&mut E> {
        let index = self.index(slot)?;
        self.entries.get_mut(index)?.as_mut()
    }

    /// Puts `entry` at `slot`, replacing what was there.
    pub(super) fn insert(&mut self, slot: Slot, entry: E) {
        let slot = slot.get();
        if self.entries.is_empty() {
            self.start = slot;
        } else if slot < self.start {
            let gap = usize::try_from(self.start - slot).expect("a log's slots span less than memory");
            self.entries.reserve(gap);
            for _ in 0..gap {
                self.entries.push_front(None);
            }
            self.start = slot;
        }
        let index = usize::try_from(slot - self.start).expect("a log's slots span less than memory");
        if index >= self.entries.len() {
            self.entries.resize_with(index + 1, || None);
        }
        if self.entries[index].replace(entry).is_none() {
            self.len += 1;
        }
    }

    /// Frees every entry below `slot`.
    pub(super) fn remove_below(&mut self, slot: Slot) {
        let slot = slot.get();
        if slot <= self.start {
            return;
        }
        let below = usize::try_from(slot - self.start).unwrap_or(usize::MAX);
        if below >= self.entries.len() {
            *self = Self::default();
            return;
        }
        for entry in self.entries.drain(..below) {
            if entry.is_some() {
                self.len -= 1;
            }
        }
        self.start = slot;
        // Keep the front present (canonical form).
        while let Some(None) = self.entries.front() {
            self.entries.pop_front();
            self.start += 1;
        }
    }

    /// Entries present with their slots, in slot order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (Slot, &E)> {
        let start = self.start;
        self.entries
            .iter()
            .enumerate()
            .filter_map(move |(index, entry)| Some((Slot::new(start + index as u64), entry.as_ref()?)))
    }

    /// Entries present at or above `from`, in slot order.
    pub(super) fn from(&self, from: Slot) -> impl Iterator<Item = (Slot, &E)> {
        let skip = usize::try_from(from.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let start = self.start;
        self.entries
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(index, entry)| Some((Slot::new(start + index as u64), entry.as_ref()?)))
    }

    /// Entries present in `from..until`, mutable, in slot order.
    pub(super) fn range_mut(&mut self, from: Slot, until: Slot) -> impl Iterator<Item = &mut E> {
        let first = usize::try_from(from.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let last = usize::try_from(until.get().saturating_sub(self.start)).unwrap_or(usize::MAX);
        let (first, last) = (first.min(self.entries.len()), last.min(self.entries.len()));
        self.entries.range_mut(first..last.max(first)).filter_map(Option::as_mut)
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

    /// The log against a `BTreeMap` model under random inserts (below, inside and past the
    /// window), truncations and mutable ranges.
    #[test]
    fn the_log_agrees_with_a_map_model() {
        let mut log: Log<u64> = Log::default();
        let mut model: BTreeMap<Slot, u64> = BTreeMap::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        let mut floor = 0;
        for step in 0..50_000u64 {
            match next(10) {
                0 => {
                    floor += next(6);
                    log.remove_below(Slot::new(floor));
                    model = model.split_off(&Slot::new(floor));
                }
                1 => {
                    let (from, until) = (floor + next(40), floor + next(80));
                    log.range_mut(Slot::new(from), Slot::new(until)).for_each(|value| *value += 1);
                    if from < until {
                        model.range_mut(Slot::new(from)..Slot::new(until)).for_each(|(_, value)| *value += 1);
                    }
                }
                _ => {
                    let slot = Slot::new(floor + next(64));
                    log.insert(slot, step);
                    model.insert(slot, step);
                }
            }
            assert_eq!(log.len(), model.len());
            let probe = Slot::new(floor + next(70));
            assert_eq!(log.get(probe), model.get(&probe));
            assert_eq!(
                log.from(probe).collect::<Vec<_>>(),
                model.range(probe..).map(|(&s, v)| (s, v)).collect::<Vec<_>>()
            );
        }
        assert_eq!(log.iter().collect::<Vec<_>>(), model.iter().map(|(&s, v)| (s, v)).collect::<Vec<_>>());
    }

    #[test]
    fn equal_contents_compare_equal_however_they_were_built() {
        let mut a: Log<u32> = Log::default();
        let mut b: Log<u32> = Log::default();
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
