//! Fault injection: crashes and restarts (through the runtime's own restart), pauses,
//! step-downs, partitions, simultaneous campaigns and replayed messages.

use super::config::ClientOp;
use super::linearizability::Specification;
use super::network::SimEnv;
use super::report::Failure;
use super::rng::SimRng;
use super::world::{InFlight, Input, Sim};
use crate::protocol::ReplicaId;

impl<D, W> Sim<'_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    pub(super) fn max_down(&self) -> usize {
        (self.config.replicas - 1) / 2
    }

    pub(super) fn down(&self) -> usize {
        self.nodes.iter().filter(|n| n.crashed || n.paused).count()
    }

    pub(super) fn inject_faults(&mut self) -> Result<(), Failure> {
        let faults = &self.config.faults;
        let n = self.nodes.len() as u64;
        let (crash, restart, pause, resume) =
            (faults.crash_permille, faults.restart_permille, faults.pause_permille, faults.resume_permille);
        if self.rng.chance(crash, 1000) && self.down() < self.max_down() {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].runs() {
                self.crash(i);
            }
        }
        if self.rng.chance(restart, 1000) {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].crashed {
                self.restart(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].restart_at.is_some_and(|at| at <= self.tick) && self.nodes[i].crashed {
                self.restart(i);
            }
        }
        self.inject_targeted_faults()?;
        if self.rng.chance(pause, 1000) && self.down() < self.max_down() {
            let i = self.rng.below(n) as usize;
            if self.nodes[i].runs() {
                self.nodes[i].paused = true;
                self.report.pauses += 1;
            }
        }
        if self.rng.chance(resume, 1000) {
            let i = self.rng.below(n) as usize;
            let was_paused = std::mem::replace(&mut self.nodes[i].paused, false);
            if was_paused && self.nodes[i].runs() && self.rng.chance(self.config.faults.resume_campaign_permille, 1000)
            {
                self.round(i, Input::Campaign)?;
            }
        }
        if self.rng.chance(self.config.faults.misleading_hint_permille, 1000) {
            // For a few ticks, until leaders set it again.
            self.leader_hint = self.rng.below(n) as usize;
            self.hint_pinned_until = self.tick + 1 + self.rng.below(20);
        }
        // A leader that finds itself too slow gives up leadership (as the runtime's do).
        if self.rng.chance(pause, 1000) {
            let i = self.rng.below(n) as usize;
            if let Some(core) = self.nodes[i].core_mut().filter(|core| core.is_leader()) {
                core.step_down();
                self.report.step_downs += 1;
            }
        }
        Ok(())
    }

    /// Partitions, simultaneous campaigns and replayed messages: the schedules that bring
    /// competing leaders with different values, which uniform faults almost never do.
    pub(super) fn inject_targeted_faults(&mut self) -> Result<(), Failure> {
        let faults = &self.config.faults;
        let (partition, partition_max, campaign, replay) =
            (faults.partition_permille, faults.partition_ticks_max, faults.campaign_permille, faults.replay_permille);
        let (transfer, wrong_hint) = (faults.transfer_permille, faults.wrong_hint_permille);
        let n = self.nodes.len() as u64;
        match self.partition {
            Some((_, heals)) if heals <= self.tick => self.partition = None,
            None if partition_max > 0 && self.rng.chance(partition, 1000) => {
                let leader = (0..self.nodes.len()).find(|&i| self.nodes[i].core().is_some_and(|c| c.is_leader()));
                let i = match leader {
                    Some(leader) if !self.rng.chance(1, 3) => leader,
                    _ => self.rng.below(n) as usize,
                };
                let heals = self.tick + 1 + self.rng.below(partition_max);
                self.partition = Some((i, heals));
                self.report.partitions += 1;
                if self.trace {
                    println!("tick {} r{i} is cut off until tick {heals}", self.tick);
                }
            }
            _ => {}
        }
        if n >= 2 && self.rng.chance(campaign, 1000) {
            let first = self.rng.below(n) as usize;
            let second = (first + 1 + self.rng.below(n - 1) as usize) % n as usize;
            for i in [first, second] {
                if self.nodes[i].runs() {
                    self.round(i, Input::Campaign)?;
                }
            }
        }
        if n >= 2 && self.rng.chance(transfer, 1000) {
            // The leader is asked to hand over to another replica (which may be down).
            let leader = (0..self.nodes.len())
                .find(|&i| self.nodes[i].runs() && self.nodes[i].core().is_some_and(|c| c.is_leader()));
            if let Some(leader) = leader {
                let to = (leader + 1 + self.rng.below(n - 1) as usize) % n as usize;
                self.report.transfers += 1;
                self.round(leader, Input::Transfer(ReplicaId::new(to)))?;
            }
        }
        if n >= 2 && self.rng.chance(wrong_hint, 1000) {
            // A replica is told that a running peer (the leader, most often) stopped.
            let to = self.rng.below(n) as usize;
            let leader = self.nodes[to].core().and_then(|core| core.leader()).map(ReplicaId::index);
            let peer = match leader {
                Some(leader) if leader != to && !self.rng.chance(1, 4) => leader,
                _ => (to + 1 + self.rng.below(n - 1) as usize) % n as usize,
            };
            let deliver_at = self.tick + 1;
            self.hints.push(super::world::Hint { deliver_at, to, peer, down: true });
            if self.rng.chance(1, 2) {
                // And, some ticks later, that it runs again.
                let deliver_at = self.tick + 1 + self.rng.below(50);
                self.hints.push(super::world::Hint { deliver_at, to, peer, down: false });
            }
        }
        if self.rng.chance(replay, 1000) && !self.delivered.is_empty() {
            for _ in 0..4 + self.rng.below(13) {
                let index = self.rng.below(self.delivered.len() as u64) as usize;
                let (from, to, message) = self.delivered[index].clone();
                let deliver_at = self.tick + 1 + self.rng.below(self.config.faults.delay_max_ticks + 1);
                self.network.push(InFlight { deliver_at, from, to, message });
            }
        }
        Ok(())
    }

    /// Whether a message between `a` and `b` crosses the partition.
    pub(super) fn cut(&self, a: ReplicaId, b: ReplicaId) -> bool {
        self.partition.is_some_and(|(i, _)| a.index() == i || b.index() == i)
    }

    pub(super) fn crash(&mut self, i: usize) {
        let fast = self.rng.chance(self.config.faults.fast_restart_permille, 1000);
        self.crash_then(i, fast);
    }

    /// Crashes replica `i`; if `fast`, schedules its restart 1 or 2 ticks later.
    pub(super) fn crash_then(&mut self, i: usize, fast: bool) {
        let node = &mut self.nodes[i];
        let core = node.core().expect("crash is only injected on a running replica");
        self.report.leader_changes += core.counters().leader_changes;
        self.report.coverage.absorb(core.counters());
        node.promise_before_crash = core.ballot_promised();
        node.crashed = true;
        // The copy survives, as in the runtime: it stands for the log entries the replica
        // freed, which no peer may hold any more.
        node.restart_at = fast.then(|| self.tick + 1 + self.rng.below(2));
        self.report.crashes += 1;
        self.announce(i, true);
        if self.trace {
            println!("tick {} r{i} crashes (promised {:?})", self.tick, self.nodes[i].promise_before_crash);
        }
    }

    /// Restarts replica `i` with the runtime's own code ([`Driver::restart`]): its
    /// acceptor's durable state survives, and its state is the newer of its own copy and a
    /// snapshot of the most advanced running peer.
    pub(super) fn restart(&mut self, i: usize) {
        let mut driver = self.nodes[i].driver.take().expect("not in a round");
        let installed = driver.snapshots_installed();
        driver.restart(&mut SimEnv { sim: self, i, input: None, promised: false });
        let own_copy = driver.snapshots_installed() == installed;
        let slot = driver.state().state.slot_applied;
        let node = &mut self.nodes[i];
        node.driver = Some(driver);
        node.crashed = false;
        node.paused = false;
        node.restart_at = None;
        self.report.restarts += 1;
        self.announce(i, false);
        if own_copy {
            // (A peer's snapshot was counted as it was installed.)
            self.count_snapshot_during_retries();
        }
        if self.trace {
            println!("tick {} r{i} restarts at {slot:?}", self.tick);
        }
    }

    pub(super) fn count_snapshot_during_retries(&mut self) {
        if self.clients.iter().any(|client| client.session.iter().any(|(_, write)| write.retried)) {
            self.report.coverage.snapshots_during_retries += 1;
        }
    }

    pub(super) fn heal(&mut self) {
        self.partition = None;
        for i in 0..self.nodes.len() {
            self.nodes[i].paused = false;
            if self.nodes[i].crashed {
                self.restart(i);
            }
        }
    }
}
