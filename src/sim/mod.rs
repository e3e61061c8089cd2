//! A deterministic simulator: N protocol replicas and simulated clients in one thread,
//! every choice derived from one `u64` seed, with faults a real run meets once a year.
//!
//! Each simulated replica runs the threaded runtime's own replica driver over the same
//! [`protocol::Replica`](crate::protocol::Replica): the same order of publishing the commit
//! watermark, sending and applying, the same exactly-once apply, snapshot choice and
//! install, and restart; and each simulated client drives the runtime's own client machine
//! (`crate::client`): the same numbering and floor, retries, deadlines, and reads (the
//! watermark loaded when the read began, the copy that serves it). Only the environment is
//! simulated: the network, the clock, and what clients ask when. The simulator checks, on
//! every run:
//! - **agreement**: no two replicas apply different batches in a slot;
//! - **validity**: only commands clients submitted (or no-ops) are committed;
//! - **exactly-once**: no client write takes effect twice, across retries and leader changes;
//! - **state**: replicas that applied the same prefix hold equal objects;
//! - **linearizability** of the clients' history, with the object as its own specification;
//! - **liveness**: once faults stop and every replica is back, every operation completes and
//!   the replicas converge within a bounded number of ticks.
//!
//! Faults: message loss, duplication, delay and reordering; replica crashes (the log and
//! every volatile protocol state are lost; the acceptor's promise and accepted values
//! survive, as on an acceptor's stable storage, and so does the replica's copy of the
//! object, which stands for the entries it freed) and restarts (from the newer of its own
//! copy and a peer's snapshot, then by learning), fast restarts while old messages are still
//! in flight, crashes right after a promise; pauses, and campaigns right after them;
//! partitions of a running leader; lost commit notices; simultaneous campaigns; replayed old
//! messages; misleading leader hints. The clients are the runtime's own client machine
//! (`crate::client`) over the runtime's write board: they number their writes, post each
//! once to a lane of their own (whichever replica leads collects it, every unfinished one
//! again in a new ballot), give up on some at their deadline (retracting them) or drop
//! their tickets, and read through the runtime's read path. A share of the seeds run long
//! (thousands of slots, clients past several words of the exactly-once table, snapshots of
//! long logs) or let logs take their sparse form. Each run reports how often it took the
//! delicate paths ([`Coverage`]).
//!
//! Run your own object through it to test that it is deterministic under faults:
//!
//! ```
//! use corum::sim::{self, ClientOp, SimConfig};
//! use corum::Dispatch;
//!
//! #[derive(Clone, Default, Debug, PartialEq, Eq, Hash)]
//! struct Stack(Vec<u32>);
//!
//! impl Dispatch for Stack {
//!     type ReadOp = ();
//!     type WriteOp = Option<u32>; // Some(x): push x; None: pop
//!     type Response = Option<u32>;
//!     fn dispatch(&self, _: &()) -> Option<u32> { self.0.last().copied() }
//!     fn dispatch_mut(&mut self, op: &Option<u32>) -> Option<u32> {
//!         match op { Some(x) => { self.0.push(*x); None } None => self.0.pop() }
//!     }
//! }
//!
//! for seed in 0..20 {
//!     let workload = |rng: &mut sim::SimRng, _client: usize| match rng.below(3) {
//!         0 => ClientOp::Read(()),
//!         1 => ClientOp::Write(Some(rng.below(100) as u32)),
//!         _ => ClientOp::Write(None),
//!     };
//!     let report = sim::run(seed, &SimConfig::default(), Stack::default(), workload, None)
//!         .unwrap_or_else(|failure| panic!("{failure}"));
//!     assert!(report.operations_completed > 0);
//! }
//! ```

mod checks;
mod clients;
mod config;
mod faults;
pub mod linearizability;
mod network;
mod report;
mod rng;
pub mod workloads;
mod world;

pub use config::{sweep_config, ClientOp, FaultConfig, SimConfig};
use linearizability::{Call, Partition, Specification};
pub use report::{Coverage, Failure, Report, LONG_LOG};
pub use rng::SimRng;
use world::Sim;

/// Runs one simulation of `initial` under `config` from `seed`, with clients drawing
/// operations from `workload`, and checks it. `partition` maps an operation to the key it
/// touches when the object's keys are independent, which speeds up the linearizability
/// check (see [`linearizability::check`]).
///
/// # Errors
/// A [`Failure`] naming the seed, the tick and the check that broke.
pub fn run<D>(
    seed: u64,
    config: &SimConfig,
    initial: D,
    workload: impl FnMut(&mut SimRng, usize) -> ClientOp<D>,
    partition: Option<Partition<'_, D>>,
) -> Result<Report, Failure>
where
    D: Specification,
{
    let mut sim = Sim::new(seed, config, initial, workload);
    // A panic (a broken protocol invariant) is a failure of this seed like any other.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sim.run())).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string());
        Err(Failure { seed, tick: 0, message: format!("panic: {message}") })
    });
    let tick = sim.tick;
    outcome.and_then(|()| {
        linearizability::check(&sim.initial, &sim.history, partition).map_err(|message| Failure { seed, tick, message })
    })?;
    sim.report.ticks = sim.tick;
    Ok(sim.report)
}

/// Runs seed `seed` of the sweep: the configuration from [`sweep_config`] on a
/// [`workloads::Register`] (even seeds) or a [`workloads::KvMap`] (odd seeds).
///
/// # Errors
/// The [`Failure`] of that seed.
pub fn sweep_seed(seed: u64) -> Result<Report, Failure> {
    let config = sweep_config(seed);
    if seed % 2 == 0 {
        run(seed, &config, workloads::Register::default(), workloads::Register::workload, None)
    } else {
        let key = |call: &Call<workloads::KvGet, workloads::KvWrite>| workloads::KvMap::key(call);
        run(seed, &config, workloads::KvMap::default(), workloads::KvMap::workload, Some(&key))
    }
}
