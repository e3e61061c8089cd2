//! A replica's copy behind reader indicators (`transport/copy_lock.rs`), in the shape the
//! runtime uses it: clients read the copy concurrently, each on its own indicator (a
//! thread's own, raised and lowered by stores, or a shared one, by read-modify-writes), while
//! the replica's round applies writes to it. loom reports any read that overlaps a write
//! (the copy is a loom `UnsafeCell`), so these check that a reader never sees a
//! half-applied batch and that the writer never waits for a reader forever.
#![cfg(corum_loom)]

use corum::internals::{CopyLock, Reader};
use corum_loom_tests::check;
use loom::sync::Arc;
use loom::thread;

/// A batch of two writes that readers must see whole: both halves or neither.
fn apply(pair: &mut (u32, u32)) {
    pair.0 += 1;
    pair.1 += 1;
}

/// One reader (on `reader`) against a writer applying two batches: the reader sees 0, 1 or
/// 2 whole batches, and the writer's second batch waits for a reader that came in between.
fn a_read_overlapping_two_applies(name: &'static str, reader: Reader) {
    check(name, Some(5), move || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 2));
        let reading = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.read(reader, |&pair| pair))
        };
        lock.write(apply);
        lock.write(apply);
        let (a, b) = reading.join().unwrap();
        assert_eq!(a, b, "the reader saw half a batch");
        assert!(a <= 2);
        // The reader thread has ended: this thread may read as it did.
        assert_eq!(lock.read(reader, |&pair| pair), (2, 2));
    });
}

/// On a shared indicator, raised and lowered by read-modify-writes.
#[test]
fn a_read_overlapping_applies_sees_whole_batches() {
    a_read_overlapping_two_applies("a_read_overlapping_applies_sees_whole_batches", Reader::shared(1));
}

/// On the reader thread's own indicator, which it raises and lowers with stores: its
/// lowering must publish its read to the writer as a decrement does.
#[test]
fn a_read_on_an_own_indicator_overlapping_applies_sees_whole_batches() {
    // SAFETY: one thread at a time reads through own indicator 1 (the reader, then, once it
    // has ended, the main thread).
    let reader = unsafe { Reader::own(1) };
    a_read_overlapping_two_applies("a_read_on_an_own_indicator_overlapping_applies_sees_whole_batches", reader);
}

/// A reader on its own indicator and one on a shared indicator, against a writer that does
/// not wait: the writer writes only once both are out, and each read sees whole batches.
#[test]
fn own_and_shared_readers_against_a_try_write() {
    check("own_and_shared_readers_against_a_try_write", Some(3), || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 1));
        let readers: Vec<_> = [
            // SAFETY: only this thread reads through own indicator 0.
            unsafe { Reader::own(0) },
            Reader::shared(0),
        ]
        .into_iter()
        .map(|reader| {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.read(reader, |&pair| pair))
        })
        .collect();
        let wrote = lock.try_write(apply).is_some();
        for reader in readers {
            let (a, b) = reader.join().unwrap();
            assert_eq!(a, b, "a reader saw half a batch");
        }
        let applied = u32::from(wrote);
        assert_eq!(lock.read(Reader::shared(0), |&pair| pair), (applied, applied));
    });
}

/// Two readers sharing an indicator, against a writer: every read sees whole batches, and
/// the writer finishes once both have left.
#[test]
fn readers_sharing_an_indicator_against_a_writer() {
    check("readers_sharing_an_indicator_against_a_writer", Some(3), || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 2));
        let readers: Vec<_> = [1, 1]
            .into_iter()
            .map(|indicator| {
                let lock = Arc::clone(&lock);
                thread::spawn(move || lock.read(Reader::shared(indicator), |&pair| pair))
            })
            .collect();
        lock.write(apply);
        for reader in readers {
            let (a, b) = reader.join().unwrap();
            assert_eq!(a, b, "a reader saw half a batch");
        }
        assert_eq!(lock.read(Reader::shared(0), |&pair| pair), (1, 1));
    });
}

/// Two writers exclude each other as well as readers: no batch is lost.
#[test]
fn two_writers_and_a_reader() {
    check("two_writers_and_a_reader", Some(3), || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 1));
        let writer = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.write(apply))
        };
        let reader = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.read(Reader::shared(0), |&pair| pair))
        };
        lock.write(apply);
        writer.join().unwrap();
        let (a, b) = reader.join().unwrap();
        assert_eq!(a, b, "the reader saw half a batch");
        assert_eq!(lock.read(Reader::shared(0), |&pair| pair), (2, 2));
    });
}

/// A reader that does not wait (`try_read`, as a read whose copy is being applied to tries
/// another copy) against a writer applying a batch: it either reads a whole batch or steps
/// back with nothing, and the writer never waits for it forever.
#[test]
fn a_try_read_overlapping_an_apply_reads_a_whole_batch_or_steps_back() {
    check("a_try_read_overlapping_an_apply_reads_a_whole_batch_or_steps_back", Some(5), || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 2));
        let reader = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.try_read(Reader::shared(1), |&pair| pair))
        };
        lock.write(apply);
        if let Some((a, b)) = reader.join().unwrap() {
            assert_eq!(a, b, "the reader saw half a batch");
        }
        assert_eq!(lock.try_read(Reader::shared(0), |&pair| pair), Some((1, 1)));
    });
}

/// A writer that does not wait (`try_write`, as a replica's round that puts off applying
/// while a reader is in its copy) against a reader: it writes only once the reader is out,
/// or gives up without touching the copy, and after giving up it leaves the flag clear, so
/// that the reader gets in and a later try writes.
#[test]
fn a_try_write_against_a_reader_writes_whole_or_not_at_all() {
    check("a_try_write_against_a_reader_writes_whole_or_not_at_all", Some(5), || {
        let lock = Arc::new(CopyLock::new((0u32, 0u32), 2));
        let reader = {
            let lock = Arc::clone(&lock);
            thread::spawn(move || lock.read(Reader::shared(1), |&pair| pair))
        };
        let first = lock.try_write(apply).is_some();
        let (a, b) = reader.join().unwrap();
        assert_eq!(a, b, "the reader saw half a batch");
        // The reader is out: a second try writes.
        assert!(lock.try_write(apply).is_some(), "a try with no reader in gave up");
        let applied = u32::from(first) + 1;
        assert_eq!(lock.read(Reader::shared(0), |&pair| pair), (applied, applied));
    });
}
