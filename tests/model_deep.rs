//! Deep model checking of the protocol core alone: three replicas from before the first
//! election, every interleaving of elections, message deliveries and a crash with an
//! immediate restart, explored depth-first to a depth bound with stateright, checking
//! agreement across time and the replicas' own invariants in every state.
//!
//! The actor model in `model_check.rs` carries clients and a linearizability history, which
//! stops it near 9 steps. This model is narrower, so it goes deeper: the classic Paxos
//! mistakes need 10 to 13 steps and 3 ballots to show (two candidates, a deposed leader's
//! value, a later candidate choosing among different values). What it leaves out, and why
//! that loses no safety violation:
//! - message loss: a message never delivered is one lost, as far as safety goes;
//! - timers: the election timeout is the `Campaign` action, which may happen at any point
//!   (up to round `MAX_ROUND`); heartbeats and retransmissions only repeat what was sent;
//! - clients: each replica starts with one command of its own buffered, which it proposes
//!   when it leads or forwards to the leader it learns of.
//!
//! `CORUM_MODEL_DEPTH=N` explores N actions deep (default: `DEFAULT_ACTIONS` in release
//! builds, fewer in debug builds, where the same search runs ten times slower).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use corum::protocol::{Batch, Config, DurableState, Message, Replica, ReplicaId, Slot};
use stateright::{Checker, Model, Property};

const REPLICAS: usize = 3;
/// Elections per history: three ballots.
const MAX_CAMPAIGNS: u8 = 3;
/// Actions deep in a release build: the longest counterexample for the plants this model
/// must catch is 13 actions (see `tests/planted_model.sh`).
const DEFAULT_ACTIONS: usize = 13;

type Command = u8;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct State {
    replicas: Vec<Replica<Command>>,
    /// Messages in flight, sorted: a multiset, so that two orders of sending that leave the
    /// same messages in flight are one state.
    network: Vec<(ReplicaId, ReplicaId, Message<Command>)>,
    /// Every value any replica ever committed, per slot: agreement is checked across time,
    /// also for replicas that committed and then crashed.
    chosen: BTreeMap<Slot, Batch<Command>>,
    campaigns: u8,
    restarts: u8,
    /// What went wrong, if anything did: a broken invariant (a replica panicked) or two
    /// values committed in one slot.
    broken: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Action {
    /// Replica `i`'s election timer fires.
    Campaign(usize),
    /// The `k`-th message in flight is delivered.
    Deliver(usize),
    /// Replica `i` crashes and restarts at once from its durable state, while what was sent
    /// to it is still in flight.
    Restart(usize),
}

struct Paxos {
    /// Crash-and-restart actions per history.
    restarts: u8,
}

/// Whether the model delivers messages of this kind. Phase 1 and phase 2 and their nacks
/// decide what is chosen; commit notices, progress reports, forwards and learning only
/// spread what was chosen, so leaving them undelivered (lost) keeps every history a real
/// one and makes the search deep enough.
fn delivered(message: &Message<Command>) -> bool {
    matches!(
        message,
        Message::Prepare { .. }
            | Message::Promise { .. }
            | Message::Accept { .. }
            | Message::Accepted { .. }
            | Message::Nack { .. }
    )
}

fn config() -> Config {
    let mut config = Config::new(REPLICAS);
    config.check_invariants = true;
    config
}

impl State {
    /// Sends what replica `i` emitted and records what it committed.
    fn after_input(&mut self, i: usize) {
        let from = ReplicaId::new(i);
        let replica = &mut self.replicas[i];
        let mut ready = replica.ready();
        self.network.extend(
            ready.messages.drain(..).filter(|(_, message)| delivered(message)).map(|(to, message)| (from, to, message)),
        );
        self.network.sort();
        for (slot, batch) in ready.committed.drain(..) {
            match self.chosen.get(&slot) {
                Some(earlier) if *earlier != batch => {
                    self.broken =
                        Some(format!("agreement: r{i} commits {batch:?} in {slot:?}, {earlier:?} was committed there"));
                }
                Some(_) => {}
                None => {
                    self.chosen.insert(slot, batch);
                }
            }
        }
        self.replicas[i].advance(ready);
    }
}

impl Model for Paxos {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let replicas = (0..REPLICAS)
            .map(|i| {
                let mut replica = Replica::new(ReplicaId::new(i), config());
                replica.propose(i as Command + 1);
                replica
            })
            .collect();
        vec![State { replicas, network: Vec::new(), chosen: BTreeMap::new(), campaigns: 0, restarts: 0, broken: None }]
    }

    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.broken.is_some() {
            return;
        }
        if state.campaigns < MAX_CAMPAIGNS {
            actions.extend((0..REPLICAS).map(Action::Campaign));
        }
        for k in 0..state.network.len() {
            // Identical copies in flight lead to the same state: deliver the first only.
            if k == 0 || state.network[k] != state.network[k - 1] {
                actions.push(Action::Deliver(k));
            }
        }
        if state.restarts < self.restarts {
            actions.extend((0..REPLICAS).map(Action::Restart));
        }
    }

    fn next_state(&self, state: &State, action: Action) -> Option<State> {
        let mut next = state.clone();
        let outcome = catch_unwind(AssertUnwindSafe(|| match action {
            Action::Campaign(i) => {
                next.replicas[i].campaign();
                next.campaigns += 1;
                next.after_input(i);
            }
            Action::Deliver(k) => {
                let (from, to, message) = next.network.remove(k);
                next.replicas[to.index()].step(from, message);
                next.after_input(to.index());
            }
            Action::Restart(i) => {
                let durable: DurableState<Command> = next.replicas[i].durable_state();
                next.replicas[i] = Replica::restart(ReplicaId::new(i), config(), durable);
                next.restarts += 1;
            }
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            let mut broken = state.clone();
            broken.broken = Some(format!("invariant: {message}"));
            return Some(broken);
        }
        Some(next)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("safe", |_, state: &State| state.broken.is_none()),
            Property::sometimes("a value is chosen", |_, state: &State| !state.chosen.is_empty()),
            Property::sometimes("a later ballot leads after a value was chosen", |_, state: &State| {
                !state.chosen.is_empty()
                    && state
                        .replicas
                        .iter()
                        .any(|replica| replica.is_leader() && replica.ballot_promised().round() >= 2)
            }),
        ]
    }
}

/// Explores every history of the model up to `actions` actions (`CORUM_MODEL_DEPTH`
/// overrides it) and fails on the first unsafe state, printing the actions that reach it.
fn explore(name: &str, restarts: u8, actions: usize) {
    let actions = std::env::var("CORUM_MODEL_DEPTH").ok().and_then(|n| n.parse().ok()).unwrap_or(actions);
    // The panic hook is process-wide: one model at a time, so that neither silences the
    // other's failure. Each search uses both cores anyway.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A panicking replica is a finding, reported as a state; keep the checker's output clean.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    // stateright counts the initial state as depth 1 and prunes at the bound itself.
    let checker = Paxos { restarts }.checker().threads(2).target_max_depth(actions + 2).spawn_dfs().join();
    // The path to a discovery is rebuilt by replaying it, panics included: keep the hook
    // silent until then.
    let unsafe_path = checker.discovery("safe").map(|path| {
        let broken = path.last_state().broken.clone().unwrap_or_default().replace('\n', " ");
        (broken, path.into_actions())
    });
    drop(std::panic::take_hook());
    println!(
        "deep model {name}: {} states ({} unique), every history of {actions} actions, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64()
    );
    if let Some((broken, path)) = unsafe_path {
        panic!("model {name}: unsafe after {} actions: {broken}; actions: {path:?}", path.len());
    }
    for reached in ["a value is chosen", "a later ballot leads after a value was chosen"] {
        assert!(checker.discovery(reached).is_some(), "{name}: no explored history reached: {reached}");
    }
}

/// Release builds explore `release` actions deep; debug builds, ten times slower, 3 fewer.
fn depth(release: usize) -> usize {
    if cfg!(debug_assertions) {
        release - 3
    } else {
        release
    }
}

#[test]
fn elections_and_deliveries() {
    explore("elections and deliveries", 0, depth(DEFAULT_ACTIONS));
}

#[test]
fn elections_deliveries_and_a_restart() {
    explore("with a restart", 1, depth(DEFAULT_ACTIONS - 1));
}
