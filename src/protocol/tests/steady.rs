//! The protocol in normal operation and under lost and competing messages: election,
//! commit, forwarding, batching, recovery of accepted values, hole filling, duelling
//! candidates, stale leaders, learning, retransmission, truncation.

use super::*;

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
