//! The workloads and systems that `examples/scaling.rs` and `benches/throughput.rs` measure,
//! shared so that both run exactly the same code: a 10,000-key map, a counter and a stack,
//! on corum, `parking_lot` locks, node-replication 0.1.1 and one unsynchronised thread.
#![allow(dead_code)] // each includer uses its own part

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use corum::Builder;
use hdrhistogram::Histogram;

pub const KEYS: u64 = 10_000;

/// The three objects, each usable by corum, by node-replication and behind a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Kv(HashMap<u64, u64>),
    Counter(u64),
    Stack(Vec<u64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    Get(u64),
    Count,
    Top,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Put(u64, u64),
    Add(u64),
    Push(u64),
    Pop,
}

impl Object {
    pub fn read(&self, op: Read) -> u64 {
        match (self, op) {
            (Object::Kv(map), Read::Get(key)) => map.get(&key).copied().unwrap_or(0),
            (Object::Counter(count), Read::Count) => *count,
            (Object::Stack(stack), Read::Top) => stack.last().copied().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn write(&mut self, op: Write) -> u64 {
        match (self, op) {
            (Object::Kv(map), Write::Put(key, value)) => map.insert(key, value).unwrap_or(0),
            (Object::Counter(count), Write::Add(n)) => {
                *count += n;
                *count
            }
            (Object::Stack(stack), Write::Push(value)) => {
                stack.push(value);
                stack.len() as u64
            }
            (Object::Stack(stack), Write::Pop) => stack.pop().unwrap_or(0),
            _ => 0,
        }
    }
}

impl corum::Dispatch for Object {
    type ReadOp = Read;
    type WriteOp = Write;
    type Response = u64;
    fn dispatch(&self, op: &Read) -> u64 {
        self.read(*op)
    }
    fn dispatch_mut(&mut self, op: &Write) -> u64 {
        self.write(*op)
    }
}

/// node-replication's wrapper (its trait takes operations by value and needs `Default`).
pub struct NrObject(Object);

impl Default for NrObject {
    fn default() -> Self {
        NrObject(Object::Counter(0))
    }
}

impl node_replication::Dispatch for NrObject {
    type ReadOperation = Read;
    type WriteOperation = Write;
    type Response = u64;
    fn dispatch(&self, op: Read) -> u64 {
        self.0.read(op)
    }
    fn dispatch_mut(&mut self, op: Write) -> u64 {
        self.0.write(op)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub write_pct: u64,
}

impl Workload {
    pub fn object(&self) -> Object {
        match self.name {
            "kv" => Object::Kv((0..KEYS).map(|key| (key, 0)).collect()),
            "counter" => Object::Counter(0),
            _ => Object::Stack((0..1_000).collect()),
        }
    }

    /// The next operation, from the thread's random state: `Ok` a write, `Err` a read.
    pub fn op(&self, rng: &mut u64) -> Result<Write, Read> {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let r = *rng;
        let write = r % 100 < self.write_pct;
        match (self.name, write) {
            ("kv", true) => Ok(Write::Put(r / 100 % KEYS, r)),
            ("kv", false) => Err(Read::Get(r / 100 % KEYS)),
            ("counter", true) => Ok(Write::Add(1)),
            ("counter", false) => Err(Read::Count),
            (_, true) if r / 100 % 2 == 0 => Ok(Write::Push(r)),
            (_, true) => Ok(Write::Pop),
            (_, false) => Err(Read::Top),
        }
    }
}

/// Client thread counts to sweep: powers of two from 1, and every core the process may use.
pub fn thread_counts() -> Vec<usize> {
    let cores = corum::available_cores().max(1);
    let mut threads = vec![1];
    while threads.last().expect("one") * 2 <= cores {
        threads.push(threads.last().expect("one") * 2);
    }
    if *threads.last().expect("one") != cores {
        threads.push(cores);
    }
    threads
}

/// Every workload: the map at 0, 10, 50 and 100 % writes, the counter, the stack.
pub fn workloads() -> Vec<Workload> {
    let mut workloads: Vec<Workload> =
        [0, 10, 50, 100].into_iter().map(|write_pct| Workload { name: "kv", write_pct }).collect();
    workloads.push(Workload { name: "counter", write_pct: 100 });
    workloads.push(Workload { name: "stack", write_pct: 100 });
    workloads
}

/// One measurement's result.
pub struct Measurement {
    pub ops: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
}

/// How long a measurement runs: for a time, or for a number of operations shared out
/// among the client threads (criterion's `iter_custom`).
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    Time(Duration),
    Ops(u64),
}

/// One client thread's share of a budget.
pub struct Share<'a> {
    stop: &'a AtomicBool,
    ops: Option<u64>,
}

impl Share<'_> {
    /// How many more operations this thread may start now (at most `want`).
    pub fn take(&self, done: u64, want: u64) -> u64 {
        match self.ops {
            Some(ops) => ops.saturating_sub(done).min(want),
            None if self.stop.load(Ordering::Relaxed) => 0,
            None => want,
        }
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Runs `body(thread, share, latency) -> ops` on `threads` threads within `budget`.
pub fn measure(
    threads: usize,
    budget: Budget,
    body: impl Fn(usize, &Share, &mut Histogram<u64>) -> u64 + Sync,
) -> Measurement {
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (ops, latency) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                let body = &body;
                let share = Share {
                    stop: &stop,
                    ops: match budget {
                        Budget::Time(_) => None,
                        // Threads with a lower index take the remainder.
                        Budget::Ops(ops) => {
                            Some(ops / threads as u64 + u64::from((thread as u64) < ops % threads as u64))
                        }
                    },
                };
                scope.spawn(move || {
                    let mut latency = histogram();
                    let ops = body(thread, &share, &mut latency);
                    (ops, latency)
                })
            })
            .collect();
        if let Budget::Time(time) = budget {
            std::thread::sleep(time);
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = (0, histogram());
        for worker in workers {
            let (ops, latency) = worker.join().expect("worker");
            total.0 += ops;
            total.1.add(latency).expect("same bounds");
        }
        total
    });
    Measurement { ops, elapsed: started.elapsed(), latency }
}

pub fn record(latency: &mut Histogram<u64>, since: Instant) {
    latency.saturating_record((since.elapsed().as_nanos() as u64).max(1));
}

/// A client loop of synchronous operations: `apply(thread, op)` runs one, timed.
pub fn closed_loop(
    workload: Workload,
    threads: usize,
    budget: Budget,
    apply: impl Fn(usize, Result<Write, Read>) -> u64 + Sync,
) -> Measurement {
    measure(threads, budget, |thread, share, latency| {
        let mut rng = thread as u64 + 1;
        let mut ops = 0;
        while share.take(ops, 1) > 0 {
            let begin = Instant::now();
            std::hint::black_box(apply(thread, workload.op(&mut rng)));
            record(latency, begin);
            ops += 1;
        }
        ops
    })
}

/// Who is paused 5 ms out of every 50 ms during a measurement (the straggler scenario).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Straggler {
    None,
    /// Client thread 0 sleeps while it holds the lock (Mutex only).
    Holder,
    /// A corum replica that does not lead, chosen afresh each period.
    Follower,
    /// The corum replica leading at the start of each period.
    Leader,
}

impl Straggler {
    pub fn name(self) -> &'static str {
        match self {
            Straggler::None => "none",
            Straggler::Holder => "holder",
            Straggler::Follower => "follower",
            Straggler::Leader => "leader",
        }
    }
}

pub const PAUSE: Duration = Duration::from_millis(5);
pub const PAUSE_PERIOD: Duration = Duration::from_millis(50);

/// Measures `system` on `workload` with `threads` client threads.
pub fn run(
    system: &str,
    replicas: usize,
    mode: &str,
    workload: Workload,
    threads: usize,
    budget: Budget,
    straggler: Straggler,
) -> Measurement {
    match system {
        "mutex" => {
            let object = parking_lot::Mutex::new(workload.object());
            let last_pause = parking_lot::Mutex::new(Instant::now());
            closed_loop(workload, threads, budget, |thread, op| {
                let mut object = object.lock();
                if straggler == Straggler::Holder && thread == 0 {
                    let mut last = last_pause.lock();
                    if last.elapsed() >= PAUSE_PERIOD {
                        *last = Instant::now();
                        std::thread::sleep(PAUSE);
                    }
                }
                match op {
                    Ok(write) => object.write(write),
                    Err(read) => object.read(read),
                }
            })
        }
        "rwlock" => {
            let object = parking_lot::RwLock::new(workload.object());
            closed_loop(workload, threads, budget, |_, op| match op {
                Ok(write) => object.write().write(write),
                Err(read) => object.read().read(read),
            })
        }
        // No synchronisation at all, so not through `closed_loop`, whose operation is shared.
        "sequential" => measure(1, budget, |_, share, latency| {
            let mut object = workload.object();
            let mut rng = 1;
            let mut ops = 0;
            while share.take(ops, 1) > 0 {
                let begin = Instant::now();
                match workload.op(&mut rng) {
                    Ok(write) => std::hint::black_box(object.write(write)),
                    Err(read) => std::hint::black_box(object.read(read)),
                };
                record(latency, begin);
                ops += 1;
            }
            ops
        }),
        "node-replication" => {
            let log = Arc::new(node_replication::Log::<Write>::new(32 * 1024 * 1024));
            let nr: Vec<_> = (0..replicas)
                .map(|_| node_replication::Replica::<NrObject>::with_data(&log, NrObject(workload.object())))
                .collect();
            // Each client thread registers once, with the replica of its index.
            let tokens: Vec<_> = (0..threads).map(|t| nr[t % nr.len()].register().expect("register")).collect();
            closed_loop(workload, threads, budget, |thread, op| {
                let (replica, token) = (&nr[thread % nr.len()], tokens[thread]);
                match op {
                    Ok(write) => replica.execute_mut(write, token),
                    Err(read) => replica.execute(read, token),
                }
            })
        }
        _ => {
            let cluster = Builder::new(workload.object()).replicas(replicas).build().expect("build");
            let handles: Vec<_> = (0..threads).map(|_| cluster.handle()).collect();
            handles[0].execute_mut(workload.op(&mut 7).unwrap_or(Write::Add(0))).expect("warm up");
            let pipelined = mode == "pipelined";
            let pausing = AtomicBool::new(straggler != Straggler::None);
            let outcome = std::thread::scope(|scope| {
                if straggler != Straggler::None {
                    let (cluster, pausing) = (&cluster, &pausing);
                    scope.spawn(move || {
                        while pausing.load(Ordering::Relaxed) {
                            std::thread::sleep(PAUSE_PERIOD - PAUSE);
                            let leader = cluster.leader();
                            let target = match straggler {
                                Straggler::Leader => leader,
                                _ => (0..cluster.replicas()).find(|&r| Some(r) != leader),
                            };
                            let Some(target) = target else { continue };
                            cluster.faults().pause(target).expect("pause");
                            std::thread::sleep(PAUSE);
                            cluster.faults().resume(target).expect("resume");
                        }
                    });
                }
                let outcome = corum_clients(&handles, workload, pipelined, threads, budget);
                pausing.store(false, Ordering::Relaxed);
                outcome
            });
            let batches: u64 = cluster.stats().iter().map(|replica| replica.batches_proposed).sum();
            let writes = outcome.ops * workload.write_pct / 100;
            if matches!(budget, Budget::Time(_)) {
                eprintln!("    {batches} batches, about {} writes per batch", writes / batches.max(1));
            }
            cluster.shutdown().expect("shutdown");
            outcome
        }
    }
}

/// Client threads on a corum cluster: synchronous, or up to 64 writes in flight per thread.
pub fn corum_clients(
    handles: &[corum::Handle<Object>],
    workload: Workload,
    pipelined: bool,
    threads: usize,
    budget: Budget,
) -> Measurement {
    measure(threads, budget, |thread, share, latency| {
        let handle = &handles[thread];
        let mut rng = thread as u64 + 1;
        let mut ops = 0;
        let mut tickets = Vec::with_capacity(if pipelined { 64 } else { 0 });
        loop {
            let burst = share.take(ops, if pipelined { 64 } else { 1 });
            if burst == 0 {
                break;
            }
            if pipelined {
                // Up to 64 writes in flight; reads in between are synchronous.
                for _ in 0..burst {
                    match workload.op(&mut rng) {
                        Ok(write) => tickets.push((Instant::now(), handle.submit(write).expect("submit"))),
                        Err(read) => {
                            let begin = Instant::now();
                            std::hint::black_box(handle.execute(read).expect("read"));
                            record(latency, begin);
                            ops += 1;
                        }
                    }
                }
                for (begin, ticket) in tickets.drain(..) {
                    std::hint::black_box(ticket.wait().expect("write"));
                    record(latency, begin);
                    ops += 1;
                }
            } else {
                let begin = Instant::now();
                match workload.op(&mut rng) {
                    Ok(write) => std::hint::black_box(handle.execute_mut(write).expect("write")),
                    Err(read) => std::hint::black_box(handle.execute(read).expect("read")),
                };
                record(latency, begin);
                ops += 1;
            }
        }
        ops
    })
}

/// Core-to-core round trips: two threads bounce a counter through one cache line, `n`
/// times. Returns the time for all of them (the floor every corum write pays twice).
pub fn atomic_ping_pong(n: u64) -> Duration {
    let line = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let peer = {
        let line = Arc::clone(&line);
        std::thread::spawn(move || {
            // Both threads run before the clock starts: this round trip is not timed.
            line.store(u64::MAX, Ordering::Release);
            for i in 0..n {
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        })
    };
    while line.load(Ordering::Acquire) != u64::MAX {
        std::hint::spin_loop();
    }
    let started = Instant::now();
    for i in 0..n {
        line.store(2 * i + 1, Ordering::Release);
        while line.load(Ordering::Acquire) != 2 * i + 2 {
            std::hint::spin_loop();
        }
    }
    let elapsed = started.elapsed();
    peer.join().expect("peer");
    elapsed
}

/// The message pattern of one corum write, relayed naively over crossbeam channels with
/// blocking receives: client -> leader -> two acceptors -> leader (after the first
/// acknowledgement: with its own, a majority of 3) -> client; `n` writes, one at a time.
/// Returns the time for all of them, and records each one's latency if asked.
pub fn crossbeam_relay(n: u64, mut latency: Option<&mut Histogram<u64>>) -> Duration {
    use crossbeam_channel::{unbounded, Receiver, Sender};
    let (to_leader, leader_inbox) = unbounded::<u64>();
    let (to_client, client_inbox) = unbounded::<u64>();
    let (acks, ack_inbox) = unbounded::<u64>();
    let acceptors: Vec<(Sender<u64>, std::thread::JoinHandle<()>)> = (0..2)
        .map(|_| {
            let (to_acceptor, inbox): (Sender<u64>, Receiver<u64>) = unbounded();
            let acks = acks.clone();
            let thread = std::thread::spawn(move || {
                for sequence in inbox {
                    if acks.send(sequence).is_err() {
                        break;
                    }
                }
            });
            (to_acceptor, thread)
        })
        .collect();
    drop(acks);
    let senders: Vec<Sender<u64>> = acceptors.iter().map(|(sender, _)| sender.clone()).collect();
    let leader = std::thread::spawn(move || {
        for sequence in leader_inbox {
            for acceptor in &senders {
                acceptor.send(sequence).expect("acceptor");
            }
            // The first acknowledgement of this write makes a majority; older ones are late.
            while ack_inbox.recv().expect("ack") != sequence {}
            to_client.send(sequence).expect("client");
        }
    });
    let started = Instant::now();
    for sequence in 0..n {
        let begin = Instant::now();
        to_leader.send(sequence).expect("leader");
        let reply = client_inbox.recv().expect("reply");
        debug_assert_eq!(reply, sequence);
        if let Some(latency) = latency.as_deref_mut() {
            record(latency, begin);
        }
    }
    let elapsed = started.elapsed();
    drop(to_leader);
    leader.join().expect("leader");
    for (sender, thread) in acceptors {
        drop(sender);
        thread.join().expect("acceptor");
    }
    elapsed
}
