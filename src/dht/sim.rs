//! A virtual network of DHT nodes for tests: every node is the real [`Node`], datagrams are
//! delivered after a seeded random latency, time is virtual (an hour runs in seconds), and
//! nodes can be taken offline. Deterministic for a given seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{Event, Node, NodeConfig, NodeId};
use crate::time::Instant;

/// Step of the virtual clock.
const STEP: Duration = Duration::from_millis(5);

/// A datagram in flight: (delivery time, sequence, from, to index, bytes).
type InFlight = Reverse<(Instant, u64, SocketAddrV4, usize, Vec<u8>)>;

pub(crate) struct Net {
    pub nodes: Vec<Node>,
    pub addrs: Vec<SocketAddrV4>,
    by_addr: HashMap<SocketAddrV4, usize>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    pub now: Instant,
    rng: StdRng,
    pub offline: HashSet<usize>,
    pub events: Vec<(usize, Event)>,
    pub datagrams: u64,
}

impl Net {
    pub fn new(seed: u64) -> Net {
        Net {
            nodes: Vec::new(),
            addrs: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            now: Instant::from_secs(1),
            rng: StdRng::seed_from_u64(seed),
            offline: HashSet::new(),
            events: Vec::new(),
            datagrams: 0,
        }
    }

    /// Adds a node at 10.x.y.z:6881 bootstrapping from `bootstrap`; returns its index.
    pub fn add(&mut self, bootstrap: &[SocketAddrV4]) -> usize {
        let i = self.nodes.len();
        let n = u32::try_from(i).expect("small") + 1;
        let addr = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + n), 6881);
        let cfg = NodeConfig {
            id: NodeId(self.rng.random()),
            bootstrap: bootstrap.to_vec(),
            known: Vec::new(),
            seed: self.rng.random(),
        };
        self.nodes.push(Node::new(cfg, self.now));
        self.addrs.push(addr);
        self.by_addr.insert(addr, i);
        i
    }

    /// Runs the network for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end, |_| false);
    }

    /// Runs until `done` holds for the events seen so far or `end`; true if `done` held.
    pub fn run_until(&mut self, end: Instant, mut done: impl FnMut(&Net) -> bool) -> bool {
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
        }
        false
    }

    fn step(&mut self) {
        // Jump to the next thing due (a delivery or a node's timer), at least one STEP on.
        let next_packet = self.queue.peek().map(|Reverse((at, ..))| *at);
        let next_timer = (0..self.nodes.len())
            .filter(|i| !self.offline.contains(i))
            .map(|i| self.nodes[i].poll_timeout())
            .min();
        let next = next_packet.into_iter().chain(next_timer).min();
        self.now = next.map_or(self.now + STEP, |at| at.max(self.now + STEP));
        let now = self.now;
        while let Some(Reverse((at, ..))) = self.queue.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, _, from, to, bytes)) = self.queue.pop().expect("peeked");
            if !self.offline.contains(&to) {
                self.nodes[to].handle_datagram(from, &bytes, now);
            }
        }
        for i in 0..self.nodes.len() {
            if self.offline.contains(&i) {
                continue;
            }
            if self.nodes[i].poll_timeout() <= now {
                self.nodes[i].handle_timeout(now);
            }
            self.drain(i);
        }
    }

    /// Moves node `i`'s datagrams into the network and its events into `self.events`.
    pub fn drain(&mut self, i: usize) {
        while let Some(t) = self.nodes[i].poll_transmit() {
            self.datagrams += 1;
            if let Some(&to) = self.by_addr.get(&t.to) {
                let latency = Duration::from_millis(self.rng.random_range(5..60));
                self.seq += 1;
                self.queue.push(Reverse((
                    self.now + latency,
                    self.seq,
                    self.addrs[i],
                    to,
                    t.bytes,
                )));
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events.push((i, e));
        }
    }
}
