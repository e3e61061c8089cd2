//! A small key-value server on tokio, backed by a corum-replicated map: every connection is
//! a session, writes are awaited tickets, reads are served from a replica's copy.
//!
//! ```text
//! cargo run --release --example server                        # 127.0.0.1:7878, 3 replicas
//! cargo run --release --example server -- --addr 127.0.0.1:9000 --replicas 5
//! cargo run --release --example server -- --mutex        # the same map behind a Mutex
//! ```
//!
//! `--mutex` serves the same map from one `parking_lot::Mutex` instead (no replication),
//! as the baseline to compare the replicated server with over the same loopback.
//!
//! The protocol is one command per line, one reply per line:
//!
//! | command | reply |
//! | --- | --- |
//! | `SET key value` | `OK` (new key) or `OLD previous` |
//! | `GET key` | `VALUE value` or `NIL` |
//! | `DEL key` | `OK` (removed) or `NIL` |
//! | `PAUSE replica`, `RESUME replica` | `OK`: fault injection, to watch the cluster serve on |
//! | `STATS` | one line per replica: role, status, applied slot, leader changes |
//!
//! An error replies `ERR reason`; a malformed line never closes the connection. Try it with
//! `nc 127.0.0.1 7878`, or load it with `cargo run --release --example load`.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use corum::{Builder, Cluster, Dispatch, Handle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// The replicated object: a sorted map from keys to values.
#[derive(Clone, Default)]
struct Store(BTreeMap<String, String>);

#[derive(Clone)]
enum Write {
    Set(String, String),
    Del(String),
}

impl Dispatch for Store {
    type ReadOp = String;
    type WriteOp = Write;
    type Response = Option<String>;

    fn dispatch(&self, key: &String) -> Option<String> {
        self.0.get(key).cloned()
    }

    fn dispatch_mut(&mut self, write: &Write) -> Option<String> {
        match write {
            Write::Set(key, value) => self.0.insert(key.clone(), value.clone()),
            Write::Del(key) => self.0.remove(key),
        }
    }

    /// The map in key order: the same on every copy that applied the same writes.
    fn digest(&self) -> Option<u64> {
        let mut hasher = DefaultHasher::new();
        self.0.hash(&mut hasher);
        Some(hasher.finish())
    }
}

/// What serves the map: the replicated cluster (each connection with its own session), or
/// one lock around one copy.
#[derive(Clone)]
enum Backend {
    Corum(Arc<Cluster<Store>>),
    Mutex(Arc<parking_lot::Mutex<Store>>),
}

/// One command line, parsed.
enum Line {
    Write(Write),
    Get(String),
    Pause(usize),
    Resume(usize),
    Stats,
    /// Not a command; the reply says why.
    Bad(&'static str),
}

fn parse(line: &str) -> Line {
    let mut words = line.split_whitespace();
    match (words.next().map(str::to_ascii_uppercase).as_deref(), words.next(), words.next(), words.next()) {
        (Some("SET"), Some(key), Some(value), None) => Line::Write(Write::Set(key.into(), value.into())),
        (Some("DEL"), Some(key), None, None) => Line::Write(Write::Del(key.into())),
        (Some("GET"), Some(key), None, None) => Line::Get(key.into()),
        (Some(fault @ ("PAUSE" | "RESUME")), Some(replica), None, None) => match replica.parse::<usize>() {
            Ok(replica) if fault == "PAUSE" => Line::Pause(replica),
            Ok(replica) => Line::Resume(replica),
            Err(_) => Line::Bad("the replica is a number"),
        },
        (Some("STATS"), None, None, None) => Line::Stats,
        _ => Line::Bad("commands: SET key value | GET key | DEL key | PAUSE n | RESUME n | STATS"),
    }
}

/// The reply to a `SET` (`set`) or `DEL`, from the value it replaced.
fn write_reply(set: bool, old: Option<String>) -> String {
    match (set, old) {
        (true, None) | (false, Some(_)) => "OK".into(),
        (true, Some(old)) => format!("OLD {old}"),
        (false, None) => "NIL".into(),
    }
}

/// The reply to a read.
fn read_reply(value: Option<String>) -> String {
    value.map_or_else(|| "NIL".into(), |value| format!("VALUE {value}"))
}

/// Serves one command line on the unreplicated baseline.
fn serve_line_locked(line: &str, store: &parking_lot::Mutex<Store>) -> String {
    match parse(line) {
        Line::Write(write) => {
            let old = store.lock().dispatch_mut(&write);
            write_reply(matches!(write, Write::Set(..)), old)
        }
        Line::Get(key) => read_reply(store.lock().dispatch(&key)),
        _ => "ERR commands (--mutex): SET key value | GET key | DEL key".into(),
    }
}

/// Serves one command line; the reply, without its newline.
async fn serve_line(line: &str, handle: &Handle<Store>, cluster: &Cluster<Store>) -> String {
    let reply = match parse(line) {
        Line::Write(write) => {
            let set = matches!(write, Write::Set(..));
            match handle.submit(write) {
                Ok(ticket) => ticket.await.map(|old| write_reply(set, old)),
                Err(error) => Err(error),
            }
        }
        // A linearizable read on this session's replica: it returns at once unless that
        // copy is behind the last write that completed.
        Line::Get(key) => handle.execute(key).map(read_reply),
        Line::Pause(replica) => cluster.faults().pause(replica).map(|()| "OK".into()),
        Line::Resume(replica) => cluster.faults().resume(replica).map(|()| "OK".into()),
        Line::Stats => Ok(cluster
            .stats()
            .iter()
            .map(|s| {
                format!(
                    "replica {} {:?} {:?} applied {} leader-changes {}",
                    s.replica,
                    s.role,
                    s.status,
                    s.slot_applied.get(),
                    s.leader_changes
                )
            })
            .collect::<Vec<_>>()
            .join(" | ")),
        Line::Bad(why) => return format!("ERR {why}"),
    };
    reply.unwrap_or_else(|error| format!("ERR {error}"))
}

/// One connection: one session, one command at a time.
async fn serve(stream: TcpStream, backend: Backend) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let handle = match &backend {
        Backend::Corum(cluster) => Some(cluster.handle()),
        Backend::Mutex(_) => None,
    };
    let (reader, mut writer) = stream.into_split();
    let mut lines = BufReader::new(reader).lines();
    while let Some(line) = lines.next_line().await? {
        let mut reply = match (&backend, &handle) {
            (Backend::Corum(cluster), Some(handle)) => serve_line(&line, handle, cluster).await,
            (Backend::Mutex(store), _) => serve_line_locked(&line, store),
            (Backend::Corum(_), None) => unreachable!("a corum connection has a handle"),
        };
        reply.push('\n');
        writer.write_all(reply.as_bytes()).await?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut addr = "127.0.0.1:7878".to_string();
    let mut replicas = 3;
    let mut mutex = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--mutex" {
            mutex = true;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = value,
            "--replicas" => replicas = value.parse()?,
            other => return Err(format!("unknown flag {other}; flags: --addr HOST:PORT --replicas N --mutex").into()),
        }
    }
    let backend = if mutex {
        Backend::Mutex(Arc::default())
    } else {
        Backend::Corum(Arc::new(Builder::new(Store::default()).replicas(replicas).build()?))
    };
    // Two executor threads: the replicas have threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(&addr).await?;
        let what = if mutex { "one Mutex".to_string() } else { format!("{replicas} replicas") };
        eprintln!("corum server: {what}, listening on {}", listener.local_addr()?);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, _) = accepted?;
                    let backend = backend.clone();
                    tokio::spawn(async move {
                        if let Err(error) = serve(stream, backend).await {
                            eprintln!("connection: {error}");
                        }
                    });
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!("corum server: shutting down");
        Ok::<_, std::io::Error>(())
    })?;
    drop(runtime);
    if let Backend::Corum(cluster) = backend {
        let cluster = Arc::try_unwrap(cluster).map_err(|_| "connections still open")?;
        let copies = cluster.shutdown()?;
        eprintln!("corum server: {} copies of {} keys each", copies.len(), copies[0].0.len());
    }
    Ok(())
}
