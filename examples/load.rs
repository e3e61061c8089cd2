//! Loads `examples/server.rs` over loopback from many connections and prints throughput
//! and latency percentiles, for the whole run and, when it pauses a replica mid-run, for
//! before, during and after the pause.
//!
//! ```text
//! cargo run --release --example server &                        # in one terminal
//! cargo run --release --example load                            # 64 connections, 10 s
//! cargo run --release --example load -- --pause 0 --pause-at 4 --pause-for 3
//! ```
//!
//! Flags: `--addr HOST:PORT` (127.0.0.1:7878), `--connections N` (64), `--seconds S` (10),
//! `--writes PERCENT` (50: `SET`, the rest `GET`), `--keys N` (10,000), and `--pause R`
//! with `--pause-at S` and `--pause-for S` to pause replica `R` through the server's
//! `PAUSE`/`RESUME` commands. Every reply is checked: an `ERR` reply or a dropped
//! connection fails the run.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Args {
    addr: String,
    connections: usize,
    seconds: f64,
    write_pct: u64,
    keys: u64,
    pause: Option<(usize, f64, f64)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:7878".into(),
        connections: 64,
        seconds: 10.0,
        write_pct: 50,
        keys: 10_000,
        pause: None,
    };
    let (mut pause, mut pause_at, mut pause_for) = (None, 3.0, 3.0);
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let value = iter.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |what: &str| value.parse::<f64>().map_err(|_| format!("{flag} takes {what}"));
        match flag.as_str() {
            "--addr" => args.addr = value.clone(),
            "--connections" => args.connections = number("a count")? as usize,
            "--seconds" => args.seconds = number("seconds")?,
            "--writes" => args.write_pct = number("a percentage")? as u64,
            "--keys" => args.keys = number("a count")?.max(1.0) as u64,
            "--pause" => pause = Some(number("a replica")? as usize),
            "--pause-at" => pause_at = number("seconds")?,
            "--pause-for" => pause_for = number("seconds")?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    args.pause = pause.map(|replica| (replica, pause_at, pause_for));
    Ok(args)
}

/// A connection: sends one command, reads its reply.
struct Connection {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(Self { lines: BufReader::new(reader).lines(), writer })
    }

    async fn call(&mut self, command: &str) -> Result<String, String> {
        self.writer.write_all(command.as_bytes()).await.map_err(|e| e.to_string())?;
        let reply =
            self.lines.next_line().await.map_err(|e| e.to_string())?.ok_or("the server closed the connection")?;
        if reply.starts_with("ERR") {
            return Err(format!("{} -> {reply}", command.trim_end()));
        }
        Ok(reply)
    }
}

/// Latencies per phase of the run: before, during and after a pause (or all in the first).
struct Phases {
    histograms: [Mutex<Histogram<u64>>; 3],
    /// 0, 1 or 2: the phase the run is in now.
    current: AtomicU64,
    bounds: Mutex<[Option<Instant>; 4]>,
}

/// A small xorshift generator, one per connection.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn client(
    id: usize,
    args: Arc<Args>,
    phases: Arc<Phases>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Result<(), String> {
    let mut connection = Connection::open(&args.addr).await.map_err(|e| format!("connect to {}: {e}", args.addr))?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("histogram");
    let mut local_phase = phases.current.load(Ordering::Relaxed) as usize;
    let mut command = String::new();
    while !stop.load(Ordering::Relaxed) {
        command.clear();
        let key = rng.below(args.keys);
        if rng.below(100) < args.write_pct {
            command.push_str(&format!("SET k{key} v{}\n", rng.below(1 << 30)));
        } else {
            command.push_str(&format!("GET k{key}\n"));
        }
        let started = Instant::now();
        connection.call(&command).await?;
        let phase = phases.current.load(Ordering::Relaxed) as usize;
        if phase != local_phase {
            phases.histograms[local_phase].lock().unwrap().add(&local).expect("same bounds");
            local.reset();
            local_phase = phase;
        }
        local.record(started.elapsed().as_nanos() as u64).expect("in range");
        done.fetch_add(1, Ordering::Relaxed);
    }
    phases.histograms[local_phase].lock().unwrap().add(&local).expect("same bounds");
    Ok(())
}

fn micros(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Arc::new(parse_args()?);
    let histogram = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram"));
    let phases = Arc::new(Phases {
        histograms: [histogram(), histogram(), histogram()],
        current: AtomicU64::new(0),
        bounds: Mutex::new([None; 4]),
    });
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    // The admin connection for PAUSE/RESUME, opened first, waiting up to 10 s for a server
    // that is still starting.
    let waiting = Instant::now();
    let mut admin = loop {
        match Connection::open(&args.addr).await {
            Ok(connection) => break connection,
            Err(error) if waiting.elapsed() > Duration::from_secs(10) => {
                return Err(format!("connect to {}: {error} (is the server running?)", args.addr).into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let started = Instant::now();
    phases.bounds.lock().unwrap()[0] = Some(started);
    let clients: Vec<_> = (0..args.connections)
        .map(|id| {
            tokio::spawn(client(id, Arc::clone(&args), Arc::clone(&phases), Arc::clone(&stop), Arc::clone(&done)))
        })
        .collect();
    let bar = ProgressBar::new((args.seconds * 10.0) as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {elapsed}/{duration} {msg}").expect("template"));
    let mut last = (Instant::now(), 0u64);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let elapsed = started.elapsed().as_secs_f64();
        if let Some((replica, at, length)) = args.pause {
            let phase = phases.current.load(Ordering::Relaxed);
            if phase == 0 && elapsed >= at {
                admin.call(&format!("PAUSE {replica}\n")).await?;
                phases.bounds.lock().unwrap()[1] = Some(Instant::now());
                phases.current.store(1, Ordering::Relaxed);
                bar.println(format!("{elapsed:.1} s: replica {replica} paused"));
            } else if phase == 1 && elapsed >= at + length {
                admin.call(&format!("RESUME {replica}\n")).await?;
                phases.bounds.lock().unwrap()[2] = Some(Instant::now());
                phases.current.store(2, Ordering::Relaxed);
                bar.println(format!("{elapsed:.1} s: replica {replica} resumed"));
            }
        }
        let (now, count) = (Instant::now(), done.load(Ordering::Relaxed));
        let rate = (count - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, count);
        bar.set_position((elapsed * 10.0) as u64);
        bar.set_message(format!("{:.0} ops/s", rate));
        if elapsed >= args.seconds {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await??;
    }
    bar.finish_and_clear();
    phases.bounds.lock().unwrap()[3] = Some(Instant::now());
    if phases.current.load(Ordering::Relaxed) == 1 {
        // The run ended inside the pause: resume the replica for the next run.
        admin.call(&format!("RESUME {}\n", args.pause.expect("paused").0)).await?;
    }

    let total = done.load(Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{} connections, {} % writes over {} keys, {seconds:.1} s: {total} operations, {:.0} ops/s",
        args.connections,
        args.write_pct,
        args.keys,
        total as f64 / seconds
    );
    println!("| phase | operations | ops/s | p50 us | p99 us | p99.9 us | max us |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let bounds = *phases.bounds.lock().unwrap();
    let names = if args.pause.is_some() {
        ["before the pause", "replica paused", "after resuming"]
    } else {
        ["whole run", "", ""]
    };
    for (phase, name) in names.iter().enumerate() {
        let (Some(from), Some(to)) = (bounds[phase], bounds[phase + 1..].iter().flatten().next()) else { continue };
        let histogram = phases.histograms[phase].lock().unwrap();
        if histogram.is_empty() {
            continue;
        }
        let length = to.duration_since(from).as_secs_f64();
        println!(
            "| {name} | {} | {:.0} | {} | {} | {} | {} |",
            histogram.len(),
            histogram.len() as f64 / length,
            micros(histogram.value_at_quantile(0.5)),
            micros(histogram.value_at_quantile(0.99)),
            micros(histogram.value_at_quantile(0.999)),
            micros(histogram.max()),
        );
    }
    // A replicated server reports its replicas (the `--mutex` baseline has none).
    if let Ok(stats) = admin.call("STATS\n").await {
        println!("server: {}", stats.replace(" | ", "\n        "));
    }
    Ok(())
}
