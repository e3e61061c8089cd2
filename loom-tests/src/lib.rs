//! corum's loom suite: the scenarios live in `tests/`; this library holds the harness they
//! share. See the repository's docs/VERIFICATION.md, "The loom suite", for how to run it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Runs `model` under loom, exhaustively when `bound` is `None`, else under that many
/// preemptions (`LOOM_MAX_PREEMPTIONS` overrides either), and prints the executions
/// explored.
pub fn check(name: &str, bound: Option<usize>, model: impl Fn() + Sync + Send + 'static) {
    // Tests of one binary may run in parallel; the execution counter is per check.
    static LOCK: Mutex<()> = Mutex::new(());
    static EXECUTIONS: AtomicUsize = AtomicUsize::new(0);
    let _serial = LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = bound;
    }
    // The runtime's loops are long paths of atomic operations; loom's default cap of 1,000
    // branches per execution is too short for a whole cluster.
    builder.max_branches = 20_000;
    let bound = builder.preemption_bound;
    EXECUTIONS.store(0, Ordering::Relaxed);
    let started = std::time::Instant::now();
    builder.check(move || {
        EXECUTIONS.fetch_add(1, Ordering::Relaxed);
        model();
    });
    let bound = bound.map_or_else(|| "exhaustive".to_string(), |b| format!("preemption bound {b}"));
    println!(
        "loom: {name}: {} executions, {bound}, {:.1} s",
        EXECUTIONS.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
