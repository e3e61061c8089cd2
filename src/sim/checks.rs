//! The checks a run must pass once every operation completed: liveness (every replica
//! converges once the faults stop) and equal states. (Agreement, validity, exactly-once and
//! per-slot state are checked as each slot is applied, in `network.rs`; linearizability in
//! `linearizability.rs`.)

use super::config::ClientOp;
use super::linearizability::Specification;
use super::report::Failure;
use super::rng::SimRng;
use super::world::Sim;

impl<D, W> Sim<'_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    /// Once every operation completed: run until every replica applied everything
    /// committed, then compare their states.
    pub(super) fn check_convergence(&mut self) -> Result<(), Failure> {
        let deadline = self.config.fault_ticks + self.config.liveness_ticks;
        loop {
            let target = self.watermark;
            let converged = self.nodes.iter().all(|n| n.core().is_some_and(|core| core.slot_delivered() >= target));
            if converged {
                break;
            }
            if self.tick >= deadline {
                let delivered: Vec<u64> =
                    self.nodes.iter().map(|n| n.core().map_or(0, |c| c.slot_delivered().get())).collect();
                return Err(self.fail(format!(
                    "liveness: replicas did not converge on {target:?} after the faults stopped: delivered {delivered:?}"
                )));
            }
            self.tick += 1;
            self.deliver()?;
            self.tick_replicas()?;
        }
        let first = &self.nodes[0];
        let delivered = first.core().map(|c| c.slot_delivered());
        for (i, node) in self.nodes.iter().enumerate().skip(1) {
            if node.core().map(|c| c.slot_delivered()) == delivered && node.state() != first.state() {
                return Err(self.fail(format!("state: replicas 0 and {i} applied the same prefix but differ")));
            }
        }
        for node in &self.nodes {
            if let Some(core) = node.core() {
                self.report.leader_changes += core.counters().leader_changes;
                self.report.coverage.absorb(core.counters());
            }
        }
        Ok(())
    }
}
