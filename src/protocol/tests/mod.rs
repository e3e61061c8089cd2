//! Message-by-message tests of the protocol core over a hand-driven network ([`Net`]):
//! `steady.rs` (election, commit, batching, recovery, learning, truncation),
//! `leadership.rs` (failover on a reported death, hand-over), `log.rs` (the log's bounds
//! and commit edge cases).

use std::collections::VecDeque;

use super::*;

mod leadership;
mod log;
mod steady;

/// A test network: replicas, messages in flight, and what each replica applied.
pub(super) struct Net {
    replicas: Vec<Replica<u32>>,
    in_flight: VecDeque<(ReplicaId, ReplicaId, Message<u32>)>,
    down: Vec<bool>,
    applied: Vec<Vec<(Slot, Vec<u32>)>>,
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with_config(Config::new(n))
    }

    fn with_config(config: Config) -> Self {
        let n = config.replicas;
        Self {
            replicas: (0..n).map(|i| Replica::new(ReplicaId::new(i), config.clone())).collect(),
            in_flight: VecDeque::new(),
            down: vec![false; n],
            applied: vec![Vec::new(); n],
        }
    }

    fn id(i: usize) -> ReplicaId {
        ReplicaId::new(i)
    }

    /// Moves every outbox into the network and every committed batch into `applied`.
    fn collect(&mut self) {
        for (i, replica) in self.replicas.iter_mut().enumerate() {
            let from = replica.id();
            let mut ready = replica.ready();
            for (to, message) in ready.messages.drain(..) {
                self.in_flight.push_back((from, to, message));
            }
            for (slot, batch) in ready.committed.drain(..) {
                self.applied[i].push((slot, batch.commands().to_vec()));
            }
            replica.advance(ready);
        }
    }

    /// Delivers messages until none is left, dropping those for which `keep` is false and
    /// those from or to a replica that is down.
    fn deliver_where(&mut self, mut keep: impl FnMut(ReplicaId, ReplicaId, &Message<u32>) -> bool) {
        self.collect();
        while let Some((from, to, message)) = self.in_flight.pop_front() {
            if self.down[from.index()] || self.down[to.index()] || !keep(from, to, &message) {
                continue;
            }
            // A round of input is one message; `collect` takes its output.
            self.replicas[to.index()].step(from, message);
            self.collect();
        }
    }

    fn deliver_all(&mut self) {
        self.deliver_where(|_, _, _| true);
    }

    fn tick(&mut self, i: usize) {
        self.replicas[i].tick();
        self.collect();
    }

    /// Ticks every live replica `n` times, delivering everything after each tick.
    fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            for i in 0..self.replicas.len() {
                if !self.down[i] {
                    self.replicas[i].tick();
                }
            }
            self.deliver_all();
        }
    }

    fn propose(&mut self, i: usize, command: u32) {
        self.replicas[i].propose(command);
        self.collect();
    }

    /// Restarts crashed replica `i` from its durable state, as the runtime does: its copy
    /// holds what it applied before, and replicas `told` hear that it runs again.
    fn restart(&mut self, i: usize, told: std::ops::Range<usize>) {
        let config = self.replicas[i].config().clone();
        let durable = self.replicas[i].durable_state();
        self.replicas[i] = Replica::restart(Net::id(i), config, durable);
        let applied = Slot::new(self.applied[i].len() as u64);
        self.replicas[i].install_snapshot(applied);
        self.down[i] = false;
        for peer in told {
            self.replicas[peer].peer_up(Net::id(i));
        }
    }

    fn leaders(&self) -> Vec<usize> {
        (0..self.replicas.len()).filter(|&i| !self.down[i] && self.replicas[i].is_leader()).collect()
    }

    /// Asserts that every pair of replicas applied the same batch wherever both applied one.
    fn assert_agreement(&self) {
        for a in &self.applied {
            for b in &self.applied {
                for (x, y) in a.iter().zip(b.iter()) {
                    assert_eq!(x, y, "replicas applied different batches");
                }
            }
        }
    }

    fn commands_applied(&self, i: usize) -> Vec<u32> {
        self.applied[i].iter().flat_map(|(_, commands)| commands.iter().copied()).collect()
    }
}

fn elect_zero(n: usize) -> Net {
    let mut net = Net::new(n);
    net.tick(0);
    net.deliver_all();
    assert_eq!(net.leaders(), vec![0]);
    net
}
