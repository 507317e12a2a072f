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

/// A piece's count and its place in its bucket, side by side: one cache line read per
/// availability change, which is what a swarm of thousands of pickers is bound by.
#[derive(Copy, Clone, Debug)]
struct PieceAvail {
    count: u32,
    pos: u32,
}

/// Availability counts and the bucketed index of wanted pieces.
///
/// Invariants: `info[p].count` is the number of non-seed peers that announced `p`;
/// `histogram[a]` is the number of pieces (all of them) whose count is `a`, and no piece has a
/// count below `min_count`; a piece is in `buckets[count]` at `info[p].pos` exactly when it is
/// wanted. The order inside a bucket is arbitrary: ties are broken at pick time, by starting
/// each bucket's scan at a random position, so a count change costs no random draw.
#[derive(Debug)]
pub(super) struct Availability {
    info: Vec<PieceAvail>,
    seeds: u32,
    histogram: Vec<u32>,
    min_count: u32,
    buckets: Vec<Vec<PieceIndex>>,
    wanted: u32,
}

impl Availability {
    /// No peer yet; every piece of `wanted` is in bucket 0.
    pub fn new(piece_count: u32, wanted: impl Iterator<Item = PieceIndex>) -> Availability {
        let mut a = Availability {
            info: vec![
                PieceAvail {
                    count: 0,
                    pos: NOT_WANTED
                };
                piece_count as usize
            ],
            seeds: 0,
            histogram: vec![piece_count],
            min_count: 0,
            buckets: vec![Vec::new()],
            wanted: 0,
        };
        for piece in wanted {
            a.insert_wanted(piece);
        }
        a
    }

    /// Peers that have `piece`, seeds included.
    pub fn of(&self, piece: PieceIndex) -> u32 {
        self.info[piece.idx()].count + self.seeds
    }

    /// The lowest availability of any piece, seeds included (0 for a torrent without pieces).
    pub fn min(&self) -> u32 {
        if self.info.is_empty() {
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
        self.info[piece.idx()].pos != NOT_WANTED
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
    pub fn increment(&mut self, piece: PieceIndex) {
        let was = self.info[piece.idx()].count;
        let wanted = self.is_wanted(piece);
        if wanted {
            self.remove_wanted(piece);
        }
        self.info[piece.idx()].count = was + 1;
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
            self.insert_wanted(piece);
        }
    }

    /// One non-seed peer that had `piece` left. O(1).
    pub fn decrement(&mut self, piece: PieceIndex) {
        let was = self.info[piece.idx()].count;
        debug_assert!(was > 0, "availability underflow on {piece:?}");
        if was == 0 {
            return;
        }
        let wanted = self.is_wanted(piece);
        if wanted {
            self.remove_wanted(piece);
        }
        self.info[piece.idx()].count = was - 1;
        self.histogram[was as usize] -= 1;
        self.histogram[was as usize - 1] += 1;
        self.min_count = self.min_count.min(was - 1);
        if wanted {
            self.insert_wanted(piece);
        }
    }

    /// Puts `piece` at the end of its bucket. O(1).
    pub fn insert_wanted(&mut self, piece: PieceIndex) {
        debug_assert!(!self.is_wanted(piece));
        let level = self.info[piece.idx()].count as usize;
        if self.buckets.len() <= level {
            self.buckets.resize_with(level + 1, Vec::new);
        }
        let bucket = &mut self.buckets[level];
        self.info[piece.idx()].pos = bucket.len() as u32;
        bucket.push(piece);
        self.wanted += 1;
    }

    /// Takes `piece` out of its bucket (swap-remove). O(1).
    pub fn remove_wanted(&mut self, piece: PieceIndex) {
        let PieceAvail { count, pos: at } = self.info[piece.idx()];
        debug_assert!(at != NOT_WANTED);
        let bucket = &mut self.buckets[count as usize];
        bucket.swap_remove(at as usize);
        if let Some(&moved) = bucket.get(at as usize) {
            self.info[moved.idx()].pos = at;
        }
        self.info[piece.idx()].pos = NOT_WANTED;
        self.wanted -= 1;
    }

    /// The first wanted piece, rarest bucket first, that `accept` takes; each bucket is
    /// scanned from a random position (wrapping), so ties are broken randomly. Buckets below
    /// `from_count` are skipped: a non-seed peer's pieces are counted, so none of them can be
    /// in bucket 0.
    ///
    /// Cost: the wanted pieces looked at before the hit, plus one step per bucket.
    pub fn rarest(
        &self,
        from_count: usize,
        rng: &mut SmallRng,
        mut accept: impl FnMut(PieceIndex) -> bool,
    ) -> Option<PieceIndex> {
        let buckets = self.buckets.get(from_count..).unwrap_or_default();
        for bucket in buckets {
            if bucket.is_empty() {
                continue;
            }
            let start = rng.random_range(0..bucket.len());
            let (head, tail) = bucket.split_at(start);
            if let Some(p) = tail.iter().chain(head).copied().find(|&p| accept(p)) {
                return Some(p);
            }
        }
        None
    }

    /// Checks every invariant against a brute-force recount (tests only).
    #[cfg(test)]
    pub fn assert_consistent(&self) {
        let mut histogram = vec![0u32; self.histogram.len()];
        for i in &self.info {
            histogram[i.count as usize] += 1;
        }
        assert_eq!(histogram, self.histogram, "histogram");
        if !self.info.is_empty() {
            let min = self.info.iter().map(|i| i.count).min();
            assert_eq!(Some(self.min_count), min, "min");
        }
        let mut wanted = 0;
        for (level, bucket) in self.buckets.iter().enumerate() {
            for (i, p) in bucket.iter().enumerate() {
                assert_eq!(self.info[p.idx()].pos, i as u32, "pos of {p:?}");
                assert_eq!(self.info[p.idx()].count as usize, level, "bucket of {p:?}");
                wanted += 1;
            }
        }
        assert_eq!(wanted, self.wanted, "wanted count");
        let positioned = self.info.iter().filter(|i| i.pos != NOT_WANTED).count();
        assert_eq!(positioned as u32, wanted, "pieces with a position");
    }
}
