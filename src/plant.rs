//! Planted bugs: known mistakes compiled in on request, to show that the checks catch them.
//! `CORUM_PLANT=NAME cargo test ...` builds corum with the bug `NAME` (see `build.rs`); in
//! every other build nothing is planted and [`planted!`] is a constant `false`, so the
//! compiler removes the planted branch. Each plant is one `planted!("NAME")` at the place
//! the mistake would be made; this file is the registry of every plant, and the scripts
//! that require a check to catch each one (`tests/planted_sim.sh`, `tests/planted_model.sh`,
//! `loom-tests/planted.sh`) may name only plants listed here.

/// Every plant, with the mistake it makes.
pub(crate) const PLANTS: &[(&str, &str)] = &[
    // The protocol core.
    ("accept-below-promise", "an acceptor accepts a ballot below its promise"),
    ("ballot-round-only", "ballots compare by round alone, so two candidates share one"),
    ("leader-keeps-leading", "a leader promises a higher ballot and goes on proposing in its own"),
    ("ignore-accepted-values", "a new leader forgets the values phase 1 reported"),
    ("recover-first-value", "a new leader keeps the first value reported for a slot, not the highest ballot's"),
    ("skip-noop-fill", "a new leader leaves holes in the log unproposed"),
    ("quorum-too-small", "a majority one replica short, in both phases"),
    ("commit-without-majority", "a leader commits a slot as soon as it proposes it"),
    ("volatile-promise", "a restarted acceptor forgets a promise not backed by an accepted value"),
    ("handover-skips-phase-1", "a replica handed leadership leads at once in a fresh ballot, without phase 1"),
    ("sparse-log-drops-last", "a log leaving its sparse form loses its last entry"),
    // The replicated state and the driver shared by the runtime and the simulator.
    ("skip-dedup", "the exactly-once table is never consulted"),
    (
        "floor-word-off-by-one",
        "a client's floor that moves into a later word of the exactly-once table drops one word too many",
    ),
    ("snapshot-drops-exactly-once", "a snapshot carries the object without its exactly-once table"),
    // The client machine, and what the shells hand it, shared by the runtime and the simulator.
    ("floor-skips-in-flight", "a client's floor passes a write still in flight"),
    ("read-one-short", "a linearizable read waits for one slot less than the watermark"),
    ("read-moves-without-watermark", "a read that moves to another copy waits there only for what that copy applied"),
    ("read-watermark-applied", "a read is handed its home copy's applied slot as the watermark"),
    ("watermark-after-apply", "a replica raises the commit watermark only after applying and completing"),
    ("applied-before-apply", "a replica announces slots applied before applying them"),
    (
        "put-off-slots-dropped",
        "a replica forgets the committed slots it put off applying while a reader was in its copy",
    ),
    // The hand-written concurrency.
    ("ring-tail-relaxed", "a ring publishes a written slot with a relaxed store"),
    ("ring-head-relaxed", "a ring hands a read slot back with a relaxed store"),
    ("event-no-fence", "the event count's waiter skips its fence"),
    ("event-waker-unchecked", "the event count leaves a task's waker without looking whether a notification came"),
    ("token-release-relaxed", "a replica's run token is given back with a relaxed store"),
    ("token-release-no-notify", "a replica's run token is given back without waking a thread waiting for it"),
    ("board-unpin-relaxed", "a collector unpins a write it cloned with a relaxed decrement"),
    ("board-answer-any-number", "a berth takes pins and answers for any write's number, not only its own"),
    ("board-answer-no-notify", "an answer lands on the board without waking the owner's waiters"),
    ("board-listed-before-posted", "an owner puts its idle lane on the list before it stores the post"),
    ("board-unlist-no-recheck", "a collector takes an idle lane off the list without looking for a post meanwhile"),
    (
        "board-idle-post-unlisted",
        "an owner posting to its idle lane leaves it off the list (only its first post lists it)",
    ),
    (
        "board-publish-store-with-pins",
        "an answerer publishes with a plain store while collectors hold pins on the berth",
    ),
    ("board-oldest-relaxed", "an owner stores its lane's oldest unfinished write with a relaxed store"),
    ("copy-reader-no-fence", "a reader of a copy loads the writer flag without a fence after raising its indicator"),
    ("copy-own-lowered-relaxed", "a reader lowers its thread's own indicator of a copy with a relaxed store"),
    ("spin-lock-release-relaxed", "a spin lock is released with a relaxed store"),
    ("copy-try-write-ignores-readers", "a writer that does not wait writes while readers are still in the copy"),
];

/// The plant this build carries (`CORUM_PLANT` when it was built), empty for none.
const ACTIVE: &str = env!("CORUM_PLANT_ACTIVE");

const _: () = assert!(ACTIVE.is_empty() || is_known(ACTIVE), "CORUM_PLANT names no plant listed in src/plant.rs");

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `name` is listed in [`PLANTS`].
pub(crate) const fn is_known(name: &str) -> bool {
    let mut i = 0;
    while i < PLANTS.len() {
        if same(PLANTS[i].0, name) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether this build carries the plant `name`.
pub(crate) const fn is_active(name: &str) -> bool {
    same(ACTIVE, name)
}

/// `planted!("NAME")`: whether this build carries the plant `NAME`, a constant evaluated
/// when corum is compiled. A name not listed in [`PLANTS`] does not compile.
macro_rules! planted {
    ($name:literal) => {{
        const _: () =
            assert!($crate::plant::is_known($name), concat!("plant `", $name, "` is not listed in src/plant.rs"));
        // Evaluated at compile time, so that a normal build's planted branch is dead code
        // the compiler removes (called at run time, the name comparison showed in profiles
        // of pipelined writes).
        const ACTIVE: bool = $crate::plant::is_active($name);
        ACTIVE
    }};
}

pub(crate) use planted;

#[cfg(test)]
mod tests {
    use super::*;

    /// The plant names a script lists: the first `:`-separated field of each entry of its
    /// `plants=( ... )` array.
    fn listed(script: &str) -> Vec<String> {
        let start = script.find("plants=(").expect("a plants array") + "plants=(".len();
        let end = start + script[start..].find(')').expect("the array ends");
        script[start..end]
            .split_whitespace()
            .map(|entry| entry.trim_matches('"').split(':').next().unwrap_or_default().to_string())
            .collect()
    }

    #[test]
    fn every_plant_is_checked_and_every_checked_plant_exists() {
        let scripts = [
            include_str!("../tests/planted_sim.sh"),
            include_str!("../tests/planted_model.sh"),
            include_str!("../loom-tests/planted.sh"),
        ];
        let checked: Vec<String> = scripts.iter().flat_map(|script| listed(script)).collect();
        for name in &checked {
            assert!(is_known(name), "a script checks `{name}`, which src/plant.rs does not list");
        }
        for (name, _) in PLANTS {
            assert!(checked.iter().any(|c| c == name), "no script requires a check to catch `{name}`");
        }
    }

    #[test]
    fn nothing_is_planted_in_a_normal_build() {
        if cfg!(corum_plant) {
            return;
        }
        assert!(PLANTS.iter().all(|(name, _)| !is_active(name)));
    }
}
