//! The piece picker (BEP 3 "piece downloading strategy"): which blocks to request from which
//! peer — partial pieces first, 4 random pieces, then rarest first, endgame at the end.
//! Owns piece availability, the state of every piece and block we download and each peer's
//! outstanding requests. Sans-IO and deterministic: randomness comes from a seeded RNG, and
//! peers' pieces are read through [`PieceView`], never stored twice.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashMap;
use slab::Slab;

#[path = "picker_blocks.rs"]
mod blocks;
#[cfg(test)]
#[path = "picker_proptests.rs"]
mod proptests;
#[cfg(test)]
#[path = "picker_tests.rs"]
mod tests;

use super::picker_avail::Availability;
use crate::metainfo::{BlockRef, Layout, PieceIndex, BLOCK_BYTES};
use crate::peer::PEER_REQUESTS_QUEUED_MAX;
use crate::wire::Bitfield;

/// Pieces picked at random, not rarest first, until we have this many: a rare piece takes
/// longest to arrive, and until one piece is complete we have nothing to upload, so nothing
/// to trade (BEP 3 calls it "random first piece"; libtorrent also uses 4).
pub const RANDOM_FIRST_PIECES: u32 = 4;

/// Endgame starts when fewer than this percentage of pieces are missing (and every missing
/// block is requested): the last requests then go to every peer that has the block, so one
/// slow peer cannot hold up the end of the download.
pub const ENDGAME_MISSING_PERCENT: u64 = 5;

/// ...or when at most this many pieces are missing, so small torrents (5 % of 20 pieces is
/// one) get an endgame for their last pieces too.
pub const ENDGAME_PIECES_MIN: u32 = 2;

/// Fewest requests we keep queued at a peer, whatever its rate: a new peer (rate 0) must get
/// enough to show its speed, and 4 × 16 KiB covers a fast peer's first round trips.
pub const PIPELINE_DEPTH_MIN: usize = 4;

/// Most requests we queue at one peer, and what we assume when it sent no `reqq` (BEP 10
/// names 250 as libtorrent's default): 4 MiB in flight fills 1 Gbit/s at 30 ms of RTT.
pub const PIPELINE_DEPTH_MAX: usize = PEER_REQUESTS_QUEUED_MAX;

/// The pipeline holds this many round trips' worth of the peer's rate. One would cap the
/// rate at what we measured (a full pipeline delivers exactly depth / RTT), so the measured
/// rate could never grow; two lets it double every round trip, like TCP slow start.
pub const PIPELINE_BDP_FACTOR: u64 = 2;

/// Blocks added to the bandwidth-delay product: the block arriving while we refill, and the
/// lag of the rate meter behind a peer that speeds up.
pub const PIPELINE_MARGIN_BLOCKS: usize = 4;

/// Recycled block tables kept for new pieces; bounds the pool after a burst of completions.
const SPARE_BLOCK_TABLES_MAX: usize = 64;

/// How many requests to keep outstanding at a peer: its bandwidth-delay product
/// (`rate × rtt`, doubled, see [`PIPELINE_BDP_FACTOR`]) in 16 KiB blocks plus
/// [`PIPELINE_MARGIN_BLOCKS`], at least [`PIPELINE_DEPTH_MIN`] and at most the peer's `reqq`
/// (`None`: it sent none) capped at [`PIPELINE_DEPTH_MAX`]. A `reqq` below the minimum wins
/// (more would be dropped); `reqq` 0 counts as 1. The caller asks [`Picker::pick`] for
/// `depth - outstanding` blocks.
pub fn pipeline_depth(rate_bytes_per_s: u64, rtt: Duration, reqq: Option<u32>) -> usize {
    let cap = reqq.map_or(PIPELINE_DEPTH_MAX, |q| {
        (q as usize).clamp(1, PIPELINE_DEPTH_MAX)
    });
    let bdp_bytes = u128::from(rate_bytes_per_s).saturating_mul(rtt.as_nanos()) / 1_000_000_000;
    let blocks = bdp_bytes
        .saturating_mul(u128::from(PIPELINE_BDP_FACTOR))
        .div_ceil(u128::from(BLOCK_BYTES));
    let blocks = usize::try_from(blocks).unwrap_or(usize::MAX);
    blocks
        .saturating_add(PIPELINE_MARGIN_BLOCKS)
        .clamp(PIPELINE_DEPTH_MIN, PIPELINE_DEPTH_MAX)
        .min(cap)
}

/// A peer's pieces as the picker reads them, answered by whatever stores them (the peer
/// session, a bitfield, the simulator), so the picker never keeps a second copy.
pub trait PieceView {
    /// The peer has `piece`.
    fn has(&self, piece: PieceIndex) -> bool;
    /// The peer has every piece.
    fn is_seed(&self) -> bool;
    /// The peer's pieces as a bitfield, when stored as one: lets interest and departures work
    /// a byte (or a set bit) at a time instead of asking `has` for every piece.
    fn bitfield(&self) -> Option<&Bitfield> {
        None
    }
}

impl PieceView for Bitfield {
    fn has(&self, piece: PieceIndex) -> bool {
        self.get(piece)
    }
    fn is_seed(&self) -> bool {
        self.is_full()
    }
    fn bitfield(&self) -> Option<&Bitfield> {
        Some(self)
    }
}

impl PieceView for crate::peer::Session {
    fn has(&self, piece: PieceIndex) -> bool {
        self.peer_has(piece)
    }
    fn is_seed(&self) -> bool {
        self.peer_is_seed()
    }
}

/// A peer with every piece (`have all`, or a full bitfield).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AllPieces;

impl PieceView for AllPieces {
    fn has(&self, _: PieceIndex) -> bool {
        true
    }
    fn is_seed(&self) -> bool {
        true
    }
}

/// A peer without pieces (`have none`, or nothing announced yet).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NoPieces;

impl PieceView for NoPieces {
    fn has(&self, _: PieceIndex) -> bool {
        false
    }
    fn is_seed(&self) -> bool {
        false
    }
}

/// The order in which new pieces are started.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum PickOrder {
    /// [`RANDOM_FIRST_PIECES`] random pieces, then rarest first (BEP 3; the default).
    #[default]
    RarestFirst,
    /// Lowest index first, as streaming clients do (the simulator shows why swarms starve).
    Sequential,
    /// Uniformly random among the wanted pieces the peer has.
    Random,
}

/// A piece's state; see [`Picker`] for the transitions. Each piece is in exactly one.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PieceState {
    /// We lack it and none of its blocks is requested or received.
    Wanted,
    /// Some blocks are requested or received, not all received.
    Downloading,
    /// Every block is received; the caller is hashing it.
    Verifying,
    /// Verified (or in the resume bitfield): never requested again.
    Have,
}

/// What a received block was; see [`Picker::block_received`].
#[must_use]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// First arrival of a block we requested from this peer: keep the data.
    New {
        /// This block was the piece's last: hash the piece, then call
        /// [`Picker::piece_verified`] or [`Picker::piece_failed`].
        piece_complete: bool,
    },
    /// The block is already received (an endgame copy that crossed our `cancel`), or its
    /// piece is verified: drop the data.
    Duplicate,
    /// We have no request for this block at this peer (never sent, already dropped, or not
    /// one of our block boundaries): drop the data.
    Unrequested,
}

/// A message that would make availability wrong, to be treated as a protocol violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickerError {
    /// `bitfield` or `have all` after the peer announced pieces: BEP 3 sends the bitfield
    /// first and BEP 6 puts `have all` in its place, and counting both would count twice.
    #[error("{what} after the peer announced {pieces_known} pieces; it must come first")]
    LateAnnouncement {
        /// The message (`"bitfield"` or `"have all"`).
        what: &'static str,
        /// Pieces the peer had announced before (all of them for a seed).
        pieces_known: u32,
    },
}

/// [`Picker::avoids`] over the fields it reads, so a scan can borrow them beside the RNG.
fn avoids<K: Eq>(
    suspects: &BTreeMap<PieceIndex, Vec<K>>,
    avail: &Availability,
    piece: PieceIndex,
    key: K,
) -> bool {
    if suspects.is_empty() {
        return false;
    }
    match suspects.get(&piece) {
        Some(list) if list.contains(&key) => avail.of(piece) > list.len() as u32,
        _ => false,
    }
}

/// What a peer announced, as counted in availability.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Announced {
    /// This many pieces, each counted in its piece's availability.
    Pieces(u32),
    /// Every piece, counted once in the seed counter.
    Seed,
}

/// One connected peer as the picker tracks it.
#[derive(Clone, Debug)]
struct PeerEntry {
    announced: Announced,
    /// Outstanding requests, oldest first (bounded by the pipeline depth the caller uses).
    requests: Vec<BlockRef>,
}

impl Default for PeerEntry {
    fn default() -> Self {
        PeerEntry {
            announced: Announced::Pieces(0),
            requests: Vec::new(),
        }
    }
}

/// A block of a piece being downloaded.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Block<K> {
    /// Nobody has it requested, nobody delivered it.
    Missing,
    /// Requested from `by`, and in endgame also from `extra` more peers (listed in
    /// [`ActivePiece::extras`]).
    Requested { by: K, extra: u16 },
    /// Delivered by this peer (remembered to find who sent a piece that fails its hash).
    Received(K),
}

/// A piece in the `Downloading` or `Verifying` state.
#[derive(Debug)]
struct ActivePiece<K> {
    piece: PieceIndex,
    blocks: Vec<Block<K>>,
    /// Blocks in `Missing`.
    missing: u32,
    /// Blocks in `Received`.
    received: u32,
    /// No block below this index is `Missing`.
    first_missing: u32,
    /// Endgame duplicates: `(block index, peer)` beyond each block's first requester.
    extras: Vec<(u32, K)>,
}

impl<K> ActivePiece<K> {
    fn is_complete(&self) -> bool {
        self.received as usize == self.blocks.len()
    }
}

/// Where a piece is: its [`PieceState`] plus the slot of its block table.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Slot {
    Wanted,
    Active(u32),
    Have,
}

/// Rarest-first piece picker with endgame for one torrent we download.
///
/// ## States (each piece in exactly one)
/// ```text
///            first block handed out              last block received
///   Wanted ───────────────────────▶ Downloading ───────────────────▶ Verifying
///     ▲ ◀── every request dropped, ──────┘                          │       │
///     │     nothing received                       piece_verified   │       │
///     └──────────────────────── piece_failed ───────────────────────┘       ▼
///                                                                          Have
/// ```
/// Blocks exist only for `Downloading` and `Verifying` pieces, each in exactly one state:
/// `Missing ──pick──▶ Requested ──first arrival──▶ Received`, and `Requested ──dropped by its
/// last requester──▶ Missing`. Outside endgame a `Requested` block has one requester; in
/// endgame every peer that has it may request it once. `Have` pieces come from the resume
/// bitfield or `piece_verified` and are never requested again.
///
/// ## Driving it
/// Report every peer's announcements (`peer_bitfield`, `peer_have`, `peer_have_all`,
/// `peer_have_none`) before picking for it, and `peer_left` when it goes. When a peer
/// unchokes us or delivers a block, [`pick`](Self::pick) `pipeline_depth(..) -
/// outstanding(key)` blocks and send them as requests. Report each block's fate:
/// [`block_received`](Self::block_received) (send `cancel` to the peers it lists),
/// [`block_dropped`](Self::block_dropped) (reject, timeout) or
/// [`peer_choked`](Self::peer_choked). Hash each completed piece and report the verdict.
///
/// ## Cost (P pieces, W wanted pieces, B blocks per piece, D requests outstanding at a peer)
/// Availability changes are O(1) (a peer's arrival with a bitfield and its departure are
/// O(pieces it has)). A pick looks at the partial pieces with unrequested blocks (a few per
/// peer), then, to start a piece, at the wanted pieces in rarest-first order until one the
/// peer has: O(1) for a seed or a peer with most pieces, up to O(W) for a peer with almost
/// none. The first [`RANDOM_FIRST_PIECES`] pieces scan from a random index, O(P) at worst.
/// Starting a piece is O(B) (its block table). Receiving or dropping a block is O(D) (the
/// peer's request list, searched oldest first) plus the other requesters in endgame.
/// Endgame picks are O(blocks still outstanding · log), under 5 % of the torrent.
#[derive(Debug)]
pub struct Picker<K> {
    /// The torrent's geometry alone (one file of the same length): piece and block lengths.
    geometry: Layout,
    have: Bitfield,
    have_bytes: u64,
    slots: Vec<Slot>,
    avail: Availability,
    active: Slab<ActivePiece<K>>,
    /// `Downloading` pieces with `Missing` blocks, in the order they got them.
    with_missing: Vec<PieceIndex>,
    /// `Missing` blocks over all active pieces.
    blocks_missing: u64,
    /// Keys are the caller's connection ids, never chosen by a remote peer, so a fast
    /// non-keyed hash is safe (the simulator does one lookup per `have` per neighbour).
    peers: FxHashMap<K, PeerEntry>,
    /// Connected peers that sent blocks of a piece that failed its hash, until it verifies.
    suspects: BTreeMap<PieceIndex, Vec<K>>,
    rng: SmallRng,
    order: PickOrder,
    spare_tables: Vec<Vec<Block<K>>>,
    /// Endgame scratch: candidate `(extra requesters, slot, block)` and the peer's requests.
    candidates: Vec<(u16, u32, u32)>,
    mine: Vec<(PieceIndex, u32)>,
}

impl<K: Copy + Eq + Hash> Picker<K> {
    /// A picker for `layout`, starting with the pieces in `have` (a resume bitfield; empty
    /// for a fresh download). `rng_seed` fixes every random choice.
    ///
    /// # Panics
    /// If `have` is not sized to the layout's piece count.
    pub fn new(layout: &Layout, have: Bitfield, rng_seed: u64) -> Picker<K> {
        assert_eq!(
            have.len(),
            layout.piece_count(),
            "bitfield sized for another torrent"
        );
        let geometry = Layout::new(layout.piece_length(), &[layout.total_length()])
            .expect("a valid layout's geometry is valid");
        let rng = SmallRng::seed_from_u64(rng_seed);
        let wanted = geometry.pieces().filter(|&p| !have.get(p));
        let avail = Availability::new(geometry.piece_count(), wanted, false);
        let slots = geometry
            .pieces()
            .map(|p| {
                if have.get(p) {
                    Slot::Have
                } else {
                    Slot::Wanted
                }
            })
            .collect();
        let have_bytes = have.iter_ones().map(|i| piece_bytes(&geometry, i)).sum();
        Picker {
            geometry,
            have,
            have_bytes,
            slots,
            avail,
            active: Slab::new(),
            with_missing: Vec::new(),
            blocks_missing: 0,
            peers: FxHashMap::default(),
            suspects: BTreeMap::new(),
            rng,
            order: PickOrder::RarestFirst,
            spare_tables: Vec::new(),
            candidates: Vec::new(),
            mine: Vec::new(),
        }
    }

    /// Switches to the dense availability layout (`picker_avail`), for thousands of pickers
    /// sharing the caches (the simulator). Only right after [`Picker::new`], at most 8,192
    /// pieces; returns whether it switched.
    pub fn use_dense_availability(&mut self) -> bool {
        if !self.peers.is_empty() || !self.active.is_empty() {
            return false;
        }
        let wanted = self.geometry.pieces().filter(|p| !self.have.get(*p));
        self.avail = Availability::new(self.geometry.piece_count(), wanted, true);
        self.avail.is_dense()
    }

    /// Changes the order in which new pieces are started (partial pieces still come first).
    pub fn set_order(&mut self, order: PickOrder) {
        self.order = order;
    }

    // ---- Getters -------------------------------------------------------------------------

    /// The pieces we have (verified or resumed): our `bitfield` message.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// Pieces we do not have yet, including those being downloaded or verified.
    pub fn pieces_missing(&self) -> u32 {
        self.have.len() - self.have.count()
    }

    /// Bytes of the pieces we do not have (the tracker's `left`).
    pub fn bytes_left(&self) -> u64 {
        self.geometry.total_length() - self.have_bytes
    }

    /// True when we have every piece.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    /// True in endgame: fewer than [`ENDGAME_MISSING_PERCENT`] % of the pieces (or at most
    /// [`ENDGAME_PIECES_MIN`]) are missing, and every block that a connected peer could send
    /// is already requested. Recomputed on every call (O(1)): a dropped request leaves
    /// endgame until the block is requested again.
    pub fn in_endgame(&self) -> bool {
        let missing = self.pieces_missing();
        let few = u64::from(missing) * 100 < u64::from(self.have.len()) * ENDGAME_MISSING_PERCENT
            || missing <= ENDGAME_PIECES_MIN;
        missing > 0 && few && self.blocks_missing == 0 && self.avail.wanted_servable() == 0
    }

    /// True when the peer has a piece we lack: we should be `interested`. O(1) for a seed,
    /// O(P / 8) for a view with a bitfield, O(P) otherwise.
    pub fn is_interesting(&self, peer: &impl PieceView) -> bool {
        if self.is_complete() {
            false
        } else if peer.is_seed() {
            true
        } else if let Some(bits) = peer.bitfield() {
            bits.has_any_missing_from(&self.have)
        } else {
            self.geometry
                .pieces()
                .any(|p| peer.has(p) && !self.have.get(p))
        }
    }

    /// Connected peers that have `piece`, seeds included.
    pub fn availability(&self, piece: PieceIndex) -> u32 {
        self.avail.of(piece)
    }

    /// The lowest availability of any piece, seeds included: 0 means no connected peer
    /// has some piece (whether we have it or not), so the swarm here holds no full copy.
    pub fn min_availability(&self) -> u32 {
        self.avail.min()
    }

    /// Connected peers counted as seeds (`have all` or a full bitfield).
    pub fn seeds(&self) -> u32 {
        self.avail.seeds()
    }

    /// Where `piece` is in its lifecycle.
    pub fn piece_state(&self, piece: PieceIndex) -> PieceState {
        match self.slots[piece.idx()] {
            Slot::Wanted => PieceState::Wanted,
            Slot::Have => PieceState::Have,
            Slot::Active(s) if self.active[s as usize].is_complete() => PieceState::Verifying,
            Slot::Active(_) => PieceState::Downloading,
        }
    }

    /// The peer's outstanding requests, oldest first.
    pub fn requests(&self, key: K) -> &[BlockRef] {
        self.peers.get(&key).map_or(&[], |p| &p.requests)
    }

    /// Number of the peer's outstanding requests.
    pub fn outstanding(&self, key: K) -> usize {
        self.requests(key).len()
    }

    // ---- Availability inputs ---------------------------------------------------------------

    /// The peer sent its bitfield (a full one counts as a seed, O(1); otherwise O(pieces set)).
    ///
    /// # Errors
    /// [`PickerError::LateAnnouncement`] if the peer already announced pieces; nothing changes.
    ///
    /// # Panics
    /// If `bits` is sized for another torrent (`Bitfield::from_wire` checks that).
    pub fn peer_bitfield(&mut self, key: K, bits: &Bitfield) -> Result<(), PickerError> {
        assert_eq!(bits.len(), self.have.len(), "bitfield of another torrent");
        let entry = self.peers.entry(key).or_default();
        match entry.announced {
            Announced::Pieces(0) => {}
            Announced::Pieces(n) => return Err(late("bitfield", n)),
            Announced::Seed => return Err(late("bitfield", self.have.len())),
        }
        if bits.is_full() {
            entry.announced = Announced::Seed;
            self.avail.add_seed();
            return Ok(());
        }
        entry.announced = Announced::Pieces(bits.count());
        for i in bits.iter_ones() {
            let piece = self.index(i);
            self.avail.increment(piece);
        }
        Ok(())
    }

    /// The peer sent `have all` (BEP 6): one more seed, O(1).
    ///
    /// # Errors
    /// [`PickerError::LateAnnouncement`] if the peer already announced some pieces.
    pub fn peer_have_all(&mut self, key: K) -> Result<(), PickerError> {
        let entry = self.peers.entry(key).or_default();
        match entry.announced {
            Announced::Seed => return Ok(()),
            Announced::Pieces(0) => {}
            Announced::Pieces(n) => return Err(late("have all", n)),
        }
        entry.announced = Announced::Seed;
        self.avail.add_seed();
        Ok(())
    }

    /// The peer sent `have none` (BEP 6), or connected: it is known, with no pieces.
    pub fn peer_have_none(&mut self, key: K) {
        self.peers.entry(key).or_default();
    }

    /// The peer announced `piece` with `have`. Call once per piece per peer: only when the
    /// session did not know it before (`Bitfield::set` returned true). Returns true when we
    /// lack the piece, so the caller can become interested without a scan. O(1).
    pub fn peer_have(&mut self, key: K, piece: PieceIndex) -> bool {
        let entry = self.peers.entry(key).or_default();
        if let Announced::Pieces(n) = entry.announced {
            debug_assert!(n < self.have.len(), "more haves than pieces");
            entry.announced = Announced::Pieces(n + 1);
            self.avail.increment(piece);
        }
        !self.have.get(piece)
    }

    /// The peer is gone: its requests become requestable again, its pieces leave the
    /// availability counts. `pieces` must be what it announced. O(D + pieces it had).
    pub fn peer_left(&mut self, key: K, pieces: &impl PieceView) {
        let Some(entry) = self.peers.remove(&key) else {
            return;
        };
        for block in &entry.requests {
            self.release(key, *block);
        }
        match entry.announced {
            Announced::Seed => self.avail.remove_seed(),
            Announced::Pieces(0) => {}
            Announced::Pieces(n) => {
                let mut counted = 0;
                if let Some(bits) = pieces.bitfield() {
                    for i in bits.iter_ones() {
                        let piece = self.index(i);
                        self.avail.decrement(piece);
                        counted += 1;
                    }
                } else {
                    for i in 0..self.have.len() {
                        let piece = self.index(i);
                        if pieces.has(piece) {
                            self.avail.decrement(piece);
                            counted += 1;
                        }
                    }
                }
                debug_assert_eq!(
                    counted, n,
                    "departing peer's pieces differ from its announcements"
                );
            }
        }
        if !self.suspects.is_empty() {
            for list in self.suspects.values_mut() {
                list.retain(|&k| k != key);
            }
            self.suspects.retain(|_, list| !list.is_empty());
        }
    }

    // ---- Picking ---------------------------------------------------------------------------

    /// Hands out up to `count` blocks to request from the peer, appending them to `out` and
    /// marking them requested by `key`; returns how many. In order: unrequested blocks of
    /// partial pieces the peer has, then new pieces — random ones while we have fewer than
    /// [`RANDOM_FIRST_PIECES`], else the rarest with ties broken randomly — and in endgame,
    /// blocks already requested from others (fewest requesters first). A piece whose last
    /// download failed its hash is not given to the peers that sent it while another
    /// connected peer has it.
    pub fn pick(
        &mut self,
        key: K,
        peer: &impl PieceView,
        count: usize,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        let start = out.len();
        self.peers.entry(key).or_default();
        let mut need = count;
        let mut i = 0;
        while need > 0 && i < self.with_missing.len() {
            let piece = self.with_missing[i];
            if peer.has(piece) && !self.avoids(piece, key) {
                need -= self.take_missing(piece, key, need, out);
            }
            if self.with_missing.get(i) == Some(&piece) {
                i += 1;
            }
        }
        while need > 0 {
            let Some(piece) = self.choose_new(key, peer) else {
                break;
            };
            self.start(piece);
            need -= self.take_missing(piece, key, need, out);
        }
        if need > 0 && self.in_endgame() {
            self.pick_endgame(key, peer, need, out);
        }
        out.len() - start
    }

    /// A wanted piece to start for the peer, or `None`.
    fn choose_new(&mut self, key: K, peer: &impl PieceView) -> Option<PieceIndex> {
        if self.avail.wanted() == 0 {
            return None;
        }
        let n = self.have.len();
        if self.order == PickOrder::Sequential {
            return (0..n)
                .map(|i| self.index(i))
                .find(|&p| self.avail.is_wanted(p) && peer.has(p) && !self.avoids(p, key));
        }
        if self.have.count() < RANDOM_FIRST_PIECES || self.order == PickOrder::Random {
            // The first hit after a random index: slightly favours pieces that follow runs
            // the peer lacks, which is harmless for four pieces and costs no index.
            let from = self.rng.random_range(0..n);
            return (0..n)
                .map(|k| self.index((from + k) % n))
                .find(|&p| self.avail.is_wanted(p) && peer.has(p) && !self.avoids(p, key));
        }
        let from_count = usize::from(!peer.is_seed());
        if let (true, Some(held)) = (self.suspects.is_empty(), peer.bitfield()) {
            return self.avail.rarest_held(from_count, &mut self.rng, held);
        }
        let avail = &self.avail;
        avail.rarest(from_count, &mut self.rng, peer.bitfield(), |p| {
            peer.has(p) && !avoids(&self.suspects, avail, p, key)
        })
    }

    /// True when `key` sent blocks of `piece` that failed the hash and another connected
    /// peer has the piece (suspects are connected and had it, so any count above theirs is
    /// someone else).
    fn avoids(&self, piece: PieceIndex, key: K) -> bool {
        avoids(&self.suspects, &self.avail, piece, key)
    }

    /// Moves a wanted piece to `Downloading` with every block `Missing`.
    fn start(&mut self, piece: PieceIndex) {
        self.avail.remove_wanted(piece);
        let n = self.geometry.blocks_in_piece(piece);
        let mut blocks = self.spare_tables.pop().unwrap_or_default();
        blocks.resize(n as usize, Block::Missing);
        let slot = self.active.insert(ActivePiece {
            piece,
            blocks,
            missing: n,
            received: 0,
            first_missing: 0,
            extras: Vec::new(),
        });
        self.slots[piece.idx()] = Slot::Active(slot as u32);
        self.blocks_missing += u64::from(n);
        self.with_missing.push(piece);
    }

    /// Requests up to `need` missing blocks of `piece` from `key`, lowest offsets first.
    fn take_missing(
        &mut self,
        piece: PieceIndex,
        key: K,
        need: usize,
        out: &mut Vec<BlockRef>,
    ) -> usize {
        let Slot::Active(slot) = self.slots[piece.idx()] else {
            unreachable!("with_missing holds active pieces only");
        };
        let ap = &mut self.active[slot as usize];
        let requests = &mut self
            .peers
            .get_mut(&key)
            .expect("registered by pick")
            .requests;
        let mut taken = 0;
        let mut idx = ap.first_missing as usize;
        while taken < need && ap.missing > 0 {
            if ap.blocks[idx] == Block::Missing {
                ap.blocks[idx] = Block::Requested { by: key, extra: 0 };
                ap.missing -= 1;
                let block = block_ref(&self.geometry, piece, idx as u32);
                out.push(block);
                requests.push(block);
                taken += 1;
            }
            idx += 1;
        }
        ap.first_missing = idx as u32;
        self.blocks_missing -= taken as u64;
        if ap.missing == 0 {
            self.with_missing.retain(|&p| p != piece);
        }
        taken
    }

    /// Endgame: requests from `key` blocks others have requested and it has not, fewest
    /// requesters first (then block-table slot and block order, so it is reproducible).
    fn pick_endgame(
        &mut self,
        key: K,
        peer: &impl PieceView,
        need: usize,
        out: &mut Vec<BlockRef>,
    ) {
        let requests = &self.peers[&key].requests;
        self.mine.clear();
        self.mine
            .extend(requests.iter().map(|b| (b.piece, b.offset)));
        self.mine.sort_unstable();
        self.candidates.clear();
        for (slot, ap) in &self.active {
            if ap.is_complete() || !peer.has(ap.piece) || self.avoids(ap.piece, key) {
                continue;
            }
            for (idx, block) in ap.blocks.iter().enumerate() {
                let Block::Requested { extra, .. } = *block else {
                    continue;
                };
                // `mine` holds every block this peer requests, first requester or not.
                let offset = idx as u32 * BLOCK_BYTES;
                if extra < u16::MAX && self.mine.binary_search(&(ap.piece, offset)).is_err() {
                    self.candidates.push((extra, slot as u32, idx as u32));
                }
            }
        }
        self.candidates.sort_unstable();
        let requests = &mut self
            .peers
            .get_mut(&key)
            .expect("registered by pick")
            .requests;
        for &(_, slot, idx) in self.candidates.iter().take(need) {
            let ap = &mut self.active[slot as usize];
            if let Block::Requested { extra, .. } = &mut ap.blocks[idx as usize] {
                *extra += 1;
            }
            ap.extras.push((idx, key));
            let block = block_ref(&self.geometry, ap.piece, idx);
            out.push(block);
            requests.push(block);
        }
    }
}

fn late(what: &'static str, pieces_known: u32) -> PickerError {
    PickerError::LateAnnouncement { what, pieces_known }
}

/// Block `idx` of `piece`: 16 KiB, the last one of a piece shorter.
fn block_ref(geometry: &Layout, piece: PieceIndex, idx: u32) -> BlockRef {
    let offset = idx * BLOCK_BYTES;
    let len = (geometry.piece_len(piece) - offset).min(BLOCK_BYTES);
    BlockRef { piece, offset, len }
}

fn piece_bytes(geometry: &Layout, i: u32) -> u64 {
    u64::from(geometry.piece_len(geometry.piece(i).expect("in range")))
}
