//! SHELL CODE: one tracker shard — a thread with its own `SO_REUSEPORT` UDP socket, the swarms
//! whose info-hash maps to it, and a bounded mailbox for work other shards (or the HTTP side)
//! route to it. Decisions are the sans-IO core's (`tracker::server`).

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};

use super::metrics::LocalCounts;
use crate::metainfo::InfoHash;
use crate::time::{Clock, Instant};
use crate::tracker::server::http::{self as hfront, HttpAnnounce};
use crate::tracker::server::udp::{write_announce_reply, write_scrape_reply, UdpAction, UdpFront};
use crate::tracker::server::{AccessList, PeerAnnounce, RateLimiter, ServerLimits, SwarmStore};
use crate::tracker::udp_proto::{ScrapeStats, TransactionId, DATAGRAM_BYTES_MAX};

/// Messages a shard's mailbox holds at most; past it work is dropped (and counted), as a
/// UDP tracker under overload should.
pub const MAILBOX_MAX: usize = 8192;
/// Datagrams read per wake-up before the mailbox gets a turn.
const RECV_BATCH_MAX: usize = 256;
const SOCKET: Token = Token(0);
/// The token of the mailbox waker.
pub const WAKER: Token = Token(1);

/// Work for a shard.
pub enum ShardMsg {
    /// A UDP announce another shard received; reply from this shard's socket.
    UdpAnnounce(SocketAddr, TransactionId, PeerAnnounce),
    /// A UDP scrape being filled shard by shard; the last owner replies.
    UdpScrape(
        SocketAddr,
        TransactionId,
        Vec<InfoHash>,
        Vec<Option<ScrapeStats>>,
    ),
    /// An HTTP announce; the bencoded reply goes back on the channel.
    HttpAnnounce(Box<HttpAnnounce>, SyncSender<Vec<u8>>),
    /// Counts of this shard's hashes among these, for an HTTP scrape.
    HttpScrape(Vec<InfoHash>, SyncSender<Vec<(InfoHash, ScrapeStats)>>),
    /// A new access list (reloaded file).
    Access(Arc<AccessList>),
    /// Exit.
    Stop,
}

/// A handle to send work to a shard and wake it.
#[derive(Clone)]
pub struct ShardHandle {
    /// The mailbox.
    pub tx: SyncSender<ShardMsg>,
    /// Wakes the shard's poll.
    pub waker: Arc<Waker>,
}

impl ShardHandle {
    /// Queues `msg`; false when the mailbox is full.
    pub fn send(&self, msg: ShardMsg) -> bool {
        match self.tx.try_send(msg) {
            Ok(()) => {
                let _ = self.waker.wake();
                true
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

/// The shard owning `h` among `n`.
pub fn shard_of(h: &InfoHash, n: usize) -> usize {
    let x = u64::from_le_bytes(h.0[..8].try_into().expect("8 bytes"));
    (x % n as u64) as usize
}

/// Everything a shard thread owns.
pub struct Shard {
    /// Its index.
    pub index: usize,
    /// All shards' handles (its own included).
    pub peers: Vec<ShardHandle>,
    /// Its mailbox.
    pub rx: Receiver<ShardMsg>,
    /// Its poll (the waker is registered in it).
    pub poll: Poll,
    /// Its UDP socket, if the tracker serves UDP.
    pub socket: Option<mio::net::UdpSocket>,
    /// Connection-id keys, shared by all shards.
    pub front: UdpFront,
    /// Store bounds (per shard: the CLI divides the totals).
    pub limits: ServerLimits,
    /// Rate limiter (per shard).
    pub rate: RateLimiter,
    /// Admission lists.
    pub access: Arc<AccessList>,
    /// Shared clock (connection ids need one time base across shards).
    pub clock: Clock,
    /// Counters flushed to the registry.
    pub counts: LocalCounts,
}

impl Shard {
    /// Runs until [`ShardMsg::Stop`].
    pub fn run(mut self) {
        if let Some(s) = &mut self.socket {
            self.poll
                .registry()
                .register(s, SOCKET, Interest::READABLE)
                .expect("register the UDP socket");
        }
        let mut store = SwarmStore::new(self.limits, rand::random());
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        let mut out = Vec::with_capacity(2048);
        let mut last_expiry = self.clock.now();
        let mut last_flush = last_expiry;
        let n = self.peers.len();
        loop {
            let _ = self
                .poll
                .poll(&mut events, Some(Duration::from_millis(500)));
            let mut more = true;
            while more {
                more = false;
                for _ in 0..RECV_BATCH_MAX {
                    let Some(sock) = &self.socket else { break };
                    let (len, src) = match sock.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(_) => continue,
                    };
                    more = true;
                    let now = self.clock.now();
                    let action = self.front.handle(
                        &buf[..len],
                        src,
                        now,
                        &self.access,
                        &mut self.rate,
                        &mut out,
                    );
                    self.udp_action(action, src, &mut store, &mut out, now, n);
                }
                loop {
                    match self.rx.try_recv() {
                        Ok(ShardMsg::Stop) => return,
                        Ok(m) => self.message(m, &mut store, &mut out),
                        Err(_) => break,
                    }
                }
            }
            let now = self.clock.now();
            if now - last_flush >= Duration::from_secs(1) {
                last_flush = now;
                if now - last_expiry >= Duration::from_secs(5) {
                    store.expire(now);
                    last_expiry = now;
                }
                self.counts.flush(self.index, &store);
            }
        }
    }

    fn send(&mut self, to: SocketAddr, out: &[u8]) {
        if let Some(s) = &self.socket {
            if s.send_to(out, to).is_ok() {
                self.counts.udp_sent += 1;
            }
        }
    }

    fn udp_action(
        &mut self,
        action: UdpAction,
        src: SocketAddr,
        store: &mut SwarmStore,
        out: &mut Vec<u8>,
        now: Instant,
        n: usize,
    ) {
        match action {
            UdpAction::Reply => {
                self.counts.udp_connect += 1;
                self.send(src, out);
            }
            UdpAction::Announce(tid, a) => {
                self.counts.udp_announce += 1;
                let owner = shard_of(&a.info_hash, n);
                if owner == self.index {
                    self.announce_udp(src, tid, &a, store, out, now);
                } else if !self.peers[owner].send(ShardMsg::UdpAnnounce(src, tid, a)) {
                    self.counts.dropped += 1;
                }
            }
            UdpAction::Scrape(tid, hashes) => {
                self.counts.udp_scrape += 1;
                let slots = vec![None; hashes.len()];
                self.message(ShardMsg::UdpScrape(src, tid, hashes, slots), store, out);
            }
            UdpAction::Drop(_) => self.counts.dropped += 1,
        }
    }

    fn announce_udp(
        &mut self,
        src: SocketAddr,
        tid: TransactionId,
        a: &PeerAnnounce,
        store: &mut SwarmStore,
        out: &mut Vec<u8>,
        now: Instant,
    ) {
        let answer = store.announce(a, now);
        self.counts.refused += u64::from(answer.is_err());
        write_announce_reply(tid, &answer, self.limits.interval.as_secs() as u32, out);
        self.send(src, out);
    }

    fn message(&mut self, m: ShardMsg, store: &mut SwarmStore, out: &mut Vec<u8>) {
        let n = self.peers.len();
        let now = self.clock.now();
        match m {
            ShardMsg::UdpAnnounce(src, tid, a) => self.announce_udp(src, tid, &a, store, out, now),
            ShardMsg::UdpScrape(src, tid, hashes, mut slots) => {
                for (h, slot) in hashes.iter().zip(&mut slots) {
                    if shard_of(h, n) == self.index {
                        *slot = Some(store.scrape(h));
                    }
                }
                let next = hashes
                    .iter()
                    .zip(&slots)
                    .find(|(_, s)| s.is_none())
                    .map(|(h, _)| shard_of(h, n));
                match next {
                    Some(owner) => {
                        let msg = ShardMsg::UdpScrape(src, tid, hashes, slots);
                        if !self.peers[owner].send(msg) {
                            self.counts.dropped += 1;
                        }
                    }
                    None => {
                        let stats = slots.into_iter().map(Option::unwrap_or_default).collect();
                        write_scrape_reply(tid, stats, out);
                        self.send(src, out);
                    }
                }
            }
            ShardMsg::HttpAnnounce(req, reply) => {
                self.counts.http_announce += 1;
                let answer = match hfront::admit(&req, &self.access) {
                    Ok(()) => store.announce(&req.announce, now),
                    Err(e) => Err(e),
                };
                self.counts.refused += u64::from(answer.is_err());
                let interval = self.limits.interval.as_secs() as u32;
                let _ = reply.try_send(hfront::announce_reply(&req, &answer, interval));
            }
            ShardMsg::HttpScrape(hashes, reply) => {
                self.counts.http_scrape += 1;
                let mine = hashes
                    .iter()
                    .filter(|h| shard_of(h, n) == self.index)
                    .map(|h| (*h, store.scrape(h)))
                    .collect();
                let _ = reply.try_send(mine);
            }
            ShardMsg::Access(acc) => self.access = acc,
            ShardMsg::Stop => {}
        }
    }
}
