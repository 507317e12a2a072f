//! The simulated tracker: the online peers, and which of them are still downloading, each as
//! a set with O(1) insert, remove and uniform random pick. Like the built-in tracker
//! (`tracker::server`, and XBT or Ocelot), it hands a seed only leechers: two seeds have
//! nothing to trade.

use rand::rngs::SmallRng;
use rand::Rng;

use super::engine::PeerId;

/// Peer ids with their positions, for swap-remove and uniform picks.
#[derive(Debug)]
struct IndexedSet {
    items: Vec<PeerId>,
    pos: Vec<u32>,
}

impl IndexedSet {
    fn new(peers: usize) -> IndexedSet {
        IndexedSet {
            items: Vec::new(),
            pos: vec![u32::MAX; peers],
        }
    }

    fn insert(&mut self, p: PeerId) {
        if self.pos[p as usize] == u32::MAX {
            self.pos[p as usize] = self.items.len() as u32;
            self.items.push(p);
        }
    }

    fn remove(&mut self, p: PeerId) {
        let at = self.pos[p as usize];
        if at == u32::MAX {
            return;
        }
        self.items.swap_remove(at as usize);
        if let Some(&moved) = self.items.get(at as usize) {
            self.pos[moved as usize] = at;
        }
        self.pos[p as usize] = u32::MAX;
    }

    /// Up to `want` distinct random members other than `me` (all of them when few).
    fn pick(&self, me: PeerId, want: usize, rng: &mut SmallRng) -> Vec<PeerId> {
        let n = self.items.len();
        let others = n - usize::from(self.pos[me as usize] != u32::MAX);
        let want = want.min(others);
        let mut chosen: Vec<PeerId> = Vec::with_capacity(want);
        if others <= want {
            chosen.extend(self.items.iter().copied().filter(|&q| q != me));
        } else {
            while chosen.len() < want {
                let q = self.items[rng.random_range(0..n)];
                if q != me && !chosen.contains(&q) {
                    chosen.push(q);
                }
            }
        }
        chosen
    }
}

/// Who the tracker knows: every online peer, and the leechers among them.
#[derive(Debug)]
pub(super) struct Tracker {
    online: IndexedSet,
    leechers: IndexedSet,
}

impl Tracker {
    /// A tracker for peer ids below `peers`.
    pub(super) fn new(peers: usize) -> Tracker {
        Tracker {
            online: IndexedSet::new(peers),
            leechers: IndexedSet::new(peers),
        }
    }

    /// `p` joined, as a seed or as a leecher.
    pub(super) fn join(&mut self, p: PeerId, seed: bool) {
        self.online.insert(p);
        if !seed {
            self.leechers.insert(p);
        }
    }

    /// `p` completed its download: from now on it is a seed.
    pub(super) fn completed(&mut self, p: PeerId) {
        self.leechers.remove(p);
    }

    /// `p` left the swarm.
    pub(super) fn leave(&mut self, p: PeerId) {
        self.online.remove(p);
        self.leechers.remove(p);
    }

    /// The peers an announce of `p` returns: up to `numwant` random others, only leechers
    /// when `p` is a seed.
    pub(super) fn announce(
        &self,
        p: PeerId,
        seed: bool,
        numwant: usize,
        rng: &mut SmallRng,
    ) -> Vec<PeerId> {
        let from = if seed { &self.leechers } else { &self.online };
        from.pick(p, numwant, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_seed_is_handed_only_leechers_and_a_leecher_everyone() {
        // Peers 0-2 seeds, 3-5 leechers; 3 completes and 5 leaves.
        let mut t = Tracker::new(6);
        for p in 0..6 {
            t.join(p, p < 3);
        }
        let mut rng = SmallRng::seed_from_u64(1);
        let mut got = t.announce(0, true, 50, &mut rng);
        got.sort_unstable();
        assert_eq!(got, vec![3, 4, 5]);
        let mut got = t.announce(4, false, 50, &mut rng);
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3, 5]);
        t.completed(3);
        t.leave(5);
        assert_eq!(t.announce(1, true, 50, &mut rng), vec![4]);
        assert!(
            t.announce(4, true, 50, &mut rng).is_empty(),
            "4 itself is the only leecher"
        );
        // A random subset when there are more than asked for: distinct, never the asker.
        let mut big = Tracker::new(100);
        for p in 0..100 {
            big.join(p, false);
        }
        let got = big.announce(7, false, 10, &mut rng);
        let mut dedup = got.clone();
        dedup.sort_unstable();
        dedup.dedup();
        assert_eq!((got.len(), dedup.len()), (10, 10));
        assert!(!got.contains(&7));
    }
}
