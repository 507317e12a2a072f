//! Piece availability for the picker: how many connected peers have each piece, and the
//! pieces we still want bucketed by that count so the rarest one is found without sorting.
//!
//! Seeds are one counter, not a +1 on every piece: a seed joining or leaving is O(1), and
//! since it adds the same to every piece it never changes which piece is rarest.

use rand::rngs::SmallRng;
use rand::Rng;

use crate::metainfo::PieceIndex;

/// `pos` value of a piece that is not in a bucket (we have it, or it is being downloaded).
const NOT_WANTED: u32 = u32::MAX;

/// Availability counts and the bucketed index of wanted pieces.
///
/// Invariants: `counts[p]` is the number of non-seed peers that announced `p`;
/// `histogram[a]` is the number of pieces (all of them) whose count is `a`, and no piece has a
/// count below `min_count`; a piece is in `buckets[counts[p]]` at `pos[p]` exactly when it is
/// wanted; the order inside a bucket is random, so scanning a bucket front to back breaks
/// ties randomly.
#[derive(Debug)]
pub(super) struct Availability {
    counts: Vec<u32>,
    seeds: u32,
    histogram: Vec<u32>,
    min_count: u32,
    buckets: Vec<Vec<PieceIndex>>,
    pos: Vec<u32>,
    wanted: u32,
}

impl Availability {
    /// No peer yet; every piece of `wanted` is in bucket 0, shuffled.
    pub fn new(
        piece_count: u32,
        wanted: impl Iterator<Item = PieceIndex>,
        rng: &mut SmallRng,
    ) -> Availability {
        let mut a = Availability {
            counts: vec![0; piece_count as usize],
            seeds: 0,
            histogram: vec![piece_count],
            min_count: 0,
            buckets: vec![Vec::new()],
            pos: vec![NOT_WANTED; piece_count as usize],
            wanted: 0,
        };
        for piece in wanted {
            a.insert_wanted(piece, rng);
        }
        a
    }

    /// Peers that have `piece`, seeds included.
    pub fn of(&self, piece: PieceIndex) -> u32 {
        self.counts[piece.idx()] + self.seeds
    }

    /// The lowest availability of any piece, seeds included (0 for a torrent without pieces).
    pub fn min(&self) -> u32 {
        if self.counts.is_empty() {
            0
        } else {
            self.min_count + self.seeds
        }
    }

    /// Seeds counted.
    pub fn seeds(&self) -> u32 {
        self.seeds
    }

    /// Pieces we want (in a bucket).
    pub fn wanted(&self) -> u32 {
        self.wanted
    }

    /// Wanted pieces that some connected peer has: the others sit in bucket 0 with no seed.
    pub fn wanted_servable(&self) -> u32 {
        if self.seeds > 0 {
            self.wanted
        } else {
            self.wanted - self.buckets[0].len() as u32
        }
    }

    /// True when `piece` is in a bucket.
    pub fn is_wanted(&self, piece: PieceIndex) -> bool {
        self.pos[piece.idx()] != NOT_WANTED
    }

    /// A seed joined.
    pub fn add_seed(&mut self) {
        self.seeds += 1;
    }

    /// A seed left.
    pub fn remove_seed(&mut self) {
        debug_assert!(self.seeds > 0, "seed count underflow");
        self.seeds = self.seeds.saturating_sub(1);
    }

    /// One more non-seed peer has `piece`. O(1).
    pub fn increment(&mut self, piece: PieceIndex, rng: &mut SmallRng) {
        let was = self.counts[piece.idx()];
        let wanted = self.is_wanted(piece);
        if wanted {
            self.remove_wanted(piece);
        }
        self.counts[piece.idx()] = was + 1;
        if self.histogram.len() <= was as usize + 1 {
            self.histogram.push(0);
        }
        self.histogram[was as usize] -= 1;
        self.histogram[was as usize + 1] += 1;
        // The piece moved up by one, so the minimum can only have moved up by one.
        if was == self.min_count && self.histogram[was as usize] == 0 {
            self.min_count += 1;
        }
        if wanted {
            self.insert_wanted(piece, rng);
        }
    }

    /// One non-seed peer that had `piece` left. O(1).
    pub fn decrement(&mut self, piece: PieceIndex, rng: &mut SmallRng) {
        let was = self.counts[piece.idx()];
        debug_assert!(was > 0, "availability underflow on {piece:?}");
        if was == 0 {
            return;
        }
        let wanted = self.is_wanted(piece);
        if wanted {
            self.remove_wanted(piece);
        }
        self.counts[piece.idx()] = was - 1;
        self.histogram[was as usize] -= 1;
        self.histogram[was as usize - 1] += 1;
        self.min_count = self.min_count.min(was - 1);
        if wanted {
            self.insert_wanted(piece, rng);
        }
    }

    /// Puts `piece` in its bucket at a random position (inside-out Fisher-Yates: the new
    /// piece takes a uniform slot and the piece there moves to the end). O(1).
    pub fn insert_wanted(&mut self, piece: PieceIndex, rng: &mut SmallRng) {
        debug_assert!(!self.is_wanted(piece));
        let level = self.counts[piece.idx()] as usize;
        if self.buckets.len() <= level {
            self.buckets.resize_with(level + 1, Vec::new);
        }
        let bucket = &mut self.buckets[level];
        bucket.push(piece);
        let last = bucket.len() - 1;
        let slot = rng.random_range(0..=last);
        bucket.swap(slot, last);
        self.pos[bucket[last].idx()] = last as u32;
        self.pos[bucket[slot].idx()] = slot as u32;
        self.wanted += 1;
    }

    /// Takes `piece` out of its bucket (swap-remove, which keeps the order random). O(1).
    pub fn remove_wanted(&mut self, piece: PieceIndex) {
        let at = self.pos[piece.idx()];
        debug_assert!(at != NOT_WANTED);
        let bucket = &mut self.buckets[self.counts[piece.idx()] as usize];
        bucket.swap_remove(at as usize);
        if let Some(&moved) = bucket.get(at as usize) {
            self.pos[moved.idx()] = at;
        }
        self.pos[piece.idx()] = NOT_WANTED;
        self.wanted -= 1;
    }

    /// The first wanted piece, rarest bucket first and in each bucket's random order, that
    /// `accept` takes. Buckets below `from_count` are skipped: a non-seed peer's pieces are
    /// counted, so none of them can be in bucket 0.
    ///
    /// Cost: the wanted pieces looked at before the hit, plus one step per bucket.
    pub fn rarest(
        &self,
        from_count: usize,
        mut accept: impl FnMut(PieceIndex) -> bool,
    ) -> Option<PieceIndex> {
        let buckets = self.buckets.get(from_count..).unwrap_or_default();
        buckets.iter().flatten().copied().find(|&p| accept(p))
    }

    /// Checks every invariant against a brute-force recount (tests only).
    #[cfg(test)]
    pub fn assert_consistent(&self) {
        let mut histogram = vec![0u32; self.histogram.len()];
        for &c in &self.counts {
            histogram[c as usize] += 1;
        }
        assert_eq!(histogram, self.histogram, "histogram");
        if !self.counts.is_empty() {
            assert_eq!(Some(&self.min_count), self.counts.iter().min(), "min");
        }
        let mut wanted = 0;
        for (level, bucket) in self.buckets.iter().enumerate() {
            for (i, p) in bucket.iter().enumerate() {
                assert_eq!(self.pos[p.idx()], i as u32, "pos of {p:?}");
                assert_eq!(self.counts[p.idx()] as usize, level, "bucket of {p:?}");
                wanted += 1;
            }
        }
        assert_eq!(wanted, self.wanted, "wanted count");
        let positioned = self.pos.iter().filter(|&&p| p != NOT_WANTED).count();
        assert_eq!(positioned as u32, wanted, "pieces with a position");
    }
}
