//! Tickets are futures, and `Handle::execute_async` and `Handle::execute_mut_async` return
//! futures: reads and writes awaited by async tasks, on tokio's multi-threaded runtime and on
//! a minimal executor that has no timer, keep every promise of `Ticket::wait`,
//! `Handle::execute` and `Handle::execute_mut`, without blocking the thread.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use common::{check_copies, eventually, until_ok, Kv, KvRead, KvWrite, WriteId, PATIENCE};
use corum::{Builder, Cluster, Error, Handle};

type Acked = Arc<Mutex<HashMap<WriteId, Option<u64>>>>;
type Submitted = Arc<Mutex<HashMap<WriteId, KvWrite>>>;

/// A cluster of `Kv`, unpinned, whose calls wait up to [`PATIENCE`].
fn kv() -> Builder<Kv> {
    Builder::new(Kv::default()).replicas(3).pin(false).deadline(PATIENCE)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("tokio runtime")
}

/// `count` handles on `cluster`, each shared by many tasks (a session per handle).
fn handles(cluster: &Cluster<Kv>, count: usize) -> Vec<Arc<Handle<Kv>>> {
    (0..count).map(|_| Arc::new(cluster.handle())).collect()
}

/// Writes submitted and acknowledged by a run of tasks, and how many were acknowledged.
#[derive(Default, Clone)]
struct Record {
    acked: Acked,
    submitted: Submitted,
    done: Arc<AtomicUsize>,
    /// While set, tasks wait halfway through their writes.
    held: Arc<AtomicBool>,
}

/// Spawns `tasks` tasks over `handles`; task `t` adds 1 to its own key `writes` times,
/// awaiting each write, and checks each response (its key's new value: exactly once).
fn spawn_adders(
    runtime: &tokio::runtime::Runtime,
    handles: &[Arc<Handle<Kv>>],
    tasks: u32,
    writes: u32,
    record: &Record,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|task| {
            let handle = Arc::clone(&handles[task as usize % handles.len()]);
            let record = record.clone();
            runtime.spawn(async move {
                for number in 0..writes {
                    // Relaxed: a gate for the test's timing; the writes carry their own order.
                    while number == writes / 2 && record.held.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    let id = WriteId { client: task, number };
                    let write = KvWrite::Add { id, key: u64::from(task), delta: 1 };
                    record.submitted.lock().unwrap().insert(id, write);
                    let response = handle.submit(write).expect("submit").await.expect("awaited write");
                    assert_eq!(response, Some(u64::from(number) + 1), "task {task}'s key after write {number}");
                    record.acked.lock().unwrap().insert(id, response);
                    record.done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn join_all(runtime: &tokio::runtime::Runtime, tasks: Vec<tokio::task::JoinHandle<()>>) {
    runtime.block_on(async {
        for task in tasks {
            task.await.expect("task: every awaited write succeeded");
        }
    });
}

#[test]
fn thousands_of_tasks_await_writes_on_a_few_handles() {
    let cluster = kv().build().expect("build");
    let runtime = runtime();
    let handles = handles(&cluster, 4);
    let record = Record::default();
    let tasks = spawn_adders(&runtime, &handles, 2_000, 5, &record);
    join_all(&runtime, tasks);
    assert_eq!(record.done.load(Ordering::Relaxed), 10_000);
    assert_eq!(handles[0].execute(KvRead::Applied).expect("read"), Some(10_000));
    drop(handles);
    let copies = cluster.shutdown().expect("shutdown");
    check_copies(&copies, &record.acked.lock().unwrap(), &record.submitted.lock().unwrap());
}

#[test]
fn awaited_writes_go_on_across_a_leader_crash() {
    let cluster = kv().build().expect("build");
    let runtime = runtime();
    let handles = handles(&cluster, 4);
    let record = Record::default();
    // Every task stops halfway until the leader has crashed, so that writes are in flight
    // at the crash and half of them are submitted after it, however the threads are
    // scheduled.
    record.held.store(true, Ordering::Relaxed);
    let tasks = spawn_adders(&runtime, &handles, 200, 40, &record);
    eventually("1,000 writes done", || (record.done.load(Ordering::Relaxed) >= 1_000).then_some(()));
    let leader = eventually("a leader", || cluster.leader());
    cluster.faults().crash(leader).expect("crash the leader");
    record.held.store(false, Ordering::Relaxed);
    join_all(&runtime, tasks);
    assert_eq!(record.done.load(Ordering::Relaxed), 8_000);
    drop(handles);
    let copies = cluster.shutdown().expect("shutdown");
    assert_eq!(copies.len(), 2, "the two live replicas");
    check_copies(&copies, &record.acked.lock().unwrap(), &record.submitted.lock().unwrap());
}

/// A task dropped while awaiting its write leaves the write submitted once, as a dropped
/// ticket does: it is applied once when the replicas run again, and never retried.
#[test]
fn a_task_dropped_mid_await_leaves_its_write_submitted_once() {
    let cluster = kv().build().expect("build");
    let runtime = runtime();
    let handle = cluster.handle();
    let first = WriteId { client: 0, number: 0 };
    let dropped = WriteId { client: 0, number: 1 };
    let last = WriteId { client: 0, number: 2 };
    let writes = [
        KvWrite::Put { id: first, key: 1, value: 1 },
        KvWrite::Add { id: dropped, key: 7, delta: 5 },
        KvWrite::Add { id: last, key: 8, delta: 1 },
    ];
    runtime.block_on(async {
        handle.submit(writes[0]).expect("submit").await.expect("first write");
        for replica in 0..3 {
            cluster.faults().pause(replica).expect("pause");
        }
        let mut ticket = handle.submit(writes[1]).expect("submit");
        // Polled (and so registered with the cluster), then dropped with its task.
        let awaited = tokio::time::timeout(Duration::from_millis(30), &mut ticket).await;
        assert!(awaited.is_err(), "nothing completes while every replica is paused");
        drop(ticket);
        for replica in 0..3 {
            cluster.faults().resume(replica).expect("resume");
        }
        handle.submit(writes[2]).expect("submit").await.expect("write after the dropped one");
    });
    // The dropped write was ahead of the last one in its replica's queue.
    eventually("the dropped write applied", || {
        (handle.execute(KvRead::Get(7)).expect("read") == Some(5)).then_some(())
    });
    drop(handle);
    let copies = cluster.shutdown().expect("shutdown");
    let submitted: HashMap<_, _> = writes.iter().map(|write| (write.id(), *write)).collect();
    check_copies(&copies, &HashMap::new(), &submitted); // applied once at most
    assert!(copies[0].history.iter().any(|write| write.id() == dropped), "applied");
}

/// Awaiting tasks are woken by shutdown and report it; nothing is left pending.
#[test]
fn shutdown_wakes_every_awaiting_task() {
    let cluster = kv().build().expect("build");
    let runtime = runtime();
    let handles = handles(&cluster, 2);
    runtime
        .block_on(handles[0].submit(KvWrite::Put { id: WriteId { client: 0, number: 0 }, key: 0, value: 0 }).unwrap())
        .expect("first write");
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let polled = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (1..=100u32)
        .map(|task| {
            let handle = Arc::clone(&handles[task as usize % 2]);
            let polled = Arc::clone(&polled);
            runtime.spawn(async move {
                let ticket = handle.submit(KvWrite::Add { id: WriteId { client: task, number: 0 }, key: 1, delta: 1 });
                let mut ticket = ticket.expect("submit");
                // Registered before shutdown begins.
                let early = tokio::time::timeout(Duration::from_millis(5), &mut ticket).await;
                assert!(early.is_err(), "nothing completes while every replica is paused");
                polled.fetch_add(1, Ordering::Relaxed);
                ticket.await
            })
        })
        .collect();
    eventually("every task polled", || (polled.load(Ordering::Relaxed) >= 100).then_some(()));
    let started = Instant::now();
    let shutdown = std::thread::spawn(move || cluster.shutdown());
    let outcomes: Vec<_> =
        runtime.block_on(async { futures_join(tasks).await }).into_iter().map(|joined| joined.expect("task")).collect();
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Err(Error::Shutdown))), "{outcomes:?}");
    assert!(started.elapsed() < PATIENCE / 2, "woken by shutdown, not by their deadline ({PATIENCE:?})");
    shutdown.join().expect("shutdown thread").expect("shutdown");
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await);
    }
    outcomes
}

/// A minimal executor: polls a future on this thread and parks between polls; counts the
/// polls. It has no timer, so whatever wakes the future comes from the cluster.
struct ThreadWaker {
    thread: Thread,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn block_on_counting<F: Future + Unpin>(mut future: F) -> (F::Output, usize) {
    let waker = Arc::new(ThreadWaker { thread: std::thread::current(), wakes: AtomicUsize::new(0) });
    let task_waker = Waker::from(Arc::clone(&waker));
    let mut context = Context::from_waker(&task_waker);
    let mut polls = 0;
    loop {
        let wakes = waker.wakes.load(Ordering::SeqCst);
        polls += 1;
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut context) {
            return (output, polls);
        }
        // Sleep until woken (a spurious unpark does not count as a poll).
        while waker.wakes.load(Ordering::SeqCst) == wakes {
            std::thread::park();
        }
    }
}

/// With every replica paused, an awaited write reports `NoQuorum` at its deadline on an
/// executor with no timer, after a few polls: the first, its retry time, its deadline.
/// Not re-polled every tick.
#[test]
fn an_awaited_write_meets_its_deadline_without_an_executor_timer_or_busy_polling() {
    let deadline = Duration::from_millis(300);
    let cluster = Builder::new(Kv::default())
        .replicas(3)
        .pin(false)
        .deadline(deadline)
        .retry_after(Duration::from_millis(100))
        .build()
        .expect("build");
    let handle = cluster.handle();
    let first = KvWrite::Put { id: WriteId { client: 0, number: 0 }, key: 0, value: 0 };
    until_ok("the first write", || handle.execute_mut(first));
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let started = Instant::now();
    let ticket =
        handle.submit(KvWrite::Put { id: WriteId { client: 0, number: 1 }, key: 0, value: 1 }).expect("submit");
    let (outcome, polls) = block_on_counting(ticket);
    let waited = started.elapsed();
    assert!(matches!(outcome, Err(Error::NoQuorum { .. })), "{outcome:?}");
    assert!(waited >= deadline, "reported after {waited:?}, before its deadline");
    // First poll, retries at 100 and 200 ms, the deadline at 300 ms; one spare.
    assert!(polls <= 5, "polled {polls} times in {waited:?}");
    for replica in 0..3 {
        cluster.faults().resume(replica).expect("resume");
    }
    drop(handle);
    cluster.shutdown().expect("shutdown");
}

/// An awaited write lost with a crashed leader (it sat in the leader's queue) is
/// resubmitted to the new leader as soon as leadership moves (the cluster wakes the task),
/// not after its retry interval (5 minutes: only the wake-up can make it complete sooner).
#[test]
fn an_awaited_write_lost_with_its_leader_follows_the_new_leader_at_once() {
    let retry_after = Duration::from_secs(300);
    let cluster = kv().retry_after(retry_after).deadline(2 * retry_after).build().expect("build");
    let first = cluster.handle();
    first.execute_mut(KvWrite::Put { id: WriteId { client: 0, number: 0 }, key: 0, value: 0 }).expect("first write");
    let leader = eventually("a leader", || cluster.leader());
    // A session whose home is the leader: with every replica paused, its write goes to
    // the leader's queue, and is lost when the leader crashes.
    let handle = std::iter::repeat_with(|| cluster.handle()).find(|h| h.client_id() % 3 == leader as u64).unwrap();
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let ticket =
        handle.submit(KvWrite::Put { id: WriteId { client: 1, number: 0 }, key: 0, value: 1 }).expect("submit");
    let started = Instant::now();
    let (outcome, polls) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            cluster.faults().crash(leader).expect("crash the leader");
            for replica in (0..3).filter(|&r| r != leader) {
                cluster.faults().resume(replica).expect("resume");
            }
        });
        block_on_counting(ticket)
    });
    assert_eq!(outcome.expect("the write completes with the new leader"), Some(0));
    let waited = started.elapsed();
    assert!(waited < retry_after, "waited {waited:?}: not woken when leadership moved");
    assert!(polls < 100, "polled {polls} times");
    drop((first, handle));
    cluster.shutdown().expect("shutdown");
}

/// Tasks that await `execute_mut_async` and then `execute_async` on shared handles: every
/// write is applied once, and every read sees the writes its task completed before it.
#[test]
fn tasks_await_async_writes_and_reads_that_see_them() {
    let cluster = kv().build().expect("build");
    let runtime = runtime();
    let handles = handles(&cluster, 4);
    let record = Record::default();
    let tasks: Vec<_> = (0..200u32)
        .map(|task| {
            let handle = Arc::clone(&handles[task as usize % handles.len()]);
            let record = record.clone();
            runtime.spawn(async move {
                for number in 0..10u32 {
                    let write = KvWrite::Add { id: WriteId { client: task, number }, key: u64::from(task), delta: 1 };
                    record.submitted.lock().unwrap().insert(write.id(), write);
                    let response = handle.execute_mut_async(write).await.expect("write");
                    assert_eq!(response, Some(u64::from(number) + 1), "task {task}: applied exactly once");
                    record.acked.lock().unwrap().insert(write.id(), response);
                    let read = handle.execute_async(KvRead::Get(u64::from(task))).await.expect("read");
                    assert_eq!(read, Some(u64::from(number) + 1), "task {task}: the read missed its own write");
                }
            })
        })
        .collect();
    join_all(&runtime, tasks);
    drop(handles);
    let copies = cluster.shutdown().expect("shutdown");
    check_copies(&copies, &record.acked.lock().unwrap(), &record.submitted.lock().unwrap());
}

/// A writer, and a reader whose copy lags: key 0 was put to 1, then to 2 while the reader's
/// replica was paused (it had applied the first put), and then every replica was paused, so
/// that no copy may serve the reader a read that must see the second put, and none is
/// helped.
fn lagging_reader(cluster: &Cluster<Kv>) -> (Handle<Kv>, Handle<Kv>) {
    let writer = cluster.handle();
    let put = |number, value| KvWrite::Put { id: WriteId { client: 0, number }, key: 0, value };
    until_ok("the first write", || writer.execute_mut(put(0, 1)));
    let leader = eventually("a leader", || cluster.leader());
    let reader = std::iter::repeat_with(|| cluster.handle()).find(|h| h.client_id() % 3 != leader as u64).unwrap();
    let home = (reader.client_id() % 3) as usize;
    eventually("the reader's copy applied the first write", || {
        (reader.execute_stale(KvRead::Get(0)).ok()? == Some(1)).then_some(())
    });
    cluster.faults().pause(home).expect("pause");
    until_ok("the second write, committed by the others", || writer.execute_mut(put(1, 2)));
    for replica in (0..3).filter(|&r| r != home) {
        cluster.faults().pause(replica).expect("pause");
    }
    (writer, reader)
}

/// Polls `future` on this thread ([`block_on_counting`]) while another thread resumes every
/// replica of `cluster` after 100 ms.
fn block_on_resuming_after<F: Future + Unpin>(cluster: &Cluster<Kv>, future: F) -> (F::Output, usize) {
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            for replica in 0..3 {
                cluster.faults().resume(replica).expect("resume");
            }
        });
        block_on_counting(future)
    })
}

/// An awaited read whose copy lags (its replica and every other one paused, so no copy may
/// serve it and none is helped) returns `Pending` rather than block its thread, and
/// completes with the write it had to wait for once the replicas run again, on an executor
/// with no timer, without being polled in a loop.
#[test]
fn an_awaited_read_whose_copy_lags_waits_without_blocking_the_thread() {
    let cluster = kv().tick(Duration::from_millis(10)).build().expect("build");
    let (writer, reader) = lagging_reader(&cluster);
    let (outcome, polls) = block_on_resuming_after(&cluster, reader.execute_async(KvRead::Get(0)));
    assert_eq!(outcome.expect("read"), Some(2), "the read missed the write that completed before it");
    // At least two polls: the first returned `Pending` (it did not wait inside the poll).
    // Woken by its copy or by the cluster's tick (10 ms) while it waits: not polled in a
    // loop, which would take thousands of polls in 100 ms.
    assert!((2..100).contains(&polls), "polled {polls} times");
    drop((writer, reader));
    cluster.shutdown().expect("shutdown");
}

/// An awaited `execute_mut_async` with every replica paused returns `Pending`, and
/// completes once they run again; one dropped before its first poll submits nothing.
#[test]
fn an_awaited_async_write_waits_without_blocking_and_a_dropped_one_submits_nothing() {
    let cluster = kv().build().expect("build");
    let handle = cluster.handle();
    let add = |number, delta| KvWrite::Add { id: WriteId { client: 0, number }, key: 0, delta };
    until_ok("the first write", || handle.execute_mut(add(0, 1)));
    drop(handle.execute_mut_async(add(1, 100)));
    for replica in 0..3 {
        cluster.faults().pause(replica).expect("pause");
    }
    let (outcome, polls) = block_on_resuming_after(&cluster, handle.execute_mut_async(add(2, 1)));
    assert_eq!(outcome.expect("write"), Some(2), "the dropped write was applied, or this one twice");
    assert!(polls >= 2, "the first poll waited inside instead of returning Pending");
    assert_eq!(handle.execute(KvRead::Applied).expect("read"), Some(2));
    drop(handle);
    cluster.shutdown().expect("shutdown");
}

/// An awaited read that no copy can serve (every replica paused, its own behind) reports
/// `NoQuorum` at its deadline on an executor with no timer: the cluster wakes it to look.
#[test]
fn an_awaited_read_no_copy_can_serve_meets_its_deadline_without_an_executor_timer() {
    let deadline = Duration::from_millis(300);
    let cluster = kv().tick(Duration::from_millis(10)).deadline(deadline).build().expect("build");
    let (writer, reader) = lagging_reader(&cluster);
    let started = Instant::now();
    let (outcome, polls) = block_on_counting(reader.execute_async(KvRead::Get(0)));
    let waited = started.elapsed();
    assert!(matches!(outcome, Err(Error::NoQuorum { .. })), "{outcome:?}");
    assert!(waited >= deadline, "reported after {waited:?}, before its deadline");
    assert!(polls < 100, "polled {polls} times in {waited:?}");
    for replica in 0..3 {
        cluster.faults().resume(replica).expect("resume");
    }
    drop((writer, reader));
    cluster.shutdown().expect("shutdown");
}
