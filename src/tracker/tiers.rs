//! Multi-tracker tiers (BEP 12): the order in which a torrent's trackers are tried.
//!
//! Each tier is shuffled once when the list is built; an announce tries the trackers in order,
//! tier by tier, until one answers, and the one that answered moves to the front of its tier.
//! Sans-IO: the shuffle takes the caller's seed, and nothing here sends anything.

/// Most trackers kept per torrent (all tiers together); a torrent listing more is hostile or
/// broken, and trying hundreds of trackers would stall the announcer.
pub const TRACKERS_MAX: usize = 32;

/// How a tracker URL is reached.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TrackerKind {
    /// `http://` or `https://` (BEP 3).
    Http,
    /// `udp://host:port` (BEP 15).
    Udp,
}

impl TrackerKind {
    /// The kind of `url`, or `None` for schemes we do not speak (`wss://`, typos).
    pub fn of(url: &str) -> Option<TrackerKind> {
        let has = |p: &str| {
            url.get(..p.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(p))
        };
        if has("http://") || has("https://") {
            Some(TrackerKind::Http)
        } else if has("udp://") {
            Some(TrackerKind::Udp)
        } else {
            None
        }
    }
}

/// A torrent's trackers in BEP 12 order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerTiers {
    tiers: Vec<Vec<String>>,
}

impl TrackerTiers {
    /// The tiers of `announce_list` with unsupported and repeated URLs dropped, empty tiers
    /// removed, at most [`TRACKERS_MAX`] URLs kept, and each tier shuffled with `seed`.
    pub fn new(announce_list: &[Vec<String>], seed: u64) -> TrackerTiers {
        let mut rng = seed | 1;
        let mut seen = std::collections::HashSet::new();
        let mut kept = 0usize;
        let mut tiers = Vec::new();
        for tier in announce_list {
            let mut t: Vec<String> = Vec::new();
            for url in tier {
                if kept < TRACKERS_MAX && TrackerKind::of(url).is_some() && seen.insert(url) {
                    t.push(url.clone());
                    kept += 1;
                }
            }
            // Fisher-Yates with xorshift64.
            for i in (1..t.len()).rev() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let j = (rng % (i as u64 + 1)) as usize;
                t.swap(i, j);
            }
            if !t.is_empty() {
                tiers.push(t);
            }
        }
        TrackerTiers { tiers }
    }

    /// True when no usable tracker is left.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// The trackers in the order an announce tries them: `(tier, index, url)`.
    pub fn candidates(&self) -> impl Iterator<Item = (usize, usize, &str)> + '_ {
        self.tiers.iter().enumerate().flat_map(|(t, tier)| {
            tier.iter()
                .enumerate()
                .map(move |(i, url)| (t, i, url.as_str()))
        })
    }

    /// Records that the tracker at `(tier, index)` answered: it moves to the front of its
    /// tier (the others keep their order). Out-of-range positions are ignored.
    pub fn promote(&mut self, tier: usize, index: usize) {
        if let Some(t) = self.tiers.get_mut(tier) {
            if index < t.len() {
                let url = t.remove(index);
                t.insert(0, url);
            }
        }
    }

    /// The tiers as they stand.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(tiers: &[&[&str]]) -> Vec<Vec<String>> {
        tiers
            .iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn tiers_are_tried_in_order_and_unsupported_urls_dropped() {
        // Every tracker of tier 0 comes before any of tier 1; wss:// and repeats vanish.
        let l = list(&[
            &["udp://a:1", "http://b/announce", "wss://x"],
            &["http://c/announce", "udp://a:1"],
            &["wss://only"],
        ]);
        let t = TrackerTiers::new(&l, 7);
        let got: Vec<(usize, &str)> = t.candidates().map(|(tier, _, u)| (tier, u)).collect();
        assert_eq!(got.len(), 3);
        assert!(got[..2].iter().all(|(tier, _)| *tier == 0));
        assert_eq!(got[2], (1, "http://c/announce"));
        assert_eq!(t.tiers().len(), 2);
    }

    #[test]
    fn shuffle_depends_on_the_seed_and_keeps_every_tracker() {
        // Different seeds give different orders of one tier, each a permutation of it.
        let urls: Vec<String> = (0..8).map(|i| format!("http://t{i}/a")).collect();
        let l = vec![urls.clone()];
        let orders: std::collections::HashSet<Vec<String>> = (0..20)
            .map(|seed| TrackerTiers::new(&l, seed).tiers()[0].clone())
            .collect();
        assert!(orders.len() > 1, "the shuffle never changed the order");
        for o in &orders {
            let mut sorted = o.clone();
            sorted.sort();
            assert_eq!(sorted, urls);
        }
    }

    #[test]
    fn tracker_that_answered_moves_to_the_front_of_its_tier() {
        // BEP 12: after tier[0][2] answers, the order is [2, 0, 1, 3].
        let l = list(&[&["http://a/", "http://b/", "http://c/", "http://d/"]]);
        let mut t = TrackerTiers::new(&l, 1);
        let before = t.tiers()[0].clone();
        t.promote(0, 2);
        let after = t.tiers()[0].clone();
        assert_eq!(
            &after,
            &vec![
                before[2].clone(),
                before[0].clone(),
                before[1].clone(),
                before[3].clone()
            ]
        );
        t.promote(5, 0); // ignored
        t.promote(0, 9); // ignored
        assert_eq!(t.tiers()[0], after);
    }

    #[test]
    fn hostile_list_is_capped() {
        // A torrent with 1,000 trackers keeps TRACKERS_MAX of them.
        let l = vec![(0..1000).map(|i| format!("udp://h{i}:1")).collect()];
        let t = TrackerTiers::new(&l, 3);
        assert_eq!(t.candidates().count(), TRACKERS_MAX);
    }
}
