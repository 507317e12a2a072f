//! One benchmark leecher as a small state machine: bytes in, request bytes out.
//!
//! It downloads every piece of the torrent from one seeder, keeps a fixed request pipeline
//! full, and checks every piece as its last block arrives. Blocks arriving in order (the
//! normal case: one TCP stream, served in request order) are hashed straight from the receive
//! buffer without a copy; out-of-order blocks are parked until the gap fills.
//!
//! Two ways to check ([`Verify`]): SHA-1 of every copy of every piece, or SHA-1 of the first
//! copy of each piece the run receives and, for every later copy (other leechers fetch the
//! same pieces), an XXH3-128 fingerprint compared with that SHA-1-verified first copy. The
//! second checks every byte of every copy against verified data at a tenth of the CPU cost,
//! which keeps the load generator cheaper per byte than the seeder it measures. XXH3 is not
//! a cryptographic hash: it catches corruption, not a seeder crafting collisions.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use sha1::{Digest, Sha1};
use xxhash_rust::xxh3::Xxh3;

use crate::metainfo::{InfoHash, Layout, PeerId, BLOCK_BYTES};
use crate::wire::{decode_message, Bitfield, Decoded, Handshake, Message, RawBlock, Reserved};

/// Most out-of-order blocks parked per leecher; a seeder that reorders more is broken.
pub const PARKED_BLOCKS_MAX: usize = 1024;

/// How leechers check the pieces they receive.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Verify {
    /// SHA-1 of every copy of every piece.
    Sha1Always,
    /// SHA-1 of the first copy of each piece in the run; later copies are compared with it
    /// by XXH3-128 fingerprint.
    Sha1Once,
}

/// What a leecher needs to know about the torrent (shared by all leechers).
#[derive(Debug)]
pub struct BenchTorrent {
    /// The torrent's info-hash.
    pub info_hash: InfoHash,
    /// Piece geometry.
    pub layout: Layout,
    /// Expected SHA-1 of every piece.
    pub hashes: Vec<[u8; 20]>,
    /// How pieces are checked.
    pub verify: Verify,
    /// XXH3-128 of each piece whose SHA-1 matched (two words per piece; all zero: unknown).
    fingerprints: Vec<AtomicU64>,
}

impl BenchTorrent {
    /// The torrent as leechers see it.
    pub fn new(info_hash: InfoHash, layout: Layout, hashes: Vec<[u8; 20]>, verify: Verify) -> Self {
        let fingerprints = (0..hashes.len() * 2).map(|_| AtomicU64::new(0)).collect();
        BenchTorrent {
            info_hash,
            layout,
            hashes,
            verify,
            fingerprints,
        }
    }

    fn fingerprint(&self, piece: u32) -> Option<u128> {
        let i = piece as usize * 2;
        let hi = self.fingerprints[i].load(Ordering::Acquire);
        let lo = self.fingerprints[i + 1].load(Ordering::Acquire);
        let fp = (u128::from(hi) << 64) | u128::from(lo);
        (fp != 0).then_some(fp)
    }

    fn set_fingerprint(&self, piece: u32, fp: u128) {
        // Two racing first copies both passed SHA-1, so they carry the same bytes and the
        // same fingerprint: the order of these stores does not matter.
        let i = piece as usize * 2;
        self.fingerprints[i + 1].store(fp as u64, Ordering::Release);
        self.fingerprints[i].store((fp >> 64) as u64, Ordering::Release);
    }
}

/// Why a leecher gave up on its seeder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeechError {
    /// The bytes from the seeder are not valid peer wire protocol.
    #[error("protocol error: {0}")]
    Wire(#[from] crate::wire::WireError),
    /// The seeder answered for another torrent.
    #[error("seeder handshake names another torrent")]
    WrongInfoHash,
    /// The target does not have every piece.
    #[error("target is not a seeder ({have} of {total} pieces)")]
    NotASeeder {
        /// Pieces it has.
        have: u32,
        /// Pieces in the torrent.
        total: u32,
    },
    /// A block we never asked for, or one outside its piece.
    #[error("unrequested block piece {piece} offset {offset} len {len}")]
    Unrequested {
        /// Piece.
        piece: u32,
        /// Offset.
        offset: u32,
        /// Length.
        len: usize,
    },
    /// Too many blocks out of order.
    #[error("more than {PARKED_BLOCKS_MAX} blocks out of order")]
    TooManyParked,
}

struct PieceProgress {
    /// SHA-1 state, when this copy is checked by SHA-1.
    sha1: Option<Sha1>,
    /// Fingerprint state (always kept: it is what later copies are compared with).
    xxh3: Xxh3,
    next_offset: u32,
    parked: BTreeMap<u32, Vec<u8>>,
}

impl PieceProgress {
    fn update(&mut self, data: &[u8]) {
        if let Some(sha1) = &mut self.sha1 {
            sha1.update(data);
        }
        self.xxh3.update(data);
        self.next_offset += data.len() as u32;
    }
}

/// One leecher's protocol state.
pub struct Leecher {
    torrent: Arc<BenchTorrent>,
    peer_id: PeerId,
    handshaken: bool,
    unchoked: bool,
    started: bool,
    /// Pieces in the order this leecher asks for them (a rotation, so leechers spread out).
    first_piece: u32,
    pieces_requested: u32,
    /// How many pieces of the rotation to fetch (all, unless [`Leecher::fetching`] says less).
    pieces_wanted: u32,
    next_offset: u32,
    outstanding: VecDeque<RawBlock>,
    retry: VecDeque<RawBlock>,
    pipeline: usize,
    progress: BTreeMap<u32, PieceProgress>,
    out: Vec<u8>,
    /// Payload bytes received.
    pub bytes: u64,
    /// Pieces whose SHA-1 matched.
    pub pieces_ok: u32,
    /// Pieces whose SHA-1 did not match.
    pub pieces_bad: u32,
}

impl Leecher {
    /// A leecher that starts its rotation at `first_piece` and keeps `pipeline` requests out.
    pub fn new(torrent: Arc<BenchTorrent>, first_piece: u32, pipeline: usize) -> Leecher {
        let torrent_pieces = torrent.layout.piece_count();
        let first_piece = first_piece % torrent_pieces.max(1);
        let mut l = Leecher {
            torrent,
            peer_id: PeerId::generate(),
            handshaken: false,
            unchoked: false,
            started: false,
            first_piece,
            pieces_requested: 0,
            pieces_wanted: torrent_pieces,
            next_offset: 0,
            outstanding: VecDeque::new(),
            retry: VecDeque::new(),
            pipeline: pipeline.max(1),
            progress: BTreeMap::new(),
            out: Vec::with_capacity(64 * 1024),
            bytes: 0,
            pieces_ok: 0,
            pieces_bad: 0,
        };
        let hs = Handshake {
            reserved: Reserved::default().with_fast(true),
            info_hash: l.torrent.info_hash,
            peer_id: l.peer_id,
        };
        l.out.extend_from_slice(&hs.encode());
        l
    }

    /// Fetches only the first `pieces` of the rotation (at least one, at most all): a probe
    /// of one piece, not a whole download.
    pub fn fetching(mut self, pieces: u32) -> Leecher {
        self.pieces_wanted = pieces.clamp(1, self.torrent.layout.piece_count().max(1));
        self
    }

    /// True once every wanted piece has been received and checked.
    pub fn done(&self) -> bool {
        self.pieces_ok + self.pieces_bad == self.pieces_wanted
    }

    /// The seeder's handshake arrived (and named our torrent).
    pub fn handshaken(&self) -> bool {
        self.handshaken
    }

    /// The seeder has unchoked us (and not choked us again).
    pub fn unchoked(&self) -> bool {
        self.unchoked
    }

    /// At least one block request has been queued for sending.
    pub fn requested(&self) -> bool {
        self.pieces_requested > 0 || self.next_offset > 0
    }

    /// Moves pending output (handshake, interested, requests) into `out`.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.out);
    }

    /// True when there is output to send.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Feeds received bytes; returns how many were consumed (a partial frame stays).
    pub fn handle_input(&mut self, buf: &[u8]) -> Result<usize, LeechError> {
        let mut used = 0;
        if !self.handshaken {
            match Handshake::decode(buf)? {
                Decoded::Incomplete { .. } => return Ok(0),
                Decoded::Complete { value, used: n } => {
                    if value.info_hash != self.torrent.info_hash {
                        return Err(LeechError::WrongInfoHash);
                    }
                    self.handshaken = true;
                    used = n;
                }
            }
        }
        loop {
            match decode_message(&buf[used..])? {
                Decoded::Incomplete { .. } => break,
                Decoded::Complete { value, used: n } => {
                    used += n;
                    self.on_message(value)?;
                }
            }
        }
        self.fill_pipeline();
        Ok(used)
    }

    fn on_message(&mut self, msg: Message<'_>) -> Result<(), LeechError> {
        let total = self.torrent.layout.piece_count();
        match msg {
            Message::HaveAll => self.start(),
            Message::Bitfield(bits) => {
                let have = Bitfield::from_wire(bits, total)?.count();
                if have != total {
                    return Err(LeechError::NotASeeder { have, total });
                }
                self.start();
            }
            Message::HaveNone => return Err(LeechError::NotASeeder { have: 0, total }),
            Message::Unchoke => self.unchoked = true,
            Message::Choke => {
                // Without the fast extension a choke silently drops our queue; ask again later.
                self.unchoked = false;
                while let Some(b) = self.outstanding.pop_back() {
                    self.retry.push_front(b);
                }
            }
            Message::Reject(b) => {
                if let Some(i) = self.outstanding.iter().position(|o| *o == b) {
                    self.outstanding.remove(i);
                    self.retry.push_back(b);
                }
            }
            Message::Piece {
                piece,
                offset,
                data,
            } => self.on_block(piece, offset, data)?,
            _ => {}
        }
        Ok(())
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            Message::Interested.encode(&mut self.out);
        }
    }

    fn on_block(&mut self, piece: u32, offset: u32, data: &[u8]) -> Result<(), LeechError> {
        let block = RawBlock {
            piece,
            offset,
            len: data.len() as u32,
        };
        let found = match self.outstanding.front() {
            Some(b) if *b == block => {
                self.outstanding.pop_front();
                true
            }
            _ => remove(&mut self.outstanding, block) || remove(&mut self.retry, block),
        };
        if !found {
            return Err(LeechError::Unrequested {
                piece,
                offset,
                len: data.len(),
            });
        }
        self.bytes += data.len() as u64;
        let torrent = &self.torrent;
        let p = self.progress.entry(piece).or_insert_with(|| {
            let known = torrent.verify == Verify::Sha1Once && torrent.fingerprint(piece).is_some();
            PieceProgress {
                sha1: (!known).then(Sha1::new),
                xxh3: Xxh3::new(),
                next_offset: 0,
                parked: BTreeMap::new(),
            }
        });
        if offset == p.next_offset {
            p.update(data);
            while let Some(parked) = p.parked.remove(&p.next_offset) {
                p.update(&parked);
            }
        } else {
            p.parked.insert(offset, data.to_vec());
            let parked: usize = self.progress.values().map(|p| p.parked.len()).sum();
            if parked > PARKED_BLOCKS_MAX {
                return Err(LeechError::TooManyParked);
            }
        }
        let layout = &self.torrent.layout;
        let piece_index = layout.piece(piece).expect("requested pieces are valid");
        if self.progress[&piece].next_offset == layout.piece_len(piece_index) {
            let done = self.progress.remove(&piece).expect("present");
            let fingerprint = done.xxh3.digest128();
            let good = match done.sha1 {
                Some(sha1) => {
                    let digest: [u8; 20] = sha1.finalize().into();
                    let good = digest == self.torrent.hashes[piece as usize];
                    if good {
                        self.torrent.set_fingerprint(piece, fingerprint.max(1));
                    }
                    good
                }
                None => self.torrent.fingerprint(piece) == Some(fingerprint.max(1)),
            };
            if good {
                self.pieces_ok += 1;
            } else {
                self.pieces_bad += 1;
            }
        }
        Ok(())
    }

    fn fill_pipeline(&mut self) {
        if !self.unchoked {
            return;
        }
        while self.outstanding.len() < self.pipeline {
            let Some(block) = self.retry.pop_front().or_else(|| self.next_block()) else {
                break;
            };
            Message::Request(block).encode(&mut self.out);
            self.outstanding.push_back(block);
        }
    }

    fn next_block(&mut self) -> Option<RawBlock> {
        let layout = &self.torrent.layout;
        let count = layout.piece_count();
        if self.pieces_requested == self.pieces_wanted {
            return None;
        }
        let piece = (self.first_piece + self.pieces_requested) % count;
        let index = layout.piece(piece).expect("in range");
        let piece_len = layout.piece_len(index);
        let len = (piece_len - self.next_offset).min(BLOCK_BYTES);
        let block = RawBlock {
            piece,
            offset: self.next_offset,
            len,
        };
        self.next_offset += len;
        if self.next_offset == piece_len {
            self.next_offset = 0;
            self.pieces_requested += 1;
        }
        Some(block)
    }
}

fn remove(queue: &mut VecDeque<RawBlock>, block: RawBlock) -> bool {
    match queue.iter().position(|b| *b == block) {
        Some(i) => {
            queue.remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::piece_header;

    fn torrent_with(data: &[u8], piece_len: u32, verify: Verify) -> Arc<BenchTorrent> {
        let layout = Layout::new(piece_len, &[data.len() as u64]).unwrap();
        let hashes = data
            .chunks(piece_len as usize)
            .map(|c| Sha1::digest(c).into())
            .collect();
        Arc::new(BenchTorrent::new(InfoHash([9; 20]), layout, hashes, verify))
    }

    fn torrent(data: &[u8], piece_len: u32) -> Arc<BenchTorrent> {
        torrent_with(data, piece_len, Verify::Sha1Always)
    }

    /// A scripted seeder: answers the leecher's requests from `data`, optionally corrupting
    /// one byte or reversing the order of each batch of answers.
    fn serve(
        l: &mut Leecher,
        data: &[u8],
        piece_len: u32,
        corrupt_at: Option<usize>,
        reverse: bool,
    ) {
        let hs = Handshake {
            reserved: Reserved::default().with_fast(true),
            info_hash: InfoHash([9; 20]),
            peer_id: PeerId([1; 20]),
        };
        let mut input = hs.encode().to_vec();
        Message::HaveAll.encode(&mut input);
        Message::Unchoke.encode(&mut input);
        let mut first = true;
        for _ in 0..10_000 {
            let used = l.handle_input(&input).unwrap();
            input.drain(..used);
            let mut out = Vec::new();
            l.take_output(&mut out);
            let mut answers = Vec::new();
            // The leecher's first output starts with its 68-byte handshake.
            let mut pos = if std::mem::take(&mut first) { 68 } else { 0 };
            while let Ok(Decoded::Complete { value, used }) = decode_message(&out[pos..]) {
                pos += used;
                if let Message::Request(b) = value {
                    let start = (b.piece * piece_len + b.offset) as usize;
                    let mut block = data[start..start + b.len as usize].to_vec();
                    if let Some(c) = corrupt_at.filter(|c| (start..start + block.len()).contains(c))
                    {
                        block[c - start] ^= 1;
                    }
                    let mut frame = piece_header(b.piece, b.offset, b.len).to_vec();
                    frame.extend_from_slice(&block);
                    answers.push(frame);
                }
            }
            if reverse {
                answers.reverse();
            }
            input.extend(answers.concat());
            if l.done() {
                return;
            }
        }
        panic!("leecher did not finish");
    }

    #[test]
    fn leecher_downloads_and_verifies_every_piece() {
        // Against an honest seeder every piece verifies, including a short last piece.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let t = torrent(&data, 32 * 1024);
        let mut l = Leecher::new(t, 2, 8);
        serve(&mut l, &data, 32 * 1024, None, false);
        assert_eq!((l.pieces_ok, l.pieces_bad), (4, 0));
        assert_eq!(l.bytes, data.len() as u64);
    }

    #[test]
    fn corrupt_block_fails_its_piece_only() {
        // One flipped byte makes exactly one piece fail verification.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13) as u8).collect();
        let t = torrent(&data, 32 * 1024);
        let mut l = Leecher::new(t, 0, 8);
        serve(&mut l, &data, 32 * 1024, Some(40_000), false);
        assert_eq!((l.pieces_ok, l.pieces_bad), (3, 1));
    }

    #[test]
    fn later_copies_are_checked_against_the_verified_first_copy() {
        // In SHA-1-once mode a second leecher's corrupt copy is caught by the fingerprint of
        // the first, SHA-1-verified copy; an honest second copy passes.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 17) as u8).collect();
        let t = torrent_with(&data, 32 * 1024, Verify::Sha1Once);
        let mut first = Leecher::new(t.clone(), 0, 8);
        serve(&mut first, &data, 32 * 1024, None, false);
        assert_eq!((first.pieces_ok, first.pieces_bad), (4, 0));
        let mut honest = Leecher::new(t.clone(), 1, 8);
        serve(&mut honest, &data, 32 * 1024, None, false);
        assert_eq!((honest.pieces_ok, honest.pieces_bad), (4, 0));
        let mut corrupt = Leecher::new(t, 2, 8);
        serve(&mut corrupt, &data, 32 * 1024, Some(70_000), false);
        assert_eq!((corrupt.pieces_ok, corrupt.pieces_bad), (3, 1));
    }

    #[test]
    fn out_of_order_blocks_still_verify() {
        // Blocks answered in reverse order are parked and hashed in order.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 31) as u8).collect();
        let t = torrent(&data, 64 * 1024);
        let mut l = Leecher::new(t, 1, 16);
        serve(&mut l, &data, 64 * 1024, None, true);
        assert_eq!((l.pieces_ok, l.pieces_bad), (2, 0));
    }

    #[test]
    fn a_probe_fetches_only_the_pieces_it_asked_for() {
        // `fetching(1)` starting at piece 2 requests piece 2's blocks and nothing else, then
        // is done; the milestones a probe times are visible along the way.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 11) as u8).collect();
        let t = torrent(&data, 32 * 1024);
        let mut l = Leecher::new(t, 2, 8).fetching(1);
        assert!(!l.handshaken() && !l.unchoked() && !l.requested());
        serve(&mut l, &data, 32 * 1024, None, false);
        assert!(l.handshaken() && l.unchoked() && l.requested());
        assert_eq!((l.pieces_ok, l.pieces_bad), (1, 0));
        assert_eq!(l.bytes, 32 * 1024);
    }

    #[test]
    fn partial_seeder_is_refused() {
        // The benchmark needs a full seeder; a bitfield with a missing piece is an error.
        let data = vec![0u8; 40_000];
        let mut l = Leecher::new(torrent(&data, 16_384), 0, 4);
        let hs = Handshake {
            reserved: Reserved::default(),
            info_hash: InfoHash([9; 20]),
            peer_id: PeerId([1; 20]),
        };
        let mut input = hs.encode().to_vec();
        Message::Bitfield(&[0b1100_0000]).encode(&mut input);
        assert_eq!(
            l.handle_input(&input),
            Err(LeechError::NotASeeder { have: 2, total: 3 })
        );
    }
}
