//! Piece availability for the picker: how many connected peers have each piece, and which
//! wanted piece is the rarest.
//!
//! Two layouts behind one interface ([`Availability`]):
//! - [`Buckets`] (the default): wanted pieces bucketed by count, so the rarest is found
//!   without a scan; each change moves a piece between buckets (several cache lines). For
//!   one picker whose tables stay in cache this is the fastest (`cargo bench --bench
//!   picker`: a whole 2,000-piece download picks in half the time of the dense layout).
//! - [`Dense`] (asked for with [`Picker::use_dense_availability`], up to
//!   [`DENSE_MAX_PIECES`] pieces): a plain count per piece and a bitmask of wanted pieces. A
//!   count change is one add into a few KiB; finding the rarest piece scans the wanted
//!   pieces. Count changes outnumber picks by the number of connected peers (every peer's
//!   `have` of every piece is a change, a pick happens once per piece started), so where
//!   thousands of pickers share the caches (the simulator) the dense layout is faster.
//!
//! Both have the same worst case for a pick that finds nothing (every wanted piece is
//! looked at). Seeds are one counter, not a +1 on every piece: a seed joining or leaving is
//! O(1), and since it adds the same to every piece it never changes which piece is rarest.

use rand::rngs::SmallRng;
use rand::Rng;

#[cfg(doc)]
use super::picker::Picker;
use crate::metainfo::PieceIndex;
use crate::wire::Bitfield;

/// `pos` value of a piece that is not in a bucket (we have it, or it is being downloaded).
const NOT_WANTED: u32 = u32::MAX;

/// A piece's count and its place in its bucket, side by side: one cache line read per
/// availability change, which is what a swarm of thousands of pickers is bound by.
#[derive(Copy, Clone, Debug)]
struct PieceAvail {
    count: u32,
    pos: u32,
}

/// The dense layout is used up to this many pieces: a pick's scan of 8,192 counts takes a
/// few microseconds.
pub const DENSE_MAX_PIECES: u32 = 8192;

/// Availability counts and the index of wanted pieces, in the layout that suits the torrent.
#[derive(Debug)]
pub(super) enum Availability {
    Dense(Dense),
    Buckets(Buckets),
}

/// Forwards a call to whichever layout is in use.
macro_rules! each {
    ($self:expr, $a:ident => $e:expr) => {
        match $self {
            Availability::Dense($a) => $e,
            Availability::Buckets($a) => $e,
        }
    };
}

impl Availability {
    /// No peer yet; every piece of `wanted` is wanted with count 0. Bucketed, or dense when
    /// `dense` is asked for and the torrent has at most [`DENSE_MAX_PIECES`] pieces.
    pub fn new(
        piece_count: u32,
        wanted: impl Iterator<Item = PieceIndex>,
        dense: bool,
    ) -> Availability {
        if dense && piece_count <= DENSE_MAX_PIECES {
            Availability::Dense(Dense::new(piece_count, wanted))
        } else {
            Availability::Buckets(Buckets::new(piece_count, wanted))
        }
    }

    /// True for the dense layout.
    pub fn is_dense(&self) -> bool {
        matches!(self, Availability::Dense(_))
    }

    /// Peers that have `piece`, seeds included.
    pub fn of(&self, piece: PieceIndex) -> u32 {
        each!(self, a => a.of(piece))
    }

    /// The lowest availability of any piece, seeds included (0 for a torrent without pieces).
    pub fn min(&self) -> u32 {
        each!(self, a => a.min())
    }

    /// Seeds counted.
    pub fn seeds(&self) -> u32 {
        each!(self, a => a.seeds)
    }

    /// Pieces we want.
    pub fn wanted(&self) -> u32 {
        each!(self, a => a.wanted)
    }

    /// Wanted pieces that some connected peer has.
    pub fn wanted_servable(&self) -> u32 {
        each!(self, a => a.wanted_servable())
    }

    /// True when `piece` is wanted.
    pub fn is_wanted(&self, piece: PieceIndex) -> bool {
        each!(self, a => a.is_wanted(piece))
    }

    /// A seed joined.
    pub fn add_seed(&mut self) {
        each!(self, a => a.seeds += 1);
    }

    /// A seed left.
    pub fn remove_seed(&mut self) {
        each!(self, a => {
            debug_assert!(a.seeds > 0, "seed count underflow");
            a.seeds = a.seeds.saturating_sub(1);
        });
    }

    /// One more non-seed peer has `piece`. O(1).
    pub fn increment(&mut self, piece: PieceIndex) {
        each!(self, a => a.increment(piece));
    }

    /// One non-seed peer that had `piece` left. O(1).
    pub fn decrement(&mut self, piece: PieceIndex) {
        each!(self, a => a.decrement(piece));
    }

    /// `piece` becomes wanted. O(1).
    pub fn insert_wanted(&mut self, piece: PieceIndex) {
        each!(self, a => a.insert_wanted(piece));
    }

    /// `piece` is no longer wanted. O(1).
    pub fn remove_wanted(&mut self, piece: PieceIndex) {
        each!(self, a => a.remove_wanted(piece));
    }

    /// A wanted piece of the lowest count that `accept` takes, ties broken randomly; counts
    /// below `from_count` are skipped (a non-seed peer's pieces have a count of at least 1).
    /// `peer` is the peer's pieces as a bitfield when it is stored as one: then only the
    /// wanted pieces it has are looked at (`accept` must still reject the others).
    pub fn rarest(
        &self,
        from_count: usize,
        rng: &mut SmallRng,
        peer: Option<&Bitfield>,
        accept: impl FnMut(PieceIndex) -> bool,
    ) -> Option<PieceIndex> {
        match self {
            Availability::Dense(a) => a.rarest(from_count, rng, peer, accept),
            Availability::Buckets(a) => a.rarest(from_count, rng, accept),
        }
    }

    /// [`Availability::rarest`] for a peer whose pieces are `held` and nothing else to
    /// exclude: the dense layout then scans without a call per piece.
    pub fn rarest_held(
        &self,
        from_count: usize,
        rng: &mut SmallRng,
        held: &Bitfield,
    ) -> Option<PieceIndex> {
        match self {
            Availability::Dense(a) => a.rarest(from_count, rng, Some(held), |_| true),
            Availability::Buckets(a) => a.rarest(from_count, rng, |p| held.get(p)),
        }
    }

    /// Checks every invariant against a brute-force recount (tests only).
    #[cfg(test)]
    pub fn assert_consistent(&self) {
        each!(self, a => a.assert_consistent());
    }
}

/// The dense layout: a count per piece, a bitmask of wanted pieces.
///
/// Invariants: `counts[p]` is the number of non-seed peers that announced `p`; bit `p` of
/// `wanted_bits` is set exactly when `p` is wanted; `wanted` counts the set bits and
/// `wanted_unseen` those whose count is 0.
///
/// Counts are 16-bit, so a scan of 2,000 pieces reads 4 KB: a piece would need 65,535
/// connected non-seed peers holding it to reach the top, far past any connection limit, and
/// a count there sticks rather than wraps.
#[derive(Debug)]
pub(super) struct Dense {
    counts: Vec<u16>,
    wanted_bits: Vec<u64>,
    seeds: u32,
    wanted: u32,
    wanted_unseen: u32,
}

impl Dense {
    fn new(piece_count: u32, wanted: impl Iterator<Item = PieceIndex>) -> Dense {
        let mut a = Dense {
            counts: vec![0; piece_count as usize],
            wanted_bits: vec![0; (piece_count as usize).div_ceil(64)],
            seeds: 0,
            wanted: 0,
            wanted_unseen: 0,
        };
        for piece in wanted {
            a.insert_wanted(piece);
        }
        a
    }

    fn of(&self, piece: PieceIndex) -> u32 {
        u32::from(self.counts[piece.idx()]) + self.seeds
    }

    /// O(pieces): only reports ask.
    fn min(&self) -> u32 {
        self.counts
            .iter()
            .min()
            .map_or(0, |&m| u32::from(m) + self.seeds)
    }

    fn wanted_servable(&self) -> u32 {
        if self.seeds > 0 {
            self.wanted
        } else {
            self.wanted - self.wanted_unseen
        }
    }

    fn is_wanted(&self, piece: PieceIndex) -> bool {
        let i = piece.idx();
        self.wanted_bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn increment(&mut self, piece: PieceIndex) {
        let c = &mut self.counts[piece.idx()];
        *c = c.saturating_add(1);
        if *c == 1 && self.is_wanted(piece) {
            self.wanted_unseen -= 1;
        }
    }

    fn decrement(&mut self, piece: PieceIndex) {
        let c = &mut self.counts[piece.idx()];
        debug_assert!(*c > 0, "availability underflow on {piece:?}");
        if *c == 0 {
            return;
        }
        *c -= 1;
        if *c == 0 && self.is_wanted(piece) {
            self.wanted_unseen += 1;
        }
    }

    fn insert_wanted(&mut self, piece: PieceIndex) {
        debug_assert!(!self.is_wanted(piece));
        let i = piece.idx();
        self.wanted_bits[i / 64] |= 1 << (i % 64);
        self.wanted += 1;
        self.wanted_unseen += u32::from(self.counts[i] == 0);
    }

    fn remove_wanted(&mut self, piece: PieceIndex) {
        debug_assert!(self.is_wanted(piece));
        let i = piece.idx();
        self.wanted_bits[i / 64] &= !(1 << (i % 64));
        self.wanted -= 1;
        self.wanted_unseen -= u32::from(self.counts[i] == 0);
    }

    /// Two scans of the wanted pieces (those `peer` has, if given): the first finds the
    /// lowest count at or above `from_count` that `accept` takes and how many accepted pieces
    /// share it, the second walks to a random one of them. Ties must be broken uniformly:
    /// when a swarm's peers all favour the same tied pieces, an origin that leaves after one
    /// copy has sent some pieces twice and others never. The first scan has no branch on the
    /// counts, which thousands of similar counts would mispredict.
    fn rarest(
        &self,
        from_count: usize,
        rng: &mut SmallRng,
        peer: Option<&Bitfield>,
        mut accept: impl FnMut(PieceIndex) -> bool,
    ) -> Option<PieceIndex> {
        let floor = u32::try_from(from_count).unwrap_or(u32::MAX);
        // The candidates, a word per 64 pieces, built once for both scans.
        let mut words = [0u64; (DENSE_MAX_PIECES / 64) as usize];
        let words = &mut words[..self.wanted_bits.len()];
        for (w, out) in words.iter_mut().enumerate() {
            let bits = self.wanted_bits[w];
            if bits != 0 {
                *out = peer.map_or(bits, |peer| bits & peer.word(w));
            }
        }
        let (mut best, mut ties) = (u32::MAX, 0u32);
        for (w, &word) in words.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let c = u32::from(self.counts[i]);
                // `&`, not `&&`: no branch on the count (`accept` is cheap, and free when it
                // always says yes).
                let ok = (c >= floor) & accept(PieceIndex::from_table(i));
                let c = if ok { c } else { u32::MAX };
                let lower = c < best;
                best = best.min(c);
                ties = if lower {
                    1
                } else {
                    ties + u32::from(c == best)
                };
            }
        }
        if best == u32::MAX {
            return None;
        }
        let mut skip = rng.random_range(0..ties);
        for (w, &word) in words.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let i = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if u32::from(self.counts[i]) == best && accept(PieceIndex::from_table(i)) {
                    if skip == 0 {
                        return Some(PieceIndex::from_table(i));
                    }
                    skip -= 1;
                }
            }
        }
        // Not reached: `accept` answers the second scan as it did the first.
        None
    }

    #[cfg(test)]
    fn assert_consistent(&self) {
        let wanted: u32 = self.wanted_bits.iter().map(|w| w.count_ones()).sum();
        assert_eq!(wanted, self.wanted, "wanted count");
        let unseen = (0..self.counts.len())
            .filter(|&i| self.counts[i] == 0 && self.is_wanted(PieceIndex::from_table(i)))
            .count();
        assert_eq!(unseen as u32, self.wanted_unseen, "wanted with no peer");
        let spare = self.counts.len() % 64;
        if spare > 0 {
            let last = self.wanted_bits.last().copied().unwrap_or(0);
            assert_eq!(last >> spare, 0, "bits past the last piece");
        }
    }
}

/// The bucketed layout: availability counts and the wanted pieces bucketed by count.
///
/// Invariants: `info[p].count` is the number of non-seed peers that announced `p`;
/// `histogram[a]` is the number of pieces (all of them) whose count is `a`, and no piece has a
/// count below `min_count`; a piece is in `buckets[count]` at `info[p].pos` exactly when it is
/// wanted. The order inside a bucket is arbitrary: ties are broken at pick time, by starting
/// each bucket's scan at a random position, so a count change costs no random draw.
#[derive(Debug)]
pub(super) struct Buckets {
    info: Vec<PieceAvail>,
    seeds: u32,
    histogram: Vec<u32>,
    min_count: u32,
    buckets: Vec<Vec<PieceIndex>>,
    wanted: u32,
}

impl Buckets {
    /// No peer yet; every piece of `wanted` is in bucket 0.
    pub fn new(piece_count: u32, wanted: impl Iterator<Item = PieceIndex>) -> Buckets {
        let mut a = Buckets {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand::SeedableRng;

    use super::*;

    /// One change to the availability, in terms of a piece number taken modulo the size.
    #[derive(Clone, Debug)]
    enum Op {
        Increment(u32),
        Decrement(u32),
        ToggleWanted(u32),
        AddSeed,
        RemoveSeed,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => any::<u32>().prop_map(Op::Increment),
            2 => any::<u32>().prop_map(Op::Decrement),
            2 => any::<u32>().prop_map(Op::ToggleWanted),
            1 => Just(Op::AddSeed),
            1 => Just(Op::RemoveSeed),
        ]
    }

    fn same_answers(dense: &Availability, buckets: &Availability, n: u32) {
        dense.assert_consistent();
        buckets.assert_consistent();
        assert_eq!(dense.min(), buckets.min(), "min");
        assert_eq!(dense.seeds(), buckets.seeds(), "seeds");
        assert_eq!(dense.wanted(), buckets.wanted(), "wanted");
        assert_eq!(
            dense.wanted_servable(),
            buckets.wanted_servable(),
            "servable"
        );
        for i in 0..n as usize {
            let p = PieceIndex::from_table(i);
            assert_eq!(dense.of(p), buckets.of(p), "count of {i}");
            assert_eq!(dense.is_wanted(p), buckets.is_wanted(p), "wanted {i}");
        }
    }

    proptest! {
        /// The dense and the bucketed layouts give the same counts, the same wanted set,
        /// and the same rarest count for any filter, after any sequence of changes (the
        /// picker's own tests run on the dense one, which small torrents use).
        #[test]
        fn dense_and_bucketed_layouts_agree(
            n in 1u32..200,
            initially_wanted in any::<u64>(),
            ops in prop::collection::vec(op(), 0..400),
            accepts in prop::collection::vec(any::<u64>(), 1..6),
            seed in any::<u64>(),
        ) {
            let wanted = (0..n)
                .filter(|i| initially_wanted >> (i % 64) & 1 == 1)
                .map(|i| PieceIndex::from_table(i as usize));
            let mut dense = Availability::Dense(Dense::new(n, wanted.clone()));
            let mut buckets = Availability::Buckets(Buckets::new(n, wanted));
            for op in &ops {
                for a in [&mut dense, &mut buckets] {
                    match *op {
                        Op::Increment(i) => a.increment(PieceIndex::from_table((i % n) as usize)),
                        Op::Decrement(i) => {
                            let p = PieceIndex::from_table((i % n) as usize);
                            // Only pieces some peer announced can lose a peer.
                            if a.of(p) > a.seeds() {
                                a.decrement(p);
                            }
                        }
                        Op::ToggleWanted(i) => {
                            let p = PieceIndex::from_table((i % n) as usize);
                            if a.is_wanted(p) {
                                a.remove_wanted(p);
                            } else {
                                a.insert_wanted(p);
                            }
                        }
                        Op::AddSeed => a.add_seed(),
                        Op::RemoveSeed => {
                            if a.seeds() > 0 {
                                a.remove_seed();
                            }
                        }
                    }
                }
            }
            same_answers(&dense, &buckets, n);
            let mut rng = SmallRng::seed_from_u64(seed);
            for (k, &mask) in accepts.iter().enumerate() {
                let accept = |p: PieceIndex| (mask >> (p.idx() % 64)) & 1 == 1;
                for from in [0usize, 1] {
                    let mut bits = Bitfield::empty(n);
                    for i in (0..n as usize).filter(|&i| accept(PieceIndex::from_table(i))) {
                        bits.set(PieceIndex::from_table(i));
                    }
                    let peer = (k % 2 == 1).then_some(&bits);
                    let d = dense.rarest(from, &mut rng, peer, accept);
                    let b = buckets.rarest(from, &mut rng, None, accept);
                    prop_assert_eq!(d.is_some(), b.is_some(), "filter {} from {}", k, from);
                    let h = dense.rarest_held(from, &mut rng, &bits);
                    let hb = buckets.rarest_held(from, &mut rng, &bits);
                    prop_assert_eq!(h.is_some(), b.is_some(), "held, filter {}", k);
                    prop_assert_eq!(hb.is_some(), b.is_some(), "held, bucketed, filter {}", k);
                    if let (Some(h), Some(b)) = (h, b) {
                        prop_assert!(accept(h) && dense.is_wanted(h));
                        prop_assert_eq!(dense.of(h), buckets.of(b), "held rarest count");
                    }
                    if let (Some(d), Some(b)) = (d, b) {
                        prop_assert!(accept(d) && dense.is_wanted(d));
                        prop_assert!(dense.of(d) - dense.seeds() >= from as u32);
                        prop_assert_eq!(dense.of(d), buckets.of(b), "rarest count");
                    }
                }
            }
        }
    }

    #[test]
    fn ties_are_broken_over_every_tied_piece() {
        // 100 wanted pieces all at count 1: the scan's random start reaches each of them.
        let n = 100;
        let mut a = Dense::new(n, (0..n as usize).map(PieceIndex::from_table));
        for i in 0..n as usize {
            a.increment(PieceIndex::from_table(i));
        }
        let mut rng = SmallRng::seed_from_u64(7);
        let mut seen = vec![false; n as usize];
        for _ in 0..2000 {
            let p = a
                .rarest(1, &mut rng, None, |_| true)
                .expect("a wanted piece");
            seen[p.idx()] = true;
        }
        assert!(seen.iter().all(|&s| s), "some tied piece was never picked");
    }

    #[test]
    fn a_dense_count_at_its_top_sticks_instead_of_wrapping() {
        // 65,536 increments of one piece: the 16-bit count stays at its maximum, the piece
        // stays the most available, and nothing panics.
        let mut a = Dense::new(2, (0..2).map(PieceIndex::from_table));
        let (top, other) = (PieceIndex::from_table(0), PieceIndex::from_table(1));
        for _ in 0..=u32::from(u16::MAX) {
            a.increment(top);
        }
        a.increment(other);
        assert_eq!(a.of(top), u32::from(u16::MAX));
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(a.rarest(0, &mut rng, None, |_| true), Some(other));
        a.assert_consistent();
    }
}
