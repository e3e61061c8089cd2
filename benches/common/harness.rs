//! The one measurement loop every benchmark and example runs: client threads against a
//! budget (a time, or criterion's operation count), each timing a sample of its operations
//! (one in [`SAMPLE`]) into HDR histograms, all operations and writes on their own.
//!
//! Only a sample is timed so that a throughput measures the system, not the clock: on
//! machines whose clock read costs tens of nanoseconds, timing every operation took 12 to
//! 16 % of a client thread, for every system, and narrowed the ratios between them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::objects::{Read, Workload, Write};

/// One measurement's result.
pub struct Measurement {
    /// Operations completed.
    pub ops: u64,
    pub elapsed: Duration,
    /// The latency of a sample of the operations (one in [`SAMPLE`]).
    pub latency: Histogram<u64>,
    /// The latency of the writes among them.
    pub write_latency: Histogram<u64>,
    /// Writes completed.
    pub writes: u64,
    /// For corum: whether every live replica's copy was the same after shutdown.
    pub copies_agree: Option<bool>,
    /// Context switches of the whole process (every thread: clients, replicas, helpers)
    /// while the clients ran, voluntary and involuntary; `None` where `getrusage` is not
    /// available.
    pub context_switches: Option<u64>,
}

impl Measurement {
    /// Operations per second.
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Context switches per completed write, where both are known.
    pub fn switches_per_write(&self) -> Option<f64> {
        let switches = self.context_switches?;
        (self.writes > 0).then(|| switches as f64 / self.writes as f64)
    }
}

/// The process's context switches so far, voluntary and involuntary, over every thread it
/// ran (finished ones included).
#[cfg(unix)]
pub fn context_switches() -> Option<u64> {
    // SAFETY: `rusage` is plain old data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `rusage` owned by this frame, as `getrusage`
    // requires; RUSAGE_SELF is a valid `who`.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    (status == 0).then(|| (usage.ru_nvcsw + usage.ru_nivcsw) as u64)
}

#[cfg(not(unix))]
pub fn context_switches() -> Option<u64> {
    None
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

/// One operation in this many is timed ([`Latencies::start`]).
pub const SAMPLE: u32 = 16;

/// One client thread's latencies, and its count of writes.
pub struct Latencies {
    pub all: Histogram<u64>,
    pub writes: Histogram<u64>,
    pub written: u64,
    /// Operations to start before the next timed one.
    countdown: u32,
}

impl Latencies {
    fn new() -> Self {
        Self { all: histogram(), writes: histogram(), written: 0, countdown: 0 }
    }

    /// An operation starts: its start time if it is one of the sample, else `None`.
    #[inline]
    pub fn start(&mut self) -> Option<Instant> {
        if self.countdown == 0 {
            self.countdown = SAMPLE - 1;
            Some(Instant::now())
        } else {
            self.countdown -= 1;
            None
        }
    }

    /// An operation that [`Latencies::start`]ed with `since` has ended; `write` says
    /// whether it was a write.
    #[inline]
    pub fn record(&mut self, since: Option<Instant>, write: bool) {
        self.written += u64::from(write);
        let Some(since) = since else { return };
        let nanos = nanos_since(since);
        self.all.saturating_record(nanos);
        if write {
            self.writes.saturating_record(nanos);
        }
    }
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Nanoseconds since `since`, at least 1 (the histograms' lowest value).
fn nanos_since(since: Instant) -> u64 {
    (since.elapsed().as_nanos() as u64).max(1)
}

pub fn record(latency: &mut Histogram<u64>, since: Instant) {
    latency.saturating_record(nanos_since(since));
}

/// Runs `body(thread, share, latencies) -> ops` on `threads` threads within `budget`.
pub fn measure(
    threads: usize,
    budget: Budget,
    body: impl Fn(usize, &Share, &mut Latencies) -> u64 + Sync,
) -> Measurement {
    let stop = AtomicBool::new(false);
    let switches_before = context_switches();
    let started = Instant::now();
    let (ops, latencies) = std::thread::scope(|scope| {
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
                    let mut latencies = Latencies::new();
                    let ops = body(thread, &share, &mut latencies);
                    (ops, latencies)
                })
            })
            .collect();
        if let Budget::Time(time) = budget {
            std::thread::sleep(time);
        }
        stop.store(true, Ordering::Relaxed);
        let mut total = (0, Latencies::new());
        for worker in workers {
            let (ops, latencies) = worker.join().expect("worker");
            total.0 += ops;
            total.1.all.add(latencies.all).expect("same bounds");
            total.1.writes.add(latencies.writes).expect("same bounds");
            total.1.written += latencies.written;
        }
        total
    });
    let elapsed = started.elapsed();
    let context_switches = switches_before.zip(context_switches()).map(|(before, after)| after.saturating_sub(before));
    Measurement {
        ops,
        elapsed,
        latency: latencies.all,
        write_latency: latencies.writes,
        writes: latencies.written,
        copies_agree: None,
        context_switches,
    }
}

/// A client loop of synchronous operations drawn from `workload`: `apply(thread, op)` runs
/// one (timed if it is one of the sample).
pub fn closed_loop(
    workload: Workload,
    threads: usize,
    budget: Budget,
    apply: impl Fn(usize, Result<Write, Read>) -> u64 + Sync,
) -> Measurement {
    measure(threads, budget, |thread, share, latencies| {
        let mut rng = thread as u64 + 1;
        let mut ops = 0;
        while share.take(ops, 1) > 0 {
            let op = workload.op(&mut rng);
            let write = op.is_ok();
            let begin = latencies.start();
            std::hint::black_box(apply(thread, op));
            latencies.record(begin, write);
            ops += 1;
        }
        ops
    })
}
