//! Where a client's calls go: writes to the leader (or, while it does not run, a running
//! replica, which forwards them once it knows a leader), reads to a running copy not known
//! diverged, starting from the session's home replica so that sessions spread over copies.

use super::View;

/// The replica to submit a write to: the leader hint if that replica runs, else the first
/// running replica from `home` on, else `home` (its queue keeps the write until it runs).
#[inline]
pub(crate) fn write_target(view: &impl View, home: usize) -> usize {
    let leader = view.leader_hint();
    if leader < view.replicas() && view.runs(leader) {
        return leader;
    }
    first_from(view, home, |replica| view.runs(replica)).unwrap_or(home)
}

/// The first replica from `start` on, wrapping around, that runs and whose copy may serve
/// reads (not known diverged).
#[inline]
pub(crate) fn serving_from(view: &impl View, start: usize) -> Option<usize> {
    first_from(view, start, |replica| view.runs(replica) && !view.diverged(replica))
}

/// The first replica from `start` on, wrapping around, for which `wanted` holds.
#[inline]
fn first_from(view: &impl View, start: usize, wanted: impl Fn(usize) -> bool) -> Option<usize> {
    let n = view.replicas();
    // Two ranges rather than `(start + offset) % n`: the division cost every read of a
    // small object about a nanosecond.
    let start = if start >= n { start % n } else { start };
    (start..n).chain(0..start).find(|&replica| wanted(replica))
}

#[cfg(test)]
mod tests {
    use super::{serving_from, write_target};
    use crate::client::tests::FakeView;

    #[test]
    fn writes_go_to_a_running_leader_else_to_the_first_running_replica_from_home() {
        let mut view = FakeView::new(5);
        view.leader = 3;
        assert_eq!(write_target(&view, 1), 3);
        view.running[3] = false;
        assert_eq!(write_target(&view, 1), 1);
        view.running[1] = false;
        assert_eq!(write_target(&view, 1), 2);
        assert_eq!(write_target(&view, 4), 4);
        view.running = vec![false; 5];
        assert_eq!(write_target(&view, 2), 2, "with none running, the home's queue keeps it");
    }

    #[test]
    fn reads_go_to_the_first_running_copy_not_known_diverged() {
        let mut view = FakeView::new(3);
        assert_eq!(serving_from(&view, 1), Some(1));
        view.diverged[1] = true;
        assert_eq!(serving_from(&view, 1), Some(2));
        view.running[2] = false;
        assert_eq!(serving_from(&view, 1), Some(0), "wrapping around");
        view.running[0] = false;
        assert_eq!(serving_from(&view, 1), None);
    }
}
