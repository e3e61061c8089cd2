//! Heap allocations per write in the steady state, counted by a counting global allocator:
//! one client thread writing to a kv map, one write at a time or 64 in flight, on 1 and 3
//! replicas. Counts every allocation in the process (the replica threads' and the client's)
//! while the writes run, after a warm-up, and prints them per write.
//!
//! ```text
//! cargo run --release --example allocations
//! cargo run --release --example allocations -- --writes 200000
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use corum::{Builder, Error};

mod common;
use common::{full_map, KEYS};

/// The system allocator, counting allocations and bytes allocated.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, that is from the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc` is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes per write over `writes` writes, after as many to warm up.
fn measure(replicas: usize, pipelined: bool, writes: u64) -> Result<(f64, f64), Error> {
    let object = full_map();
    let cluster = Builder::new(object).replicas(replicas).build()?;
    let handle = cluster.handle();
    let mut tickets = Vec::with_capacity(64);
    let mut run = |writes: u64| -> Result<(), Error> {
        for number in 0..writes {
            let write = (number % KEYS, number);
            if pipelined {
                tickets.push(handle.submit(write)?);
                if tickets.len() == 64 {
                    for ticket in tickets.drain(..) {
                        ticket.wait()?;
                    }
                }
            } else {
                handle.execute_mut(write)?;
            }
        }
        for ticket in tickets.drain(..) {
            ticket.wait()?;
        }
        Ok(())
    };
    run(writes)?;
    let (allocations, bytes) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    run(writes)?;
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    let bytes = BYTES.load(Ordering::Relaxed) - bytes;
    drop(handle);
    cluster.shutdown()?;
    Ok((allocations as f64 / writes as f64, bytes as f64 / writes as f64))
}

fn main() -> Result<(), Error> {
    let mut writes = 100_000u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--writes", Some(value)) => writes = value.parse().expect("--writes takes a count"),
            _ => {
                eprintln!("usage: allocations [--writes N]");
                std::process::exit(2);
            }
        }
    }
    println!("| replicas | writes | allocations per write | bytes per write |");
    println!("| ---: | --- | ---: | ---: |");
    for replicas in [1, 3] {
        for pipelined in [false, true] {
            let (allocations, bytes) = measure(replicas, pipelined, writes)?;
            let how = if pipelined { "64 in flight" } else { "one at a time" };
            println!("| {replicas} | {how} | {allocations:.3} | {bytes:.1} |");
        }
    }
    Ok(())
}
