//! The exactly-once table, kept inside the replicated state: which client writes have
//! taken effect. Every replica runs the same table over the same committed sequence, so all
//! replicas make the same apply-or-skip decision for every command.
//!
//! A client session numbers its writes `0, 1, 2, ...` and attaches to each its *floor*
//! (`crate::client::session`): every one of its writes numbered below the floor has
//! completed, so the client will never submit it again. The
//! table remembers, per client, the floor and the set of applied numbers at or above it. A
//! command is a duplicate when its number is below the floor or in the set. This stays
//! correct when a leader change reorders a client's pipelined writes (a retried write may
//! commit after a later one), which a single "last applied number" would not.

use crate::plant::planted;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// The identity of one client session (one [`crate::Handle`]).
pub(crate) type ClientId = u64;

/// One client's applied numbers at or above its floor, as a bit set over a window that
/// starts at the floor's 64-aligned word: bit `i` of `words[w]` stands for number
/// `base + 64 * w + i`. Numbers a client keeps in flight at once are dense, so a write
/// costs a bit, and raising the floor frees whole words from the front (a `BTreeSet`
/// here allocated and freed tree nodes on every write).
///
/// Canonical, so that equal sets compare (and digest) equal however they were built:
/// `base` is the floor rounded down to a multiple of 64, bits below the floor are clear,
/// and the last word, if any, is not zero.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
struct ClientRecord {
    floor: u64,
    base: u64,
    words: VecDeque<u64>,
}

impl ClientRecord {
    /// Raises the floor to `floor` (never lowers it), forgetting the numbers below it.
    fn raise_floor(&mut self, floor: u64) {
        if floor <= self.floor {
            return;
        }
        self.floor = floor;
        let base = floor & !63;
        let mut whole_words = usize::try_from((base - self.base) / 64).unwrap_or(usize::MAX);
        if planted!("floor-word-off-by-one") && whole_words > 0 {
            // Planted bug: a floor that moves into a later word drops one word too many.
            whole_words += 1;
        }
        if whole_words >= self.words.len() {
            self.words.clear();
        } else {
            self.words.drain(..whole_words);
        }
        self.base = base;
        if let Some(first) = self.words.front_mut() {
            *first &= u64::MAX << (floor - base);
        }
        self.trim();
    }

    /// Records `sequence` (at or above the floor); returns whether it was new.
    fn insert(&mut self, sequence: u64) -> bool {
        let offset = sequence - self.base;
        let word = usize::try_from(offset / 64).expect("a client's numbers in flight fit in memory");
        let bit = 1u64 << (offset % 64);
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let new = self.words[word] & bit == 0;
        self.words[word] |= bit;
        new
    }

    /// Drops zero words at the back.
    fn trim(&mut self) {
        while self.words.back() == Some(&0) {
            self.words.pop_back();
        }
    }

    /// How many numbers at or above the floor are recorded.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.words.iter().map(|word| word.count_ones() as usize).sum()
    }
}

/// Hashes a client id. Ids are handed out by the runtime from a counter (never chosen by a
/// caller), so a multiplicative hash spreads them over the table's buckets well (the top
/// bits too, which the table also uses) at a fraction of SipHash's cost, on every write
/// of every replica.
#[derive(Debug, Default, Clone, Copy)]
struct ClientHasher(u64);

impl Hasher for ClientHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The exactly-once table: per client, the floor and the numbers applied at or above it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ExactlyOnce {
    clients: HashMap<ClientId, ClientRecord, BuildHasherDefault<ClientHasher>>,
}

impl ExactlyOnce {
    /// Records that `client`'s write `sequence` is being applied, and returns whether it is
    /// new (apply it) or a duplicate (skip it). `floor` is the client's floor when it
    /// submitted the write.
    pub(crate) fn admit(&mut self, client: ClientId, sequence: u64, floor: u64) -> bool {
        let record = self.clients.entry(client).or_default();
        record.raise_floor(floor);
        if planted!("skip-dedup") {
            // Planted bug for the simulator's sweep: the table is never consulted.
            return true;
        }
        if sequence < record.floor {
            return false;
        }
        record.insert(sequence)
    }

    /// A digest of the whole table, independent of the order clients were added in: two
    /// replicas that applied the same slots must have equal digests.
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut clients: Vec<_> = self.clients.iter().collect();
        clients.sort_unstable_by_key(|(client, _)| **client);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for (client, record) in clients {
            (client, record).hash(&mut hasher);
        }
        hasher.finish()
    }

    /// Number of sequence numbers remembered, over all clients.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> usize {
        self.clients.values().map(ClientRecord::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::ExactlyOnce;

    #[test]
    fn first_delivery_applies_and_repeats_are_skipped() {
        let mut table = ExactlyOnce::default();
        assert!(table.admit(1, 0, 0));
        assert!(!table.admit(1, 0, 0));
        assert!(table.admit(1, 1, 0));
        assert!(table.admit(2, 0, 0), "clients are independent");
    }

    #[test]
    fn reordered_pipelined_writes_apply_once_each() {
        let mut table = ExactlyOnce::default();
        // Write 6 commits before write 5 (5 was lost in a leader change and retried).
        assert!(table.admit(7, 6, 5));
        assert!(table.admit(7, 5, 5));
        assert!(!table.admit(7, 6, 5));
        assert!(!table.admit(7, 5, 5));
    }

    #[test]
    fn the_table_agrees_with_a_set_model_across_word_boundaries() {
        // The reference: the floor and every number applied at or above it, in a set.
        use std::collections::BTreeSet;
        let mut model: (u64, BTreeSet<u64>) = (0, BTreeSet::new());
        let mut table = ExactlyOnce::default();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |bound: u64| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        for _ in 0..20_000 {
            // Floors move up in steps of up to 70 (across words), numbers land up to 200 above.
            let floor = model.0 + next(4) * next(24);
            let sequence = (floor + next(200)).saturating_sub(next(3) * 40);
            let expected = {
                if floor > model.0 {
                    model.0 = floor;
                    model.1 = model.1.split_off(&floor);
                }
                sequence >= model.0 && model.1.insert(sequence)
            };
            assert_eq!(table.admit(1, sequence, floor), expected, "write {sequence} at floor {floor}");
            assert_eq!(table.remembered(), model.1.len());
        }
    }

    #[test]
    fn equal_tables_built_in_different_orders_are_equal_and_digest_alike() {
        let mut a = ExactlyOnce::default();
        let mut b = ExactlyOnce::default();
        for sequence in (0..300).rev() {
            a.admit(4, sequence, 0);
        }
        for sequence in 0..400 {
            b.admit(4, sequence, 0);
        }
        // Both forget everything below 150; b also knew 300..400, which a learns now.
        b.admit(4, 150, 150);
        a.admit(4, 150, 150);
        for sequence in 300..400 {
            a.admit(4, sequence, 150);
        }
        assert_eq!(a, b);
        assert_eq!(a.digest(), b.digest());
        // Raising the floor past everything recorded leaves nothing behind.
        a.admit(4, 1_000, 1_000);
        assert_eq!(a.remembered(), 1);
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn floor_frees_memory_and_marks_old_writes_as_duplicates() {
        let mut table = ExactlyOnce::default();
        for sequence in 0..100 {
            assert!(table.admit(3, sequence, sequence));
        }
        assert_eq!(table.remembered(), 1);
        assert!(!table.admit(3, 10, 0), "below the floor is a duplicate");
    }
}
