//! The built-in tracker's swarm store: peers per info-hash and address family, with expiry,
//! random peer selection and hard bounds on swarms and peers. Sans-IO: `now` comes in.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{ServerError, ServerLimits};
use crate::metainfo::{InfoHash, PeerId};
use crate::time::Instant;
use crate::tracker::udp_proto::ScrapeStats;
use crate::tracker::Event;

/// One announce as the store sees it, whatever the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAnnounce {
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Its address: the packet's source IP and the announced port.
    pub addr: SocketAddr,
    /// Bytes it still needs (0 = seeder).
    pub left: u64,
    /// Its event.
    pub event: Event,
    /// Peers it wants, already capped by the front end.
    pub numwant: usize,
}

/// What the store answers an announce with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceAnswer {
    /// Seeders in the swarm (both families).
    pub seeders: u32,
    /// Leechers in the swarm (both families).
    pub leechers: u32,
    /// Peers of the announcer's family, the announcer excluded, with their ids.
    pub peers: Vec<(PeerId, SocketAddr)>,
}

#[derive(Clone, Debug)]
struct Entry {
    id: PeerId,
    addr: SocketAddr,
    seeder: bool,
    last_seen: Instant,
}

/// Peers of one family in one swarm: a dense vector for O(1) random picks plus an index.
#[derive(Clone, Debug, Default)]
struct PeerList {
    peers: Vec<Entry>,
    index: HashMap<PeerId, usize>,
    seeders: u32,
}

impl PeerList {
    fn remove(&mut self, id: &PeerId) -> Option<Entry> {
        let i = self.index.remove(id)?;
        let e = self.peers.swap_remove(i);
        if let Some(moved) = self.peers.get(i) {
            self.index.insert(moved.id, i);
        }
        self.seeders -= u32::from(e.seeder);
        Some(e)
    }

    fn expire(&mut self, before: Instant) -> usize {
        let stale: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|e| e.last_seen < before)
            .map(|e| e.id)
            .collect();
        for id in &stale {
            self.remove(id);
        }
        stale.len()
    }
}

#[derive(Clone, Debug, Default)]
struct Swarm {
    v4: PeerList,
    v6: PeerList,
    completed: u32,
}

impl Swarm {
    fn len(&self) -> usize {
        self.v4.peers.len() + self.v6.peers.len()
    }
    fn counts(&self) -> (u32, u32) {
        let seeders = self.v4.seeders + self.v6.seeders;
        (seeders, self.len() as u32 - seeders)
    }
}

/// All swarms of one shard.
#[derive(Clone, Debug)]
pub struct SwarmStore {
    swarms: HashMap<InfoHash, Swarm>,
    limits: ServerLimits,
    peers_total: usize,
    rng: u64,
}

impl SwarmStore {
    /// An empty store bounded by `limits`; `seed` drives peer selection.
    pub fn new(limits: ServerLimits, seed: u64) -> SwarmStore {
        SwarmStore {
            swarms: HashMap::new(),
            limits,
            peers_total: 0,
            rng: seed | 1,
        }
    }

    /// Swarms held.
    pub fn swarm_count(&self) -> usize {
        self.swarms.len()
    }

    /// Peers held, all swarms together.
    pub fn peer_count(&self) -> usize {
        self.peers_total
    }

    /// Records an announce and returns counts and up to `numwant` other peers (leechers only,
    /// when the announcer is a seeder: `left` = 0). A new swarm
    /// past [`ServerLimits::swarms_max`], or a new peer past the per-swarm or total bound, is
    /// refused; known peers are always updated.
    pub fn announce(
        &mut self,
        a: &PeerAnnounce,
        now: Instant,
    ) -> Result<AnnounceAnswer, ServerError> {
        if a.event == Event::Stopped {
            if let Some(s) = self.swarms.get_mut(&a.info_hash) {
                let list = if a.addr.is_ipv6() {
                    &mut s.v6
                } else {
                    &mut s.v4
                };
                if list.remove(&a.peer_id).is_some() {
                    self.peers_total -= 1;
                }
                let (seeders, leechers) = s.counts();
                if s.len() == 0 {
                    self.swarms.remove(&a.info_hash);
                }
                return Ok(AnnounceAnswer {
                    seeders,
                    leechers,
                    peers: Vec::new(),
                });
            }
            return Ok(AnnounceAnswer::default());
        }
        if !self.swarms.contains_key(&a.info_hash) && self.swarms.len() >= self.limits.swarms_max {
            return Err(ServerError::SwarmsFull {
                max: self.limits.swarms_max,
            });
        }
        let peers_total_full = self.peers_total >= self.limits.peers_total_max;
        let start = self.rng_next() as usize;
        let s = self.swarms.entry(a.info_hash).or_default();
        let swarm_len = s.len();
        let list = if a.addr.is_ipv6() {
            &mut s.v6
        } else {
            &mut s.v4
        };
        let seeder = a.left == 0;
        match list.index.get(&a.peer_id) {
            Some(&i) => {
                let e = &mut list.peers[i];
                if e.seeder != seeder {
                    list.seeders = list.seeders + u32::from(seeder) - u32::from(e.seeder);
                    if seeder && a.event == Event::Completed {
                        s.completed = s.completed.saturating_add(1);
                    }
                }
                e.seeder = seeder;
                e.addr = a.addr;
                e.last_seen = now;
            }
            None => {
                if swarm_len >= self.limits.peers_per_swarm_max || peers_total_full {
                    if swarm_len == 0 {
                        self.swarms.remove(&a.info_hash);
                    }
                    return Err(ServerError::SwarmFull {
                        max: self.limits.peers_per_swarm_max,
                    });
                }
                list.index.insert(a.peer_id, list.peers.len());
                list.peers.push(Entry {
                    id: a.peer_id,
                    addr: a.addr,
                    seeder,
                    last_seen: now,
                });
                list.seeders += u32::from(seeder);
                if a.event == Event::Completed {
                    s.completed = s.completed.saturating_add(1);
                }
                self.peers_total += 1;
            }
        }
        let (seeders, leechers) = s.counts();
        let list = if a.addr.is_ipv6() { &s.v6 } else { &s.v4 };
        let peers = pick(list, &a.peer_id, a.numwant, start, seeder);
        Ok(AnnounceAnswer {
            seeders,
            leechers,
            peers,
        })
    }

    /// Counts for one torrent (zeros when unknown).
    pub fn scrape(&self, h: &InfoHash) -> ScrapeStats {
        self.swarms.get(h).map_or(ScrapeStats::default(), |s| {
            let (seeders, leechers) = s.counts();
            ScrapeStats {
                seeders,
                completed: s.completed,
                leechers,
            }
        })
    }

    /// Drops peers last seen before `now - limits.peer_ttl` and empty swarms; returns how
    /// many peers went. Call it every few seconds; it costs one pass over the store.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = Instant::from_nanos(
            now.as_nanos()
                .saturating_sub(self.limits.peer_ttl().as_nanos() as u64),
        );
        let mut gone = 0;
        self.swarms.retain(|_, s| {
            gone += s.v4.expire(before) + s.v6.expire(before);
            s.len() > 0
        });
        self.peers_total -= gone;
        gone
    }

    fn rng_next(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// Up to `n` peers from a random starting point, wrapping, skipping `me`.
/// Up to `n` peers of `list` other than `me`, from a random start. A seeder (`leechers_only`)
/// gets only leechers: two seeds have nothing to trade, and a seed's connection to another is
/// dropped as soon as both bitfields are seen (as XBT and Ocelot do).
fn pick(
    list: &PeerList,
    me: &PeerId,
    n: usize,
    start: usize,
    leechers_only: bool,
) -> Vec<(PeerId, SocketAddr)> {
    let len = list.peers.len();
    let candidates = if leechers_only {
        len - list.seeders as usize
    } else {
        len
    };
    if candidates == 0 || n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(n.min(candidates));
    for k in 0..len {
        let e = &list.peers[(start + k) % len];
        if e.id != *me && !(leechers_only && e.seeder) {
            out.push((e.id, e.addr));
            if out.len() == n {
                break;
            }
        }
    }
    out
}
