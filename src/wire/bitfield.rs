//! A set of pieces in BEP 3 bitfield order: bit 7 of byte 0 is piece 0; spare bits are zero.

use super::WireError;
use crate::metainfo::PieceIndex;

/// Which pieces of one torrent a peer (or we) have, sized to the torrent's piece count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitfield {
    bits: Vec<u8>,
    len: u32,
    ones: u32,
}

impl Bitfield {
    /// No piece out of `len`.
    pub fn empty(len: u32) -> Bitfield {
        Bitfield {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
            ones: 0,
        }
    }

    /// Every piece out of `len`.
    pub fn full(len: u32) -> Bitfield {
        let mut bits = vec![0xff; len.div_ceil(8) as usize];
        if let Some(last) = bits.last_mut() {
            *last = spare_mask_inverse(len);
        }
        Bitfield {
            bits,
            len,
            ones: len,
        }
    }

    /// Parses a received bitfield for a torrent of `len` pieces: the byte count must match
    /// and the spare bits after the last piece must be zero (BEP 3).
    pub fn from_wire(bytes: &[u8], len: u32) -> Result<Bitfield, WireError> {
        let expected = len.div_ceil(8) as usize;
        if bytes.len() != expected {
            return Err(WireError::BitfieldLength {
                len: bytes.len(),
                expected,
            });
        }
        if let Some(&last) = bytes.last() {
            if last & !spare_mask_inverse(len) != 0 {
                return Err(WireError::BitfieldSpareBits);
            }
        }
        let ones = bytes.iter().map(|b| b.count_ones()).sum();
        Ok(Bitfield {
            bits: bytes.to_vec(),
            len,
            ones,
        })
    }

    /// The wire form (for a `bitfield` message).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bits
    }

    /// Adds every piece of `other` (same length) to this set.
    pub fn union_with(&mut self, other: &Bitfield) {
        debug_assert_eq!(self.len, other.len);
        for (a, b) in self.bits.iter_mut().zip(&other.bits) {
            *a |= *b;
        }
        self.ones = self.bits.iter().map(|b| b.count_ones()).sum();
    }

    /// The pieces of this set that are not in `other` (same length).
    pub fn difference(&self, other: &Bitfield) -> Bitfield {
        debug_assert_eq!(self.len, other.len);
        let bits: Vec<u8> = self
            .bits
            .iter()
            .zip(&other.bits)
            .map(|(a, b)| a & !b)
            .collect();
        let ones = bits.iter().map(|b| b.count_ones()).sum();
        Bitfield {
            bits,
            len: self.len,
            ones,
        }
    }

    /// Every piece in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.bits.iter().enumerate().flat_map(|(i, &byte)| {
            (0..8u32)
                .filter(move |bit| byte & (0x80 >> bit) != 0)
                .map(move |bit| i as u32 * 8 + bit)
        })
    }

    /// Number of pieces the set ranges over.
    pub fn len(&self) -> u32 {
        self.len
    }

    /// True for a torrent without pieces (never the case for a parsed torrent).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.ones
    }

    /// True when every piece is in the set.
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }

    /// True when `piece` is in the set; false for indices past the end.
    pub fn get(&self, piece: PieceIndex) -> bool {
        let i = piece.idx();
        i < self.len as usize && self.bits[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// Pieces `64 * w .. 64 * w + 64` as a word, piece `64 * w + k` in bit `k` (the order
    /// tables of machine words use); zero past the end.
    pub fn word(&self, w: usize) -> u64 {
        let at = w * 8;
        let mut bytes = [0u8; 8];
        if let Some(whole) = self.bits.get(at..at + 8) {
            bytes.copy_from_slice(whole);
        } else if let Some(src) = self.bits.get(at..) {
            bytes[..src.len()].copy_from_slice(src);
        }
        // Big-endian puts piece 64w in bit 63; reversing the bits puts it in bit 0.
        u64::from_be_bytes(bytes).reverse_bits()
    }

    /// Adds `piece`; returns true if it was not there before.
    ///
    /// # Panics
    /// If `piece` is past the end: piece indices are validated against the same torrent.
    pub fn set(&mut self, piece: PieceIndex) -> bool {
        let i = piece.idx();
        assert!(
            i < self.len as usize,
            "piece {i} outside a bitfield of {}",
            self.len
        );
        let mask = 0x80 >> (i % 8);
        let fresh = self.bits[i / 8] & mask == 0;
        self.bits[i / 8] |= mask;
        self.ones += u32::from(fresh);
        fresh
    }

    /// True when this set holds a piece that `other` (same length) lacks: "does the peer
    /// have something we need", a byte at a time instead of a piece at a time.
    pub fn has_any_missing_from(&self, other: &Bitfield) -> bool {
        debug_assert_eq!(self.len, other.len);
        self.bits.iter().zip(&other.bits).any(|(a, b)| a & !b != 0)
    }

    /// The piece numbers in the set, ascending; skips empty bytes whole.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        let bytes = self.bits.iter().enumerate().filter(|(_, &byte)| byte != 0);
        bytes.flat_map(|(i, &byte)| {
            let base = i as u32 * 8;
            (0..8u32)
                .filter(move |bit| byte & (0x80 >> bit) != 0)
                .map(move |bit| base + bit)
        })
    }
}

/// The bits of the last byte that belong to real pieces (all of them when `len % 8 == 0`).
fn spare_mask_inverse(len: u32) -> u8 {
    match len % 8 {
        0 => 0xff,
        used => !(0xffu8 >> used),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_hold_pieces_in_machine_bit_order() {
        let mut b = Bitfield::empty(130);
        for i in [0, 5, 63, 64, 100, 129] {
            b.set(PieceIndex::from_table(i));
        }
        assert_eq!(b.word(0), 1 | 1 << 5 | 1 << 63);
        assert_eq!(b.word(1), 1 | 1 << 36);
        assert_eq!(b.word(2), 1 << 1);
        assert_eq!(b.word(3), 0);
    }

    #[test]
    fn set_operations_see_every_piece_and_only_real_ones() {
        // iter_ones lists exactly the set pieces; has_any_missing_from compares whole sets.
        let mut a = Bitfield::empty(11);
        let b = Bitfield::full(11);
        assert_eq!(a.iter_ones().count(), 0);
        assert!(!a.has_any_missing_from(&b));
        assert!(b.has_any_missing_from(&a));
        for i in [0, 7, 8, 10] {
            a.bits[i / 8] |= 0x80 >> (i % 8);
        }
        assert_eq!(a.iter_ones().collect::<Vec<_>>(), vec![0, 7, 8, 10]);
        assert_eq!(b.iter_ones().count(), 11);
        assert!(!a.has_any_missing_from(&b));
    }
}
