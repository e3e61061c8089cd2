//! The one import point for synchronisation primitives: std and parking_lot in normal
//! builds, loom's model-checked versions under `--cfg corum_loom`.
//!
//! Every atomic, cell, lock, condition variable, `Arc` and thread that corum's concurrent
//! code touches comes from here, so that building with `RUSTFLAGS="--cfg corum_loom"`
//! switches all of them at once (and no other crate's, which a plain `--cfg loom` would).
//! The API is the small common subset both sides support: locks that do not poison, a
//! condition variable whose timed wait is an untimed wait under loom (loom has no clock),
//! `UnsafeCell` accessed through `with`/`with_mut` closures as loom requires, and the clock
//! ([`now`]), which stands still under loom.

#[cfg(not(corum_loom))]
mod imp {
    pub(crate) use std::sync::atomic;
    pub(crate) use std::sync::Arc;
    pub(crate) use std::thread;

    /// A mutual-exclusion lock that does not poison.
    pub(crate) type Mutex<T> = parking_lot::Mutex<T>;
    /// The guard of [`Mutex`].
    pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;

    /// A condition variable over [`Mutex`].
    #[derive(Debug, Default)]
    pub(crate) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(parking_lot::Condvar::new())
        }

        /// Waits for a notification or until `timeout` passes.
        pub(crate) fn wait_for<T>(&self, guard: &mut MutexGuard<'_, T>, timeout: std::time::Duration) {
            let _ = self.0.wait_for(guard, timeout);
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// Lets the scheduler run another thread.
    pub(crate) fn yield_now() {
        std::thread::yield_now();
    }

    /// A spin-loop hint; a real spin in normal builds.
    pub(crate) fn spin_loop() {
        std::hint::spin_loop();
    }

    /// An `UnsafeCell` with loom's closure-based access API.
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(std::cell::UnsafeCell::new(value))
        }

        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }

        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }

        /// A pointer for mutable access as long as it lives (loom tracks the access for
        /// that long).
        pub(crate) fn get_mut(&self) -> MutPtr<T> {
            MutPtr(self.0.get())
        }
    }

    /// [`UnsafeCell::get_mut`]'s pointer, as loom's `MutPtr`.
    #[derive(Debug)]
    pub(crate) struct MutPtr<T>(*mut T);

    impl<T> MutPtr<T> {
        /// # Safety
        /// As dereferencing the raw pointer: nothing else accesses the value meanwhile.
        #[allow(clippy::mut_from_ref)]
        pub(crate) unsafe fn deref(&self) -> &mut T {
            // SAFETY: the caller's promise.
            unsafe { &mut *self.0 }
        }
    }
}

#[cfg(corum_loom)]
mod imp {
    pub(crate) use loom::cell::{MutPtr, UnsafeCell};
    pub(crate) use loom::sync::atomic;
    pub(crate) use loom::sync::Arc;
    pub(crate) use loom::thread;

    /// loom's mutex with parking_lot's non-poisoning `lock`.
    #[derive(Debug)]
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of [`Mutex`].
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("corum never panics while holding a lock under loom")
        }
    }

    /// loom's condition variable; loom has no clock, so a timed wait waits for a notification.
    #[derive(Debug)]
    pub(crate) struct Condvar(loom::sync::Condvar);

    impl Condvar {
        pub(crate) fn new() -> Self {
            Self(loom::sync::Condvar::new())
        }

        pub(crate) fn wait_for<'a, T>(&self, guard: &mut MutexGuard<'a, T>, _timeout: std::time::Duration) {
            // loom's `wait` takes the guard by value; swap it through a temporary owner.
            // SAFETY: `guard` is valid and exclusively borrowed. We move it out, hand it to
            // `wait`, which returns a guard for the same mutex, and write that back before
            // anyone can observe the hole. `wait` does not unwind under corum's loom tests
            // (a poisoned mutex is impossible: corum code never panics while holding one), and
            // if it did, loom aborts the model run rather than continuing with the hole.
            unsafe {
                let owned = std::ptr::read(guard);
                let back = self.0.wait(owned).expect("corum never panics while holding a lock under loom");
                std::ptr::write(guard, back);
            }
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    /// Under loom a spin or a yield must hand control to the model's scheduler.
    pub(crate) fn yield_now() {
        loom::thread::yield_now();
    }

    /// Under loom a spin hint is a yield, so spin loops stay finite in the model.
    pub(crate) fn spin_loop() {
        loom::thread::yield_now();
    }
}

pub(crate) use imp::*;

/// The coarse monotonic clock's resolution (a kernel timer tick, 1 to 10 ms): the clock
/// [`coarse_now`] reads, which on Linux counts the nanoseconds of the clock
/// `std::time::Instant` reads (`CLOCK_MONOTONIC`) as of the last tick. Reading it costs
/// about 3 ns against about 24 ns for `Instant::now` here (docs/BENCHMARKS.md). `None`
/// elsewhere and under loom.
#[cfg(all(target_os = "linux", not(corum_loom)))]
pub(crate) fn coarse_resolution() -> Option<u64> {
    read_clock(libc::clock_getres, libc::CLOCK_MONOTONIC_COARSE)
}

#[cfg(not(all(target_os = "linux", not(corum_loom))))]
pub(crate) fn coarse_resolution() -> Option<u64> {
    None
}

/// The coarse clock's nanoseconds now (see [`coarse_resolution`]), for a caller that
/// checked it exists.
#[cfg(all(target_os = "linux", not(corum_loom)))]
#[inline]
pub(crate) fn coarse_now() -> u64 {
    read_clock(libc::clock_gettime, libc::CLOCK_MONOTONIC_COARSE).unwrap_or(0)
}

#[cfg(not(all(target_os = "linux", not(corum_loom))))]
pub(crate) fn coarse_now() -> u64 {
    0
}

/// `CLOCK_MONOTONIC`'s nanoseconds now, precisely: where the coarse clock counts from.
#[cfg(all(target_os = "linux", not(corum_loom)))]
pub(crate) fn monotonic_now() -> u64 {
    read_clock(libc::clock_gettime, libc::CLOCK_MONOTONIC).unwrap_or(0)
}

#[cfg(not(all(target_os = "linux", not(corum_loom))))]
pub(crate) fn monotonic_now() -> u64 {
    0
}

/// Calls `read` (`clock_gettime` or `clock_getres`) on `clock`, in nanoseconds.
#[cfg(all(target_os = "linux", not(corum_loom)))]
#[inline]
fn read_clock(
    read: unsafe extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int,
    clock: libc::clockid_t,
) -> Option<u64> {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: both functions take a clock id and a valid, writable `timespec`, which
    // `time` is for the call's duration.
    let status = unsafe { read(clock, &mut time) };
    (status == 0).then(|| (time.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(time.tv_nsec as u64))
}

/// The current time. Under loom time stands still (loom explores schedules, not clocks),
/// so deadlines never pass and ticks come only when first due.
pub(crate) fn now() -> std::time::Instant {
    #[cfg(corum_loom)]
    {
        static FROZEN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        *FROZEN.get_or_init(std::time::Instant::now)
    }
    #[cfg(not(corum_loom))]
    {
        std::time::Instant::now()
    }
}
