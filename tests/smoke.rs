use corum::{Builder, Dispatch};

#[derive(Clone, Default, Debug, PartialEq)]
struct Counter(u64);

impl Dispatch for Counter {
    type ReadOp = ();
    type WriteOp = u64;
    type Response = u64;
    fn dispatch(&self, _op: &()) -> u64 {
        self.0
    }
    fn dispatch_mut(&mut self, add: &u64) -> u64 {
        self.0 += add;
        self.0
    }
}

#[test]
fn the_contract_from_the_issue() -> Result<(), corum::Error> {
    let cluster = Builder::new(Counter::default()).replicas(3).build()?;
    let handle = cluster.handle();
    let after = handle.execute_mut(5)?;
    assert_eq!(after, 5);
    let now = handle.execute(())?;
    assert_eq!(now, 5);
    for _ in 0..1000 {
        handle.execute_mut(1)?;
    }
    assert_eq!(handle.execute(())?, 1005);
    let states: Vec<Counter> = cluster.shutdown()?;
    assert_eq!(states, vec![Counter(1005); 3]);
    Ok(())
}
