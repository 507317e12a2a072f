//! The seeding choker: which interested peers get an upload slot (BEP 3 "choking").
//!
//! A seeder has nothing to receive, so tit-for-tat becomes "serve whoever takes data
//! fastest": every [`ChokerConfig::rechoke_interval`] the interested peers we upload to
//! fastest get the regular slots, and one more slot goes to a random choked interested peer,
//! rotated every [`ChokerConfig::optimistic_interval`], so newcomers (rate 0) get a chance
//! to show their speed. Between rechokes, slots follow interest at once, as real clients do:
//! a peer that loses interest is choked on the spot and a free slot goes to an interested
//! peer immediately rather than up to 10 s later. Not interested never holds a slot.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::time::Instant;

/// Default number of upload slots, the optimistic one included.
///
/// An appliance should fill its NIC: 10 Gbit/s is 1.25 GB/s, while one peer typically
/// absorbs 1-10 MB/s from a single seeder (its access link, and TCP over tens of ms of RTT).
/// 500 slots saturate 10 Gbit/s at 2.5 MB/s per peer, the middle of that range; the rate
/// ranking gives the slots to peers that can take more, so fewer suffice when peers are fast.
/// libtorrent defaults to 8 (a desktop sharing a home uplink) and raises it to 2000 in its
/// `high_performance_seed` preset. Above a few thousand, per-peer rates get too small to
/// rank meaningfully and every slot holds 4 MiB of queued requests.
pub const DEFAULT_UPLOAD_SLOTS: usize = 500;

/// Choker settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ChokerConfig {
    /// Peers unchoked at once; one of them is the optimistic unchoke (if there is one).
    pub upload_slots: usize,
    /// How often the regular slots are re-ranked by upload rate (BEP 3 says 10 s).
    pub rechoke_interval: Duration,
    /// How often the optimistic slot moves to another peer (BEP 3 says 30 s).
    pub optimistic_interval: Duration,
}

impl Default for ChokerConfig {
    fn default() -> Self {
        ChokerConfig {
            upload_slots: DEFAULT_UPLOAD_SLOTS,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
        }
    }
}

/// A peer as the choker sees it (from the session's getters).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct ChokerPeer<K> {
    /// The shell's handle for the connection.
    pub key: K,
    /// The peer is interested in our pieces.
    pub interested: bool,
    /// We are choking the peer now.
    pub choked: bool,
    /// Our upload rate to the peer, bytes per second.
    pub upload_rate: u64,
}

/// A change to apply to one connection (`Session::set_choked`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Choke the peer.
    Choke,
    /// Unchoke the peer.
    Unchoke,
}

/// The seeding choker; see the module docs. Deterministic for a given RNG seed.
#[derive(Debug)]
pub struct SeedChoker<K> {
    cfg: ChokerConfig,
    rng: SmallRng,
    next_rechoke: Instant,
    next_optimistic: Instant,
    optimistic: Option<K>,
    /// Scratch space reused across ticks: candidate indices, and the slots' holders.
    order: Vec<usize>,
    holds: Vec<bool>,
}

impl<K: Copy + Eq> SeedChoker<K> {
    /// A choker whose first `tick` rechokes at once; `rng_seed` fixes its random choices.
    pub fn new(cfg: ChokerConfig, rng_seed: u64) -> SeedChoker<K> {
        SeedChoker {
            cfg,
            rng: SmallRng::seed_from_u64(rng_seed),
            next_rechoke: Instant::ZERO,
            next_optimistic: Instant::ZERO,
            optimistic: None,
            order: Vec::new(),
            holds: Vec::new(),
        }
    }

    /// When `tick` must run next (it must also run when a peer's interest changes, or a
    /// peer leaves, so free slots are refilled at once).
    pub fn next_tick(&self) -> Instant {
        self.next_rechoke
    }

    /// The peer holding the optimistic slot.
    pub fn optimistic(&self) -> Option<K> {
        self.optimistic
    }

    /// Decides who holds a slot at `now`, appending changes to `out` (peers whose state
    /// already matches get no entry). `peers` lists every connected peer, in a stable
    /// order: ties in upload rate go to the peer listed first.
    pub fn tick(&mut self, now: Instant, peers: &[ChokerPeer<K>], out: &mut Vec<(K, Decision)>) {
        self.holds.clear();
        self.holds.resize(peers.len(), false);
        let optimistic_at = self
            .optimistic
            .and_then(|k| peers.iter().position(|p| p.key == k && p.interested));
        if optimistic_at.is_none() {
            self.optimistic = None;
        }
        if now >= self.next_rechoke {
            self.rechoke(now, peers, optimistic_at);
            self.next_rechoke = now + self.cfg.rechoke_interval;
        } else {
            self.keep_and_fill(peers);
        }
        for (peer, &holds) in peers.iter().zip(&self.holds) {
            if holds == peer.choked {
                let d = if holds {
                    Decision::Unchoke
                } else {
                    Decision::Choke
                };
                out.push((peer.key, d));
            }
        }
    }

    /// Full re-evaluation: fastest interested peers take the regular slots; the optimistic
    /// slot is kept, or moved when its interval is over or its holder is gone.
    fn rechoke(&mut self, now: Instant, peers: &[ChokerPeer<K>], optimistic_at: Option<usize>) {
        let optimistic_slots = self.cfg.upload_slots.min(1);
        let regular_slots = self.cfg.upload_slots - optimistic_slots;
        let keep_optimistic = optimistic_at.filter(|_| now < self.next_optimistic);
        self.order.clear();
        self.order.extend(
            (0..peers.len()).filter(|&i| peers[i].interested && Some(i) != keep_optimistic),
        );
        // Stable sort: equal rates keep the shell's order, so the outcome is reproducible.
        self.order
            .sort_by(|&a, &b| peers[b].upload_rate.cmp(&peers[a].upload_rate));
        let regular = regular_slots.min(self.order.len());
        for &i in &self.order[..regular] {
            self.holds[i] = true;
        }
        let chosen = match keep_optimistic {
            Some(i) => Some(i),
            None if optimistic_slots == 0 => None,
            None => {
                self.next_optimistic = now + self.cfg.optimistic_interval;
                self.pick_optimistic(regular, optimistic_at)
            }
        };
        self.optimistic = chosen.map(|i| peers[i].key);
        if let Some(i) = chosen {
            self.holds[i] = true;
        }
    }

    /// A random peer among the candidates left after the regular slots (`order[regular..]`),
    /// other than the one whose turn just ended unless it is the only candidate.
    fn pick_optimistic(&mut self, regular: usize, previous: Option<usize>) -> Option<usize> {
        let rest = &self.order[regular..];
        let skip = previous
            .and_then(|p| rest.iter().position(|&i| i == p))
            .filter(|_| rest.len() > 1);
        let n = rest.len() - usize::from(skip.is_some());
        if n == 0 {
            return None;
        }
        let mut k = self.rng.random_range(0..n);
        if skip.is_some_and(|s| k >= s) {
            k += 1;
        }
        Some(rest[k])
    }

    /// Between rechokes: interested peers keep their slots, the uninterested lose theirs,
    /// and free slots go to the fastest choked interested peers right away.
    fn keep_and_fill(&mut self, peers: &[ChokerPeer<K>]) {
        self.order.clear();
        self.order
            .extend((0..peers.len()).filter(|&i| peers[i].interested && !peers[i].choked));
        if self.order.len() > self.cfg.upload_slots {
            // Only if someone else unchoked peers: keep the optimistic and the fastest.
            let optimistic = self.optimistic;
            self.order.sort_by_key(|&i| {
                let pinned = Some(peers[i].key) != optimistic;
                (pinned, std::cmp::Reverse(peers[i].upload_rate))
            });
            self.order.truncate(self.cfg.upload_slots);
        }
        for &i in &self.order {
            self.holds[i] = true;
        }
        let free = self.cfg.upload_slots - self.order.len();
        if free == 0 {
            return;
        }
        self.order.clear();
        self.order
            .extend((0..peers.len()).filter(|&i| peers[i].interested && peers[i].choked));
        self.order
            .sort_by(|&a, &b| peers[b].upload_rate.cmp(&peers[a].upload_rate));
        for &i in self.order.iter().take(free) {
            self.holds[i] = true;
        }
    }
}

#[cfg(test)]
mod tests;
