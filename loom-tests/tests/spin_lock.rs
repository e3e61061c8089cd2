//! The spin lock that guards a client session's bookkeeping (`transport/spin_lock.rs`):
//! taken with a compare-exchange, released with a plain Release store. loom reports any
//! access to the guarded value that overlaps another (the value is a loom `UnsafeCell`),
//! and a waiter yields on each spin, so its waits stay finite in the model.
#![cfg(corum_loom)]

use corum::internals::SpinLock;
use corum_loom_tests::check;
use loom::sync::Arc;
use loom::thread;

/// A thread and the main thread each add under the lock: no addition is lost, and no
/// access overlaps another (a release that does not publish the holder's write shows as a
/// causality violation). Two threads: with two waiters yielding to each other while the
/// holder is preempted, loom's model of the waits has no end.
#[test]
fn two_threads_add_under_the_lock() {
    check("two_threads_add_under_the_lock", None, || {
        let lock = Arc::new(SpinLock::new(0u32));
        let adder = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || {
                let mut value = lock.lock();
                *value += 1;
            })
        };
        *lock.lock() += 1;
        adder.join().unwrap();
        assert_eq!(*lock.lock(), 2);
    });
}
