//! Failover on a reported death (at once, after the grace, across restarts, wrong
//! reports) and hand-over of leadership.

use super::*;

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
