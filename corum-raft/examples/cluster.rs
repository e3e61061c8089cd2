//! Three corum-raft node processes on 127.0.0.1, a client load, the leader's process killed
//! with SIGKILL mid-run and restarted from its data directory, then every process killed
//! with SIGKILL at once and all restarted; then every acknowledged write is checked (none
//! lost, none applied twice) and every node's copy compared.
//!
//! ```text
//! cargo run --release -p corum-raft --example cluster
//! cargo run --release -p corum-raft --example cluster -- --seconds 5 --clients 1,16,64
//! ```
//!
//! The same workload runs on an in-process corum cluster (3 replicas, threads in this
//! process) in the same run, for comparison. Each client task adds 1 to its own counter, so
//! after the run a counter must be at least the number of that task's acknowledged writes
//! (none lost) and at most the number it sent (none applied twice).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corum::Dispatch;
use corum_raft::{Builder, Client};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// Counters by key; a write adds to one and returns its new value.
#[derive(Clone, Default, Serialize, Deserialize)]
struct Counters(BTreeMap<u64, u64>);

impl Dispatch for Counters {
    type ReadOp = u64;
    type WriteOp = (u64, u64);
    type Response = u64;
    fn dispatch(&self, key: &u64) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
    fn dispatch_mut(&mut self, &(key, add): &(u64, u64)) -> u64 {
        let v = self.0.entry(key).or_insert(0);
        *v += add;
        *v
    }
    fn digest(&self) -> Option<u64> {
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        Some(h.finish())
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.first().map(String::as_str) == Some("node") {
        rt.block_on(node(&args[1..]))
    } else {
        rt.block_on(parent(&args))
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// A node process: serves until told to quit on stdin (or killed); answers `report` with
/// its applied index and the digest of its copy.
async fn node(args: &[String]) -> Result<(), Error> {
    let id: u64 = flag(args, "--id").ok_or("--id")?.parse()?;
    let listen: SocketAddr = flag(args, "--listen").ok_or("--listen")?.parse()?;
    let dir = flag(args, "--dir").ok_or("--dir")?;
    let mut builder = Builder::new(id, Counters::default()).listen(listen).data_dir(dir);
    for (i, a) in args.iter().enumerate() {
        if a == "--peer" {
            let (pid, addr) = args[i + 1].split_once('=').ok_or("--peer ID=ADDR")?;
            builder = builder.peer(pid.parse()?, addr.parse()?);
        }
    }
    let node = builder.start().await?;
    println!("ready");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "report" => {
                let m = node.metrics();
                let digest = node.read_local(|c| c.digest().unwrap_or(0));
                println!(
                    "state {} {} {:x} leader={:?} snapshot={:?}",
                    m.id,
                    m.last_applied.unwrap_or(0),
                    digest,
                    m.leader,
                    m.snapshot
                );
            }
            "quit" => break,
            _ => {}
        }
    }
    node.shutdown().await;
    Ok(())
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

async fn spawn(i: usize, addrs: &[SocketAddr], dir: &std::path::Path) -> Result<Proc, Error> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("node").arg("--id").arg((i + 1).to_string()).arg("--listen").arg(addrs[i].to_string());
    cmd.arg("--dir").arg(dir.join(format!("node{}", i + 1)));
    for (j, a) in addrs.iter().enumerate() {
        if j != i {
            cmd.arg("--peer").arg(format!("{}={a}", j + 1));
        }
    }
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).kill_on_drop(true).spawn()?;
    let stdin = child.stdin.take().ok_or("stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("stdout")?).lines();
    match lines.next_line().await? {
        Some(l) if l == "ready" => {}
        other => return Err(format!("node {} did not start: {other:?}", i + 1).into()),
    }
    Ok(Proc { child, stdin, lines })
}

/// What a load run saw.
struct Run {
    ops: u64,
    errors: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// When each write completed, from the start of the run.
    completions: Vec<Duration>,
}

/// Per key: writes acknowledged, writes sent.
type Ledger = Arc<Mutex<BTreeMap<u64, (u64, u64)>>>;

/// What the client tasks do.
#[derive(Clone, Copy, PartialEq)]
enum Ops {
    Writes,
    Reads,
}

/// `clients` tasks, each adding to (or reading) its own key (from `first_key`), for
/// `seconds`.
async fn load_raft(
    client: &Client<Counters>,
    ops: Ops,
    clients: usize,
    seconds: f64,
    first_key: u64,
    ledger: &Ledger,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (client, stop, ledger) = (client.clone(), stop.clone(), ledger.clone());
        let key = first_key + t as u64;
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let (mut ok, mut err, mut done) = (0, 0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                if ops == Ops::Reads {
                    match client.execute(key).await {
                        Ok(_) => {
                            hist.record(t0.elapsed().as_micros() as u64).unwrap();
                            ok += 1;
                        }
                        Err(e) => {
                            eprintln!("read failed: {e}");
                            err += 1;
                        }
                    }
                    continue;
                }
                ledger.lock().unwrap().entry(key).or_default().1 += 1;
                match client.execute_mut((key, 1)).await {
                    Ok(_) => {
                        ledger.lock().unwrap().entry(key).or_default().0 += 1;
                        hist.record(t0.elapsed().as_micros() as u64).unwrap();
                        done.push(start.elapsed());
                        ok += 1;
                    }
                    Err(e) => {
                        eprintln!("write failed: {e}");
                        err += 1;
                    }
                }
            }
            (ok, err, hist, done)
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    gather(tasks, start).await
}

/// One client task's tally: writes done, writes failed, latencies, completion times.
type Tally = (u64, u64, Histogram<u64>, Vec<Duration>);

async fn gather(tasks: Vec<tokio::task::JoinHandle<Tally>>, start: Instant) -> Run {
    let mut run = Run {
        ops: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3).unwrap(),
        completions: Vec::new(),
    };
    for t in tasks {
        let (ok, err, hist, done) = t.await.unwrap();
        run.ops += ok;
        run.errors += err;
        run.latency.add(hist).unwrap();
        run.completions.extend(done);
    }
    run.elapsed = start.elapsed();
    run.completions.sort();
    run
}

/// The same workload on an in-process corum cluster of 3 replicas.
async fn load_corum(cluster: &corum::Cluster<Counters>, ops: Ops, clients: usize, seconds: f64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..clients {
        let (handle, stop) = (cluster.handle(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).unwrap();
            let (mut ok, mut err) = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let done = match ops {
                    // A linearizable read of a replica's copy: synchronous, so the task
                    // yields after it to let the runtime's timers and other tasks run.
                    Ops::Reads => {
                        let read = handle.execute(t as u64);
                        tokio::task::yield_now().await;
                        read
                    }
                    Ops::Writes => match handle.submit((t as u64, 1)) {
                        Ok(ticket) => ticket.await,
                        Err(e) => Err(e),
                    },
                };
                match done {
                    Ok(_) => {
                        hist.record(t0.elapsed().as_micros() as u64).unwrap();
                        ok += 1;
                    }
                    Err(_) => err += 1,
                }
            }
            (ok, err, hist, Vec::new())
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    gather(tasks, start).await
}

fn row(name: &str, clients: usize, run: &Run) {
    println!(
        "| {name:<38} | {clients:>7} | {:>10.0} | {:>9.0} | {:>9.0} | {:>6} |",
        run.ops as f64 / run.elapsed.as_secs_f64(),
        run.latency.value_at_quantile(0.5) as f64,
        run.latency.value_at_quantile(0.99) as f64,
        run.errors
    );
}

async fn parent(args: &[String]) -> Result<(), Error> {
    let seconds: f64 = flag(args, "--seconds").unwrap_or("3").parse()?;
    let clients: Vec<usize> =
        flag(args, "--clients").unwrap_or("1,64").split(',').map(str::parse).collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let mut addrs = Vec::new();
    for _ in 0..3 {
        // Ports the OS picks, released for the node processes to bind.
        addrs.push(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?);
    }
    let mut procs = Vec::new();
    for i in 0..3 {
        procs.push(Some(spawn(i, &addrs, dir.path()).await?));
    }
    println!("3 node processes on {addrs:?}, data in {}", dir.path().display());
    let mut builder = Client::<Counters>::builder().timeout(Duration::from_secs(10));
    for (i, a) in addrs.iter().enumerate() {
        builder = builder.node(i as u64 + 1, *a);
    }
    let client = builder.build()?;
    client.execute_mut((u64::MAX, 1)).await?;
    let ledger: Ledger = Arc::default();

    println!();
    println!("| {:<38} | clients | ops/s      | p50 (µs)  | p99 (µs)  | errors |", "cluster, operations");
    println!("|{:-<40}|---------|------------|-----------|-----------|--------|", "");
    let mut next_key = 0;
    for (ops, what) in [(Ops::Writes, "writes"), (Ops::Reads, "reads")] {
        for &c in &clients {
            let run = load_raft(&client, ops, c, seconds, next_key, &ledger).await;
            next_key += c as u64;
            row(&format!("corum-raft, 3 processes, {what}"), c, &run);
        }
        let cluster = corum::Builder::new(Counters::default()).replicas(3).build()?;
        for &c in &clients {
            let run = load_corum(&cluster, ops, c, seconds).await;
            row(&format!("corum, 3 replicas in-process, {what}"), c, &run);
        }
    }

    // Failover: the heaviest load, the leader's process killed after a second.
    let c = *clients.iter().max().unwrap_or(&64);
    let victim = client.leader().ok_or("no leader known")? as usize - 1;
    let load = {
        let (client, ledger) = (client.clone(), ledger.clone());
        tokio::spawn(async move { load_raft(&client, Ops::Writes, c, 4.0 + seconds, next_key, &ledger).await })
    };
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut killed = procs[victim].take().ok_or("victim")?;
    killed.child.start_kill()?; // SIGKILL
    let killed_at = start.elapsed();
    killed.child.wait().await?;
    println!("\nnode {} (the leader) killed with SIGKILL at {:.2} s", victim + 1, killed_at.as_secs_f64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs[victim] = Some(spawn(victim, &addrs, dir.path()).await?);
    println!("node {} restarted from its data directory at {:.2} s", victim + 1, start.elapsed().as_secs_f64());
    let run = load.await?;
    // The longest stretch without a completed write, from just before the kill on.
    let mut gap = Duration::ZERO;
    let from = killed_at.saturating_sub(Duration::from_millis(100));
    let mut prev = from;
    for &t in run.completions.iter().filter(|&&t| t > from) {
        gap = gap.max(t - prev);
        prev = t;
    }
    row("corum-raft, leader killed mid-run", c, &run);
    println!("failover: no write completed for {:.0} ms around the kill", gap.as_secs_f64() * 1e3);

    // Every node at once (a power cut): the same load, all three processes killed with
    // SIGKILL together, then restarted from their data directories.
    let load = {
        let (client, ledger) = (client.clone(), ledger.clone());
        let keys = next_key + c as u64;
        tokio::spawn(async move { load_raft(&client, Ops::Writes, c, 3.0 + seconds, keys, &ledger).await })
    };
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut killed = Vec::new();
    for p in procs.iter_mut() {
        let mut p = p.take().ok_or("a node not running")?;
        p.child.start_kill()?; // SIGKILL
        killed.push(p);
    }
    let killed_at = start.elapsed();
    for mut p in killed {
        p.child.wait().await?;
    }
    println!("\nall 3 nodes killed with SIGKILL at {:.2} s", killed_at.as_secs_f64());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (i, p) in procs.iter_mut().enumerate() {
        *p = Some(spawn(i, &addrs, dir.path()).await?);
    }
    println!("all 3 restarted from their data directories at {:.2} s", start.elapsed().as_secs_f64());
    let run = load.await?;
    let from = killed_at.saturating_sub(Duration::from_millis(100));
    let (mut gap, mut prev) = (Duration::ZERO, from);
    for &t in run.completions.iter().filter(|&&t| t > from) {
        gap = gap.max(t - prev);
        prev = t;
    }
    row("corum-raft, every node killed at once", c, &run);
    println!("no write completed for {:.0} ms around the kills", gap.as_secs_f64() * 1e3);

    // Nothing acknowledged is lost, nothing applied twice.
    let ledger = ledger.lock().unwrap().clone();
    let (mut lost, mut twice) = (0, 0);
    for (&key, &(acked, sent)) in &ledger {
        let value = client.execute(key).await?;
        if value < acked {
            lost += 1;
            println!("key {key}: {value} applied, {acked} acknowledged: LOST");
        }
        if value > sent {
            twice += 1;
            println!("key {key}: {value} applied, {sent} sent: APPLIED TWICE");
        }
    }
    let acked: u64 = ledger.values().map(|v| v.0).sum();
    println!(
        "{acked} acknowledged writes on {} keys: {lost} keys lost writes, {twice} keys applied a write twice",
        ledger.len()
    );

    // Every node holds the same copy.
    let mut same = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut states = Vec::new();
    while !same && Instant::now() < deadline {
        states.clear();
        for p in procs.iter_mut().flatten() {
            p.stdin.write_all(b"report\n").await?;
            let line = p.lines.next_line().await?.unwrap_or_default();
            let mut words = line.split_whitespace().skip(2);
            states.push((words.next().unwrap_or("").to_string(), words.next().unwrap_or("").to_string(), line));
        }
        same = states.windows(2).all(|w| w[0].0 == w[1].0 && w[0].1 == w[1].1);
        if !same {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for s in &states {
        println!("{}", s.2);
    }
    println!("every node holds the same copy: {}", if same { "yes" } else { "NO" });
    for p in procs.iter_mut().flatten() {
        p.stdin.write_all(b"quit\n").await?;
        p.child.wait().await?;
    }
    if lost > 0 || twice > 0 || !same {
        return Err("the check failed".into());
    }
    Ok(())
}
