//! Sets of pieces as a session keeps them: ours, and what the peer declared — including
//! declarations that arrive before a magnet session knows the piece count, kept raw and
//! validated when the metadata arrives.

use super::PeerError;
use crate::metainfo::PieceIndex;
use crate::wire::{Bitfield, WireError, BITFIELD_BYTES_MAX, PIECE_COUNT_MAX};

/// A set of a torrent's pieces. `Empty` and `All` cost no memory, so a seeder's ten thousand
/// sessions (ours `All`, most peers' `Empty` or `All`) hold no bitfields at all; `Partial`
/// costs one bit per piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceSet {
    /// No piece.
    Empty,
    /// Every piece.
    All,
    /// The pieces in the bitfield (which may happen to be empty or full).
    Partial(Bitfield),
}

impl PieceSet {
    /// True when `piece` is in the set.
    pub fn has(&self, piece: PieceIndex) -> bool {
        match self {
            PieceSet::Empty => false,
            PieceSet::All => true,
            PieceSet::Partial(bits) => bits.get(piece),
        }
    }

    /// Number of pieces in the set, for a torrent of `piece_count` pieces.
    pub fn count(&self, piece_count: u32) -> u32 {
        match self {
            PieceSet::Empty => 0,
            PieceSet::All => piece_count,
            PieceSet::Partial(bits) => bits.count(),
        }
    }

    /// True when the set holds no piece.
    pub fn is_empty(&self) -> bool {
        match self {
            PieceSet::Empty => true,
            PieceSet::All => false,
            PieceSet::Partial(bits) => bits.count() == 0,
        }
    }

    /// True when the set holds every piece.
    pub fn is_full(&self) -> bool {
        match self {
            PieceSet::Empty => false,
            PieceSet::All => true,
            PieceSet::Partial(bits) => bits.is_full(),
        }
    }

    /// Adds `piece` of a torrent of `piece_count` pieces; true if it was not there before.
    pub fn insert(&mut self, piece: PieceIndex, piece_count: u32) -> bool {
        match self {
            PieceSet::All => false,
            PieceSet::Partial(bits) => bits.set(piece),
            PieceSet::Empty => {
                let mut bits = Bitfield::empty(piece_count);
                bits.set(piece);
                *self = PieceSet::Partial(bits);
                true
            }
        }
    }

    /// Adds a bulk declaration of the peer's pieces and returns what it added, if anything.
    ///
    /// BEP 3 wants one declaration first, but clients send more (aria2 1.36 sends a
    /// `bitfield` after `have none`), so they accumulate. The result is `All` only when
    /// the set was empty and the declaration says all: that keeps the variant of the set
    /// equal to the variants of the deltas reported (see [`Event`](super::Event)).
    pub(super) fn declare(&mut self, declared: PieceSet, piece_count: u32) -> Option<PieceSet> {
        let declared = match declared {
            PieceSet::Partial(bits) if bits.is_full() => PieceSet::All,
            other => other,
        };
        if declared.is_empty() {
            return None;
        }
        let added = match (&*self, declared) {
            (PieceSet::All, _) => return None,
            (PieceSet::Empty, declared) => declared,
            (PieceSet::Partial(known), PieceSet::All) => {
                PieceSet::Partial(Bitfield::full(piece_count).difference(known))
            }
            (PieceSet::Partial(known), PieceSet::Partial(new)) => {
                PieceSet::Partial(new.difference(known))
            }
            (PieceSet::Partial(_), PieceSet::Empty) => unreachable!("empty declarations return"),
        };
        if added.is_empty() {
            return None;
        }
        match (&mut *self, &added) {
            (PieceSet::Partial(known), PieceSet::Partial(new)) => known.union_with(new),
            (known, added) => *known = added.clone(),
        }
        Some(added)
    }
}

/// What a peer declared before a magnet session knew the piece count: raw bitfield bytes and
/// `have` indices, checked against the torrent once the metadata arrives (and the session
/// is closed then if they do not fit). Memory is bounded by the largest bitfield we accept.
#[derive(Clone, Debug, Default)]
pub(super) struct PendingPieces {
    all: bool,
    /// The union of `bitfield` messages (all of one length).
    bitfield: Option<Vec<u8>>,
    /// One bit per piece named by a `have`, grown as needed.
    haves: Vec<u8>,
    /// The highest piece named by a `have`.
    have_max: Option<u32>,
}

impl PendingPieces {
    pub(super) fn have_all(&mut self) {
        self.all = true;
    }

    pub(super) fn bitfield(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        match &mut self.bitfield {
            None => self.bitfield = Some(bytes.to_vec()),
            Some(known) if known.len() == bytes.len() => {
                for (a, b) in known.iter_mut().zip(bytes) {
                    *a |= b;
                }
            }
            Some(known) => {
                return Err(WireError::BitfieldLength {
                    len: bytes.len(),
                    expected: known.len(),
                }
                .into())
            }
        }
        Ok(())
    }

    pub(super) fn have(&mut self, piece: u32) -> Result<(), PeerError> {
        if piece >= PIECE_COUNT_MAX {
            return Err(PeerError::HaveOutOfRange {
                piece,
                count: PIECE_COUNT_MAX,
            });
        }
        let byte = piece as usize / 8;
        debug_assert!(byte < BITFIELD_BYTES_MAX);
        if self.haves.len() <= byte {
            self.haves.resize(byte + 1, 0);
        }
        self.haves[byte] |= 0x80 >> (piece % 8);
        self.have_max = self.have_max.max(Some(piece));
        Ok(())
    }

    /// Checks everything against a torrent of `piece_count` pieces; returns the set the peer
    /// declared (to report as one delta).
    pub(super) fn resolve(self, piece_count: u32) -> Result<PieceSet, PeerError> {
        if self.all {
            return Ok(PieceSet::All);
        }
        if let Some(piece) = self.have_max.filter(|&p| p >= piece_count) {
            return Err(PeerError::HaveOutOfRange {
                piece,
                count: piece_count,
            });
        }
        let mut bits = match &self.bitfield {
            Some(bytes) => Bitfield::from_wire(bytes, piece_count)?,
            None => Bitfield::empty(piece_count),
        };
        if let Some(max) = self.have_max {
            let mut haves = self.haves;
            haves.resize(piece_count.div_ceil(8) as usize, 0);
            debug_assert!(max < piece_count);
            bits.union_with(&Bitfield::from_wire(&haves, piece_count)?);
        }
        let mut set = PieceSet::Empty;
        set.declare(PieceSet::Partial(bits), piece_count);
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::Layout;

    fn layout(pieces: u32) -> Layout {
        Layout::new(16384, &[u64::from(pieces) * 16384]).unwrap()
    }

    fn partial(count: u32, pieces: &[u32]) -> PieceSet {
        let l = layout(count);
        let mut bits = Bitfield::empty(count);
        for &p in pieces {
            bits.set(l.piece(p).unwrap());
        }
        PieceSet::Partial(bits)
    }

    #[test]
    fn declarations_report_only_new_pieces() {
        // A bitfield after haves adds only the pieces not known yet; `have all` afterwards
        // adds the complement and keeps the set a bitfield, so deltas and set agree.
        let l = layout(10);
        let mut set = PieceSet::Empty;
        assert!(set.insert(l.piece(1).unwrap(), 10));
        assert!(!set.insert(l.piece(1).unwrap(), 10));
        let added = set.declare(partial(10, &[0, 1, 2]), 10);
        assert_eq!(added, Some(partial(10, &[0, 2])));
        assert_eq!(set.declare(partial(10, &[0, 2]), 10), None);
        assert_eq!(set.declare(PieceSet::Empty, 10), None);
        let added = set.declare(PieceSet::All, 10).unwrap();
        assert_eq!(added, partial(10, &[3, 4, 5, 6, 7, 8, 9]));
        assert_eq!(set, partial(10, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]));
        assert!(set.is_full());
        assert_eq!(set.declare(PieceSet::All, 10), None);
    }

    #[test]
    fn a_first_full_declaration_is_kept_as_all() {
        // A seed's full bitfield costs no memory and later declarations add nothing.
        let mut set = PieceSet::Empty;
        let full = partial(10, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(set.declare(full, 10), Some(PieceSet::All));
        assert_eq!(set, PieceSet::All);
        assert_eq!(set.declare(partial(10, &[1]), 10), None);
    }

    #[test]
    fn pending_declarations_are_validated_against_the_piece_count() {
        // Haves and a bitfield received before the metadata become one set once the count
        // is known; a have past the end or a bitfield of the wrong length closes.
        let mut p = PendingPieces::default();
        p.bitfield(&[0x80, 0x00]).unwrap();
        p.have(9).unwrap();
        p.have(3).unwrap();
        assert_eq!(p.clone().resolve(10).unwrap(), partial(10, &[0, 3, 9]));
        assert_eq!(
            p.clone().resolve(9),
            Err(PeerError::HaveOutOfRange { piece: 9, count: 9 })
        );
        assert!(matches!(
            p.resolve(20),
            Err(PeerError::Wire(WireError::BitfieldLength { .. }))
        ));
        let mut p = PendingPieces::default();
        p.have(2).unwrap();
        p.have_all();
        assert_eq!(p.resolve(5).unwrap(), PieceSet::All);
        assert_eq!(
            PendingPieces::default().have(PIECE_COUNT_MAX),
            Err(PeerError::HaveOutOfRange {
                piece: PIECE_COUNT_MAX,
                count: PIECE_COUNT_MAX
            })
        );
        assert_eq!(
            PendingPieces::default().resolve(5).unwrap(),
            PieceSet::Empty
        );
    }
}
