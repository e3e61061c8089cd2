//! The simulated clients: each drives the runtime's own client machine (`crate::client`)
//! over the simulated world ([`SimView`]), as `Handle` and `Ticket` drive it over the
//! cluster's shared state: the same numbering and floor, the same decisions of where and
//! when to submit a write again and when to give up on it, and the same read (which
//! watermark it loads and waits for, which copy serves it, when it moves).

use std::collections::BTreeMap;

use super::config::ClientOp;
use super::linearizability::{Call, Operation, Specification};
use super::rng::SimRng;
use super::world::{Node, Request, Sim};
use crate::client::read::{self, Read, Step as ReadStep};
use crate::client::session::Session;
use crate::client::write::{Step as WriteStep, Write};
use crate::client::{Time, Timing, View};
use crate::protocol::Slot;
use crate::transport::board::{Address, LaneKey, Retracted};
use crate::Dispatch;

/// What a simulated client's session keeps for a write until it leaves the session.
#[derive(Debug)]
pub(super) struct SessionWrite {
    /// Index into the run's table of submitted writes.
    pub(super) write: usize,
    /// Its number in the client's lane of the write board.
    pub(super) number: u64,
    /// Submitted more than once.
    pub(super) retried: bool,
    /// A replica applied it while nobody waited for it (its ticket was dropped): the
    /// session lets go of it at its next write, as the runtime's does of a request whose
    /// completion is filled.
    pub(super) reported: bool,
}

/// A write a simulated client waits for: its ticket.
pub(super) struct Ticket {
    pub(super) write: Write,
    /// Its operation in the history.
    pub(super) operation: usize,
}

/// A read in flight.
pub(super) struct PendingRead<D: Dispatch> {
    pub(super) read: Read,
    pub(super) op: D::ReadOp,
    pub(super) operation: usize,
}

pub(super) struct Client<D: Dispatch> {
    /// The client machine's session: numbers and floor.
    pub(super) session: Session<SessionWrite>,
    /// The writes the client waits for, by number.
    pub(super) tickets: BTreeMap<u64, Ticket>,
    pub(super) read: Option<PendingRead<D>>,
    pub(super) issued: usize,
    /// The replica its reads start from and its writes go to while no leader runs.
    pub(super) home: usize,
    /// Whether it gave up on a write already (see [`SimConfig::abandon_ticks`]).
    ///
    /// [`SimConfig::abandon_ticks`]: super::SimConfig::abandon_ticks
    pub(super) gave_up: bool,
    /// Its lane of the write board, claimed at its first write (as a runtime session
    /// claims one), and the lane number of its write numbered 0.
    pub(super) lane: Option<(LaneKey, u64)>,
}

impl<D: Dispatch> Client<D> {
    pub(super) fn new(home: usize) -> Self {
        Self {
            session: Session::default(),
            tickets: BTreeMap::new(),
            read: None,
            issued: 0,
            home,
            gave_up: false,
            lane: None,
        }
    }
}

/// What a simulated client sees of the cluster: the client machine's [`View`] over the
/// simulated replicas, as the runtime's clients see theirs: a replica runs unless it is
/// crashed or paused (also while its round runs), and has applied what it last published.
pub(super) struct SimView<'a, D: Dispatch> {
    pub(super) nodes: &'a [Node<D>],
    pub(super) watermark: Slot,
    pub(super) leader_hint: usize,
}

impl<D: Dispatch> View for SimView<'_, D> {
    fn replicas(&self) -> usize {
        self.nodes.len()
    }
    fn closed(&self) -> bool {
        false
    }
    fn stopped(&self) -> bool {
        false
    }
    fn forked(&self) -> Option<u64> {
        None
    }
    fn watermark(&self) -> Slot {
        self.watermark
    }
    fn leader_hint(&self) -> usize {
        self.leader_hint
    }
    fn runs(&self, replica: usize) -> bool {
        let node = &self.nodes[replica];
        !node.crashed && !node.paused
    }
    fn diverged(&self, _replica: usize) -> bool {
        // The simulated objects are deterministic: a copy found diverged breaks the run.
        false
    }
    fn slot_applied(&self, replica: usize) -> Slot {
        self.nodes[replica].applied_published
    }
}

impl<D, W> Sim<'_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    /// The clients' timing in ticks: retries after `retry_ticks`, reads move after an
    /// election timeout, and calls have no deadline (the liveness check waits for them):
    /// `deadline` is given to the writes a client gives up on.
    pub(super) fn timing(&self, deadline: u64) -> Timing {
        Timing {
            deadline,
            retry_after: self.config.retry_ticks,
            switch_after: u64::from(self.config.protocol.election_ticks),
        }
    }

    pub(super) fn now(&self) -> Time {
        Time(self.tick)
    }

    /// Lets go of `client`'s writes as its session does before it posts (the runtime's
    /// `Session::let_go`): those at the front whose answer came while nobody waited, and
    /// those past their deadline, which are retracted from the board so that no later
    /// leader proposes them. Then tells the board which writes are finished.
    fn let_go(&mut self, client: usize, now: Time) {
        let Client { session, lane, .. } = &mut self.clients[client];
        let Some((key, base)) = lane else { return };
        let mut retracted = Vec::new();
        session.let_go(
            now,
            |held| held.reported,
            |held| retracted.push((held.write, self.board.retract(key, held.number))),
        );
        self.board.finished_below(key, *base + session.floor());
        for (write, outcome) in retracted {
            self.retracted(client, write, outcome);
        }
    }

    /// Write `write` of `client` was retracted from the board, with `outcome`.
    fn retracted(&mut self, client: usize, write: usize, outcome: Retracted) {
        match outcome {
            Retracted::Retracted if self.collected[write].is_some() => {
                self.report.coverage.writes_retracted_after_collection += 1
            }
            Retracted::Retracted => {}
            // Answers are taken as they land (`SimEnv::complete`): one found there, or
            // being written, is a lost answer.
            other => self.broke(format!("client {client}'s write {write} retracted: {other:?}")),
        }
    }

    /// Client `client` gives up on its write `sequence`: retracts it and closes it.
    fn give_up(&mut self, client: usize, sequence: u64) {
        let state = &mut self.clients[client];
        let Some(held) = state.session.close(sequence) else { return };
        let (key, base) = state.lane.as_mut().expect("a client with a write holds a lane");
        let outcome = self.board.retract(key, held.number);
        self.board.finished_below(key, *base + state.session.floor());
        self.retracted(client, held.write, outcome);
    }

    pub(super) fn clients_act(&mut self) {
        for client in 0..self.clients.len() {
            self.client_acts(client);
        }
    }

    /// Client `client` looks at the writes it waits for (giving up on them, or submitting
    /// them again, as the client machine says), then, now and then, issues a new operation.
    pub(super) fn client_acts(&mut self, client: usize) {
        self.look_at_tickets(client);
        let state = &self.clients[client];
        if state.read.is_some() || state.issued >= self.config.operations_per_client || !self.rng.chance(1, 2) {
            return;
        }
        match (self.workload)(&mut self.rng, client) {
            ClientOp::Write(write) => self.open_write(client, write),
            ClientOp::Read(read) => self.begin_read(client, read),
        }
    }

    /// What the client machine says of each write the client waits for.
    fn look_at_tickets(&mut self, client: usize) {
        let (now, timing) = (self.now(), self.timing(u64::MAX));
        let view = SimView { nodes: &self.nodes, watermark: self.watermark, leader_hint: self.leader_hint };
        let mut ended = Vec::new();
        let mut submissions = Vec::new();
        for (&sequence, ticket) in &mut self.clients[client].tickets {
            match ticket.write.next(now, &view) {
                WriteStep::End(_) => ended.push(sequence),
                WriteStep::Submit(to) => {
                    ticket.write.submitted(to, now, &view, &timing);
                    submissions.push((ticket.write.clone(), to));
                }
                WriteStep::Wait => {}
            }
        }
        for sequence in ended {
            // Its deadline passed: the client gives up on it (its outcome stays unknown), as
            // a waiting `Ticket` reports `NoQuorum`, and retracts it.
            self.clients[client].tickets.remove(&sequence);
            self.give_up(client, sequence);
            self.report.abandoned += 1;
        }
        for (write, _) in submissions {
            // Submitting again only wakes the replica named (the write stays on the board,
            // where whichever replica leads collects it): every replica runs its round
            // each tick here.
            if let Some(held) = self.clients[client].session.get_mut(write.numbers().sequence) {
                held.retried = true;
            }
            self.report.retries += 1;
        }
    }

    /// Opens a write and submits it. One write per client, on a quarter of its writes, is
    /// given a deadline of [`SimConfig::abandon_ticks`](super::SimConfig::abandon_ticks): it
    /// is either dropped at once (submitted once, never waited for) or waited for until that
    /// deadline, as the runtime's tickets can be. The rest have none.
    fn open_write(&mut self, client: usize, op: D::WriteOp) {
        if self.clients[client].tickets.len() >= self.config.pipeline {
            return;
        }
        let now = self.now();
        self.let_go(client, now);
        let state = &mut self.clients[client];
        if state.lane.is_none() {
            let key = self.board.claim().expect("the board has a lane per client");
            let base = key.next() - state.session.next_sequence();
            state.lane = Some((key, base));
        }
        let (key, _) = state.lane.as_ref().expect("claimed");
        if !self.board.can_post(key) {
            // Every berth holds an unfinished write: the client writes again later, as a
            // runtime submission waits for a berth.
            return;
        }
        let gives_up = match self.config.abandon_ticks {
            Some(ticks) if !self.clients[client].gave_up && self.rng.chance(1, 4) => Some(ticks),
            _ => None,
        };
        let dropped = gives_up.is_some() && self.rng.chance(1, 2);
        let timing = self.timing(gives_up.unwrap_or(u64::MAX));
        let index = self.writes.len();
        self.writes.push((client as u32, 0, op.clone()));
        self.collected.push(None);
        let state = &mut self.clients[client];
        state.issued += 1;
        state.gave_up |= gives_up.is_some();
        let base = state.lane.as_ref().map_or(0, |&(_, base)| base);
        // `let_go` above let go of everything the session's own would now.
        let numbers = state.session.open(
            now,
            now.after(timing.deadline),
            |numbers| SessionWrite { write: index, number: base + numbers.sequence, retried: false, reported: false },
            |held| held.reported,
            |_| {},
        );
        self.writes[index].1 = numbers.sequence;
        let operation = self.history.len();
        self.history.push(Operation { client, call: Call::Write(op), invoked: self.clock, returned: None });
        self.clock += 1;
        let mut write = Write::new(numbers, self.clients[client].home, now, &timing);
        let view = SimView { nodes: &self.nodes, watermark: self.watermark, leader_hint: self.leader_hint };
        let to = match write.next(now, &view) {
            WriteStep::Submit(to) => to,
            // A deadline of zero ticks: given up on before it was submitted, as
            // `Handle::submit` fails with `NoQuorum` past its deadline.
            WriteStep::End(_) | WriteStep::Wait => {
                self.clients[client].session.close(numbers.sequence);
                self.report.abandoned += 1;
                return;
            }
        };
        // Posted once, then marked submitted (as the runtime's `Handle::submit` posts, then
        // tells the machine and wakes the replica it names).
        let (key, base) = self.clients[client].lane.as_mut().expect("claimed");
        let address = Address { lane: key.lane(), number: key.next() };
        if address.number != *base + numbers.sequence {
            self.broke(format!("client {client}'s write {} posted as number {}", numbers.sequence, address.number));
            return;
        }
        let request = Request {
            address,
            client: client as u32,
            sequence: numbers.sequence,
            floor: numbers.floor,
            write: index,
            op: self.writes[index].2.clone(),
        };
        if self.board.post(key, request).is_err() {
            self.broke(format!("client {client}'s post refused after the board said it could post"));
            return;
        }
        let view = SimView { nodes: &self.nodes, watermark: self.watermark, leader_hint: self.leader_hint };
        write.submitted(to, now, &view, &timing);
        if dropped {
            // Its ticket is dropped: nothing retries it, and its outcome stays unknown.
            self.report.abandoned += 1;
        } else {
            self.clients[client].tickets.insert(numbers.sequence, Ticket { write, operation });
        }
    }

    /// Begins a read, as `Handle::execute` does, and serves it at once if its copy has
    /// caught up. A client reads only once its writes are done, as a thread calling
    /// `execute` after waiting for its tickets would.
    fn begin_read(&mut self, client: usize, op: D::ReadOp) {
        if !self.clients[client].tickets.is_empty() {
            return;
        }
        let view = SimView { nodes: &self.nodes, watermark: self.watermark, leader_hint: self.leader_hint };
        let read = read::start(&view, self.clients[client].home);
        self.clients[client].issued += 1;
        let operation = self.history.len();
        self.history.push(Operation { client, call: Call::Read(op.clone()), invoked: self.clock, returned: None });
        self.clock += 1;
        self.clients[client].read = Some(PendingRead { read, op, operation });
        self.serve_read(client);
    }

    /// Serves pending reads whose copy has caught up, and moves the others as the client
    /// machine says.
    pub(super) fn serve_reads(&mut self) {
        for client in 0..self.clients.len() {
            self.serve_read(client);
        }
    }

    fn serve_read(&mut self, client: usize) {
        let (now, timing) = (self.now(), self.timing(u64::MAX));
        let view = SimView { nodes: &self.nodes, watermark: self.watermark, leader_hint: self.leader_hint };
        let Some(pending) = self.clients[client].read.as_mut() else { return };
        let replica = loop {
            match pending.read.next(now, &view, &timing) {
                ReadStep::Serve(replica) => break replica,
                ReadStep::Moved(_) => continue,
                ReadStep::Wait(_) | ReadStep::End(_) => return,
            }
        };
        if self.nodes[replica].driver.is_none() {
            // Its round runs (this read began in a callback of it): it is served once the
            // round is over, from the same copy, which only moves on meanwhile.
            return;
        }
        let response = self.nodes[replica].state().object.dispatch(&pending.op);
        let operation = pending.operation;
        if self.trace {
            let applied = self.nodes[replica].state().slot_applied;
            println!(
                "tick {} clock {} r{replica} serves client {client}'s read (watermark {:?}, applied {applied:?}): {response:?}",
                self.tick,
                self.clock,
                pending.read.watermark()
            );
        }
        self.history[operation].returned = Some((self.clock, response));
        self.clock += 1;
        self.clients[client].read = None;
        self.report.operations_completed += 1;
    }

    pub(super) fn finished(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.issued >= self.config.operations_per_client && c.tickets.is_empty() && c.read.is_none())
    }
}
