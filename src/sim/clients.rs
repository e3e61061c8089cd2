//! The simulated clients: sessions numbered by the runtime's own type, writes retried and
//! given up on, and reads served by the runtime's own rule against the watermark.

use std::collections::BTreeMap;

use super::config::ClientOp;
use super::linearizability::{Call, Operation, Specification};
use super::rng::SimRng;
use super::world::{Command, Sim};
use crate::protocol::Slot;
use crate::session::Outstanding;
use crate::state::may_serve;
use crate::Dispatch;

pub(super) struct PendingWrite {
    pub(super) write: usize,
    pub(super) floor: u64,
    pub(super) operation: usize,
    pub(super) retry_at: u64,
    /// When the client gives up on it (`u64::MAX`: never).
    pub(super) abandon_at: u64,
}

/// What a client's session keeps for a write until its outcome is reported.
#[derive(Debug, Default)]
pub(super) struct SessionWrite {
    /// Submitted more than once.
    pub(super) retried: bool,
    /// Given up on: the floor may pass it (as the runtime lets a dropped ticket's write go).
    pub(super) given_up: bool,
}

pub(super) struct PendingRead<D: Dispatch> {
    pub(super) replica: usize,
    pub(super) watermark: Slot,
    pub(super) op: D::ReadOp,
    pub(super) operation: usize,
}

pub(super) struct Client<D: Dispatch> {
    /// The session's writes and floor, kept by the runtime's own type.
    pub(super) session: Outstanding<SessionWrite>,
    /// The writes the client waits for (its tickets), by number.
    pub(super) outstanding: BTreeMap<u64, PendingWrite>,
    pub(super) read: Option<PendingRead<D>>,
    pub(super) issued: usize,
    /// Whether it gave up on a write already (see [`SimConfig::abandon_ticks`]).
    pub(super) gave_up: bool,
}

impl<D, W> Sim<'_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    pub(super) fn running(&mut self) -> Option<usize> {
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].runs()).collect();
        (!running.is_empty()).then(|| running[self.rng.below(running.len() as u64) as usize])
    }

    pub(super) fn submit(&mut self, client: usize, sequence: u64) {
        let Some(target) = self.running() else { return };
        let pending = &self.clients[client].outstanding[&sequence];
        let op = self.writes[pending.write].2.clone();
        let command = Command { client: client as u32, sequence, floor: pending.floor, write: pending.write, op };
        self.nodes[target].core_mut().expect("running").propose(command);
    }

    pub(super) fn clients_act(&mut self) {
        for client in 0..self.clients.len() {
            self.client_acts(client);
        }
    }

    /// Client `client` gives up on a write that took too long, retries those without a
    /// response, and, now and then, issues a new operation.
    pub(super) fn client_acts(&mut self, client: usize) {
        {
            // A write given up on leaves the session: no retry, and the floor passes it. At
            // most one per client and run: every write that never returns multiplies the
            // orders the linearizability check must try.
            let state = &mut self.clients[client];
            if !state.gave_up {
                let due = state.outstanding.iter().find(|(_, pending)| pending.abandon_at <= self.tick);
                if let Some(sequence) = due.map(|(&sequence, _)| sequence) {
                    state.outstanding.remove(&sequence);
                    if let Some(write) = state.session.get_mut(sequence) {
                        write.given_up = true;
                    }
                    state.gave_up = true;
                    self.report.abandoned += 1;
                }
            }
            // Retries of writes without a response.
            let due: Vec<u64> = self.clients[client]
                .outstanding
                .iter()
                .filter(|(_, pending)| pending.retry_at <= self.tick)
                .map(|(&sequence, _)| sequence)
                .collect();
            for sequence in due {
                let retry_at = self.tick + self.config.retry_ticks;
                let state = &mut self.clients[client];
                state.outstanding.get_mut(&sequence).expect("due").retry_at = retry_at;
                if let Some(write) = state.session.get_mut(sequence) {
                    write.retried = true;
                }
                self.report.retries += 1;
                self.submit(client, sequence);
            }
            // A new operation, now and then.
            let state = &self.clients[client];
            if state.read.is_some() || state.issued >= self.config.operations_per_client || !self.rng.chance(1, 2) {
                return;
            }
            let op = (self.workload)(&mut self.rng, client);
            match op {
                ClientOp::Write(write) => {
                    if self.clients[client].outstanding.len() >= self.config.pipeline {
                        return;
                    }
                    let state = &mut self.clients[client];
                    state.issued += 1;
                    // As `Handle::submit` does: writes given up on leave, then the floor is
                    // the first write whose outcome was not reported.
                    state.session.pop_front_while(|write| write.given_up);
                    let (sequence, floor) = state.session.push(SessionWrite::default());
                    let index = self.writes.len();
                    self.writes.push((client as u32, sequence, write.clone()));
                    let operation = self.history.len();
                    self.history.push(Operation {
                        client,
                        call: Call::Write(write),
                        invoked: self.clock,
                        returned: None,
                    });
                    self.clock += 1;
                    let retry_at = self.tick + self.config.retry_ticks;
                    let abandon_at = self.config.abandon_ticks.map_or(u64::MAX, |ticks| self.tick + ticks);
                    let pending = PendingWrite { write: index, floor, operation, retry_at, abandon_at };
                    self.clients[client].outstanding.insert(sequence, pending);
                    self.submit(client, sequence);
                }
                ClientOp::Read(read) => {
                    if !self.clients[client].outstanding.is_empty() {
                        // Reads wait for the client's writes, as `Handle::execute` after
                        // waiting for its tickets would.
                        return;
                    }
                    let Some(replica) = self.running() else { return };
                    self.clients[client].issued += 1;
                    let operation = self.history.len();
                    self.history.push(Operation {
                        client,
                        call: Call::Read(read.clone()),
                        invoked: self.clock,
                        returned: None,
                    });
                    self.clock += 1;
                    let watermark = self.watermark;
                    self.clients[client].read = Some(PendingRead { replica, watermark, op: read, operation });
                }
            }
        }
    }

    /// Serves pending reads whose replica has applied everything committed when the read
    /// began; moves reads off replicas that stopped running.
    pub(super) fn serve_reads(&mut self) {
        for client in 0..self.clients.len() {
            let Some(read) = &self.clients[client].read else { continue };
            let node = &self.nodes[read.replica];
            if !node.runs() {
                if let Some(replica) = self.running() {
                    self.clients[client].read.as_mut().expect("pending").replica = replica;
                }
                continue;
            }
            // The runtime's own rule (`Handle::execute`).
            let applied = node.state().slot_applied;
            if !may_serve(applied, read.watermark) {
                continue;
            }
            let response = node.state().object.dispatch(&read.op);
            let operation = read.operation;
            if self.trace {
                println!(
                    "tick {} clock {} r{} serves client {client}'s read (watermark {:?}, applied {applied:?}): {response:?}",
                    self.tick, self.clock, read.replica, read.watermark
                );
            }
            self.history[operation].returned = Some((self.clock, response));
            self.clock += 1;
            self.clients[client].read = None;
            self.report.operations_completed += 1;
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.issued >= self.config.operations_per_client && c.outstanding.is_empty() && c.read.is_none())
    }
}
