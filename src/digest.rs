//! Divergence detection ("Paxos Made Live"'s checksums through the log): replicas compare
//! digests of their objects taken at the same slots, every `digest_every` slots, and the
//! copies outside the majority are found diverged. A non-deterministic `dispatch_mut`
//! (iteration over a randomly seeded `HashMap`, a clock, a thread id) forks the copies
//! silently otherwise: reads would differ by replica.
//!
//! [`DigestBoard`] is the pure part, shared by the runtime (behind a lock) and the
//! simulator: replicas report `(slot, digest)` as they pass a checkpoint, in any order and
//! at any time (a crashed or snapshot-installing replica skips checkpoints), and the board
//! decides, per checkpoint, as soon as it can:
//! - a majority of the cluster (not of the reporters) agrees on a digest: that digest is
//!   the checkpoint's; every replica that reported another one, now or later, is diverged;
//! - every replica reported and no digest has a majority: the cluster has forked, and
//!   there is no copy to trust.

use std::collections::BTreeMap;

use crate::protocol::Slot;

/// Checkpoints kept after they are decided, for replicas that report late.
const KEPT: usize = 16;

/// What a report told the board about its checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No majority yet.
    Undecided,
    /// The reporter agrees with the majority (and nobody is newly found diverged).
    Agreed,
    /// These replicas' copies differ from the majority's at this checkpoint.
    Diverged(Vec<usize>),
    /// Every replica reported and no digest has a majority.
    Forked,
}

/// One checkpoint: each replica's digest there, and the majority's once known.
#[derive(Debug)]
struct Checkpoint {
    digests: Vec<Option<u64>>,
    agreed: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct DigestBoard {
    replicas: usize,
    checkpoints: BTreeMap<Slot, Checkpoint>,
}

impl DigestBoard {
    /// A board for a cluster of `replicas`.
    pub(crate) fn new(replicas: usize) -> Self {
        Self { replicas, checkpoints: BTreeMap::new() }
    }

    /// Replica `replica`'s object had digest `digest` once it applied every slot below
    /// `slot`.
    pub(crate) fn record(&mut self, replica: usize, slot: Slot, digest: u64) -> Verdict {
        let replicas = self.replicas;
        if self.checkpoints.len() >= KEPT && self.checkpoints.keys().next().is_some_and(|&oldest| slot < oldest) {
            return Verdict::Undecided; // older than anything kept: nothing to compare with
        }
        let checkpoint =
            self.checkpoints.entry(slot).or_insert_with(|| Checkpoint { digests: vec![None; replicas], agreed: None });
        checkpoint.digests[replica] = Some(digest);
        let verdict = match checkpoint.agreed {
            Some(agreed) if agreed == digest => Verdict::Agreed,
            Some(_) => Verdict::Diverged(vec![replica]),
            None => Self::decide(checkpoint, replicas),
        };
        while self.checkpoints.len() > KEPT {
            self.checkpoints.pop_first();
        }
        verdict
    }

    /// Replica `replica` replaced its copy (a snapshot, a repair): what it reported so far
    /// describes a copy it no longer has, and is not held against it.
    pub(crate) fn forget(&mut self, replica: usize) {
        for checkpoint in self.checkpoints.values_mut() {
            checkpoint.digests[replica] = None;
        }
    }

    /// Decides an undecided checkpoint if its reports allow it.
    fn decide(checkpoint: &mut Checkpoint, replicas: usize) -> Verdict {
        let majority = replicas / 2 + 1;
        let reported: Vec<u64> = checkpoint.digests.iter().flatten().copied().collect();
        let winner = reported.iter().copied().find(|&d| reported.iter().filter(|&&e| e == d).count() >= majority);
        match winner {
            Some(agreed) => {
                checkpoint.agreed = Some(agreed);
                let dissenters: Vec<usize> =
                    (0..replicas).filter(|&r| checkpoint.digests[r].is_some_and(|digest| digest != agreed)).collect();
                if dissenters.is_empty() {
                    Verdict::Agreed
                } else {
                    Verdict::Diverged(dissenters)
                }
            }
            None if reported.len() == replicas => Verdict::Forked,
            None => Verdict::Undecided,
        }
    }
}

/// Whether a replica that just applied every slot below `slot_applied` stands at a
/// checkpoint, with checkpoints every `every` slots (none if `every` is zero).
pub(crate) fn at_checkpoint(slot_applied: Slot, every: u64) -> bool {
    every != 0 && slot_applied.get() % every == 0 && slot_applied != Slot::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(n: u64) -> Slot {
        Slot::new(n)
    }

    #[test]
    fn a_majority_decides_and_the_dissenter_is_diverged_whenever_it_reports() {
        let mut board = DigestBoard::new(3);
        assert_eq!(board.record(0, slot(64), 7), Verdict::Undecided);
        assert_eq!(board.record(1, slot(64), 7), Verdict::Agreed);
        assert_eq!(board.record(2, slot(64), 9), Verdict::Diverged(vec![2]));
        // The dissenter reported first: found when the majority forms.
        let mut board = DigestBoard::new(3);
        assert_eq!(board.record(2, slot(64), 9), Verdict::Undecided);
        assert_eq!(board.record(0, slot(64), 7), Verdict::Undecided);
        assert_eq!(board.record(1, slot(64), 7), Verdict::Diverged(vec![2]));
    }

    #[test]
    fn no_majority_among_every_replica_is_a_fork() {
        let mut board = DigestBoard::new(3);
        assert_eq!(board.record(0, slot(8), 1), Verdict::Undecided);
        assert_eq!(board.record(1, slot(8), 2), Verdict::Undecided);
        assert_eq!(board.record(2, slot(8), 3), Verdict::Forked);
        // Five replicas, two against two against one: forked once all five reported.
        let mut board = DigestBoard::new(5);
        for (replica, digest) in [(0, 1), (1, 1), (2, 2), (3, 2)] {
            assert_eq!(board.record(replica, slot(8), digest), Verdict::Undecided);
        }
        assert_eq!(board.record(4, slot(8), 3), Verdict::Forked);
    }

    #[test]
    fn checkpoints_are_independent_and_old_ones_are_forgotten() {
        let mut board = DigestBoard::new(3);
        for n in 1..=40u64 {
            assert_eq!(board.record(0, slot(n * 4), n), Verdict::Undecided);
            assert_eq!(board.record(1, slot(n * 4), n), Verdict::Agreed);
        }
        assert!(board.checkpoints.len() <= KEPT);
        // A late report on a forgotten checkpoint decides nothing.
        assert_eq!(board.record(2, slot(4), 99), Verdict::Undecided);
        // A late report on a kept one is compared.
        assert_eq!(board.record(2, slot(160), 99), Verdict::Diverged(vec![2]));
        assert_eq!(board.record(2, slot(156), 39), Verdict::Agreed);
    }

    #[test]
    fn a_replaced_copy_is_not_judged_by_what_it_reported_before() {
        let mut board = DigestBoard::new(3);
        assert_eq!(board.record(2, slot(8), 9), Verdict::Undecided);
        board.forget(2); // replica 2 installed a healthy copy past slot 8
        assert_eq!(board.record(0, slot(8), 7), Verdict::Undecided);
        assert_eq!(board.record(1, slot(8), 7), Verdict::Agreed);
    }

    #[test]
    fn checkpoints_fall_every_n_slots() {
        assert!(!at_checkpoint(slot(0), 4));
        assert!(at_checkpoint(slot(4), 4) && at_checkpoint(slot(8), 4));
        assert!(!at_checkpoint(slot(5), 4));
        assert!(!at_checkpoint(slot(4), 0), "zero: off");
    }
}
