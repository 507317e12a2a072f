//! Swarm management: which peers to know, dial, keep and drop (the "churn" policy).
//!
//! A bounded pool of candidate addresses fed by trackers, PEX, magnet hints and incoming
//! connections; the connection count kept between a low and a high water mark; outbound
//! connects with a timeout and exponential back-off per address; a per-IP connection limit;
//! bans by IP; and, when every slot is taken while fresh candidates wait, the connection that
//! is useless to both sides is dropped to make room. Sans-IO: addresses and `now` in,
//! decisions out. Deterministic (no randomness: candidates are tried in arrival order).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::time::Instant;

/// Swarm limits and timings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SwarmConfig {
    /// Below this many connections (open + opening) we dial candidates.
    pub conns_min: usize,
    /// Never more than this many connections; incoming ones past it are refused.
    pub conns_max: usize,
    /// Connections per remote IP (NAT'd households share one; 127.0.0.1 tests need more).
    pub per_ip_max: usize,
    /// Outbound connects in flight at once (avoid SYN storms).
    pub connecting_max: usize,
    /// An outbound connect that has not completed after this long counts as failed.
    pub connect_timeout: Duration,
    /// First back-off after a failed connect; doubles per consecutive failure.
    pub backoff_first: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// A candidate that failed this many times in a row is forgotten.
    pub failures_max: u32,
    /// Most candidate addresses remembered (oldest untried ones are evicted first).
    pub pool_max: usize,
    /// A connection younger than this is never dropped for being useless (give it a chance
    /// to receive a bitfield and get unchoked).
    pub useless_grace: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        SwarmConfig {
            conns_min: 20,
            conns_max: 50,
            per_ip_max: 1,
            connecting_max: 8,
            connect_timeout: Duration::from_secs(10),
            backoff_first: Duration::from_secs(15),
            backoff_max: Duration::from_secs(30 * 60),
            failures_max: 6,
            pool_max: 2_000,
            useless_grace: Duration::from_secs(60),
        }
    }
}

/// Where a candidate address came from (kept for logs and priorities).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerSource {
    /// A tracker reply.
    Tracker,
    /// A PEX message from another peer (BEP 11).
    Pex,
    /// A magnet `x.pe` hint or a `--peer` argument.
    Hint,
    /// The peer connected to us.
    Incoming,
}

#[derive(Clone, Debug)]
struct Candidate {
    source: PeerSource,
    failures: u32,
    not_before: Instant,
}

#[derive(Clone, Debug)]
enum ConnState {
    Connecting { deadline: Instant },
    Connected,
}

#[derive(Clone, Debug)]
struct Conn {
    state: ConnState,
    outbound: bool,
    since: Instant,
}

impl Conn {
    fn is_connecting(&self) -> bool {
        matches!(self.state, ConnState::Connecting { .. })
    }
}

/// What the torrent knows about one open connection when deciding whom to drop.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ConnUsefulness {
    /// The connection.
    pub addr: SocketAddr,
    /// The peer has pieces we lack (we are or could be interested).
    pub useful_to_us: bool,
    /// We have pieces the peer lacks (it is or could be interested).
    pub useful_to_them: bool,
}

/// Why a connection ended (changes what happens to the address).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Disconnect {
    /// Ordinary end (peer left, timeout, protocol error): may be dialled again later.
    Normal,
    /// We dropped it as useless to both sides: back off before trying again.
    Useless,
    /// The peer completed too, or is a seed while we are: never redial this session.
    NothingToTrade,
}

/// The swarm policy for one torrent; see the module docs.
#[derive(Debug)]
pub struct Swarm {
    cfg: SwarmConfig,
    candidates: HashMap<SocketAddr, Candidate>,
    /// Candidate addresses in arrival order (may hold stale entries; skipped lazily), each
    /// with its candidate's `not_before` when queued: a queued candidate's `not_before` only
    /// moves later (a back-off), so an entry whose copy is still ahead of `now` is not ready
    /// and a dial attempt passes it without a lookup.
    order: VecDeque<(SocketAddr, Instant)>,
    conns: HashMap<SocketAddr, Conn>,
    /// How many of `conns` are still `Connecting` (asked on every dial).
    connecting: usize,
    /// Set when a dial attempt found no candidate ready: until the time given (or, with
    /// `None`, at all) none will be, unless candidates or connections change, and every
    /// such change clears it. Spares a pool of backing-off candidates a scan per dial.
    quiet: Option<Option<Instant>>,
    per_ip: HashMap<IpAddr, usize>,
    banned: HashSet<IpAddr>,
    /// Peers we had nothing to trade with (both seeds): not dialled again. At most
    /// `pool_max`, oldest forgotten first (`retired_order`), so a long-lived seed that meets
    /// many other seeds does not grow without bound.
    retired: HashSet<SocketAddr>,
    retired_order: VecDeque<SocketAddr>,
    own: HashSet<SocketAddr>,
    /// Our young outbound connections given up for an incoming one from the same IP (see
    /// [`accept_incoming`](Swarm::accept_incoming)); the shell closes them.
    superseded: Vec<SocketAddr>,
    /// Dial up to this many connections: `conns_min`, or more while upload slots sit idle
    /// (see [`want_slots_filled`](Swarm::want_slots_filled)); never above `conns_max`.
    dial_target: usize,
    /// For a seed (after `want_slots_filled`): whether fewer peers are interested than it has
    /// upload slots. `None` for a downloader.
    slots_idle: Option<bool>,
}

impl Swarm {
    /// An empty swarm.
    pub fn new(cfg: SwarmConfig) -> Swarm {
        Swarm {
            cfg,
            candidates: HashMap::new(),
            order: VecDeque::new(),
            conns: HashMap::new(),
            connecting: 0,
            quiet: None,
            per_ip: HashMap::new(),
            banned: HashSet::new(),
            retired: HashSet::new(),
            retired_order: VecDeque::new(),
            own: HashSet::new(),
            superseded: Vec::new(),
            dial_target: cfg.conns_min.min(cfg.conns_max),
            slots_idle: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SwarmConfig {
        &self.cfg
    }

    /// Our own listening addresses: never dialled (trackers hand us back to ourselves).
    pub fn set_own_addrs(&mut self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.stir();
        self.own = addrs.into_iter().collect();
    }

    /// The address to connect out from when dialling `peer`: our own listen IP when it is a
    /// specific one of the same family, so peers see the IP we listen on (on a host with
    /// several addresses, such as 127.0.0.x test swarms, the kernel would pick another).
    pub fn source_ip_for(&self, peer: SocketAddr) -> Option<IpAddr> {
        self.own
            .iter()
            .map(SocketAddr::ip)
            .find(|ip| !ip.is_unspecified() && ip.is_ipv4() == peer.is_ipv4())
    }

    /// Open plus opening connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// How many connections (open + opening) [`poll_connect`](Self::poll_connect) dials up to.
    pub fn dial_target(&self) -> usize {
        self.dial_target
    }

    /// Tells the swarm how many of its connections want data from us (`interested`) and how
    /// many upload slots we have (`slots`). A seed whose slots are not all taken by
    /// interested peers dials past `conns_min`: to `connections - interested + slots`, so
    /// that the uninterested connections (seeds, peers that lack nothing we have) are not
    /// counted as filling a slot, capped at `conns_max`. Without this a seed with hundreds
    /// of slots keeps only `conns_min` peers once the first ones it fed complete and leave.
    /// A downloader need not call it; its target stays `conns_min`.
    pub fn want_slots_filled(&mut self, interested: usize, slots: usize) {
        let conns = self.conns.len();
        let want = (conns - interested.min(conns))
            .saturating_add(slots)
            .max(self.cfg.conns_min)
            .min(self.cfg.conns_max);
        self.dial_target = want;
        self.slots_idle = Some(interested < slots);
    }

    /// True when the swarm is below its dial target and no candidate is ready: there are
    /// none, or the last dial attempt found every one backing off or held by the per-IP
    /// limit; for a seed, only while some of its upload slots are idle (a seed whose slots
    /// are all taken gains nothing from more peers). The shell should then ask the tracker
    /// for more peers early, no more often than the tracker's `min interval`
    /// (`AnnounceScheduler::announce_soon`).
    pub fn wants_peers(&self) -> bool {
        let below = self.conns.len() < self.dial_target;
        let nothing_ready = self.candidates.is_empty() || self.quiet.is_some();
        let useful = self.slots_idle != Some(false);
        below && nothing_ready && useful && self.connecting < self.cfg.connecting_max
    }

    /// Candidates waiting (some may be backing off).
    pub fn candidate_count(&self) -> usize {
        self.candidates.len()
    }

    /// Addresses of established connections (for PEX `added`).
    pub fn connected(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Connected))
            .map(|(a, _)| *a)
    }

    /// True if `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains(&ip)
    }

    /// Learns candidate addresses. Known, connected, banned, retired, our own and port-0
    /// addresses are skipped; the pool never exceeds `pool_max` (oldest untried evicted).
    pub fn add_peers(
        &mut self,
        addrs: impl IntoIterator<Item = SocketAddr>,
        source: PeerSource,
        now: Instant,
    ) {
        self.stir();
        for addr in addrs {
            if addr.port() == 0
                || self.own.contains(&addr)
                || self.banned.contains(&addr.ip())
                || self.retired.contains(&addr)
                || self.conns.contains_key(&addr)
                || self.candidates.contains_key(&addr)
            {
                continue;
            }
            if self.candidates.len() >= self.cfg.pool_max && !self.evict_one() {
                return;
            }
            self.candidates.insert(
                addr,
                Candidate {
                    source,
                    failures: 0,
                    not_before: now,
                },
            );
            self.order.push_back((addr, now));
        }
    }

    /// Drops the oldest candidate; false if none.
    fn evict_one(&mut self) -> bool {
        while let Some((addr, _)) = self.order.pop_front() {
            if self.candidates.remove(&addr).is_some() {
                return true;
            }
        }
        false
    }

    fn ip_has_room(&self, ip: IpAddr) -> bool {
        self.per_ip.get(&ip).copied().unwrap_or(0) < self.cfg.per_ip_max
    }

    /// The next address to dial now, if we are below the dial target (`conns_min`, or more
    /// for a seed with idle slots: [`want_slots_filled`](Self::want_slots_filled)) and a
    /// candidate is ready. The caller must follow with [`on_connecting`](Self::on_connecting).
    pub fn poll_connect(&mut self, now: Instant) -> Option<SocketAddr> {
        debug_assert_eq!(
            self.connecting,
            self.conns.values().filter(|c| c.is_connecting()).count(),
            "connecting count"
        );
        if self.conns.len() >= self.dial_target || self.connecting >= self.cfg.connecting_max {
            return None;
        }
        if let Some(until) = self.quiet {
            if until.is_none_or(|t| now < t) {
                return None;
            }
        }
        // One pass over the queue: ready candidates are taken, backing-off ones rotate to the
        // back, stale entries (already removed) are dropped.
        let mut next_ready: Option<Instant> = None;
        for _ in 0..self.order.len() {
            let (addr, queued) = self.order.pop_front()?;
            if queued > now {
                next_ready = Some(next_ready.map_or(queued, |t| t.min(queued)));
                self.order.push_back((addr, queued));
                continue;
            }
            let Some(c) = self.candidates.get(&addr) else {
                continue;
            };
            if self.conns.contains_key(&addr) {
                // Dialled by the caller directly, or already open: drop this queue entry;
                // closing it re-queues the address.
                continue;
            }
            if c.not_before <= now && self.ip_has_room(addr.ip()) {
                return Some(addr);
            }
            if c.not_before > now {
                next_ready = Some(next_ready.map_or(c.not_before, |t| t.min(c.not_before)));
            }
            self.order.push_back((addr, c.not_before));
        }
        // Nothing ready: the earliest backoff to end is the next time an answer can differ
        // (candidates held back by the per-IP limit wait for a connection to close).
        self.quiet = Some(next_ready);
        None
    }

    /// Candidates or connections changed: the next dial attempt must look.
    fn stir(&mut self) {
        self.quiet = None;
    }

    /// We started dialling `addr` (from `poll_connect` or a caller's own choice).
    pub fn on_connecting(&mut self, addr: SocketAddr, now: Instant) {
        self.open(
            addr,
            true,
            ConnState::Connecting {
                deadline: now + self.cfg.connect_timeout,
            },
            now,
        );
    }

    fn open(&mut self, addr: SocketAddr, outbound: bool, state: ConnState, now: Instant) {
        self.stir();
        let conn = Conn {
            state,
            outbound,
            since: now,
        };
        self.connecting += usize::from(conn.is_connecting());
        match self.conns.insert(addr, conn) {
            None => *self.per_ip.entry(addr.ip()).or_default() += 1,
            Some(old) => self.connecting -= usize::from(old.is_connecting()),
        }
    }

    /// The TCP connect to `addr` completed.
    pub fn on_connected(&mut self, addr: SocketAddr, now: Instant) {
        if let Some(c) = self.conns.get_mut(&addr) {
            self.connecting -= usize::from(c.is_connecting());
            c.state = ConnState::Connected;
            c.since = now;
        }
        if let Some(c) = self.candidates.get_mut(&addr) {
            c.failures = 0;
        }
    }

    /// Whether to accept an incoming connection from `addr`: not banned, below `conns_max`
    /// and the per-IP limit. On `true` the connection is counted.
    ///
    /// Two peers that learn of each other at once dial each other at once; with one
    /// connection per IP each would then refuse the other's incoming connection and both
    /// would be lost. So when the IP's only room is taken by our own outbound connection
    /// opened less than `connect_timeout` ago, both sides keep the connection opened by the
    /// lower IP address: here, the incoming one wins if its IP is below ours, and our
    /// outbound one is handed to the shell to close through
    /// [`take_superseded`](Self::take_superseded).
    pub fn accept_incoming(&mut self, addr: SocketAddr, now: Instant) -> bool {
        if self.banned.contains(&addr.ip())
            || self.conns.len() >= self.cfg.conns_max
            || self.conns.contains_key(&addr)
        {
            return false;
        }
        if !self.ip_has_room(addr.ip()) {
            let Some(ours) = self.simultaneous_outbound(addr.ip(), now) else {
                return false;
            };
            if !self.incoming_wins_tie(addr.ip()) || self.superseded.len() >= self.cfg.conns_max {
                return false;
            }
            self.close(ours);
            self.superseded.push(ours);
            // Dialable again once the incoming connection ends (the IP is full until then).
            if let Some(c) = self.candidates.get(&ours) {
                self.order.push_back((ours, c.not_before));
            }
        }
        self.open(addr, false, ConnState::Connected, now);
        true
    }

    /// Our outbound connection to `ip` opened less than `connect_timeout` ago, if the IP's
    /// room is all taken by it.
    fn simultaneous_outbound(&self, ip: IpAddr, now: Instant) -> Option<SocketAddr> {
        let mut to_ip = self.conns.iter().filter(|(a, _)| a.ip() == ip);
        let (addr, conn) = to_ip.next()?;
        let young = now.saturating_duration_since(conn.since) < self.cfg.connect_timeout;
        (to_ip.next().is_none() && conn.outbound && young).then_some(*addr)
    }

    /// Whether a connection opened by `ip` beats ours to it: the lower IP's connection wins.
    /// Without a known own address of the same family, ours wins (the old, safe answer).
    fn incoming_wins_tie(&self, ip: IpAddr) -> bool {
        self.source_ip_for(SocketAddr::new(ip, 0))
            .is_some_and(|own| ip < own)
    }

    /// Outbound connections given up for an incoming one (the shell closes them; the swarm
    /// has already forgotten them, so their close is not reported as a failure).
    pub fn take_superseded(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.superseded)
    }

    /// An outbound connect failed (refused, timed out): back off exponentially.
    pub fn on_connect_failed(&mut self, addr: SocketAddr, now: Instant) {
        if self.close(addr).is_none() {
            return; // superseded, or reported twice: not a failure of the address
        }
        let (first, max, failures_max) = (
            self.cfg.backoff_first,
            self.cfg.backoff_max,
            self.cfg.failures_max,
        );
        let Some(c) = self.candidates.get_mut(&addr) else {
            return;
        };
        c.failures += 1;
        if c.failures >= failures_max {
            self.candidates.remove(&addr);
            return;
        }
        let factor = 1u32 << (c.failures - 1).min(16);
        c.not_before = now + first.saturating_mul(factor).min(max);
        self.order.push_back((addr, c.not_before));
    }

    fn retire(&mut self, addr: SocketAddr) {
        if !self.retired.insert(addr) {
            return;
        }
        self.retired_order.push_back(addr);
        while self.retired_order.len() > self.cfg.pool_max.max(1) {
            if let Some(old) = self.retired_order.pop_front() {
                self.retired.remove(&old);
            }
        }
    }

    /// Peers remembered as having nothing to trade with us.
    pub fn retired_count(&self) -> usize {
        self.retired.len()
    }

    fn close(&mut self, addr: SocketAddr) -> Option<Conn> {
        self.stir();
        let conn = self.conns.remove(&addr)?;
        self.connecting -= usize::from(conn.is_connecting());
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
        Some(conn)
    }

    /// An established connection ended.
    pub fn on_disconnected(&mut self, addr: SocketAddr, why: Disconnect, now: Instant) {
        let Some(conn) = self.close(addr) else {
            return;
        };
        match why {
            Disconnect::NothingToTrade => {
                self.candidates.remove(&addr);
                self.retire(addr);
            }
            _ if self.banned.contains(&addr.ip()) => {}
            Disconnect::Useless | Disconnect::Normal if conn.outbound => {
                let delay = match why {
                    Disconnect::Useless => self.cfg.backoff_max.min(Duration::from_secs(5 * 60)),
                    _ => self.cfg.backoff_first,
                };
                let c = self.candidates.entry(addr).or_insert(Candidate {
                    source: PeerSource::Tracker,
                    failures: 0,
                    not_before: now,
                });
                c.not_before = now + delay;
                self.order.push_back((addr, c.not_before));
            }
            // An incoming peer's source port is ephemeral: nothing to redial.
            _ => {}
        }
    }

    /// Bans `ip`: forgets its candidates and refuses it from now on. Returns the open
    /// connections to that IP, which the caller must close.
    pub fn ban(&mut self, ip: IpAddr) -> Vec<SocketAddr> {
        self.stir();
        self.banned.insert(ip);
        self.candidates.retain(|a, _| a.ip() != ip);
        self.conns
            .keys()
            .filter(|a| a.ip() == ip)
            .copied()
            .collect()
    }

    /// Outbound connects past their timeout (the caller closes them and reports
    /// `on_connect_failed`).
    pub fn expired_connects(&self, now: Instant) -> Vec<SocketAddr> {
        self.conns
            .iter()
            .filter(
                |(_, c)| matches!(c.state, ConnState::Connecting { deadline } if deadline <= now),
            )
            .map(|(a, _)| *a)
            .collect()
    }

    /// When every slot is taken and a candidate is ready to replace it, the connection to
    /// drop: one useless to both sides, connected longer than the grace period (oldest
    /// first). `None` when nothing should be dropped.
    pub fn choose_drop(&self, peers: &[ConnUsefulness], now: Instant) -> Option<SocketAddr> {
        if self.conns.len() < self.cfg.conns_max {
            return None;
        }
        let ready = self
            .candidates
            .iter()
            .any(|(a, c)| c.not_before <= now && self.ip_has_room(a.ip()));
        if !ready {
            return None;
        }
        peers
            .iter()
            .filter(|p| !p.useful_to_us && !p.useful_to_them)
            .filter_map(|p| self.conns.get(&p.addr).map(|c| (p.addr, c.since)))
            .filter(|(_, since)| now - *since >= self.cfg.useless_grace)
            .min_by_key(|(a, since)| (*since, *a))
            .map(|(a, _)| a)
    }

    /// The earliest instant after `now` at which a back-off ends or a connect times out
    /// (for the shell's timer; it should also call `poll_connect` after every disconnect).
    pub fn next_timeout(&self, now: Instant) -> Option<Instant> {
        let backoff = self
            .candidates
            .iter()
            .filter(|(a, c)| c.not_before > now && !self.conns.contains_key(*a))
            .map(|(_, c)| c.not_before)
            .min();
        let connect = self
            .conns
            .values()
            .filter_map(|c| match c.state {
                ConnState::Connecting { deadline } => Some(deadline),
                ConnState::Connected => None,
            })
            .min();
        backoff.into_iter().chain(connect).min()
    }

    /// Where a candidate came from, if it is known.
    pub fn source(&self, addr: SocketAddr) -> Option<PeerSource> {
        self.candidates.get(&addr).map(|c| c.source)
    }
}

#[cfg(test)]
mod tests;
