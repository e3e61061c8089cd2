//! A linearizability checker for histories of a [`Dispatch`] object: the object itself is
//! the sequential specification. Wing and Gong's search ("Testing and verifying concurrent
//! objects", 1993) with Lowe's memoisation of (linearized set, state) pairs ("Testing for
//! linearizability", 2017), over per-key partitions when the object's keys are independent.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

use crate::Dispatch;

/// An operation as a client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call<R, W> {
    /// A read.
    Read(R),
    /// A write.
    Write(W),
}

/// One operation of a history: what was called, when (in a logical clock shared by every
/// event of the run), and what it returned, if it returned.
#[derive(Debug, Clone)]
pub struct Operation<D: Dispatch> {
    /// The client that called it.
    pub client: usize,
    /// The call.
    pub call: Call<D::ReadOp, D::WriteOp>,
    /// When it was invoked.
    pub invoked: u64,
    /// When it returned and what it returned; `None` if it never did (it may or may not
    /// have taken effect).
    pub returned: Option<(u64, D::Response)>,
}

/// Maps an operation to the key it touches, for checking each key's history on its own.
pub type Partition<'a, D> = &'a dyn Fn(&Call<<D as Dispatch>::ReadOp, <D as Dispatch>::WriteOp>) -> u64;

/// Objects the checker can use as their own specification: comparable and printable, with
/// operations and responses that can be copied into a history and printed. (The bounds on
/// the operation types are part of the trait, so `D: Specification` implies them.)
pub trait Specification:
    Dispatch<ReadOp: Clone + Debug, WriteOp: Clone + Debug, Response: Clone + PartialEq + Debug> + Hash + Eq + Debug
{
}

impl<D> Specification for D where
    D: Dispatch<ReadOp: Clone + Debug, WriteOp: Clone + Debug, Response: Clone + PartialEq + Debug> + Hash + Eq + Debug
{
}

/// Checks that `history` is linearizable with respect to `initial` and its operations.
/// `partition`, when given, maps each call to the key it touches; keys must be independent
/// (an operation on one key never affects the responses of another), and each key's
/// sub-history is checked on its own, which keeps the search small.
///
/// Returns a description of the first partition that could not be linearized.
pub fn check<D>(initial: &D, history: &[Operation<D>], partition: Option<Partition<'_, D>>) -> Result<(), String>
where
    D: Specification,
{
    // Reads that never returned had no effect and constrain nothing.
    let relevant: Vec<&Operation<D>> =
        history.iter().filter(|op| op.returned.is_some() || matches!(op.call, Call::Write(_))).collect();
    let mut partitions: BTreeMap<u64, Vec<&Operation<D>>> = BTreeMap::new();
    for op in relevant {
        let key = partition.map_or(0, |f| f(&op.call));
        partitions.entry(key).or_default().push(op);
    }
    for (key, ops) in partitions {
        let mut search = Search { ops: &ops };
        if !search.run(initial.clone()) {
            let mut sorted = ops.clone();
            sorted.sort_by_key(|op| op.invoked);
            let lines: Vec<String> = sorted
                .iter()
                .map(|op| {
                    format!("  client {} {:?} invoked {} returned {:?}", op.client, op.call, op.invoked, op.returned)
                })
                .collect();
            return Err(format!("not linearizable (partition {key}, {} operations):\n{}", ops.len(), lines.join("\n")));
        }
    }
    Ok(())
}

/// The search over one partition, after Lowe's just-in-time linearization as Porcupine
/// implements it: the history is a linked list of call and return events in time order; the
/// search linearizes calls that come before the first remaining return, lifting each
/// linearized call and its return out of the list, and backtracks when it meets a return
/// whose call it could not linearize. Iterative, so long histories do not exhaust the stack.
struct Search<'a, D: Dispatch> {
    ops: &'a [&'a Operation<D>],
}

/// One event of the linked list: the call or the return of `op`.
#[derive(Clone, Copy)]
struct Event {
    op: usize,
    call: bool,
}

impl<D> Search<'_, D>
where
    D: Specification,
{
    fn run(&mut self, initial: D) -> bool {
        let n = self.ops.len();
        // Events in time order; an operation that never returned returns after everything.
        let mut events: Vec<(u64, bool, Event)> = Vec::with_capacity(2 * n);
        for (op, operation) in self.ops.iter().enumerate() {
            events.push((operation.invoked, true, Event { op, call: true }));
            let at = operation.returned.as_ref().map_or(u64::MAX, |(at, _)| *at);
            events.push((at, false, Event { op, call: false }));
        }
        // Calls before returns at equal times: an operation may overlap one returning then.
        events.sort_by_key(|&(at, call, event)| (at, !call, event.op));
        let events: Vec<Event> = events.into_iter().map(|(_, _, event)| event).collect();
        // A doubly linked list over `events`, with a head sentinel at index `len`.
        let head = events.len();
        let mut next: Vec<usize> = (1..=events.len()).chain([usize::MAX]).collect();
        let mut prev: Vec<usize> = std::iter::once(head).chain(0..events.len().saturating_sub(1)).collect();
        prev.push(usize::MAX);
        next[head] = if events.is_empty() { usize::MAX } else { 0 };
        if let Some(last) = events.len().checked_sub(1) {
            next[last] = usize::MAX;
        }
        let mut return_of = vec![0; n];
        for (index, event) in events.iter().enumerate() {
            if !event.call {
                return_of[event.op] = index;
            }
        }
        let unlink = |index: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
            let (p, q) = (prev[index], next[index]);
            next[p] = q;
            if q != usize::MAX {
                prev[q] = p;
            }
        };
        let relink = |index: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
            let (p, q) = (prev[index], next[index]);
            next[p] = index;
            if q != usize::MAX {
                prev[q] = index;
            }
        };

        let mut linearized = vec![0u64; n.div_ceil(64)];
        let mut visited: HashSet<(Vec<u64>, u64)> = HashSet::new();
        let mut calls: Vec<(usize, D)> = Vec::new();
        let mut state = initial;
        let mut entry = next[head];
        while next[head] != usize::MAX {
            // At the end of the list (every remaining call skipped), or at a return whose
            // call is still in the list: undo the last linearization and try the next call.
            if entry == usize::MAX || !events[entry].call {
                let Some((call, previous)) = calls.pop() else { return false };
                let op = events[call].op;
                linearized[op / 64] &= !(1 << (op % 64));
                state = previous;
                relink(return_of[op], &mut next, &mut prev);
                relink(call, &mut next, &mut prev);
                entry = next[call];
                continue;
            }
            // A call: linearize it here if its response fits and this configuration is new.
            let op = events[entry].op;
            if let Some(after) = step(&state, self.ops[op]) {
                let mut bits = linearized.clone();
                bits[op / 64] |= 1 << (op % 64);
                if visited.insert((bits.clone(), hash_of(&after))) {
                    calls.push((entry, std::mem::replace(&mut state, after)));
                    linearized = bits;
                    unlink(entry, &mut next, &mut prev);
                    unlink(return_of[op], &mut next, &mut prev);
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        }
        true
    }
}

/// Applies `op` to a copy of `state`; `None` if its recorded response does not match.
fn step<D>(state: &D, op: &Operation<D>) -> Option<D>
where
    D: Specification,
{
    let mut next = state.clone();
    let response = match &op.call {
        Call::Read(read) => next.dispatch(read),
        // Histories checked here come from objects that do not panic; a write that panics in
        // the specification cannot be linearized.
        Call::Write(write) => {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| next.dispatch_mut(write))).ok()?
        }
    };
    match &op.returned {
        Some((_, expected)) if &response != expected => None,
        _ => Some(next),
    }
}

fn hash_of<T: Hash>(value: &T) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::workloads::{Register, RegisterRead, RegisterWrite};

    fn write(client: usize, value: u64, invoked: u64, returned: Option<(u64, u64)>) -> Operation<Register> {
        Operation { client, call: Call::Write(RegisterWrite(value)), invoked, returned }
    }

    fn read(client: usize, invoked: u64, at: u64, value: u64) -> Operation<Register> {
        Operation { client, call: Call::Read(RegisterRead), invoked, returned: Some((at, value)) }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let history =
            vec![write(0, 1, 0, Some((1, 0))), read(1, 2, 3, 1), write(0, 2, 4, Some((5, 1))), read(1, 6, 7, 2)];
        assert_eq!(check(&Register::default(), &history, None), Ok(()));
    }

    #[test]
    fn overlapping_operations_may_take_effect_in_either_order() {
        // The read overlaps the write and sees the new value: linearize the write first.
        let history = vec![write(0, 7, 0, Some((5, 0))), read(1, 1, 2, 7)];
        assert_eq!(check(&Register::default(), &history, None), Ok(()));
        // ... or the old value: linearize the read first.
        let history = vec![write(0, 7, 0, Some((5, 0))), read(1, 1, 2, 0)];
        assert_eq!(check(&Register::default(), &history, None), Ok(()));
    }

    #[test]
    fn a_stale_read_is_not_linearizable() {
        // The write returned before the read began, yet the read saw the old value.
        let history = vec![write(0, 7, 0, Some((1, 0))), read(1, 2, 3, 0)];
        assert!(check(&Register::default(), &history, None).is_err());
    }

    #[test]
    fn reads_may_not_go_back_in_time() {
        // Two sequential reads by one client see 2 then 1, but writes went 1 then 2.
        let history =
            vec![write(0, 1, 0, Some((1, 0))), write(0, 2, 2, Some((10, 1))), read(1, 3, 4, 2), read(1, 5, 6, 1)];
        assert!(check(&Register::default(), &history, None).is_err());
    }

    #[test]
    fn a_write_that_never_returned_may_or_may_not_have_happened() {
        let seen = vec![write(0, 9, 0, None), read(1, 5, 6, 9)];
        assert_eq!(check(&Register::default(), &seen, None), Ok(()));
        let unseen = vec![write(0, 9, 0, None), read(1, 5, 6, 0)];
        assert_eq!(check(&Register::default(), &unseen, None), Ok(()));
        // But a value nobody wrote cannot be read.
        let invented = vec![write(0, 9, 0, None), read(1, 5, 6, 3)];
        assert!(check(&Register::default(), &invented, None).is_err());
    }

    #[test]
    fn a_response_no_order_explains_is_rejected() {
        // Writes return the previous value: after 5 then 6, a later write must see 6.
        let history = vec![write(0, 5, 0, Some((1, 0))), write(0, 6, 2, Some((3, 5))), write(1, 5, 4, Some((5, 5)))];
        assert!(check(&Register::default(), &history, None).is_err());
    }
}
