//! Model checking of the protocol core with stateright: the pure replica wrapped as an
//! actor, explored breadth-first over every interleaving of message deliveries, drops,
//! duplicate deliveries, elections and a crash, checking agreement and linearizability.
//!
//! Three replicas and two clients; each client writes once and then reads, through the log
//! (the model has no shared memory, so reads are ordered like writes). Elections start when
//! a replica's election timer fires, which the checker may do at any point; the state space
//! is bounded by capping ballots at round `MAX_ROUND` (so at most that many elections per
//! history) and stopping at `MAX_STATES` states. `CORUM_MODEL_STATES=N` changes the cap.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::time::Instant;

use corum::protocol::{Config, DurableState, Message, Replica, ReplicaId, Slot};
use stateright::actor::register::{RegisterActor, RegisterMsg};
use stateright::actor::{model_timeout, Actor, ActorModel, Envelope, Id, LossyNetwork, Network, Out};
use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};
use stateright::{Checker, Expectation, Model};

const SERVERS: usize = 3;
const CLIENTS: usize = 2;
const MAX_ROUND: u64 = 2;

/// A client request as the protocol orders it: who, which request, and what.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Command {
    client: usize,
    request: u64,
    write: Option<char>,
}

type Msg = RegisterMsg<u64, char, Message<Command>>;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NodeState {
    replica: Replica<Command>,
    register: char,
    /// Requests applied (the exactly-once table of this model).
    applied: BTreeSet<(usize, u64)>,
    /// Requests this server received and must answer once applied.
    owed: BTreeSet<(usize, u64)>,
}

/// A server: a protocol replica, starting from the state in `initial`. With `transfers`,
/// a leader may be asked at any point to hand leadership to the next replica.
#[derive(Clone)]
struct Node {
    initial: Replica<Command>,
    transfers: bool,
}

/// Three replicas after replica 0 won ballot 1 and every replica heard its first commit:
/// starting the model here spends its state budget on what follows an election.
fn elected_cluster() -> Vec<Replica<Command>> {
    let mut replicas: Vec<Replica<Command>> = (0..SERVERS).map(|i| Replica::new(ReplicaId::new(i), config())).collect();
    replicas[0].campaign();
    let mut in_flight: Vec<(ReplicaId, ReplicaId, Message<Command>)> =
        replicas[0].ready().messages.into_iter().map(|(to, m)| (ReplicaId::new(0), to, m)).collect();
    while let Some((from, to, message)) = in_flight.pop() {
        let replica = &mut replicas[to.index()];
        replica.step(from, message);
        in_flight.extend(replica.ready().messages.into_iter().map(|(next, m)| (to, next, m)));
    }
    assert!(replicas[0].is_leader(), "replica 0 won the first election");
    replicas
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    Election,
    /// The leader is asked to hand leadership over (`Replica::transfer_leadership`).
    Transfer,
}

fn config() -> Config {
    let mut config = Config::new(SERVERS);
    // Broken invariants fail the check in every build, release included.
    config.check_invariants = true;
    config
}

impl Actor for Node {
    type Msg = Msg;
    type State = NodeState;
    type Timer = Timer;
    type Storage = DurableState<Command>;
    type Random = ();

    fn on_start(&self, id: Id, storage: &Option<Self::Storage>, o: &mut Out<Self>) -> NodeState {
        let me = ReplicaId::new(usize::from(id));
        // A restart keeps the acceptor's durable state and loses everything else; with no
        // snapshot transfer in this model, it learns the log again from its peers.
        let replica = match storage {
            Some(durable) => Replica::restart(me, config(), durable.clone()),
            None => self.initial.clone(),
        };
        o.set_timer(Timer::Election, model_timeout());
        if self.transfers {
            o.set_timer(Timer::Transfer, model_timeout());
        }
        NodeState { replica, register: '?', applied: BTreeSet::new(), owed: BTreeSet::new() }
    }

    fn on_msg(&self, _id: Id, state: &mut Cow<NodeState>, src: Id, msg: Msg, o: &mut Out<Self>) {
        let node = state.to_mut();
        let from = usize::from(src);
        match msg {
            RegisterMsg::Put(request, value) => {
                node.owed.insert((from, request));
                node.replica.propose(Command { client: from, request, write: Some(value) });
            }
            RegisterMsg::Get(request) => {
                node.owed.insert((from, request));
                node.replica.propose(Command { client: from, request, write: None });
            }
            RegisterMsg::Internal(message) => node.replica.step(ReplicaId::new(from), message),
            _ => return,
        }
        finish(node, o);
    }

    fn on_timeout(&self, id: Id, state: &mut Cow<NodeState>, timer: &Timer, o: &mut Out<Self>) {
        if state.replica.ballot_promised().round() >= MAX_ROUND {
            return;
        }
        match timer {
            Timer::Election => {
                let node = state.to_mut();
                node.replica.campaign();
                o.set_timer(Timer::Election, model_timeout());
                finish(node, o);
            }
            Timer::Transfer => {
                // Once per server: the transfer's handover starts a campaign of its own.
                if !state.replica.is_leader() {
                    o.set_timer(Timer::Transfer, model_timeout());
                    return;
                }
                let node = state.to_mut();
                let next = ReplicaId::new((usize::from(id) + 1) % SERVERS);
                assert!(node.replica.transfer_leadership(next), "a leader takes a transfer");
                finish(node, o);
            }
        }
    }
}

/// Sends what the replica emitted, applies what it committed, answers owed requests, and
/// saves the acceptor's durable state.
fn finish(node: &mut NodeState, o: &mut Out<Node>) {
    // The core's output contract (see `corum::protocol::Ready`); nothing reads a commit
    // watermark in this model, and it holds no snapshots.
    let mut ready = node.replica.ready();
    for (to, message) in ready.messages.drain(..) {
        o.send(Id::from(to.index()), RegisterMsg::Internal(message));
    }
    for (_, batch) in ready.committed.drain(..) {
        for command in batch.commands() {
            if !node.applied.insert((command.client, command.request)) {
                continue;
            }
            let reply = match command.write {
                Some(value) => {
                    node.register = value;
                    RegisterMsg::PutOk(command.request)
                }
                None => RegisterMsg::GetOk(command.request, node.register),
            };
            if node.owed.remove(&(command.client, command.request)) {
                o.send(Id::from(command.client), reply);
            }
        }
    }
    node.replica.advance(ready);
    o.save(node.replica.durable_state());
}

/// The history: the linearizability tester, and the requests whose answer was recorded
/// (a duplicating network may deliver an answer twice; the client saw it once).
type History = (LinearizabilityTester<Id, Register<char>>, BTreeSet<(Id, u64)>);

fn record_invocation(_: &(), history: &History, envelope: Envelope<&Msg>) -> Option<History> {
    let op = match envelope.msg {
        RegisterMsg::Put(_, value) => RegisterOp::Write(*value),
        RegisterMsg::Get(_) => RegisterOp::Read,
        _ => return None,
    };
    let mut history = history.clone();
    let _ = history.0.on_invoke(envelope.src, op);
    Some(history)
}

fn record_return(_: &(), history: &History, envelope: Envelope<&Msg>) -> Option<History> {
    let (request, ret) = match envelope.msg {
        RegisterMsg::PutOk(request) => (*request, RegisterRet::WriteOk),
        RegisterMsg::GetOk(request, value) => (*request, RegisterRet::ReadOk(*value)),
        _ => return None,
    };
    if history.1.contains(&(envelope.dst, request)) {
        return None;
    }
    let mut history = history.clone();
    history.1.insert((envelope.dst, request));
    let _ = history.0.on_return(envelope.dst, ret);
    Some(history)
}

type NodeModel = ActorModel<RegisterActor<Node>, (), History>;

fn model(network: Network<Msg>, transfers: bool) -> NodeModel {
    ActorModel::new((), (LinearizabilityTester::new(Register('?')), BTreeSet::new()))
        .actors(elected_cluster().into_iter().map(|initial| RegisterActor::Server(Node { initial, transfers })))
        .actors((0..CLIENTS).map(|_| RegisterActor::Client { put_count: 1, server_count: SERVERS }))
        .init_network(network)
        .lossy_network(LossyNetwork::Yes)
        .max_crashes(1)
        // Crashes are for replicas: a restarted stateright client would issue a second
        // operation while its first is in flight, which no client of corum does.
        .within_boundary(|_, state| state.crashed[SERVERS..].iter().all(|crashed| !crashed))
        .property(Expectation::Always, "linearizable", |_, state| state.history.0.serialized_history().is_some())
        .property(Expectation::Always, "agreement", |_, state| {
            let servers: Vec<&Replica<Command>> = state
                .actor_states
                .iter()
                .filter_map(|actor| match &**actor {
                    stateright::actor::register::RegisterActorState::Server(node) => Some(&node.replica),
                    _ => None,
                })
                .collect();
            let last = servers.iter().map(|r| r.slot_committed().get()).max().unwrap_or(0);
            (0..last).all(|slot| {
                let mut values = servers.iter().filter_map(|r| r.committed_batch(Slot::new(slot)));
                let first = values.next();
                values.all(|value| Some(value) == first)
            })
        })
        .property(Expectation::Sometimes, "a write completes", |_, state| {
            state.network.iter_deliverable().any(|e| matches!(e.msg, RegisterMsg::PutOk(_)))
        })
        .property(Expectation::Sometimes, "leadership handed over", |_, state| {
            state.actor_states.iter().any(|actor| match &**actor {
                stateright::actor::register::RegisterActorState::Server(node) => node.replica.counters().handovers > 0,
                _ => false,
            })
        })
        .record_msg_out(record_invocation)
        .record_msg_in(record_return)
}

/// Explores every state of the model within `default_depth` steps of the start
/// (`CORUM_MODEL_DEPTH` overrides it) breadth-first, and checks the properties.
fn explore(name: &str, network: Network<Msg>, transfers: bool, default_depth: usize) {
    let depth = std::env::var("CORUM_MODEL_DEPTH").ok().and_then(|n| n.parse().ok()).unwrap_or(default_depth);
    let started = Instant::now();
    let checker = model(network, transfers).checker().threads(2).target_max_depth(depth).spawn_bfs().join();
    println!(
        "stateright {name}: {} states ({} unique), every state within {depth} steps, {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        started.elapsed().as_secs_f64(),
    );
    let discoveries = checker.discoveries();
    for property in ["linearizable", "agreement"] {
        if let Some(path) = discoveries.get(property) {
            panic!("{name}: property {property} violated:\n{:#?}", path.clone().into_actions());
        }
    }
    assert!(discoveries.contains_key("a write completes"), "{name}: no explored state completed a write");
    assert_eq!(
        discoveries.contains_key("leadership handed over"),
        transfers,
        "{name}: a handover was reached exactly when transfers were asked for"
    );
}

#[test]
fn lossy_network_with_a_crash() {
    explore("lossy, one crash", Network::new_unordered_nonduplicating([]), false, 9);
}

#[test]
fn lossy_duplicating_network_with_a_crash() {
    explore("lossy, duplicating, one crash", Network::new_unordered_duplicating([]), false, 8);
}

/// A leader asked to hand over at any point, racing client writes, a crash and competing
/// elections: the handover's campaign is phase 1 like any other.
#[test]
fn lossy_network_with_leadership_transfers_and_a_crash() {
    // A debug build explores one step less: the same search runs ten times slower there.
    let depth = if cfg!(debug_assertions) { 8 } else { 9 };
    explore("lossy, transfers, one crash", Network::new_unordered_nonduplicating([]), true, depth);
}
