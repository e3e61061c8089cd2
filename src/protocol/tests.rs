//! Message-by-message tests of the protocol core over a hand-driven network.

use std::collections::VecDeque;

use super::*;

/// A test network: replicas, messages in flight, and what each replica applied.
struct Net {
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

#[test]
fn replica_zero_is_elected_on_its_first_tick() {
    let net = elect_zero(3);
    assert_eq!(net.replicas[0].ballot_promised(), Ballot::new(1, Net::id(0)));
    for replica in &net.replicas[1..] {
        assert_eq!(replica.leader(), Some(Net::id(0)));
        assert_eq!(replica.role(), RoleKind::Follower);
    }
}

#[test]
fn steady_state_commits_on_every_replica_in_order() {
    let mut net = elect_zero(3);
    for command in 1..=5 {
        net.propose(0, command);
        net.deliver_all();
    }
    net.tick_all(Config::new(3).heartbeat_ticks as usize);
    for i in 0..3 {
        assert_eq!(net.commands_applied(i), vec![1, 2, 3, 4, 5], "replica {i}");
        assert_eq!(net.replicas[i].slot_committed(), Slot::new(5));
    }
    net.assert_agreement();
}

#[test]
fn a_follower_forwards_commands_to_the_leader() {
    let mut net = elect_zero(3);
    net.propose(2, 42);
    net.deliver_all();
    net.tick_all(10);
    for i in 0..3 {
        assert_eq!(net.commands_applied(i), vec![42]);
    }
}

#[test]
fn queued_commands_are_batched_when_the_window_is_full() {
    let mut net = elect_zero(3);
    // Fill the window without delivering, then queue more: they must share one slot.
    let window = Config::new(3).window as u32;
    for command in 0..window + 10 {
        net.replicas[0].propose(command);
        if command < window {
            net.collect();
        }
    }
    net.collect();
    net.deliver_all();
    net.tick_all(1);
    net.deliver_all();
    let applied = &net.applied[1];
    assert_eq!(net.commands_applied(1), (0..window + 10).collect::<Vec<_>>());
    assert!(applied.iter().any(|(_, batch)| batch.len() == 10), "the overflow is one batch: {applied:?}");
}

#[test]
fn a_value_accepted_by_a_majority_survives_a_leader_change() {
    let mut net = elect_zero(3);
    // Leader 0 proposes 7; only replica 1 receives the accept, nobody hears of the commit.
    net.propose(0, 7);
    net.deliver_where(|from, to, message| {
        from == Net::id(0) && to == Net::id(1) && matches!(message, Message::Accept { .. })
    });
    net.down[0] = true;
    // Replica 2 campaigns and gets replica 1's promise, which carries the accepted 7.
    for _ in 0..500 {
        net.tick(2);
        if net.replicas[2].role() == RoleKind::Candidate {
            break;
        }
    }
    assert_eq!(net.replicas[2].role(), RoleKind::Candidate);
    net.deliver_all();
    assert_eq!(net.leaders(), vec![2]);
    net.tick_all(20);
    assert_eq!(net.commands_applied(1), vec![7]);
    assert_eq!(net.commands_applied(2), vec![7]);
    net.assert_agreement();
}

#[test]
fn a_new_leader_fills_holes_with_noops() {
    let mut net = elect_zero(3);
    // Three slots; the accept for the middle one reaches nobody.
    for command in [10, 11, 12] {
        net.replicas[0].propose(command);
        net.collect();
    }
    net.deliver_where(|_, _, message| !matches!(message, Message::Accept { slot, .. } if *slot == Slot::new(1)));
    assert_eq!(net.replicas[0].slot_committed(), Slot::new(1), "slot 1 holds the commit index back");
    net.down[0] = true;
    net.tick_all(400);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "one new leader: {leaders:?}");
    for i in 1..3 {
        let slots: Vec<_> = net.applied[i].iter().map(|(slot, commands)| (slot.get(), commands.clone())).collect();
        assert_eq!(slots, vec![(0, vec![10]), (1, vec![]), (2, vec![12])], "replica {i}");
    }
    net.assert_agreement();
}

#[test]
fn competing_candidates_converge_on_one_leader() {
    let mut net = elect_zero(3);
    net.propose(0, 1);
    net.deliver_all();
    net.down[0] = true;
    // Replicas 1 and 2 time out in the same tick; their prepares cross in flight.
    for _ in 0..1000 {
        net.replicas[1].tick();
        net.replicas[2].tick();
        if net.replicas[1].role() == RoleKind::Candidate {
            break;
        }
    }
    net.replicas[2].tick();
    while net.replicas[2].role() != RoleKind::Candidate {
        net.replicas[2].tick();
    }
    net.collect();
    net.deliver_all();
    net.tick_all(400);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    net.propose(leaders[0], 2);
    net.tick_all(20);
    assert_eq!(net.commands_applied(1), vec![1, 2]);
    assert_eq!(net.commands_applied(2), vec![1, 2]);
    net.assert_agreement();
}

#[test]
fn a_stale_leader_is_nacked_and_steps_down() {
    let mut net = elect_zero(3);
    // Isolate replica 0 long enough for 1 to take over.
    net.down[0] = true;
    net.tick_all(400);
    assert_eq!(net.leaders(), vec![1]);
    net.down[0] = false;
    // The old leader still believes it leads and proposes; the nack demotes it.
    assert!(net.replicas[0].is_leader());
    net.propose(0, 99);
    net.deliver_all();
    assert!(!net.replicas[0].is_leader());
    assert_eq!(net.replicas[0].leader(), Some(Net::id(1)));
    net.tick_all(50);
    // The stale proposal was in the old ballot only: it is lost, not committed.
    assert!(net.commands_applied(1).is_empty());
    // A client retry at the old leader is forwarded to the new one and commits everywhere.
    net.propose(0, 99);
    net.deliver_all();
    net.tick_all(50);
    for i in 0..3 {
        assert_eq!(net.commands_applied(i), vec![99], "replica {i}");
    }
}

#[test]
fn a_follower_that_missed_accepts_learns_the_committed_values() {
    let mut net = elect_zero(3);
    let mut learned = 0;
    for command in 0..5 {
        net.propose(0, command);
        net.deliver_where(|_, to, message| {
            learned += usize::from(to == Net::id(2) && matches!(message, Message::Learn { .. }));
            !(to == Net::id(2) && matches!(message, Message::Accept { .. }))
        });
    }
    assert!(learned > 0, "replica 2 never saw an accept: it can only have learned the values");
    net.tick_all(Config::new(3).heartbeat_ticks as usize * 2);
    assert_eq!(net.commands_applied(2), vec![0, 1, 2, 3, 4]);
    net.assert_agreement();
}

#[test]
fn lost_accepts_are_retransmitted() {
    let mut net = elect_zero(3);
    net.propose(0, 5);
    // Every accept is lost once.
    net.deliver_where(|_, _, message| !matches!(message, Message::Accept { .. }));
    assert_eq!(net.replicas[0].slot_committed(), Slot::ZERO);
    net.tick_all(Config::new(3).retransmit_ticks as usize + 1);
    assert_eq!(net.commands_applied(0), vec![5]);
}

#[test]
fn an_acceptor_never_accepts_below_its_promise() {
    let mut replica: Replica<u32> = Replica::new(ReplicaId::new(1), Config::new(3));
    let high = Ballot::new(5, ReplicaId::new(2));
    replica.step(ReplicaId::new(2), Message::Prepare { ballot: high, slot_first: Slot::ZERO });
    let low = Ballot::new(4, ReplicaId::new(0));
    replica.step(
        ReplicaId::new(0),
        Message::Accept { ballot: low, slot: Slot::ZERO, batch: Batch::new(vec![1]), slot_committed: Slot::ZERO },
    );
    let sent = replica.ready().messages;
    assert!(matches!(sent[0].1, Message::Promise { ballot, .. } if ballot == high));
    assert!(
        matches!(sent[1], (to, Message::Nack { ballot_promised }) if to == ReplicaId::new(0) && ballot_promised == high)
    );
    // A later prepare from the same candidate reports nothing accepted.
    replica.step(ReplicaId::new(2), Message::Prepare { ballot: high, slot_first: Slot::ZERO });
    let sent = replica.ready().messages;
    assert!(matches!(&sent[0].1, Message::Promise { accepted, .. } if accepted.is_empty()));
}

#[test]
fn log_entries_are_freed_once_every_replica_applied_them() {
    let mut net = elect_zero(3);
    for command in 0..50 {
        net.propose(0, command);
        net.deliver_all();
    }
    net.tick_all(Config::new(3).heartbeat_ticks as usize * 3);
    for replica in &net.replicas {
        assert_eq!(replica.slot_committed(), Slot::new(50));
        assert!(replica.log_len() < 5, "{:?} holds {} entries", replica.id(), replica.log_len());
    }
}

#[test]
fn a_single_replica_cluster_commits_alone() {
    let mut replica: Replica<u32> = Replica::new(ReplicaId::new(0), Config::new(1));
    replica.tick();
    assert!(replica.is_leader());
    replica.propose(1);
    replica.propose(2);
    let ready = replica.ready();
    let (slot, batch) = &ready.committed[0];
    assert_eq!((*slot, batch.commands()), (Slot::ZERO, &[1, 2][..]));
    assert_eq!(ready.committed.len(), 1);
    replica.advance(ready);
    assert!(replica.ready().committed.is_empty(), "a slot is handed out once");
}

/// A replica that is the whole cluster frees each batch from its log in the round that
/// hands it out: no peer will ask for it, and the commands it holds are let go of as soon
/// as the caller has applied them (not a round later).
#[test]
fn a_single_replica_frees_what_it_delivered_at_once() {
    let mut replica: Replica<u32> = Replica::new(ReplicaId::new(0), Config::new(1));
    replica.tick();
    for round in 1..=3 {
        replica.propose(round);
        let ready = replica.ready();
        assert_eq!(ready.committed.len(), 1, "round {round}");
        assert_eq!(replica.log_len(), 0, "round {round}: the delivered batch is still in the log");
        assert_eq!(replica.slot_truncated(), replica.slot_delivered(), "round {round}");
        replica.advance(ready);
    }
}

// ----- leadership: failover on a reported death, handover --------------------------------

#[test]
fn the_next_in_line_replaces_a_leader_reported_stopped_at_once() {
    let mut net = elect_zero(5);
    net.propose(0, 1);
    net.deliver_all();
    net.down[0] = true;
    // Replica 2 hears first: replica 1 is still in line before it, so it waits.
    net.replicas[2].peer_down(Net::id(0));
    assert_eq!(net.replicas[2].role(), RoleKind::Follower);
    for i in 1..5 {
        net.replicas[i].peer_down(Net::id(0));
    }
    net.deliver_all();
    assert_eq!(net.leaders(), vec![1], "replica 1 leads without a single tick");
    assert_eq!(net.replicas[1].counters().failovers_started, 1);
    net.propose(1, 2);
    net.deliver_all();
    assert_eq!(net.commands_applied(4), vec![1, 2]);
    net.assert_agreement();
}

#[test]
fn if_the_first_in_line_stalls_the_next_takes_over_after_a_grace_of_a_few_ticks() {
    let mut net = elect_zero(5);
    net.down[0] = true;
    net.down[1] = true; // stalled, not reported: its peers cannot know
    for i in 2..5 {
        net.replicas[i].peer_down(Net::id(0));
        assert_eq!(net.replicas[i].role(), RoleKind::Follower);
    }
    // Replica 2 has one replica in line before it that is not reported stopped.
    net.tick_all(FAILOVER_GRACE_TICKS as usize - 1);
    assert_eq!(net.leaders(), Vec::<usize>::new(), "within the grace the first in line may still campaign");
    net.tick_all(1);
    assert_eq!(
        net.leaders(),
        vec![2],
        "long before an election timeout ({} ticks)",
        net.replicas[2].config().election_ticks
    );
}

#[test]
fn a_restarted_first_in_line_that_never_heard_the_new_leader_does_not_hold_up_failover() {
    let mut net = elect_zero(3);
    net.propose(0, 1);
    net.deliver_all();
    // Replica 0 dies; replica 1 takes over.
    net.down[0] = true;
    for i in 1..3 {
        net.replicas[i].peer_down(Net::id(0));
    }
    net.deliver_all();
    assert_eq!(net.leaders(), vec![1]);
    net.propose(1, 2);
    net.deliver_all();
    // Replica 0 restarts, and before it hears from replica 1, replica 1 dies: replica 0
    // follows nobody, and replica 2 waits for replica 0, first in line.
    net.restart(0, 1..3);
    net.down[1] = true;
    net.replicas[0].peer_down(Net::id(1));
    net.replicas[2].peer_down(Net::id(1));
    net.deliver_all();
    net.tick_all(FAILOVER_GRACE_TICKS as usize);
    assert_eq!(net.leaders().len(), 1, "a leader within the grace, not after an election timeout");
    net.propose(2, 3);
    net.deliver_all();
    net.tick_all(2);
    let applied = net.commands_applied(2);
    assert_eq!(applied, vec![1, 2, 3]);
    net.assert_agreement();
}

#[test]
fn a_leader_that_restarts_within_the_grace_is_still_replaced_within_it() {
    let mut net = elect_zero(5);
    net.propose(0, 1);
    net.deliver_all();
    // Replica 0 dies; replica 1, first in line, is stalled (unreported), so the others
    // wait out its grace.
    net.down[0] = true;
    net.down[1] = true;
    for i in 2..5 {
        net.replicas[i].peer_down(Net::id(0));
    }
    net.tick_all(FAILOVER_GRACE_TICKS as usize - 1);
    // Replica 0 restarts before the grace is over. It no longer leads: its restart brings
    // back its promise and accepted values, not its leadership, so its followers still
    // have to replace it.
    net.restart(0, 2..5);
    net.deliver_all();
    net.tick_all(1);
    assert_eq!(
        net.leaders(),
        vec![2],
        "replaced when the grace ends, not after an election timeout ({} ticks)",
        net.replicas[2].config().election_ticks
    );
    net.propose(2, 2);
    net.deliver_all();
    net.tick_all(2);
    assert_eq!(net.commands_applied(0), vec![1, 2], "the restarted replica follows the new leader");
    net.assert_agreement();
}

#[test]
fn a_leader_learned_of_after_its_death_notice_is_replaced_after_the_grace() {
    let mut net = elect_zero(3);
    net.down[0] = true;
    net.replicas[1].peer_down(Net::id(0));
    assert_eq!(net.replicas[1].role(), RoleKind::Candidate, "first in line");
    // Its candidacy meets a promise made to a higher ballot of the dead replica 0 (a
    // prepare replica 1 never saw): it follows that ballot's owner, which is reported
    // stopped, and so replaces it at its next tick rather than after an election timeout.
    let ballot = Ballot::new(99, Net::id(0));
    net.replicas[1].step(Net::id(2), Message::Nack { ballot_promised: ballot });
    assert_eq!(net.replicas[1].leader(), Some(Net::id(0)));
    net.tick(1);
    assert_eq!(net.replicas[1].role(), RoleKind::Candidate);
    assert!(net.replicas[1].ballot_promised() > ballot);
}

#[test]
fn a_wrong_death_report_costs_an_election_and_nothing_else() {
    let mut net = elect_zero(3);
    net.propose(0, 1);
    net.deliver_all();
    // Replica 0 runs on, but replica 1 is told it stopped.
    net.replicas[1].peer_down(Net::id(0));
    net.deliver_all();
    assert_eq!(net.leaders(), vec![1]);
    net.propose(0, 2); // forwarded to the new leader
    net.propose(1, 3);
    net.deliver_all();
    let mut applied = net.commands_applied(0);
    applied.sort_unstable();
    assert_eq!(applied, vec![1, 2, 3]);
    net.assert_agreement();
}

#[test]
fn a_handover_waits_for_the_target_to_apply_everything_then_moves_leadership() {
    let mut net = elect_zero(3);
    net.propose(0, 1);
    // Replica 2 misses the accept, so it has not applied slot 0 when the transfer starts.
    net.deliver_where(|_, to, message| !(to == Net::id(2) && matches!(message, Message::Accept { .. })));
    assert!(net.replicas[0].transfer_leadership(Net::id(2)));
    assert_eq!(net.replicas[0].transferring_to(), Some(Net::id(2)));
    // Commands that arrive during the transfer wait, and are not proposed by replica 0.
    net.propose(0, 2);
    let proposed = net.replicas[0].counters().batches_proposed;
    net.collect();
    assert_eq!(net.replicas[0].counters().batches_proposed, proposed);
    // The heartbeat the transfer sent tells replica 2 to learn slot 0; once it applied
    // it, the handover goes, and replica 2 is elected with the queued command.
    net.deliver_all();
    assert_eq!(net.commands_applied(2), vec![1, 2]);
    assert_eq!(net.leaders(), vec![2]);
    assert_eq!(net.replicas[0].counters().handovers, 1);
    assert_eq!(net.replicas[0].leader(), Some(Net::id(2)));
    net.assert_agreement();
}

#[test]
fn a_transfer_to_a_target_that_never_answers_is_given_up_after_an_election_timeout() {
    let mut net = elect_zero(3);
    net.down[2] = true;
    assert!(net.replicas[0].transfer_leadership(Net::id(2)));
    net.propose(0, 7);
    for _ in 0..net.replicas[0].config().election_ticks {
        net.tick(0);
        net.deliver_all();
    }
    assert_eq!(net.replicas[0].transferring_to(), None);
    assert_eq!(net.replicas[0].counters().transfers_abandoned, 1);
    net.deliver_all();
    assert_eq!(net.leaders(), vec![0]);
    assert_eq!(net.commands_applied(1), vec![7], "the queued command was proposed after all");
}

#[test]
fn a_transfer_is_given_up_when_its_target_is_reported_stopped() {
    let mut net = elect_zero(3);
    assert!(net.replicas[0].transfer_leadership(Net::id(1)));
    net.replicas[0].peer_down(Net::id(1));
    assert_eq!(net.replicas[0].transferring_to(), None);
    assert!(!net.replicas[1].transfer_leadership(Net::id(0)), "a follower takes no transfer");
}

#[test]
fn a_replayed_handover_is_ignored() {
    let mut net = elect_zero(3);
    let old = net.replicas[0].ballot_promised();
    assert!(net.replicas[0].transfer_leadership(Net::id(1)));
    net.deliver_all();
    assert_eq!(net.leaders(), vec![1]);
    let ballot = net.replicas[1].ballot_promised();
    net.replicas[1].step(Net::id(0), Message::Handover { ballot: old });
    net.replicas[2].step(Net::id(0), Message::Handover { ballot: old });
    net.collect();
    assert_eq!(net.leaders(), vec![1]);
    assert_eq!(net.replicas[1].ballot_promised(), ballot);
    assert_eq!(net.replicas[2].role(), RoleKind::Follower);
}

#[test]
fn an_accept_below_the_commit_index_its_leader_announced_is_committed_on_arrival() {
    let mut net = elect_zero(3);
    let ballot = net.replicas[0].ballot_promised();
    // Replica 2 hears nothing while slots 0 and 1 commit; then the leader's commit notice
    // (both committed) reaches it, without the values.
    net.propose(0, 1);
    net.deliver_where(|_, to, _| to != Net::id(2));
    net.propose(0, 2);
    net.deliver_where(|_, to, _| to != Net::id(2));
    net.replicas[2]
        .step(Net::id(0), Message::Commit { ballot, slot_committed: Slot::new(2), slot_truncate: Slot::ZERO });
    net.collect();
    net.in_flight.clear(); // its learn request is lost
    assert_eq!(net.replicas[2].slot_committed(), Slot::ZERO, "the values are missing");
    // The accepts arrive late (retransmitted, or overtaken), in the announced ballot and
    // below the announced index: their values are the chosen ones.
    for (slot, command) in [(1, 2), (0, 1)] {
        let batch = Batch::new(vec![command]);
        let accept = Message::Accept { ballot, slot: Slot::new(slot), batch, slot_committed: Slot::ZERO };
        net.replicas[2].step(Net::id(0), accept);
    }
    net.collect();
    assert_eq!(net.replicas[2].slot_committed(), Slot::new(2));
    assert_eq!(net.commands_applied(2), vec![1, 2]);
    net.assert_agreement();
}

/// A follower that cannot deliver (it missed a slot and cannot learn it) while the leader
/// goes on: it keeps no more than `log_window` entries ahead of what it delivered (it used
/// to keep every accept it received), and the leader's truncation past it tells it to
/// catch up from a snapshot without a learn request.
#[test]
fn a_follower_far_behind_keeps_a_bounded_log_and_asks_for_a_snapshot() {
    let mut config = Config::new(3);
    config.log_window = 8;
    let mut net = Net::with_config(config);
    net.tick(0);
    net.deliver_all();
    assert_eq!(net.leaders(), vec![0]);
    let stuck = |to: ReplicaId, message: &Message<u32>| {
        to == Net::id(2)
            && match message {
                Message::Accept { slot, .. } => *slot == Slot::ZERO,
                Message::Learn { .. } | Message::Truncated { .. } => true,
                _ => false,
            }
    };
    for command in 0..40 {
        net.propose(0, command);
        net.deliver_where(|_, to, message| !stuck(to, message));
    }
    for _ in 0..Config::new(3).heartbeat_ticks * 2 {
        for replica in &mut net.replicas {
            replica.tick();
        }
        net.deliver_where(|_, to, message| !stuck(to, message));
    }
    assert_eq!(net.replicas[0].slot_committed(), Slot::new(40), "the leader commits with replica 1");
    let behind = &net.replicas[2];
    assert_eq!(behind.slot_delivered(), Slot::ZERO, "replica 2 never got slot 0");
    assert!(behind.log_len() <= 8, "replica 2 holds {} entries", behind.log_len());
    let wanted = behind.snapshot_wanted().expect("replica 2 knows it needs a snapshot");
    assert!(wanted > Slot::new(8), "a snapshot at least as far as the leader freed: {wanted:?}");
}

#[test]
fn with_a_peer_down_the_log_keeps_exactly_its_window_as_commits_free_slots() {
    // A peer that is down holds truncation back to the window: each commit then frees a
    // few slots at the front of a full log (the one-at-a-time path of `truncate`).
    let window = 64;
    let mut config = Config::new(3);
    config.log_window = window;
    let mut net = Net::with_config(config);
    net.tick(0);
    net.deliver_all();
    net.down[2] = true;
    let mut command = 0;
    for _ in 0..window + 10 {
        net.propose(0, command);
        net.deliver_all();
        command += 1;
    }
    let retransmit = Config::new(3).retransmit_ticks as usize;
    for _ in 0..30 {
        // Three slots in flight; the first one's acknowledgement is lost, so the three
        // commit in one round when its retransmission is acknowledged: three freed at once.
        let first = Slot::new(u64::from(command));
        for _ in 0..3 {
            net.propose(0, command);
            command += 1;
        }
        net.deliver_where(|_, _, message| !matches!(message, Message::Accepted { slot, .. } if *slot == first));
        assert_eq!(net.replicas[0].slot_committed(), first, "the lost acknowledgement holds the commit back");
        net.tick_all(retransmit);
        for replica in &net.replicas[..2] {
            let committed = replica.slot_committed().get();
            assert_eq!(committed, u64::from(command), "{:?} commits with the other live replica", replica.id());
            assert_eq!(replica.slot_truncated(), Slot::new(committed - window), "{:?}", replica.id());
            assert_eq!(replica.log_len() as u64, window, "{:?} holds exactly the window", replica.id());
        }
    }
    assert_eq!(net.commands_applied(1), (0..command).collect::<Vec<_>>());
}
