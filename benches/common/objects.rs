//! The objects every system hosts (a 10,000-key map, a counter, a stack), their operations,
//! and the workloads that draw operations from them.

use std::collections::HashMap;

pub const KEYS: u64 = 10_000;

/// The three objects, each usable by corum, by node-replication and behind a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    Kv(HashMap<u64, u64>),
    Counter(u64),
    Stack(Vec<u64>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Read {
    Get(u64),
    Count,
    Top,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    Put(u64, u64),
    Add(u64),
    Push(u64),
    Pop,
}

impl Object {
    pub fn read(&self, op: Read) -> u64 {
        match (self, op) {
            (Object::Kv(map), Read::Get(key)) => map.get(&key).copied().unwrap_or(0),
            (Object::Counter(count), Read::Count) => *count,
            (Object::Stack(stack), Read::Top) => stack.last().copied().unwrap_or(0),
            _ => 0,
        }
    }

    pub fn write(&mut self, op: Write) -> u64 {
        match (self, op) {
            (Object::Kv(map), Write::Put(key, value)) => map.insert(key, value).unwrap_or(0),
            (Object::Counter(count), Write::Add(n)) => {
                *count += n;
                *count
            }
            (Object::Stack(stack), Write::Push(value)) => {
                stack.push(value);
                stack.len() as u64
            }
            (Object::Stack(stack), Write::Pop) => stack.pop().unwrap_or(0),
            _ => 0,
        }
    }
}

impl corum::Dispatch for Object {
    type ReadOp = Read;
    type WriteOp = Write;
    type Response = u64;
    fn dispatch(&self, op: &Read) -> u64 {
        self.read(*op)
    }
    fn dispatch_mut(&mut self, op: &Write) -> u64 {
        self.write(*op)
    }
}

/// node-replication's wrapper (its trait takes operations by value and needs `Default`).
pub struct NrObject(pub Object);

impl Default for NrObject {
    fn default() -> Self {
        NrObject(Object::Counter(0))
    }
}

impl node_replication::Dispatch for NrObject {
    type ReadOperation = Read;
    type WriteOperation = Write;
    type Response = u64;
    fn dispatch(&self, op: Read) -> u64 {
        self.0.read(op)
    }
    fn dispatch_mut(&mut self, op: Write) -> u64 {
        self.0.write(op)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub name: &'static str,
    pub write_pct: u64,
}

impl Workload {
    pub fn object(&self) -> Object {
        match self.name {
            "kv" => Object::Kv((0..KEYS).map(|key| (key, 0)).collect()),
            "counter" => Object::Counter(0),
            _ => Object::Stack((0..1_000).collect()),
        }
    }

    /// The next operation, from the thread's random state: `Ok` a write, `Err` a read.
    pub fn op(&self, rng: &mut u64) -> Result<Write, Read> {
        let r = next_random(rng);
        let write = r % 100 < self.write_pct;
        match (self.name, write) {
            ("kv", true) => Ok(Write::Put(r / 100 % KEYS, r)),
            ("kv", false) => Err(Read::Get(r / 100 % KEYS)),
            ("counter", true) => Ok(Write::Add(1)),
            ("counter", false) => Err(Read::Count),
            (_, true) if r / 100 % 2 == 0 => Ok(Write::Push(r)),
            (_, true) => Ok(Write::Pop),
            (_, false) => Err(Read::Top),
        }
    }
}

/// The next number of a thread's xorshift generator (`rng` must not be 0).
pub fn next_random(rng: &mut u64) -> u64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    *rng
}

/// Client thread counts to sweep: powers of two from 1, and every core the process may use.
pub fn thread_counts() -> Vec<usize> {
    let cores = corum::available_cores().max(1);
    let mut threads = vec![1];
    while threads.last().expect("one") * 2 <= cores {
        threads.push(threads.last().expect("one") * 2);
    }
    if *threads.last().expect("one") != cores {
        threads.push(cores);
    }
    threads
}

/// Every workload: the map at 0, 10, 50 and 100 % writes, the counter, the stack.
pub fn workloads() -> Vec<Workload> {
    let mut workloads: Vec<Workload> =
        [0, 10, 50, 100].into_iter().map(|write_pct| Workload { name: "kv", write_pct }).collect();
    workloads.push(Workload { name: "counter", write_pct: 100 });
    workloads.push(Workload { name: "stack", write_pct: 100 });
    workloads
}
