//! Which of a copy's reader indicators a reader raises ([`Reader`]), and the thread numbers
//! that give a reading thread an indicator of its own in every copy.
//!
//! A copy has two sets of indicators (`copy_lock.rs`). Own indicators: the one numbered `n`
//! is written only by the live thread holding thread number `n`, so that thread raises it
//! with a store and lowers it with a plain Release store (on x86 a read then costs one
//! locked instruction, the raise, where a read-modify-write each way costs two). Shared
//! indicators: any number of readers pick one by an index (a client id, say) and raise and
//! lower it with read-modify-writes; threads numbered past the copy's own indicators, and
//! replica threads reading a peer's copy, read this way.
//!
//! Thread numbers are process-wide. A thread takes the lowest free number at its first
//! read and gives it back when it exits (its thread-local destructor), so the numbers in
//! use stay below the number of threads that read at once, and each is held by one live
//! thread at a time. Taking and giving back go through one lock, so everything the previous
//! holder did with its indicators (its last lowering) happens before the next holder's
//! first look at them. A thread that reads while its thread-locals are being destroyed
//! reads through a shared indicator. Under loom every [`Reader::this_thread`] is shared (the
//! loom suite builds own readers explicitly with [`Reader::own`]).

/// Which indicator a reader raises; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reader(pub(super) Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Own indicator `n`, written by this thread only.
    Own(usize),
    /// Shared indicator `index` (taken modulo their number).
    Shared(usize),
}

impl Reader {
    /// A reader on shared indicator `index` (taken modulo their number); any number of
    /// threads may use the same index at once.
    pub fn shared(index: usize) -> Self {
        Self(Kind::Shared(index))
    }

    /// A reader on own indicator `number`, if the copy has one that high (else on a shared
    /// indicator).
    ///
    /// # Safety
    /// While a read through it is in a copy, no other thread reads that copy through
    /// `own(number)`: the indicator is lowered with a plain store, which would overwrite
    /// another thread's raise. [`Reader::this_thread`] gives each live thread its own number.
    pub unsafe fn own(number: usize) -> Self {
        Self(Kind::Own(number))
    }

    /// The calling thread's own indicator (its thread number), or shared indicator
    /// `fallback` where it has none.
    #[inline]
    pub fn this_thread(fallback: usize) -> Self {
        match numbers::this_thread() {
            // SAFETY: the live thread holding a number is the only one using it (module docs).
            Some(number) => unsafe { Self::own(number) },
            None => Self::shared(fallback),
        }
    }
}

#[cfg(not(corum_loom))]
mod numbers {
    use std::cell::Cell;
    use std::sync::Mutex;

    /// `NUMBER` before the thread's first read.
    const UNTAKEN: usize = usize::MAX;
    /// `NUMBER` once the thread gave its number back (it is exiting).
    const GIVEN_BACK: usize = usize::MAX - 1;

    /// The numbers handed out and given back.
    static POOL: Mutex<Pool> = Mutex::new(Pool { free: Vec::new(), next: 0 });

    thread_local! {
        /// This thread's number. A constant-initialised `Cell` without a destructor, so a
        /// read looks at it with one thread-local load.
        static NUMBER: Cell<usize> = const { Cell::new(UNTAKEN) };
        /// Gives the number back when the thread exits.
        static HOLDER: Holder = const { Holder };
    }

    /// Thread numbers: the lowest free one is handed out first.
    #[derive(Debug)]
    struct Pool {
        /// Numbers given back.
        free: Vec<usize>,
        /// The lowest number never handed out.
        next: usize,
    }

    impl Pool {
        fn take(&mut self) -> usize {
            let lowest = self.free.iter().enumerate().min_by_key(|&(_, &number)| number).map(|(at, _)| at);
            lowest.map_or_else(
                || {
                    self.next += 1;
                    self.next - 1
                },
                |at| self.free.swap_remove(at),
            )
        }

        fn give_back(&mut self, number: usize) {
            self.free.push(number);
        }
    }

    fn pool() -> std::sync::MutexGuard<'static, Pool> {
        // The pool is consistent after every statement, so a panic elsewhere while it was
        // held leaves nothing to repair.
        POOL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    struct Holder;

    impl Drop for Holder {
        fn drop(&mut self) {
            let number = NUMBER.with(|number| number.replace(GIVEN_BACK));
            if number < GIVEN_BACK {
                pool().give_back(number);
            }
        }
    }

    /// The calling thread's number: taken at its first call, `None` once given back.
    #[inline]
    pub(super) fn this_thread() -> Option<usize> {
        match NUMBER.with(Cell::get) {
            GIVEN_BACK => None,
            UNTAKEN => take(),
            number => Some(number),
        }
    }

    #[cold]
    #[inline(never)]
    fn take() -> Option<usize> {
        // Registers the destructor that gives the number back; fails if the thread's
        // thread-locals are being destroyed, which leaves it without a number.
        HOLDER.try_with(|_| ()).ok()?;
        let number = pool().take();
        NUMBER.with(|cell| cell.set(number));
        Some(number)
    }

    #[cfg(test)]
    mod tests {
        use super::{this_thread, Pool};

        /// The lowest free number goes first; a number given back is handed out again.
        #[test]
        fn the_pool_hands_out_the_lowest_free_number() {
            let mut pool = Pool { free: Vec::new(), next: 0 };
            assert_eq!([pool.take(), pool.take(), pool.take()], [0, 1, 2]);
            pool.give_back(2);
            pool.give_back(0);
            assert_eq!(pool.take(), 0);
            assert_eq!(pool.take(), 2);
            assert_eq!(pool.take(), 3);
        }

        /// A thread keeps its number, and two live threads never hold the same one.
        #[test]
        fn live_threads_hold_distinct_numbers() {
            let mine = this_thread().expect("a number");
            assert_eq!(this_thread(), Some(mine));
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
            let threads: Vec<_> = (0..3)
                .map(|_| {
                    let barrier = std::sync::Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        let number = this_thread().expect("a number");
                        barrier.wait(); // all four alive at once
                        number
                    })
                })
                .collect();
            barrier.wait();
            let theirs: Vec<usize> = threads.into_iter().map(|thread| thread.join().unwrap()).collect();
            let mut all = theirs.clone();
            all.push(mine);
            all.sort_unstable();
            all.dedup();
            assert_eq!(all.len(), 4, "live threads shared a number: {theirs:?} and {mine}");
        }
    }
}

#[cfg(corum_loom)]
mod numbers {
    /// No thread numbers under loom (see the module docs).
    #[inline]
    pub(super) fn this_thread() -> Option<usize> {
        None
    }
}
