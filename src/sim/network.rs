//! The simulated network and each replica's round: messages delivered late, lost,
//! duplicated and reordered, and [`SimEnv`], the simulator's environment for the runtime's
//! driver (the same driver the replica threads run).

use super::config::ClientOp;
use super::linearizability::Specification;
use super::report::Failure;
use super::rng::SimRng;
use super::world::{hash_of, InFlight, Input, Request, Sim};
use crate::digest::Verdict;
use crate::driver::Environment;
use crate::protocol::{Batch, Message, Replica, ReplicaId, Slot};
use crate::state::{Outcome, ReplicaState};
use crate::{Dispatch, Error};

/// Replicas compare digests every this many slots in the simulator: often, so that the
/// sweep compares many checkpoints per seed.
pub(super) const DIGEST_EVERY: u64 = 4;

/// The most writes a leader collects from the board in one round in the simulator: few, so
/// that collections that stop part way through the lanes are common (the runtime's budget
/// is 256).
const COLLECT_BUDGET: usize = 3;

impl<D, W> Sim<'_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    pub(super) fn deliver(&mut self) -> Result<(), Failure> {
        self.deliver_hints()?;
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            let message = &self.network[index];
            if message.deliver_at <= self.tick && !self.nodes[message.to.index()].paused {
                due.push(self.network.swap_remove(index));
            } else {
                index += 1;
            }
        }
        // Random delivery order within the tick.
        for i in (1..due.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            due.swap(i, j);
        }
        for message in due {
            let to = message.to.index();
            if self.cut(message.from, message.to) {
                self.report.messages_lost += 1;
                continue;
            }
            if let Message::Accept { ballot, .. } = &message.message {
                if *ballot < self.nodes[to].promise_before_crash && self.nodes[to].core().is_some() {
                    self.report.coverage.stale_accepts_after_restart += 1;
                }
            }
            if self.nodes[to].core().is_none() {
                self.report.messages_lost += 1;
                continue;
            }
            if self.config.faults.replay_permille > 0 {
                let entry = (message.from, message.to, message.message.clone());
                if self.delivered.len() < 256 {
                    self.delivered.push(entry);
                } else {
                    let index = self.rng.below(256) as usize;
                    self.delivered[index] = entry;
                }
            }
            if self.trace_messages {
                println!("tick {} {:?} -> r{to}: {:?}", self.tick, message.from, message.message);
            }
            self.report.messages_delivered += 1;
            self.round(to, Input::Message(message.from, message.message))?;
        }
        Ok(())
    }

    /// Death and restart notices that are due, to replicas that run: a paused replica
    /// takes its notices when it resumes, a crashed one never (it restarts knowing none).
    fn deliver_hints(&mut self) -> Result<(), Failure> {
        let mut index = 0;
        while index < self.hints.len() {
            let hint = &self.hints[index];
            let node = &self.nodes[hint.to];
            if node.crashed {
                self.hints.swap_remove(index);
            } else if hint.deliver_at <= self.tick && !node.paused {
                let hint = self.hints.swap_remove(index);
                let peer = ReplicaId::new(hint.peer);
                let input = if hint.down { Input::PeerDown(peer) } else { Input::PeerUp(peer) };
                self.round(hint.to, input)?;
            } else {
                index += 1;
            }
        }
        Ok(())
    }

    /// Tells every other replica, a tick or two from now, that replica `peer` stopped or
    /// runs again.
    pub(super) fn announce(&mut self, peer: usize, down: bool) {
        for to in (0..self.nodes.len()).filter(|&to| to != peer) {
            let deliver_at = self.tick + 1 + self.rng.below(2);
            self.hints.push(super::world::Hint { deliver_at, to, peer, down });
        }
    }

    pub(super) fn tick_replicas(&mut self) -> Result<(), Failure> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].runs() {
                self.round(i, Input::Tick)?;
            }
        }
        Ok(())
    }

    /// One round of replica `i`, started by `input`, through the runtime's driver (see
    /// [`SimEnv`]); then, now and then, a crash right after it sent a promise.
    pub(super) fn round(&mut self, i: usize, input: Input<D>) -> Result<(), Failure> {
        let mut driver = self.nodes[i].driver.take().expect("one round at a time");
        let busy_permille = if self.tick < self.config.fault_ticks { self.config.faults.copy_busy_permille } else { 0 };
        driver.state_mut().busy = self.rng.chance(busy_permille, 1000);
        let deferred = driver.applies_deferred();
        let mut env = SimEnv { sim: self, i, input: Some(input), promised: false };
        driver.round(&mut env);
        let promised = env.promised;
        if driver.applies_deferred() > deferred {
            self.report.coverage.applies_deferred += 1;
        }
        self.nodes[i].driver = Some(driver);
        if let Some(failure) = self.failure.take() {
            return Err(failure);
        }
        let faulty = self.tick < self.config.fault_ticks;
        let promise_crash = if faulty { self.config.faults.promise_crash_permille } else { 0 };
        if promised && self.down() < self.max_down() && self.rng.chance(promise_crash, 1000) {
            self.crash_then(i, true);
        }
        Ok(())
    }

    /// Records the first broken check of a round.
    pub(super) fn broke(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(self.fail(message));
        }
    }
}

/// The simulator's [`Environment`] for replica `i` during one round: the simulated network
/// (with its faults), the simulated watermark, the clients, and the checks that every
/// applied slot must pass.
pub(super) struct SimEnv<'s, 'a, D: Dispatch, W> {
    pub(super) sim: &'s mut Sim<'a, D, W>,
    pub(super) i: usize,
    pub(super) input: Option<Input<D>>,
    /// Whether the round sent a promise (a crash may follow it).
    pub(super) promised: bool,
}

impl<D, W> SimEnv<'_, '_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    /// While this replica leads, collects client writes from the board, as the runtime's
    /// `Io::intake` does (every unfinished one again in a new ballot), [`COLLECT_BUDGET`] at
    /// most per round.
    fn intake(&mut self, core: &mut Replica<Request<D>>) -> bool {
        if !core.is_leader() {
            return false;
        }
        let ballot = core.ballot_promised();
        let Sim { nodes, board, collected, report, .. } = &mut *self.sim;
        let collector = &mut nodes[self.i].collector;
        let unlisted = collector.lanes_unlisted();
        let taken = collector.collect(board, ballot.as_u64(), COLLECT_BUDGET, |_, request| {
            let earlier = collected[request.write].replace(ballot);
            if earlier.is_some_and(|earlier| earlier != ballot) {
                report.coverage.writes_collected_again += 1;
            }
            core.propose(request);
        });
        report.coverage.lanes_unlisted += collector.lanes_unlisted() - unlisted;
        taken > 0
    }
}

impl<D, W> Environment<D, Request<D>> for SimEnv<'_, '_, D, W>
where
    D: Specification,
    W: FnMut(&mut SimRng, usize) -> ClientOp<D>,
{
    /// The round's input, then the writes submitted to the replica since its last round.
    fn feed(&mut self, core: &mut Replica<Request<D>>) -> bool {
        let fed = match self.input.take() {
            Some(Input::Message(from, message)) => {
                core.step(from, message);
                true
            }
            Some(Input::Tick) => {
                core.tick();
                true
            }
            Some(Input::Campaign) => {
                core.campaign();
                if self.sim.trace {
                    println!("tick {} r{} campaigns in {:?}", self.sim.tick, self.i, core.ballot_promised());
                }
                true
            }
            Some(Input::PeerDown(peer)) => {
                core.peer_down(peer);
                true
            }
            Some(Input::PeerUp(peer)) => {
                core.peer_up(peer);
                true
            }
            Some(Input::Transfer(to)) => {
                let taken = core.transfer_leadership(to);
                if self.sim.trace {
                    println!("tick {} r{} asked to hand over to {to:?}: taken {taken}", self.sim.tick, self.i);
                }
                true
            }
            None => false,
        };
        let taken = self.intake(core);
        fed || taken
    }

    fn raise_watermark(&mut self, slot_committed: Slot, leading: bool) {
        let sim = &mut *self.sim;
        if leading && sim.tick >= sim.hint_pinned_until {
            sim.leader_hint = self.i;
        }
        if slot_committed > sim.watermark {
            sim.watermark = slot_committed;
            if sim.trace {
                let role = if leading { "leader" } else { "not leading" };
                println!("tick {} r{} ({role}) raises the watermark to {:?}", sim.tick, self.i, sim.watermark);
            }
        }
    }

    /// Puts the messages on the network, losing, duplicating and delaying them as the
    /// fault configuration says.
    fn send(&mut self, messages: &mut Vec<(ReplicaId, Message<Request<D>>)>) -> bool {
        let sim = &mut *self.sim;
        let faulty = sim.tick < sim.config.fault_ticks;
        let (loss, duplicate, delay, commit_loss) = if faulty {
            let f = &sim.config.faults;
            (f.loss_permille, f.duplicate_permille, f.delay_max_ticks, f.commit_loss_permille)
        } else {
            (0, 0, sim.config.faults.delay_max_ticks, 0)
        };
        let from = ReplicaId::new(self.i);
        let any = !messages.is_empty();
        for (to, message) in messages.drain(..) {
            self.promised |= matches!(message, Message::Promise { .. });
            if let Message::Forward { commands } = &message {
                sim.report.coverage.writes_forwarded += commands.len() as u64;
            }
            let targeted = matches!(message, Message::Commit { .. }) && sim.rng.chance(commit_loss, 1000);
            if targeted || sim.cut(from, to) || sim.rng.chance(loss, 1000) {
                sim.report.messages_lost += 1;
                continue;
            }
            let copies = if sim.rng.chance(duplicate, 1000) { 2 } else { 1 };
            for _ in 0..copies {
                let deliver_at = sim.tick + 1 + sim.rng.below(delay + 1);
                sim.network.push(InFlight { deliver_at, from, to, message: message.clone() });
            }
        }
        any
    }

    /// Checks the slot just applied: validity (only submitted writes are committed),
    /// agreement (every replica applies the same batch in a slot), exactly-once (no write
    /// takes effect in two slots) and state (the same writes took effect, and the object
    /// is the same, on every replica that applied the slot).
    fn applied_slot(
        &mut self,
        slot: Slot,
        batch: &Batch<Request<D>>,
        outcomes: &[Outcome<D::Response>],
        state: &ReplicaState<D>,
    ) {
        let (sim, i) = (&mut *self.sim, self.i);
        let commands = batch.commands();
        for command in commands {
            let valid = sim
                .writes
                .get(command.write)
                .is_some_and(|(client, sequence, _)| *client == command.client && *sequence == command.sequence);
            if !valid {
                sim.broke(format!("validity: replica {i} applies {command:?} in {slot:?}, never submitted"));
                return;
            }
        }
        let effects: Vec<(u32, u64)> =
            outcomes.iter().map(|outcome| (commands[outcome.index].client, commands[outcome.index].sequence)).collect();
        let hash = hash_of(&state.object);
        match sim.canonical.get(&slot) {
            Some((expected, expected_effects, expected_hash)) => {
                if expected.as_slice() != commands {
                    let message = format!(
                        "agreement: replica {i} applies {commands:?} in {slot:?}, another applied {expected:?}"
                    );
                    sim.broke(message);
                } else if expected_effects != &effects || *expected_hash != hash {
                    let message = format!(
                        "state: replica {i} diverged in {slot:?}: writes {effects:?} took effect, another saw {expected_effects:?}"
                    );
                    sim.broke(message);
                }
            }
            None => {
                for effect in &effects {
                    if !sim.took_effect.insert(*effect) {
                        let message = format!(
                            "exactly-once: client {} write {} takes effect a second time, in {slot:?}",
                            effect.0, effect.1
                        );
                        sim.broke(message);
                    }
                }
                for command in commands {
                    let floor = &mut sim.floors_applied[command.client as usize];
                    if command.floor / 64 > *floor / 64 {
                        sim.report.coverage.floors_across_words += 1;
                    }
                    *floor = (*floor).max(command.floor);
                }
                sim.canonical.insert(slot, (commands.to_vec(), effects, hash));
                sim.report.slots_committed += 1;
            }
        }
    }

    /// What clients see of how far the replica applied (`SimView::slot_applied`).
    fn publish_applied(&mut self, slot: Slot) {
        self.sim.nodes[self.i].applied_published = slot;
    }

    /// The first replica to apply a write completes its client, which may then issue its
    /// next operation at once, in the middle of this round, as a woken caller would: a read
    /// that begins now must see the write. A write whose ticket was dropped is only marked
    /// done, for its session to let go of it.
    /// Answers the write on the board, as the runtime's `Io::complete` does; the client
    /// takes an answer that landed at once (a ticket woken by it), or lets it wait for the
    /// session's next write if nobody waits for the write.
    fn complete(&mut self, request: &Request<D>, result: Result<D::Response, Error>) {
        let sim = &mut *self.sim;
        if !sim.board.answer(request.address, result) {
            // Answered already by a replica that applied it first, or retracted.
            return;
        }
        let client = request.client as usize;
        let state = &mut sim.clients[client];
        let (key, _) = state.lane.as_mut().expect("a client with a write on the board holds a lane");
        let Some(result) = sim.board.take(key, request.address.number) else {
            sim.broke(format!("client {client}'s answer to write {} landed and cannot be taken", request.sequence));
            return;
        };
        let Some(ticket) = state.tickets.remove(&request.sequence) else {
            if let Some(held) = state.session.get_mut(request.sequence) {
                held.reported = true;
            }
            return;
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                sim.broke(format!("the object failed client {client}'s write {}: {error}", request.sequence));
                return;
            }
        };
        if state.session.close(request.sequence).is_some_and(|write| write.retried)
            && state.session.floor() > request.sequence
        {
            sim.report.coverage.floors_past_retried_writes += 1;
        }
        // As the runtime's session closes a write: the board learns its new floor.
        if let Some((key, base)) = state.lane.as_mut() {
            sim.board.finished_below(key, *base + state.session.floor());
        }
        if sim.trace {
            println!(
                "tick {} clock {} r{}: client {client} write {} returns {response:?}",
                sim.tick, sim.clock, self.i, request.sequence
            );
        }
        sim.history[ticket.operation].returned = Some((sim.clock, response));
        sim.clock += 1;
        sim.report.operations_completed += 1;
        sim.client_acts(client);
    }

    fn digest_every(&self) -> u64 {
        DIGEST_EVERY
    }

    /// Compares the digest with the other replicas' at this checkpoint: the objects are
    /// deterministic, so a copy found diverged (or a fork) is a broken run.
    fn checkpoint(&mut self, slot: Slot, digest: u64) {
        let sim = &mut *self.sim;
        sim.report.checkpoints += 1;
        match sim.digests.record(self.i, slot, digest) {
            Verdict::Agreed | Verdict::Undecided => {}
            Verdict::Diverged(replicas) => {
                sim.broke(format!("digest: replicas {replicas:?} found diverged at the checkpoint {slot:?}"));
            }
            Verdict::Forked => sim.broke(format!("digest: no majority digest at the checkpoint {slot:?}")),
        }
    }

    fn donors(&self) -> Vec<(usize, Slot)> {
        let nodes = &self.sim.nodes;
        (0..nodes.len())
            .filter(|&j| j != self.i && nodes[j].runs())
            .map(|j| (j, nodes[j].state().slot_applied))
            .collect()
    }

    fn copy_state(&self, peer: usize) -> ReplicaState<D> {
        self.sim.nodes[peer].state().snapshot()
    }

    fn installed_snapshot(&mut self, peer: usize, slot: Slot) {
        let sim = &mut *self.sim;
        sim.report.snapshots += 1;
        if slot.get() >= super::report::LONG_LOG {
            sim.report.coverage.snapshots_of_long_logs += 1;
        }
        // As the runtime does: what it reported before describes a copy it no longer has.
        sim.digests.forget(self.i);
        sim.count_snapshot_during_retries();
        if sim.trace {
            println!("tick {} r{} installs r{peer}'s snapshot at {slot:?}", sim.tick, self.i);
        }
    }
}
