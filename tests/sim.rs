//! The deterministic simulator over many seeds: agreement, validity, exactly-once, state,
//! linearizability and liveness under message loss, duplication, delay, crashes, restarts
//! and pauses.
//!
//! `CORUM_SIM_SEEDS=N` sweeps N seeds (default 10,000); `CORUM_SIM_SEED=S` replays one:
//! `CORUM_SIM_SEED=S cargo test --release --test sim -- --nocapture replay`.

use std::time::Instant;

use corum::sim::{self, FaultConfig, SimConfig};
use rayon::prelude::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| value.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn sweep() {
    let seeds = env_u64("CORUM_SIM_SEEDS").unwrap_or(10_000);
    let started = Instant::now();
    let outcomes: Vec<_> = (0..seeds).into_par_iter().map(sim::sweep_seed).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let failures: Vec<_> = outcomes.iter().filter_map(|outcome| outcome.as_ref().err()).collect();
    let reports: Vec<_> = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()).collect();
    let total = |f: fn(&sim::Report) -> u64| reports.iter().map(|r| f(r)).sum::<u64>();
    println!(
        "sim sweep: {seeds} seeds in {elapsed:.1} s ({:.0} seeds/s on {} threads); {} crashes, {} restarts, {} snapshots, {} pauses, \
         {} leader changes, {} partitions, {} transfers asked, {} retries, {} writes given up on, {} messages lost, {} operations, {} slots, \
         {} digests compared",
        seeds as f64 / elapsed,
        rayon::current_num_threads(),
        total(|r| r.crashes),
        total(|r| r.restarts),
        total(|r| r.snapshots),
        total(|r| r.pauses),
        total(|r| r.leader_changes),
        total(|r| r.partitions),
        total(|r| r.transfers),
        total(|r| r.retries),
        total(|r| r.abandoned),
        total(|r| r.messages_lost),
        total(|r| r.operations_completed),
        total(|r| r.slots_committed),
        total(|r| r.checkpoints),
    );
    println!("coverage (path: times taken, share of seeds that took it):");
    let paths = sim::Coverage::default().paths().len();
    let mut rare = Vec::new();
    for path in 0..paths {
        let name = sim::Coverage::default().paths()[path].0;
        let count = |report: &sim::Report| report.coverage.paths()[path].1;
        let taken: u64 = reports.iter().map(|r| count(r)).sum();
        let seeds_taken = reports.iter().filter(|r| count(r) > 0).count();
        let share = seeds_taken as f64 / seeds.max(1) as f64;
        println!("  {name}: {taken} times, {seeds_taken} seeds ({:.2} %)", share * 100.0);
        if share < 0.01 {
            rare.push(name);
        }
    }
    if let Some(first) = failures.first() {
        panic!("{} of {seeds} seeds failed; the first:\n{first}", failures.len());
    }
    // A path the sweep rarely takes is a path on which it cannot catch a bug.
    assert!(seeds < 1_000 || rare.is_empty(), "paths taken in under 1 % of the seeds: {rare:?}");
    assert!(total(|r| r.crashes) > 0 && total(|r| r.restarts) > 0 && total(|r| r.pauses) > 0, "faults were injected");
    assert!(total(|r| r.abandoned) > 0, "clients gave up on writes");
    assert!(total(|r| r.checkpoints) > seeds, "replicas compared digests at checkpoints");
}

#[test]
fn replay() {
    let Some(seed) = env_u64("CORUM_SIM_SEED") else {
        println!("set CORUM_SIM_SEED to replay one seed");
        return;
    };
    println!("config: {:#?}", sim::sweep_config(seed));
    match sim::sweep_seed(seed) {
        Ok(report) => println!("{report:#?}"),
        Err(failure) => panic!("{failure}"),
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [3, 4, 77] {
        assert_eq!(sim::sweep_seed(seed), sim::sweep_seed(seed));
    }
}

#[test]
fn without_faults_every_operation_completes_quickly() {
    let mut config = SimConfig::default();
    config.faults = FaultConfig::none();
    config.fault_ticks = 0;
    config.liveness_ticks = 500;
    config.operations_per_client = 30;
    for seed in 0..50 {
        let report =
            sim::run(seed, &config, sim::workloads::Register::default(), sim::workloads::Register::workload, None)
                .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(report.operations_completed, 90);
        assert_eq!(report.leader_changes, 1, "seed {seed}: one election, no faults");
    }
}

/// Built only with a planted protocol bug (`--cfg corum_plant="NAME"`, see
/// `tests/planted_sim.sh`): the sweep must catch it, and this prints how many seeds it took.
#[cfg(corum_plant)]
#[test]
fn planted_bug_is_caught() {
    let limit = env_u64("CORUM_SIM_SEEDS").unwrap_or(10_000);
    let chunk = 64;
    let mut start = 0;
    while start < limit {
        let end = (start + chunk).min(limit);
        let first = (start..end).into_par_iter().filter_map(|seed| sim::sweep_seed(seed).err()).min_by_key(|f| f.seed);
        if let Some(failure) = first {
            println!(
                "planted bug caught after {} seeds: {}",
                failure.seed + 1,
                failure.message.lines().next().unwrap_or("")
            );
            return;
        }
        start = end;
    }
    panic!("planted bug survived {limit} seeds");
}
