//! A TCP fault proxy in front of each node, in the test process: every connection to a
//! node goes through its proxy, which forwards the wire's frames one way and the other,
//! and can cut, blackhole, delay, drop or reorder them per direction between two parties.
//! Nodes make their connections from loopback addresses of their own
//! (`Builder::bind_outgoing`, [`node_ip`]), so the proxy knows who is calling; anything
//! from 127.0.0.1 is a client. The proxy reads frames, so it works on the plaintext wire
//! only (no TLS here).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What happens to the frames going one way between two parties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Pass,
    /// Connections carrying them are closed, and new ones refused.
    Cut,
    /// Swallowed: the connection stays open and nobody is told (a machine that died, a
    /// route gone dark: no reset, only silence).
    Blackhole,
    /// Each arrives this much later, in order.
    Delay(Duration),
    /// Per mille of the frames dropped, and per mille held back to go after the next one.
    Lossy {
        drop_permille: u64,
        reorder_permille: u64,
    },
}

/// A party: node `Some(i)`, or `None` for a client.
pub type Party = Option<usize>;

/// The loopback address node `i`'s connections come from.
pub fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8))
}

fn party_of(ip: IpAddr) -> Party {
    match ip {
        IpAddr::V4(v4) if v4.octets()[..3] == [127, 0, 0] && v4.octets()[3] >= 2 => Some(v4.octets()[3] as usize - 2),
        _ => None,
    }
}

#[derive(Default)]
struct State {
    /// By (from, to); `Pass` where absent.
    faults: Mutex<HashMap<(Party, Party), Fault>>,
    /// Open connections: who called, which node, and how to close it.
    conns: Mutex<Vec<(Party, usize, tokio::task::AbortHandle)>>,
    /// Frames forwarded, dropped and reordered, for a test to see that faults acted.
    forwarded: AtomicU64,
    dropped: AtomicU64,
    reordered: AtomicU64,
}

impl State {
    fn fault(&self, from: Party, to: Party) -> Fault {
        *self.faults.lock().unwrap().get(&(from, to)).unwrap_or(&Fault::Pass)
    }
}

/// One proxy per node.
pub struct Proxies {
    /// Where node `i` is reached through its proxy.
    pub addrs: Vec<SocketAddr>,
    state: Arc<State>,
}

impl Proxies {
    /// Proxies listening on fresh loopback ports, forwarding to `targets`.
    pub async fn start(targets: &[SocketAddr]) -> Proxies {
        let state = Arc::new(State::default());
        let mut addrs = Vec::new();
        for (node, &target) in targets.iter().enumerate() {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            tokio::spawn(accept(listener, node, target, state.clone()));
        }
        Proxies { addrs, state }
    }

    /// Sets what happens to frames from `from` to `to`. A cut also closes the connections
    /// that carry them now.
    pub fn set(&self, from: Party, to: Party, fault: Fault) {
        self.state.faults.lock().unwrap().insert((from, to), fault);
        if fault == Fault::Cut {
            for (caller, node, task) in self.state.conns.lock().unwrap().iter() {
                if (*caller == from && Some(*node) == to) || (*caller == to && Some(*node) == from) {
                    task.abort();
                }
            }
        }
    }

    /// Every direction between node `i` and every other party, clients included.
    pub fn isolate(&self, i: usize, nodes: usize, fault: Fault) {
        for other in (0..nodes).filter(|&j| j != i).map(Some).chain([None]) {
            self.set(Some(i), other, fault);
            self.set(other, Some(i), fault);
        }
    }

    /// `fault` on every direction between every two parties.
    pub fn everywhere(&self, nodes: usize, fault: Fault) {
        for i in 0..nodes {
            self.isolate(i, nodes, fault);
        }
    }

    /// No fault anywhere.
    pub fn heal(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    /// Frames forwarded, dropped and reordered so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = &self.state;
        (s.forwarded.load(Ordering::Relaxed), s.dropped.load(Ordering::Relaxed), s.reordered.load(Ordering::Relaxed))
    }
}

async fn accept(listener: TcpListener, node: usize, target: SocketAddr, state: Arc<State>) {
    loop {
        let Ok((inbound, peer)) = listener.accept().await else { continue };
        let caller = party_of(peer.ip());
        if state.fault(caller, Some(node)) == Fault::Cut {
            drop(inbound);
            continue;
        }
        let carried = state.clone();
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else { return };
            let (inbound_read, inbound_write) = inbound.into_split();
            let (outbound_read, outbound_write) = outbound.into_split();
            let seed = node as u64 * 31 + caller.map_or(7, |c| c as u64) + 1;
            tokio::select! {
                _ = pump(inbound_read, outbound_write, caller, Some(node), carried.clone(), seed) => {}
                _ = pump(outbound_read, inbound_write, Some(node), caller, carried, seed ^ 0xabcd) => {}
            }
        });
        let mut conns = state.conns.lock().unwrap();
        conns.retain(|(_, _, task)| !task.is_finished());
        conns.push((caller, node, task.abort_handle()));
    }
}

/// Forwards frames from `read` to `write`, subject to the fault from `from` to `to`.
async fn pump(mut read: OwnedReadHalf, write: OwnedWriteHalf, from: Party, to: Party, state: Arc<State>, seed: u64) {
    let (queue, mut queued) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        let mut write = write;
        while let Some((at, frame)) = queued.recv().await {
            tokio::time::sleep_until(at).await;
            if write.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    // splitmix64 of the seed: well-mixed from the first roll.
    let mut rng = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    rng = (rng ^ (rng >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    rng = (rng ^ (rng >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    rng = (rng ^ (rng >> 31)).max(1);
    let mut roll = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % 1000
    };
    let mut held: Option<Vec<u8>> = None;
    loop {
        let mut frame = vec![0u8; 12];
        if read.read_exact(&mut frame).await.is_err() {
            break;
        }
        let len = u32::from_le_bytes(frame[..4].try_into().unwrap()) as usize;
        frame.resize(12 + len, 0);
        if read.read_exact(&mut frame[12..]).await.is_err() {
            break;
        }
        let now = Instant::now();
        let send = |at: Instant, frame: Vec<u8>| {
            state.forwarded.fetch_add(1, Ordering::Relaxed);
            let _ = queue.send((at, frame));
        };
        match state.fault(from, to) {
            Fault::Pass => send(now, frame),
            Fault::Cut => break,
            Fault::Blackhole => {}
            Fault::Delay(by) => send(now + by, frame),
            Fault::Lossy { drop_permille, reorder_permille } => {
                if roll() < drop_permille {
                    state.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if held.is_none() && roll() < reorder_permille {
                    state.reordered.fetch_add(1, Ordering::Relaxed);
                    held = Some(frame);
                    continue;
                }
                send(now, frame);
                if let Some(earlier) = held.take() {
                    send(now, earlier);
                }
            }
        }
    }
    drop(queue);
    let _ = writer.await;
}
