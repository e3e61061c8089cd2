//! Writes from one busy handle while many other handles that wrote once sit idle, as on a
//! server that opens one handle per connection: the leader's rounds should find the busy
//! handle's writes without looking at every idle one. Prints, per replica count and number
//! of idle handles, the busy handle's pipelined and one-at-a-time write rates and their
//! ratio to the same cluster with no idle handle.
//!
//! ```text
//! cargo run --release --example idle_handles
//! cargo run --release --example idle_handles -- --seconds 2 --idle 0,255
//! ```

use std::time::{Duration, Instant};

use corum::{Builder, Error};

mod common;
use common::{full_map, Kv, KEYS};

/// The board's lanes: one per handle that writes (the default).
const LANES: usize = 256;

/// Writes per second from one handle over `window`, 64 in flight (`pipelined`) or one at a
/// time, with `idle` other handles that each wrote once and stay open.
fn measure(replicas: usize, idle: usize, pipelined: bool, window: Duration) -> Result<f64, Error> {
    let object = full_map();
    let cluster = Builder::new(object).replicas(replicas).writing_handles(LANES).build()?;
    let idle_handles = (0..idle)
        .map(|index| {
            let handle = cluster.handle();
            handle.execute_mut((index as u64, 1)).map(|_| handle)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let handle = cluster.handle();
    let mut tickets = std::collections::VecDeque::with_capacity(64);
    let mut number = 0u64;
    let write = |number: &mut u64| {
        *number += 1;
        (*number % KEYS, *number)
    };
    // Warm up, then measure.
    let mut run = |length: Duration| -> Result<u64, Error> {
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < length {
            for _ in 0..256 {
                if pipelined {
                    if tickets.len() == 64 {
                        let ticket: corum::Ticket<Kv> = tickets.pop_front().expect("64 in flight");
                        ticket.wait()?;
                        done += 1;
                    }
                    tickets.push_back(handle.submit(write(&mut number))?);
                } else {
                    handle.execute_mut(write(&mut number))?;
                    done += 1;
                }
            }
        }
        for ticket in tickets.drain(..) {
            ticket.wait()?;
            done += 1;
        }
        Ok(done)
    };
    run(window / 4)?;
    let start = Instant::now();
    let done = run(window)?;
    let rate = done as f64 / start.elapsed().as_secs_f64();
    drop(handle);
    drop(idle_handles);
    cluster.shutdown()?;
    Ok(rate)
}

fn main() -> Result<(), Error> {
    let mut seconds = 1.0f64;
    let mut idle_counts = vec![0usize, 64, 255];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--seconds", Some(value)) => seconds = value.parse().expect("--seconds takes a number"),
            ("--idle", Some(value)) => {
                idle_counts = value.split(',').map(|count| count.parse().expect("--idle takes counts")).collect();
            }
            _ => {
                eprintln!("usage: idle_handles [--seconds S] [--idle 0,64,255]");
                std::process::exit(2);
            }
        }
    }
    let window = Duration::from_secs_f64(seconds);
    println!("{:>8} {:>6} {:>10} {:>14} {:>10}", "replicas", "idle", "mode", "writes/s", "vs 0 idle");
    for replicas in [1, 3] {
        for pipelined in [true, false] {
            let mode = if pipelined { "pipelined" } else { "sync" };
            let mut base = None;
            for &idle in &idle_counts {
                let rate = measure(replicas, idle, pipelined, window)?;
                let base = *base.get_or_insert(rate);
                println!("{replicas:>8} {idle:>6} {mode:>10} {rate:>14.0} {:>9.2}x", rate / base);
            }
        }
    }
    Ok(())
}
