//! The harness every number in README.md and docs/BENCHMARKS.md comes from, shared by
//! `benches/` and the examples (`scaling`, `kv`, `faults`) through `#[path]`: the objects and
//! workloads (`objects.rs`), the one measurement loop (`harness.rs`), the systems measured
//! (`systems.rs`), and the floors a write is compared against (`floors.rs`).
#![allow(dead_code, unused_imports)] // each includer uses its own part

mod floors;
mod harness;
mod objects;
mod systems;

pub use floors::{atomic_ping_pong, crossbeam_relay};
pub use harness::{closed_loop, context_switches, histogram, measure, record, Budget, Latencies, Measurement, Share};
pub use objects::{next_random, thread_counts, workloads, NrObject, Object, Read, Workload, Write, KEYS};
pub use systems::{Straggler, System, PAUSE, PAUSE_PERIOD};
