//! The DHT node state machine (BEP 5): answers queries, runs lookups, keeps the routing
//! table alive, and announces and searches torrents on a timetable.
//!
//! Driving order, as for our other sans-IO machines: feed [`Node::handle_datagram`] and
//! [`Node::handle_timeout`] with `now`; then drain [`Node::poll_transmit`] (datagrams to send)
//! and [`Node::poll_event`] (peers found, lookups finished); sleep until
//! [`Node::poll_timeout`]. Commands ([`Node::announce`], [`Node::search`], [`Node::get_peers`],
//! [`Node::find_node`]) may be called at any time. Randomness comes from a seeded generator so
//! a test network repeats exactly.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddrV4;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::time::Instant;

use super::krpc::{error_code, Body, Message, Query, Response};
use super::lookup::Lookup;
use super::peers::{PeerStore, RateLimiter, Tokens};
use super::routing::{Insert, RoutingTable};
use super::{NodeId, NodeInfo, K};

/// A query unanswered after this long has failed.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries in flight at once over all purposes; past it, new queries wait.
pub const TRANSACTIONS_MAX: usize = 1024;
/// Lookups running at once; past it, new ones are refused (searches retry later).
pub const LOOKUPS_MAX: usize = 64;
/// Datagrams queued for the shell; past it, new ones are dropped (UDP may lose them anyway).
pub const OUTBOX_MAX: usize = 4096;
/// Events queued for the shell; past it, the oldest are dropped.
pub const EVENTS_MAX: usize = 4096;
/// Housekeeping cadence: bucket refresh, questionable-node pings, expiry, retries.
pub const TICK: Duration = Duration::from_secs(1);
/// A torrent is re-announced this often: under the 15-minute peer expiry, so stored peers
/// never lapse between announces.
pub const REANNOUNCE_INTERVAL: Duration = Duration::from_secs(14 * 60);
/// A search that found no peer tries again after this long.
pub const SEARCH_RETRY: Duration = Duration::from_secs(5);
/// A node whose table holds fewer than this many nodes bootstraps again.
pub const BOOTSTRAP_BELOW: usize = K;
/// First wait between bootstrap attempts while the table stays small; it doubles up to
/// [`BOOTSTRAP_RETRY_MAX`] (a private network may simply have fewer than K nodes).
pub const BOOTSTRAP_RETRY: Duration = Duration::from_secs(5);
/// Longest wait between bootstrap attempts.
pub const BOOTSTRAP_RETRY_MAX: Duration = Duration::from_secs(120);
/// Questionable nodes pinged per tick.
pub const PINGS_PER_TICK: usize = 4;

/// How a node starts.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Our id (reuse a saved one to keep our place in others' tables).
    pub id: NodeId,
    /// Addresses to bootstrap from (ids unknown).
    pub bootstrap: Vec<SocketAddrV4>,
    /// Nodes known from a saved routing table (they are pinged, not trusted blindly).
    pub known: Vec<NodeInfo>,
    /// Seed of the node's randomness (transaction ids, token secrets, refresh targets).
    pub seed: u64,
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Destination.
    pub to: SocketAddrV4,
    /// Payload.
    pub bytes: Vec<u8>,
}

/// Identifies a lookup in events.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct LookupId(pub u64);

/// What a finished lookup did.
#[derive(Clone, Debug)]
pub struct LookupReport {
    /// Which lookup.
    pub id: LookupId,
    /// Its target.
    pub target: NodeId,
    /// True for `get_peers`, false for `find_node`.
    pub get_peers: bool,
    /// Hop of the closest node that answered (see [`super::lookup`]).
    pub hops: u8,
    /// Hop of the first reply with peers, if any.
    pub first_peers_hop: Option<u8>,
    /// Queries sent.
    pub queried: u32,
    /// Replies received.
    pub answered: u32,
    /// Distinct peers found.
    pub peers: usize,
    /// Nodes sent an `announce_peer`.
    pub announced_to: usize,
    /// Time from start to finish.
    pub elapsed: Duration,
}

/// What the node tells its driver.
#[derive(Clone, Debug)]
pub enum Event {
    /// Peers learnt for a torrent (each peer once per lookup).
    Peers {
        /// The torrent.
        info_hash: NodeId,
        /// The new peers.
        peers: Vec<SocketAddrV4>,
    },
    /// A lookup finished.
    LookupDone(LookupReport),
}

#[derive(Clone, Debug)]
enum Purpose {
    /// A liveness ping (questionable node, eviction test, saved node).
    Ping,
    /// Part of a lookup.
    Lookup(LookupId),
    /// An `announce_peer` after a lookup.
    Announce,
}

#[derive(Clone, Debug)]
struct Transaction {
    to: SocketAddrV4,
    /// The id we expect to answer (None for bootstrap addresses).
    node: Option<NodeId>,
    purpose: Purpose,
    deadline: Instant,
}

struct Running {
    lookup: Lookup,
    get_peers: bool,
    /// Port to announce once the lookup ends.
    announce_port: Option<u16>,
    started: Instant,
}

/// A torrent the node announces (with a port) or only searches (without).
struct Torrent {
    port: Option<u16>,
    seeking: bool,
    next_at: Instant,
    running: Option<LookupId>,
}

/// One DHT node.
pub struct Node {
    id: NodeId,
    table: RoutingTable,
    bootstrap: Vec<SocketAddrV4>,
    rng: StdRng,
    transactions: HashMap<u16, Transaction>,
    next_tid: u16,
    lookups: HashMap<LookupId, Running>,
    next_lookup: u64,
    torrents: HashMap<NodeId, Torrent>,
    store: PeerStore,
    tokens: Tokens,
    limiter: RateLimiter,
    outbox: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_tick: Instant,
    bootstrap_at: Instant,
    bootstrap_wait: Duration,
    bootstrap_lookup: Option<LookupId>,
}

impl Node {
    /// A node that starts bootstrapping at its first tick (pinging any saved nodes first).
    pub fn new(cfg: NodeConfig, now: Instant) -> Node {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let tokens = Tokens::new(rng.random(), now);
        let mut node = Node {
            id: cfg.id,
            table: RoutingTable::new(cfg.id, now),
            bootstrap: cfg.bootstrap,
            next_tid: rng.random(),
            rng,
            transactions: HashMap::new(),
            lookups: HashMap::new(),
            next_lookup: 1,
            torrents: HashMap::new(),
            store: PeerStore::default(),
            tokens,
            limiter: RateLimiter::default(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            next_tick: now,
            bootstrap_at: now,
            bootstrap_wait: BOOTSTRAP_RETRY,
            bootstrap_lookup: None,
        };
        for n in cfg.known.iter().take(super::routing::SAVED_NODES_MAX) {
            node.query(n.addr, Some(n.id), Query::Ping, Purpose::Ping, now);
        }
        node
    }

    /// Our node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The routing table (for status and saving).
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The peers others announced to us.
    pub fn store(&self) -> &PeerStore {
        &self.store
    }

    /// Lookups running now.
    pub fn lookups_running(&self) -> usize {
        self.lookups.len()
    }

    /// Adds bootstrap addresses (used when the table runs low).
    pub fn add_bootstrap(&mut self, addr: SocketAddrV4) {
        if !self.bootstrap.contains(&addr) {
            self.bootstrap.push(addr);
        }
    }

    /// Announces `info_hash` with our TCP `port` now and every [`REANNOUNCE_INTERVAL`] (a
    /// seeder); the lookups also report the peers they meet.
    pub fn announce(&mut self, info_hash: NodeId, port: u16, now: Instant) {
        self.track(info_hash, Some(port), false, now);
    }

    /// Searches `info_hash` for peers without announcing (see [`Node::track`]).
    pub fn search(&mut self, info_hash: NodeId, now: Instant) {
        self.track(info_hash, None, true, now);
    }

    /// Looks `info_hash` up now and then on a timetable, announcing `port` if given. While
    /// `seeking` (a leecher) and no peer turned up, it tries again after [`SEARCH_RETRY`];
    /// otherwise every [`REANNOUNCE_INTERVAL`]. Calling it again changes port and mode.
    pub fn track(&mut self, info_hash: NodeId, port: Option<u16>, seeking: bool, now: Instant) {
        let t = self.torrents.entry(info_hash).or_insert(Torrent {
            port,
            seeking,
            next_at: now,
            running: None,
        });
        t.port = port;
        t.seeking = seeking;
        self.run_torrents(now);
    }

    /// Stops announcing or searching `info_hash`.
    pub fn forget(&mut self, info_hash: &NodeId) {
        self.torrents.remove(info_hash);
    }

    /// Starts one `get_peers` lookup (no announce); None when too many lookups run.
    pub fn get_peers(&mut self, info_hash: NodeId, now: Instant) -> Option<LookupId> {
        let id = self.start_lookup(info_hash, true, None, now);
        self.advance_lookups(now);
        id
    }

    /// Starts one `find_node` lookup; None when too many lookups run.
    pub fn find_node(&mut self, target: NodeId, now: Instant) -> Option<LookupId> {
        let id = self.start_lookup(target, false, None, now);
        self.advance_lookups(now);
        id
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Instant {
        let tx = self.transactions.values().map(|t| t.deadline).min();
        tx.map_or(self.next_tick, |d| d.min(self.next_tick))
    }

    /// Expires transactions and runs housekeeping that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u16> = self
            .transactions
            .iter()
            .filter(|(_, t)| t.deadline <= now)
            .map(|(tid, _)| *tid)
            .collect();
        for tid in expired {
            if let Some(t) = self.transactions.remove(&tid) {
                self.on_failure(t, now);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.housekeeping(now);
        }
    }

    /// Handles one datagram from `from`. Malformed input is dropped (logged at trace level).
    pub fn handle_datagram(&mut self, from: SocketAddrV4, bytes: &[u8], now: Instant) {
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(e) => {
                tracing::trace!(%from, "bad KRPC datagram: {e}");
                return;
            }
        };
        match msg.body {
            Body::Query {
                id,
                query,
                read_only,
            } => {
                if !self.limiter.allow(*from.ip(), now) {
                    return;
                }
                if !read_only {
                    self.heard(NodeInfo { id, addr: from }, now);
                }
                self.answer(from, msg.tid, query, now);
            }
            Body::Response(r) => self.on_response(from, &msg.tid, r, now),
            Body::Error { code, text } => {
                tracing::debug!(%from, code, "KRPC error reply: {text}");
                if let Some(t) = self.take_transaction(from, &msg.tid) {
                    self.on_failure(t, now);
                }
            }
        }
        self.advance_lookups(now);
    }

    fn heard(&mut self, node: NodeInfo, now: Instant) {
        if let Insert::PingOldest(old) = self.table.heard_from(node, now) {
            self.query(old.addr, Some(old.id), Query::Ping, Purpose::Ping, now);
        }
    }

    fn answer(&mut self, from: SocketAddrV4, tid: Vec<u8>, query: Query, now: Instant) {
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        let body = match query {
            Query::Ping => Body::Response(r),
            Query::FindNode { target } => {
                r.nodes = self.table.closest(&target, K);
                Body::Response(r)
            }
            Query::GetPeers { info_hash } => {
                r.nodes = self.table.closest(&info_hash, K);
                r.values = self.store.peers(&info_hash, now);
                r.token = Some(self.tokens.token_for(*from.ip()).to_vec());
                Body::Response(r)
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                if !self.tokens.is_valid(*from.ip(), &token) {
                    Body::Error {
                        code: error_code::PROTOCOL,
                        text: "bad token".into(),
                    }
                } else {
                    let port = if implied_port { from.port() } else { port };
                    let peer = SocketAddrV4::new(*from.ip(), port);
                    if port == 0 || !self.store.announce(info_hash, peer, now) {
                        Body::Error {
                            code: error_code::SERVER,
                            text: "peer not stored".into(),
                        }
                    } else {
                        tracing::debug!(%peer, info_hash = %info_hash.to_hex(), "announce_peer stored");
                        Body::Response(r)
                    }
                }
            }
            Query::Unknown { .. } => Body::Error {
                code: error_code::METHOD_UNKNOWN,
                text: "method unknown".into(),
            },
        };
        self.send(from, &Message { tid, body });
    }

    fn take_transaction(&mut self, from: SocketAddrV4, tid: &[u8]) -> Option<Transaction> {
        let tid: [u8; 2] = tid.try_into().ok()?;
        let tid = u16::from_be_bytes(tid);
        // A reply counts only from the address we asked (a spoofed tid from elsewhere does not
        // complete or fail anything).
        if self.transactions.get(&tid)?.to != from {
            return None;
        }
        self.transactions.remove(&tid)
    }

    fn on_response(&mut self, from: SocketAddrV4, tid: &[u8], r: Response, now: Instant) {
        let Some(t) = self.take_transaction(from, tid) else {
            return;
        };
        self.heard(
            NodeInfo {
                id: r.id,
                addr: from,
            },
            now,
        );
        if let Purpose::Lookup(lid) = t.purpose {
            if let Some(run) = self.lookups.get_mut(&lid) {
                let peers = run.lookup.on_response(from, &r);
                if !peers.is_empty() {
                    let info_hash = run.lookup.target;
                    self.push_event(Event::Peers { info_hash, peers });
                }
            }
        }
    }

    fn on_failure(&mut self, t: Transaction, now: Instant) {
        if let Some(id) = t.node {
            self.table.failed(&id, now);
        }
        if let Purpose::Lookup(lid) = t.purpose {
            if let Some(run) = self.lookups.get_mut(&lid) {
                run.lookup.on_failure(t.to);
            }
        }
        self.advance_lookups(now);
    }

    fn housekeeping(&mut self, now: Instant) {
        let rng = &mut self.rng;
        self.tokens.maybe_rotate(now, || rng.random());
        let rng = &mut self.rng;
        let targets = self.table.refresh_targets(now, || rng.random());
        for target in targets {
            let _ = self.start_lookup(target, false, None, now);
        }
        for n in self.table.questionable(now, PINGS_PER_TICK) {
            let pending = self.transactions.values().any(|t| t.to == n.addr);
            if !pending {
                self.query(n.addr, Some(n.id), Query::Ping, Purpose::Ping, now);
            }
        }
        self.store.expire(now);
        self.limiter.forget_idle(now);
        let bootstrapping = self
            .bootstrap_lookup
            .is_some_and(|l| self.lookups.contains_key(&l));
        if self.table.is_empty() {
            self.bootstrap_wait = BOOTSTRAP_RETRY;
        }
        if !bootstrapping && self.table.len() < BOOTSTRAP_BELOW && now >= self.bootstrap_at {
            self.bootstrap_at = now + self.bootstrap_wait;
            self.bootstrap_wait = (self.bootstrap_wait * 2).min(BOOTSTRAP_RETRY_MAX);
            self.bootstrap_lookup = self.start_lookup(self.id, false, None, now);
        }
        self.run_torrents(now);
        self.advance_lookups(now);
    }

    fn run_torrents(&mut self, now: Instant) {
        let due: Vec<(NodeId, Option<u16>)> = self
            .torrents
            .iter()
            .filter(|(_, t)| t.running.is_none() && t.next_at <= now)
            .map(|(ih, t)| (*ih, t.port))
            .collect();
        for (info_hash, port) in due {
            if let Some(lid) = self.start_lookup(info_hash, true, port, now) {
                let t = self.torrents.get_mut(&info_hash).expect("due torrent");
                t.running = Some(lid);
            }
        }
        self.advance_lookups(now);
    }

    fn start_lookup(
        &mut self,
        target: NodeId,
        get_peers: bool,
        announce_port: Option<u16>,
        now: Instant,
    ) -> Option<LookupId> {
        if self.lookups.len() >= LOOKUPS_MAX {
            return None;
        }
        let seeds = self.table.closest(&target, K * 2);
        let bootstrap: &[SocketAddrV4] = if seeds.len() < K {
            &self.bootstrap
        } else {
            &[]
        };
        let lookup = Lookup::new(target, self.id, &seeds, bootstrap);
        let id = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.lookups.insert(
            id,
            Running {
                lookup,
                get_peers,
                announce_port,
                started: now,
            },
        );
        // The caller advances lookups once it has recorded the id (a lookup with nobody to
        // ask finishes at once, and its torrent must already know it is running).
        Some(id)
    }

    /// Sends the queries running lookups may send, and finishes those that are done.
    fn advance_lookups(&mut self, now: Instant) {
        let ids: Vec<LookupId> = self.lookups.keys().copied().collect();
        for lid in ids {
            loop {
                if self.transactions.len() >= TRANSACTIONS_MAX {
                    break;
                }
                let Some(run) = self.lookups.get_mut(&lid) else {
                    break;
                };
                let Some(c) = run.lookup.next_to_ask() else {
                    break;
                };
                let target = run.lookup.target;
                let query = if run.get_peers {
                    Query::GetPeers { info_hash: target }
                } else {
                    Query::FindNode { target }
                };
                self.query(c.addr, c.id, query, Purpose::Lookup(lid), now);
            }
            if self.lookups.get(&lid).is_some_and(|r| r.lookup.is_done()) {
                let run = self.lookups.remove(&lid).expect("present");
                self.finish(lid, run, now);
            }
        }
    }

    fn finish(&mut self, lid: LookupId, run: Running, now: Instant) {
        let mut announced_to = 0;
        if let Some(port) = run.announce_port {
            let targets: Vec<(SocketAddrV4, Option<NodeId>, Vec<u8>)> = run
                .lookup
                .closest_answered()
                .into_iter()
                .filter_map(|c| Some((c.addr, c.id, c.token.clone()?)))
                .collect();
            for (addr, id, token) in targets {
                let q = Query::AnnouncePeer {
                    info_hash: run.lookup.target,
                    port,
                    implied_port: false,
                    token,
                };
                self.query(addr, id, q, Purpose::Announce, now);
                announced_to += 1;
            }
        }
        let l = &run.lookup;
        let report = LookupReport {
            id: lid,
            target: l.target,
            get_peers: run.get_peers,
            hops: l.hops(),
            first_peers_hop: l.first_peers_hop,
            queried: l.queried,
            answered: l.answered,
            peers: l.peers.len(),
            announced_to,
            elapsed: now - run.started,
        };
        tracing::debug!(?report, "DHT lookup done");
        if self.bootstrap_lookup == Some(lid) && l.answered > 0 {
            let rng = &mut self.rng;
            for target in self.table.join_targets(|| rng.random()) {
                let _ = self.start_lookup(target, false, None, now);
            }
        }
        if let Some(t) = self.torrents.get_mut(&l.target) {
            if t.running == Some(lid) {
                t.running = None;
                let retry = l.answered == 0 || (t.seeking && l.peers.is_empty());
                t.next_at = now
                    + if retry {
                        SEARCH_RETRY
                    } else {
                        REANNOUNCE_INTERVAL
                    };
            }
        }
        self.push_event(Event::LookupDone(report));
    }

    fn query(
        &mut self,
        to: SocketAddrV4,
        node: Option<NodeId>,
        query: Query,
        purpose: Purpose,
        now: Instant,
    ) {
        if self.transactions.len() >= TRANSACTIONS_MAX {
            return;
        }
        let mut tid = self.next_tid;
        while self.transactions.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        self.transactions.insert(
            tid,
            Transaction {
                to,
                node,
                purpose,
                deadline: now + QUERY_TIMEOUT,
            },
        );
        let msg = Message {
            tid: tid.to_be_bytes().to_vec(),
            body: Body::Query {
                id: self.id,
                query,
                read_only: false,
            },
        };
        self.send(to, &msg);
    }

    fn send(&mut self, to: SocketAddrV4, msg: &Message) {
        if self.outbox.len() < OUTBOX_MAX {
            self.outbox.push_back(Transmit {
                to,
                bytes: msg.to_bytes(),
            });
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.len() >= EVENTS_MAX {
            self.events.pop_front();
        }
        self.events.push_back(e);
    }
}
