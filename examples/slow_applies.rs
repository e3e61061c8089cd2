//! Reads while writes are slow to apply: an object whose every write takes `--apply-us`
//! microseconds (a large value to copy, an index to update), one thread writing as fast as
//! it can and one reading, on 3 replicas. A read whose copy is being applied to is served by
//! another copy that has applied everything the read must see, rather than wait for the
//! apply; this prints what the reader got: reads per second and latency percentiles.
//!
//! ```text
//! cargo run --release --example slow_applies
//! cargo run --release --example slow_applies -- --apply-us 50 --seconds 3
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use corum::{Builder, Dispatch, Error};
use hdrhistogram::Histogram;

/// A counter whose writes each spin for a set time.
#[derive(Clone, Debug)]
struct Slow {
    count: u64,
    apply: Duration,
}

impl Dispatch for Slow {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;

    fn dispatch(&self, _: &()) -> u64 {
        self.count
    }

    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        let started = Instant::now();
        while started.elapsed() < self.apply {
            std::hint::spin_loop();
        }
        self.count += add;
        self.count
    }
}

fn main() -> Result<(), Error> {
    let mut apply_us = 20u64;
    let mut seconds = 2.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--apply-us" => apply_us = value.parse().expect("--apply-us takes microseconds"),
            "--seconds" => seconds = value.parse().expect("--seconds takes a number"),
            _ => {
                eprintln!("usage: slow_applies [--apply-us N] [--seconds S]");
                std::process::exit(2);
            }
        }
    }
    let object = Slow { count: 0, apply: Duration::from_micros(apply_us) };
    let cluster = Builder::new(object).replicas(3).pin(false).build()?;
    let (writer, reader) = (cluster.handle(), cluster.handle());
    writer.execute_mut(1)?;
    let stop = AtomicBool::new(false);
    let (writes, latency) = std::thread::scope(|scope| {
        let writing = scope.spawn(|| -> Result<u64, Error> {
            let mut writes = 0;
            while !stop.load(Ordering::Relaxed) {
                writer.execute_mut(1)?;
                writes += 1;
            }
            Ok(writes)
        });
        let reading = scope.spawn(|| -> Result<Histogram<u64>, Error> {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("bounds");
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                std::hint::black_box(reader.execute(())?);
                latency.saturating_record((started.elapsed().as_nanos() as u64).max(1));
            }
            Ok(latency)
        });
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        (writing.join().expect("writer"), reading.join().expect("reader"))
    });
    let (writes, latency) = (writes?, latency?);
    let us = |quantile: f64| latency.value_at_quantile(quantile) as f64 / 1000.0;
    println!(
        "apply {apply_us} us: writes/s {:.0}, reads/s {:.0}, read p50 {:.2} us, p99 {:.2} us, p99.9 {:.2} us, max {:.2} us",
        writes as f64 / seconds,
        latency.len() as f64 / seconds,
        us(0.5),
        us(0.99),
        us(0.999),
        latency.max() as f64 / 1000.0
    );
    drop((writer, reader));
    cluster.shutdown()?;
    Ok(())
}
