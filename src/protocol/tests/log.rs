//! The log's bounds and commit edge cases: accepts below an announced commit index, a
//! follower far behind, a peer down.

use super::*;

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
