//! The picker's block and piece outcomes (arrivals, dropped requests, hash verdicts) and
//! the internals that move blocks between states; see [`Picker`] for the state diagram.

use std::hash::Hash;

use super::{block_ref, Arrival, Block, Picker, Slot, SPARE_BLOCK_TABLES_MAX};
use crate::metainfo::{BlockRef, PieceIndex, BLOCK_BYTES};

impl<K: Copy + Eq + Hash> Picker<K> {
    // ---- Block and piece outcomes ------------------------------------------------------------

    /// A block arrived from `key`. On its first arrival, the other peers that had it
    /// requested (endgame) are appended to `cancel`: send them `cancel`. O(D · requesters).
    pub fn block_received(&mut self, key: K, block: BlockRef, cancel: &mut Vec<K>) -> Arrival {
        let slot = match self.slots.get(block.piece.idx()) {
            Some(Slot::Have) => return Arrival::Duplicate,
            Some(Slot::Active(slot)) => *slot as usize,
            Some(Slot::Wanted) | None => return Arrival::Unrequested,
        };
        let Some(idx) = self.block_index(block) else {
            return Arrival::Unrequested;
        };
        let ap = &mut self.active[slot];
        let (by, extra) = match ap.blocks[idx as usize] {
            Block::Received(_) => return Arrival::Duplicate,
            Block::Missing => return Arrival::Unrequested,
            Block::Requested { by, extra } => (by, extra),
        };
        let mine = by == key || (extra > 0 && ap.extras.contains(&(idx, key)));
        if !mine {
            return Arrival::Unrequested;
        }
        let first_cancel = cancel.len();
        if by != key {
            cancel.push(by);
        }
        if extra > 0 {
            ap.extras.retain(|&(i, k)| {
                if i == idx && k != key {
                    cancel.push(k);
                }
                i != idx
            });
        }
        ap.blocks[idx as usize] = Block::Received(key);
        ap.received += 1;
        let piece_complete = ap.is_complete();
        for k in std::iter::once(key).chain(cancel[first_cancel..].iter().copied()) {
            if let Some(entry) = self.peers.get_mut(&k) {
                remove_request(&mut entry.requests, block);
            }
        }
        Arrival::New { piece_complete }
    }

    /// The request for `block` at `key` is gone without data (a `reject`, a timeout): the
    /// block becomes requestable again (unless other endgame requests for it remain).
    /// Returns false if no such request was outstanding.
    pub fn block_dropped(&mut self, key: K, block: BlockRef) -> bool {
        let Some(entry) = self.peers.get_mut(&key) else {
            return false;
        };
        if !remove_request(&mut entry.requests, block) {
            return false;
        }
        self.release(key, block);
        true
    }

    /// The peer choked us without the fast extension (BEP 3: every request is discarded):
    /// drops all its requests. With BEP 6, requests end one by one with `reject`s instead.
    pub fn peer_choked(&mut self, key: K) {
        let Some(entry) = self.peers.get_mut(&key) else {
            return;
        };
        let requests = std::mem::take(&mut entry.requests);
        for block in requests {
            self.release(key, block);
        }
    }

    /// The piece hashed correctly: we have it. O(1).
    ///
    /// # Panics
    /// If the piece is not `Verifying`: a caller bug that would corrupt the download.
    pub fn piece_verified(&mut self, piece: PieceIndex) {
        let slot = self.verifying_slot(piece);
        self.free(slot);
        self.slots[piece.idx()] = Slot::Have;
        self.have.set(piece);
        self.have_bytes += u64::from(self.geometry.piece_len(piece));
        self.suspects.remove(&piece);
    }

    /// The piece failed its hash: every block is missing again and the piece is wanted.
    /// Appends the peers that sent its blocks to `contributors` (each once, for ban
    /// accounting); while another connected peer has the piece, they are not given it.
    ///
    /// # Panics
    /// If the piece is not `Verifying`.
    pub fn piece_failed(&mut self, piece: PieceIndex, contributors: &mut Vec<K>) {
        let slot = self.verifying_slot(piece);
        let first = contributors.len();
        for block in &self.active[slot].blocks {
            if let Block::Received(k) = *block {
                if !contributors[first..].contains(&k) {
                    contributors.push(k);
                }
            }
        }
        let list = self.suspects.entry(piece).or_default();
        for &k in &contributors[first..] {
            if self.peers.contains_key(&k) && !list.contains(&k) {
                list.push(k);
            }
        }
        if list.is_empty() {
            self.suspects.remove(&piece);
        }
        self.free(slot);
        self.slots[piece.idx()] = Slot::Wanted;
        self.avail.insert_wanted(piece);
    }

    // ---- Internals ---------------------------------------------------------------------------

    pub(super) fn verifying_slot(&self, piece: PieceIndex) -> usize {
        match self.slots[piece.idx()] {
            Slot::Active(s) if self.active[s as usize].is_complete() => s as usize,
            other => panic!("piece {piece:?} is not being verified ({other:?})"),
        }
    }

    /// `key` no longer requests `block` (already removed from its list): the block goes to
    /// another endgame requester, or back to `Missing`; a piece left with nothing requested
    /// or received goes back to `Wanted`.
    pub(super) fn release(&mut self, key: K, block: BlockRef) {
        let Slot::Active(slot) = self.slots[block.piece.idx()] else {
            debug_assert!(false, "outstanding request for an inactive piece");
            return;
        };
        let idx = self
            .block_index(block)
            .expect("requests are our own blocks");
        let ap = &mut self.active[slot as usize];
        let Block::Requested { by, extra } = ap.blocks[idx as usize] else {
            debug_assert!(false, "outstanding request for a block not requested");
            return;
        };
        if by != key {
            let at = ap.extras.iter().position(|&e| e == (idx, key));
            ap.extras.swap_remove(at.expect("endgame requester listed"));
            ap.blocks[idx as usize] = Block::Requested {
                by,
                extra: extra - 1,
            };
            return;
        }
        if extra > 0 {
            let at = ap.extras.iter().position(|&(i, _)| i == idx);
            let (_, next) = ap.extras.swap_remove(at.expect("endgame requester listed"));
            ap.blocks[idx as usize] = Block::Requested {
                by: next,
                extra: extra - 1,
            };
            return;
        }
        ap.blocks[idx as usize] = Block::Missing;
        ap.missing += 1;
        ap.first_missing = ap.first_missing.min(idx);
        self.blocks_missing += 1;
        let piece = ap.piece;
        if ap.missing as usize == ap.blocks.len() {
            self.with_missing.retain(|&p| p != piece);
            self.blocks_missing -= u64::from(ap.missing);
            self.free(slot as usize);
            self.slots[piece.idx()] = Slot::Wanted;
            self.avail.insert_wanted(piece);
        } else if ap.missing == 1 {
            self.with_missing.push(piece);
        }
    }

    /// Removes a block table, keeping its allocation for the next piece.
    pub(super) fn free(&mut self, slot: usize) {
        let mut blocks = self.active.remove(slot).blocks;
        if self.spare_tables.len() < SPARE_BLOCK_TABLES_MAX {
            blocks.clear();
            self.spare_tables.push(blocks);
        }
    }

    /// The index of `block` in its piece, if it is exactly one of our 16 KiB blocks.
    pub(super) fn block_index(&self, block: BlockRef) -> Option<u32> {
        let idx = block.offset / BLOCK_BYTES;
        let aligned = block.offset.is_multiple_of(BLOCK_BYTES)
            && idx < self.geometry.blocks_in_piece(block.piece)
            && block_ref(&self.geometry, block.piece, idx) == block;
        aligned.then_some(idx)
    }

    pub(super) fn index(&self, i: u32) -> PieceIndex {
        self.geometry
            .piece(i)
            .expect("piece number inside the torrent")
    }
}

/// Removes `block` from a request list, keeping the order; false if it was not there.
/// Blocks usually arrive in request order, so the search ends at the front.
fn remove_request(requests: &mut Vec<BlockRef>, block: BlockRef) -> bool {
    match requests.iter().position(|&b| b == block) {
        Some(at) => {
            requests.remove(at);
            true
        }
        None => false,
    }
}
