//! A replica's copy of the object behind reader indicators: readers of one copy write
//! only their own cache line, and the one thread that applies writes to the copy waits
//! until the readers have drained.
//!
//! A reader-writer lock whose readers share one lock word bounces that word between the
//! readers' cores on every read, which halves what two readers of one copy get. Here each
//! reader raises and lowers an indicator of its own, and reads a writer flag that changes
//! only when a writer comes. Which indicator is the caller's [`Reader`] (`reader.rs`): a
//! thread's *own* indicator, which no other thread writes, is raised with a store and
//! lowered with a plain store; a *shared* one (picked by an index, say a client id; readers
//! that pick the same one share it correctly, only less cheaply) is incremented and
//! decremented. The writer drains both kinds.
//!
//! # Ordering
//! A reader raises its indicator, then looks at the flag; a writer raises the flag, then
//! looks at every indicator. Each side's store followed by its load of the other side's
//! word is the store-buffering pattern, which Acquire and Release do not order. Making the
//! four accesses `SeqCst` does (an own indicator's raise is a `SeqCst` store): they fall
//! into one total order consistent with each thread's program order, so whichever look
//! comes later in it sees the other side's raise. That is what normal builds do; on x86 the
//! raise is a locked instruction and the look a plain load, so a read pays no fence. loom
//! models `SeqCst` fences but treats `SeqCst` accesses as Acquire/Release, so under loom
//! both sides put a `SeqCst` fence between the raise (Acquire, or Relaxed for a store) and
//! an Acquire look instead, the same guarantee by the fences' total order (`FENCES`); the
//! loom suite checks that form. Either way the reader sees the flag (and steps back,
//! lowering its indicator, until the writer is done) or the writer sees the indicator (and
//! waits for it to drop to zero), or both. The reader's lowering (a decrement, or a store
//! of an own indicator's previous depth) is a Release and the writer's load of the
//! indicator an Acquire, so what a reader read happens before what the writer writes; the
//! writer clears the flag with a Release and the reader loads it with an Acquire, so what a
//! writer wrote happens before what a later reader reads. The planted bug
//! `copy-reader-no-fence` drops the reader's fence (in the loom form), and
//! `copy-own-lowered-relaxed` lowers an own indicator with a Relaxed store; the loom suite
//! catches the data race each opens.
//!
//! Writers take the flag with a compare-exchange, so two writers exclude each other too
//! (in the runtime only the holder of a replica's run token writes its copy). A reader that
//! finds the flag set waits for it to clear before it tries again (`read`), or goes
//! elsewhere (`try_read`), so steady reads cannot starve the writer; the writer holds the
//! flag for one batch, so it cannot starve readers either.
//!
//! # Waiting
//! A reader (or a second writer) waiting for the flag to clear spins briefly, then parks on
//! the event count `cleared`, which the writer notifies after it clears the flag (the event
//! count's fences make sure one of the two sees the other, see `event.rs`). The writer,
//! waiting for readers to leave, spins briefly, then yields: a read is short, and readers
//! do not wake anyone when they leave, so that a read costs no more than raising and
//! lowering its indicator and looking at the flag. Under loom nothing spins, so that no two
//! threads spin at once, which loom cannot explore to an end.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use super::reader::{Kind, Reader};
use crate::plant::planted;
use crate::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use crate::sync::{spin_loop, yield_now, UnsafeCell};
use crate::transport::event::EventCount;

/// Spins before a waiting thread parks or starts yielding its core.
const SPINS: u32 = if cfg!(corum_loom) { 0 } else { 64 };

/// Spins [`CopyLock::try_write`] waits for readers to leave before it gives up: a few
/// microseconds, far longer than a read of a small object, far shorter than a reader
/// descheduled inside its read.
const TRY_SPINS: u32 = if cfg!(corum_loom) { 0 } else { 1024 };

/// Whether each side's raise and look are ordered by a `SeqCst` fence between them (under
/// loom) or by being `SeqCst` accesses themselves (see the module docs, "Ordering").
const FENCES: bool = cfg!(corum_loom);
/// The ordering of each side's raise (the reader's increment, the writer's flag) and of its
/// look at the other side's word.
const SIDE: Ordering = if FENCES { Ordering::Acquire } else { Ordering::SeqCst };
/// The ordering of an own indicator's raise, a store (which cannot be Acquire).
const OWN_RAISE: Ordering = if FENCES { Ordering::Relaxed } else { Ordering::SeqCst };
/// The ordering of an own indicator's lowering; `Relaxed` only in the loom suite's planted
/// bug.
const OWN_LOWER: Ordering = if planted!("copy-own-lowered-relaxed") { Ordering::Relaxed } else { Ordering::Release };

/// How long one park lasts at most; only a notification ends a park under loom.
const PARK: Duration = Duration::from_secs(1);

/// See the module docs.
pub struct CopyLock<T> {
    /// Set while a writer writes (or waits for the readers to drain).
    writer: CachePadded<AtomicBool>,
    /// Readers in the value now, per shared indicator; a power of two of them.
    readers: Box<[CachePadded<AtomicUsize>]>,
    /// Own indicators, by thread number: how deep its one thread is in the value (reads
    /// nest when a read reads again).
    own: Box<[CachePadded<AtomicUsize>]>,
    /// Threads waiting for the writer flag to clear park here.
    cleared: EventCount,
    value: UnsafeCell<T>,
}

// SAFETY: moving the lock moves the value, which no reference outlives.
unsafe impl<T: Send> Send for CopyLock<T> {}
// SAFETY: the lock hands `&T` to readers on any thread at once (so `T: Sync`) and `&mut T`
// to one writer at a time on any thread (so `T: Send`); the protocol in the module docs
// keeps `&mut T` exclusive of every `&T`.
unsafe impl<T: Send + Sync> Sync for CopyLock<T> {}

impl<T> fmt::Debug for CopyLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a diagnostic snapshot.
        f.debug_struct("CopyLock")
            .field("writer", &self.writer.load(Ordering::Relaxed))
            .field("indicators", &self.readers.len())
            .field("own", &self.own.len())
            .finish_non_exhaustive()
    }
}

impl<T> CopyLock<T> {
    /// `value` behind `indicators` shared reader indicators (rounded up to a power of two,
    /// at least 1) and as many own ones: about as many as threads that read it at once.
    pub fn new(value: T, indicators: usize) -> Self {
        let indicators = indicators.max(1).next_power_of_two();
        let zeros = || (0..indicators).map(|_| CachePadded::new(AtomicUsize::new(0))).collect();
        Self {
            writer: CachePadded::new(AtomicBool::new(false)),
            readers: zeros(),
            own: zeros(),
            cleared: EventCount::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Runs `f` on the value as `reader`, concurrently with other readers, never with a
    /// writer.
    pub fn read<R>(&self, reader: Reader, f: impl FnOnce(&T) -> R) -> R {
        self.read_or_else(reader, f, || None)
    }

    /// [`CopyLock::read`] without waiting: `None` if a writer is in or coming (the caller
    /// may read elsewhere rather than wait for it).
    pub fn try_read<R>(&self, reader: Reader, f: impl FnOnce(&T) -> R) -> Option<R> {
        let indicator = self.indicator(reader);
        self.enter(indicator).then(|| self.read_entered(indicator, f))
    }

    /// [`CopyLock::read`], except that a reader finding a writer in or coming first asks
    /// `busy` for the result elsewhere, and waits only if it has none. (One call rather
    /// than `try_read` and then `read`, so that the common case returns `f`'s result
    /// directly rather than through an `Option`, which cost a read of a small object a
    /// tenth of its time.)
    #[inline]
    pub fn read_or_else<R>(&self, reader: Reader, f: impl FnOnce(&T) -> R, busy: impl FnOnce() -> Option<R>) -> R {
        let indicator = self.indicator(reader);
        if !self.enter(indicator) {
            if let Some(elsewhere) = busy() {
                return elsewhere;
            }
            while !self.enter(indicator) {
                self.wait_cleared();
            }
        }
        self.read_entered(indicator, f)
    }

    /// The indicator `reader` raises: its own if the copy has one that high, else a shared
    /// one.
    #[inline]
    fn indicator(&self, reader: Reader) -> Indicator<'_> {
        match reader.0 {
            Kind::Own(number) if number < self.own.len() => Indicator::Own(&self.own[number]),
            Kind::Own(number) | Kind::Shared(number) => {
                Indicator::Shared(&self.readers[number & (self.readers.len() - 1)])
            }
        }
    }

    /// Raises `indicator` and looks at the writer flag: true if no writer had it (the
    /// reader is in), false if one had (the indicator is lowered again: step back so that
    /// the writer can go on).
    #[inline]
    fn enter(&self, indicator: Indicator<'_>) -> bool {
        // `SeqCst` with the look below (or the fence between them, under loom) orders it
        // before the look; the lowering (Release) publishes what this reader did.
        match indicator {
            Indicator::Shared(count) => {
                count.fetch_add(1, SIDE);
            }
            Indicator::Own(depth) => {
                // Relaxed: only this thread writes it (`reader.rs`).
                depth.store(depth.load(Ordering::Relaxed) + 1, OWN_RAISE);
            }
        }
        if FENCES && !planted!("copy-reader-no-fence") {
            fence(Ordering::SeqCst);
        }
        // Acquire (at least) pairs with the writer's Release clearing the flag.
        if !self.writer.load(SIDE) {
            return true;
        }
        indicator.lower();
        false
    }

    /// Runs `f` on the value for a reader that [`CopyLock::enter`]ed on `indicator`, and
    /// lowers it.
    #[inline(always)]
    fn read_entered<R>(&self, indicator: Indicator<'_>, f: impl FnOnce(&T) -> R) -> R {
        // Leaves the indicator even if `f` unwinds.
        let _leave = Leave(indicator);
        // SAFETY: our indicator is raised (`enter`) and no writer had the flag when we
        // looked after raising it (module docs, "Ordering"): a writer that sets the flag
        // from now on waits for the indicator to drop before it touches the value, and the
        // last writer's accesses happen before ours (its Release clear of the flag, our
        // Acquire load). So the value is only read while we are here.
        self.value.with(|value| f(unsafe { &*value }))
    }

    /// Runs `f` on the value as its only accessor: waits for any other writer, then for
    /// the readers in it to leave.
    pub fn write<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // Acquire (at least) pairs with the previous writer's Release clear.
        while self.writer.compare_exchange(false, true, SIDE, Ordering::Relaxed).is_err() {
            self.wait_cleared();
        }
        // Clears the flag and wakes waiters even if `f` unwinds or a wait below does.
        let _release = Release(self);
        self.drain(None);
        // SAFETY: we hold the flag (no other writer), and every reader either left before
        // our load of its indicator saw zero or will see the flag and step back before it
        // reads (see `read`), so nothing else reaches the value until we clear the flag.
        self.value.with_mut(|value| f(unsafe { &mut *value }))
    }

    /// [`CopyLock::write`] for a writer with other work to do: `None`, without running `f`,
    /// if another writer has the flag or a reader is still in the value after a short
    /// spin (one descheduled inside its read, say). Readers arriving while it spins step
    /// back (the flag is raised), so steady short reads cannot keep it out; a reader that
    /// stays in does, and the caller tries again later instead of waiting for it.
    pub fn try_write<R>(&self, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        // Acquire (at least) pairs with the previous writer's Release clear.
        if self.writer.compare_exchange(false, true, SIDE, Ordering::Relaxed).is_err() {
            return None;
        }
        // Clears the flag and wakes waiters, whether it wrote or gave up.
        let _release = Release(self);
        if !self.drain(Some(TRY_SPINS)) && !planted!("copy-try-write-ignores-readers") {
            return None;
        }
        // SAFETY: as in `write`: we hold the flag and saw every indicator at zero.
        Some(self.value.with_mut(|value| f(unsafe { &mut *value })))
    }

    /// For a writer holding the flag: waits until every reader indicator is zero, spinning
    /// then yielding, or, with `patience`, for at most that many spins. Returns whether
    /// they all were.
    fn drain(&self, patience: Option<u32>) -> bool {
        if FENCES {
            fence(Ordering::SeqCst);
        }
        let mut waited = 0;
        for indicator in self.readers.iter().chain(self.own.iter()) {
            // Acquire (at least) pairs with each reader's Release decrement: what it read
            // happens before what we write.
            while indicator.load(SIDE) != 0 {
                if patience.is_some_and(|patience| waited >= patience) {
                    return false;
                }
                if waited < SPINS.max(patience.unwrap_or(0)) {
                    waited += 1;
                    spin_loop();
                } else {
                    yield_now();
                }
            }
        }
        true
    }

    /// Returns once the writer flag was seen clear: spins, then parks until a writer
    /// clearing it wakes this thread.
    fn wait_cleared(&self) {
        for _ in 0..SPINS {
            if !self.writer.load(Ordering::Relaxed) {
                return;
            }
            spin_loop();
        }
        loop {
            let key = self.cleared.prepare_wait();
            // Relaxed: the fence in `prepare_wait` orders this load after the announcement,
            // and the caller loads the flag again with Acquire before it relies on it.
            if !self.writer.load(Ordering::Relaxed) {
                self.cleared.cancel_wait(key);
                return;
            }
            self.cleared.wait(key, PARK);
        }
    }
}

/// The indicator a reader raised (see [`Reader`]).
#[derive(Clone, Copy)]
enum Indicator<'a> {
    /// The calling thread's own: its depth, which only this thread writes.
    Own(&'a AtomicUsize),
    /// A count shared with other readers.
    Shared(&'a AtomicUsize),
}

impl Indicator<'_> {
    /// Lowers the indicator this reader raised.
    #[inline(always)]
    fn lower(self) {
        // Release: what the reader read happens before what the next writer writes.
        match self {
            Indicator::Shared(count) => {
                count.fetch_sub(1, Ordering::Release);
            }
            // Relaxed load: only this thread writes it. A store, not a read-modify-write:
            // the point of an own indicator.
            Indicator::Own(depth) => depth.store(depth.load(Ordering::Relaxed) - 1, OWN_LOWER),
        }
    }
}

/// Lowers a reader's indicator when dropped.
struct Leave<'a>(Indicator<'a>);

impl Drop for Leave<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.0.lower();
    }
}

/// Clears the writer flag and wakes the threads waiting for that, when dropped.
struct Release<'a, T>(&'a CopyLock<T>);

impl<T> Drop for Release<'_, T> {
    fn drop(&mut self) {
        // Release: what the writer wrote happens before what later readers and writers do.
        self.0.writer.store(false, Ordering::Release);
        self.0.cleared.notify();
    }
}

#[cfg(all(test, not(corum_loom)))]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::{CopyLock, Reader};

    /// Readers never see a half-written pair, and every write lands: two readers on their
    /// threads' own indicators (or shared ones, where their numbers are past the copy's),
    /// two sharing one shared indicator.
    #[test]
    fn readers_see_whole_writes_and_writes_all_land() {
        let lock = Arc::new(CopyLock::new((0u64, 0u64), 2));
        let done = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|reader| {
                let (lock, done) = (Arc::clone(&lock), Arc::clone(&done));
                std::thread::spawn(move || {
                    let reader = if reader < 2 { Reader::this_thread(reader) } else { Reader::shared(1) };
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) || reads == 0 {
                        let (a, b) = lock.read(reader, |&pair| pair);
                        assert_eq!(a, b, "a reader saw a half-written pair");
                        reads += 1;
                    }
                })
            })
            .collect();
        for _ in 0..20_000 {
            lock.write(|pair| {
                pair.0 += 1;
                std::hint::black_box(&*pair);
                pair.1 += 1;
            });
        }
        done.store(true, Ordering::Relaxed);
        for reader in readers {
            reader.join().expect("reader");
        }
        assert_eq!(lock.read(Reader::shared(0), |&pair| pair), (20_000, 20_000));
    }

    /// A reader or writer that panics leaves the lock usable.
    #[test]
    fn a_panic_inside_leaves_the_lock_free() {
        let lock = CopyLock::new(1u64, 1);
        for reader in [Reader::shared(0), Reader::this_thread(0)] {
            let read =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lock.read(reader, |_| panic!("in a read"))));
            assert!(read.is_err());
        }
        let write = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lock.write(|_| panic!("in a write"))));
        assert!(write.is_err());
        lock.write(|value| *value += 1);
        assert_eq!(lock.read(Reader::shared(7), |&value| value), 2);
    }

    /// A read on a thread's own indicator that reads the copy again inside: the indicator
    /// counts both, and a writer gets in once both left.
    #[test]
    fn nested_reads_on_an_own_indicator_leave_it_clear() {
        let lock = CopyLock::new(1u64, 4);
        let reader = Reader::this_thread(0);
        let inner = lock.read(reader, |&outer| outer + lock.read(reader, |&inner| inner));
        assert_eq!(inner, 2);
        assert!(lock.try_write(|value| *value += 1).is_some(), "a nested read left its indicator raised");
        assert_eq!(lock.read(reader, |&value| value), 2);
    }
}
