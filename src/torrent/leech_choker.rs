//! The downloading choker: BEP 3 tit-for-tat while we still lack pieces.
//!
//! Every [`LeechChokerConfig::rechoke_interval`] the interested peers that upload to us
//! fastest get the regular slots; one optimistic slot, rotated every
//! [`LeechChokerConfig::optimistic_interval`], goes to a random choked interested peer, with
//! newcomers weighted ×3 so they get pieces to trade. Snubbing peers (they unchoke us but
//! send nothing) lose their regular slot. [`Choker`] hands over to the seeding rule.

use std::cmp::Reverse;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::choker::{ChokerConfig, ChokerPeer, Decision, SeedChoker};
use crate::time::Instant;

/// Default number of regular (rate-ranked) slots while downloading, as BEP 3 describes.
///
/// Tit-for-tat works when each slot carries enough of our upload to matter to the peer: a
/// home uplink split five ways (four regular plus the optimistic) still gives each peer a
/// useful rate, so it reciprocates. More slots dilute what each partner gets from us.
pub const DEFAULT_REGULAR_SLOTS: usize = 4;

/// Default optimistic weight of a newcomer against an established peer (mainline's ×3).
///
/// A newcomer has no pieces to trade, so rate ranking never picks it; giving it three times
/// an old peer's chance of the optimistic slot gets it its first pieces sooner.
pub const DEFAULT_NEWCOMER_WEIGHT: u32 = 3;

/// Leech choker settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LeechChokerConfig {
    /// Peers unchoked for their upload rate to us; the optimistic slot is one more.
    pub regular_slots: usize,
    /// How often the regular slots are re-ranked by download rate (BEP 3 says 10 s).
    pub rechoke_interval: Duration,
    /// How often the optimistic slot moves to another peer (BEP 3 says 30 s).
    pub optimistic_interval: Duration,
    /// A peer that unchokes us and sends no block for this long is snubbing us (60 s, as
    /// libtorrent and mainline).
    pub snub_timeout: Duration,
    /// A peer connected for less than this is a newcomer. The default, one optimistic
    /// interval, gives each newcomer its weighted chance at exactly one rotation, the first
    /// after it connects (with the default 10 s/30 s intervals).
    pub newcomer_window: Duration,
    /// A newcomer's weight in the optimistic draw; an established peer weighs 1.
    pub newcomer_weight: u32,
}

impl Default for LeechChokerConfig {
    fn default() -> Self {
        LeechChokerConfig {
            regular_slots: DEFAULT_REGULAR_SLOTS,
            rechoke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            snub_timeout: Duration::from_secs(60),
            newcomer_window: Duration::from_secs(30),
            newcomer_weight: DEFAULT_NEWCOMER_WEIGHT,
        }
    }
}

/// A peer as the downloading choker sees it (from the session's getters).
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct LeechPeer<K> {
    /// The shell's handle for the connection.
    pub key: K,
    /// The peer is interested in our pieces (`peer_interested`).
    pub interested: bool,
    /// We are choking the peer now (`am_choking`).
    pub choked: bool,
    /// We are interested in the peer's pieces (`am_interested`).
    pub am_interested: bool,
    /// The peer is choking us (`peer_choking`).
    pub peer_choking_us: bool,
    /// The peer's upload rate to us (our download rate from it), bytes per second.
    pub download_rate: u64,
    /// Our upload rate to the peer, bytes per second; only the seeding rule uses it.
    pub upload_rate: u64,
    /// When the last block from this peer arrived.
    pub last_block_received: Option<Instant>,
    /// When we last started waiting for blocks from the peer: the later of its last unchoke
    /// of us and our last becoming interested in it. The snub clock runs from the later of
    /// this and `last_block_received`, so a peer is not snubbing us just because it choked us
    /// (or had nothing we wanted) for a while before.
    pub waiting_since: Instant,
    /// When the connection was established.
    pub connected_at: Instant,
}

impl<K> LeechPeer<K> {
    /// The peer unchokes us, we want its pieces, and no block came for `snub_timeout`.
    pub fn is_snubbing(&self, now: Instant, snub_timeout: Duration) -> bool {
        if self.peer_choking_us || !self.am_interested {
            return false;
        }
        let since = self
            .last_block_received
            .map_or(self.waiting_since, |t| t.max(self.waiting_since));
        now - since >= snub_timeout
    }

    /// Connected for less than `window`.
    pub fn is_newcomer(&self, now: Instant, window: Duration) -> bool {
        now - self.connected_at < window
    }
}

/// The downloading choker; see the module docs. Deterministic for a given RNG seed.
#[derive(Debug)]
pub struct LeechChoker<K> {
    cfg: LeechChokerConfig,
    rng: SmallRng,
    next_rechoke: Instant,
    next_optimistic: Instant,
    optimistic: Option<K>,
    /// Scratch space reused across ticks: candidate indices, their rank keys, and the
    /// slots' holders.
    order: Vec<usize>,
    ranked: Vec<(bool, Reverse<u64>, usize)>,
    holds: Vec<bool>,
}

impl<K: Copy + Eq> LeechChoker<K> {
    /// A choker whose first `tick` rechokes at once; `rng_seed` fixes its random choices.
    pub fn new(cfg: LeechChokerConfig, rng_seed: u64) -> LeechChoker<K> {
        LeechChoker {
            cfg,
            rng: SmallRng::seed_from_u64(rng_seed),
            next_rechoke: Instant::ZERO,
            next_optimistic: Instant::ZERO,
            optimistic: None,
            order: Vec::new(),
            ranked: Vec::new(),
            holds: Vec::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LeechChokerConfig {
        &self.cfg
    }

    /// When `tick` must run next (it must also run when a peer's interest changes, or a
    /// peer leaves, so free slots are refilled at once). The optimistic slot rotates at the
    /// first rechoke at least `optimistic_interval` after it was given.
    pub fn next_tick(&self) -> Instant {
        self.next_rechoke
    }

    /// The peer holding the optimistic slot.
    pub fn optimistic(&self) -> Option<K> {
        self.optimistic
    }

    /// Decides who holds a slot at `now`, appending changes to `out` (peers whose state
    /// already matches get no entry). `peers` lists every connected peer, in a stable
    /// order: ties in download rate go to the peer listed first.
    pub fn tick(&mut self, now: Instant, peers: &[LeechPeer<K>], out: &mut Vec<(K, Decision)>) {
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
            self.keep_and_fill(now, peers, optimistic_at);
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

    /// Full re-evaluation: the fastest interested non-snubbing peers take the regular slots;
    /// the optimistic slot is kept, or moved when its interval is over or its holder is gone.
    fn rechoke(&mut self, now: Instant, peers: &[LeechPeer<K>], optimistic_at: Option<usize>) {
        let cfg = self.cfg;
        let keep_optimistic = optimistic_at.filter(|_| now < self.next_optimistic);
        // Snubbing peers last, then by rate; equal rates keep the shell's order (the index
        // is the last key, so an unstable sort of precomputed keys is stable).
        self.ranked.clear();
        self.ranked.extend(
            (0..peers.len())
                .filter(|&i| peers[i].interested && Some(i) != keep_optimistic)
                .map(|i| {
                    let p = &peers[i];
                    let snub = p.is_snubbing(now, cfg.snub_timeout);
                    (snub, Reverse(p.download_rate), i)
                }),
        );
        self.ranked.sort_unstable();
        self.order.clear();
        self.order.extend(self.ranked.iter().map(|&(_, _, i)| i));
        let eligible = self.ranked.iter().take_while(|&&(snub, ..)| !snub).count();
        let regular = cfg.regular_slots.min(eligible);
        for &i in &self.order[..regular] {
            self.holds[i] = true;
        }
        let chosen = match keep_optimistic {
            Some(i) => Some(i),
            None => {
                let c = pick_optimistic(
                    &mut self.rng,
                    &cfg,
                    now,
                    peers,
                    &self.order[regular..],
                    optimistic_at,
                );
                if c.is_some() {
                    self.next_optimistic = now + cfg.optimistic_interval;
                }
                c
            }
        };
        self.optimistic = chosen.map(|i| peers[i].key);
        if let Some(i) = chosen {
            self.holds[i] = true;
        }
    }

    /// Between rechokes: interested peers keep their slots, the uninterested lose theirs,
    /// free regular slots go to the fastest choked eligible peers and a free optimistic slot
    /// to a new draw, right away.
    fn keep_and_fill(
        &mut self,
        now: Instant,
        peers: &[LeechPeer<K>],
        optimistic_at: Option<usize>,
    ) {
        let cfg = self.cfg;
        if let Some(o) = optimistic_at {
            self.holds[o] = true;
        }
        self.order.clear();
        self.order.extend(
            (0..peers.len())
                .filter(|&i| peers[i].interested && !peers[i].choked && Some(i) != optimistic_at),
        );
        if self.order.len() > cfg.regular_slots {
            // Only if someone else unchoked peers: keep the fastest.
            self.order.sort_by_key(|&i| Reverse(peers[i].download_rate));
            self.order.truncate(cfg.regular_slots);
        }
        for &i in &self.order {
            self.holds[i] = true;
        }
        let free = cfg.regular_slots - self.order.len();
        if free > 0 {
            self.order.clear();
            let holds = &self.holds;
            self.order.extend((0..peers.len()).filter(|&i| {
                let p = &peers[i];
                p.interested && !holds[i] && !p.is_snubbing(now, cfg.snub_timeout)
            }));
            self.order.sort_by_key(|&i| Reverse(peers[i].download_rate));
            for &i in self.order.iter().take(free) {
                self.holds[i] = true;
            }
        }
        if optimistic_at.is_none() {
            self.order.clear();
            let holds = &self.holds;
            self.order
                .extend((0..peers.len()).filter(|&i| peers[i].interested && !holds[i]));
            let chosen = pick_optimistic(&mut self.rng, &cfg, now, peers, &self.order, None);
            if let Some(i) = chosen {
                self.holds[i] = true;
                self.optimistic = Some(peers[i].key);
                self.next_optimistic = now + cfg.optimistic_interval;
            }
        }
    }

    /// Draws a `u64` from the choker's RNG, to seed the choker that succeeds it.
    fn successor_seed(&mut self) -> u64 {
        self.rng.random()
    }
}

/// A weighted random pick among `candidates` (newcomers weigh `newcomer_weight`, others 1),
/// other than `previous` (whose turn just ended) unless it is the only candidate.
fn pick_optimistic<K>(
    rng: &mut SmallRng,
    cfg: &LeechChokerConfig,
    now: Instant,
    peers: &[LeechPeer<K>],
    candidates: &[usize],
    previous: Option<usize>,
) -> Option<usize> {
    let skip = previous.filter(|p| candidates.len() > 1 && candidates.contains(p));
    let weight = |i: usize| -> u64 {
        if Some(i) == skip {
            0
        } else if peers[i].is_newcomer(now, cfg.newcomer_window) {
            u64::from(cfg.newcomer_weight.max(1))
        } else {
            1
        }
    };
    let total: u64 = candidates.iter().map(|&i| weight(i)).sum();
    if total == 0 {
        return None;
    }
    let mut r = rng.random_range(0..total);
    for &i in candidates {
        let w = weight(i);
        if r < w {
            return Some(i);
        }
        r -= w;
    }
    unreachable!("r < total, the sum of the weights")
}

/// The torrent's choker across the download: [`LeechChoker`] while pieces are missing, then
/// [`SeedChoker`] after [`Choker::switch_to_seeding`]. The caller keeps one type and one
/// peer view ([`LeechPeer`]) throughout.
#[derive(Debug)]
pub struct Choker<K> {
    mode: Mode<K>,
    /// The seeding rule's view of the peers, rebuilt in place each tick.
    seed_view: Vec<ChokerPeer<K>>,
}

#[derive(Debug)]
enum Mode<K> {
    Leeching(LeechChoker<K>),
    Seeding(SeedChoker<K>),
}

impl<K: Copy + Eq> Choker<K> {
    /// A choker in the downloading state; `rng_seed` fixes all its random choices, those of
    /// the seeding rule that follows included.
    pub fn leeching(cfg: LeechChokerConfig, rng_seed: u64) -> Choker<K> {
        Choker {
            mode: Mode::Leeching(LeechChoker::new(cfg, rng_seed)),
            seed_view: Vec::new(),
        }
    }

    /// A choker that seeds from the start (the torrent was complete when added).
    pub fn seeding(cfg: ChokerConfig, rng_seed: u64) -> Choker<K> {
        Choker {
            mode: Mode::Seeding(SeedChoker::new(cfg, rng_seed)),
            seed_view: Vec::new(),
        }
    }

    /// Called when the download completes: from now on slots follow our upload rate to peers
    /// ([`SeedChoker`] with `cfg`). The next `tick` should run at once ([`Choker::next_tick`]
    /// says so); it re-evaluates every slot. Does nothing if already seeding.
    pub fn switch_to_seeding(&mut self, cfg: ChokerConfig) {
        if let Mode::Leeching(leech) = &mut self.mode {
            let seed = leech.successor_seed();
            self.mode = Mode::Seeding(SeedChoker::new(cfg, seed));
        }
    }

    /// Whether the seeding rule is in force.
    pub fn is_seeding(&self) -> bool {
        matches!(self.mode, Mode::Seeding(_))
    }

    /// When `tick` must run next; see [`LeechChoker::next_tick`] and [`SeedChoker::next_tick`].
    pub fn next_tick(&self) -> Instant {
        match &self.mode {
            Mode::Leeching(c) => c.next_tick(),
            Mode::Seeding(c) => c.next_tick(),
        }
    }

    /// The peer holding the optimistic slot.
    pub fn optimistic(&self) -> Option<K> {
        match &self.mode {
            Mode::Leeching(c) => c.optimistic(),
            Mode::Seeding(c) => c.optimistic(),
        }
    }

    /// Runs the rule in force; see [`LeechChoker::tick`] and [`SeedChoker::tick`].
    pub fn tick(&mut self, now: Instant, peers: &[LeechPeer<K>], out: &mut Vec<(K, Decision)>) {
        match &mut self.mode {
            Mode::Leeching(c) => c.tick(now, peers, out),
            Mode::Seeding(c) => {
                self.seed_view.clear();
                self.seed_view.extend(peers.iter().map(|p| ChokerPeer {
                    key: p.key,
                    interested: p.interested,
                    choked: p.choked,
                    upload_rate: p.upload_rate,
                }));
                c.tick(now, &self.seed_view, out);
            }
        }
    }
}

#[cfg(test)]
mod tests;
