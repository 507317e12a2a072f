//! [`MetadataAssembler`]: fetching a magnet link's info dict (BEP 9) from several peers,
//! verified against the info-hash, and finding the peers that sent bad pieces.
//!
//! One per magnet torrent, shared by that torrent's sessions through the shell; sans-IO and
//! generic over the shell's connection key. A corrupt attempt cannot tell which piece was
//! bad, so each contributor's piece digests are remembered; the retry asks other peers for
//! those pieces, and once an attempt verifies, every peer whose earlier piece differs from
//! the verified bytes is named. A peer that supplied every piece of a corrupt attempt is
//! named at once.

use std::collections::VecDeque;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::event::DropReason;
use super::METADATA_REQUEST_TIMEOUT;
use crate::metainfo::InfoHash;
use crate::time::Instant;
use crate::wire::{METADATA_BYTES_MAX, METADATA_PIECE_BYTES};

/// Piece digests of failed attempts remembered to find bad peers later: 4096 pieces is a
/// 64 MiB info dict, the largest we accept, once over (100 KiB of memory at most).
pub const METADATA_CONTRIBUTIONS_MAX: usize = 4096;

/// Peers proven bad that the assembler refuses to ask again (the shell closes them too;
/// the list only covers a shell that keeps them a while).
const BANNED_MAX: usize = 256;

/// Refusals (`reject`) remembered per attempt, so a peer is not asked twice for a piece.
const DECLINED_MAX: usize = 4096;

/// What [`MetadataAssembler::on_piece`] made of a piece.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataProgress<K> {
    /// Stored; more pieces are needed.
    Incomplete,
    /// Not needed (already received, or nothing is being fetched); dropped.
    Ignored,
    /// The piece contradicts the size being fetched (`total_size` or its length): the peer
    /// is lying. It is not asked again; close it.
    BadPeer(K),
    /// Every piece arrived but the info dict does not hash to the info-hash. The attempt
    /// starts over; `bad_peers` are proven bad (the sole contributor), close them.
    Corrupt {
        /// Peers proven to have sent bad data.
        bad_peers: Vec<K>,
    },
    /// The verified info dict. `bad_peers` sent pieces in earlier, corrupt attempts that
    /// differ from these bytes: close them.
    Complete {
        /// The info dict's bytes; its SHA-1 is the info-hash.
        info: Arc<[u8]>,
        /// Peers proven to have sent bad data.
        bad_peers: Vec<K>,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Slot<K> {
    Missing,
    Requested { peer: K, at: Instant },
    Have { peer: K },
}

/// One try at assembling the info dict, at one size.
#[derive(Debug)]
struct Attempt<K> {
    size: u32,
    started_at: Instant,
    data: Vec<u8>,
    slots: Vec<Slot<K>>,
    received: u32,
    /// (peer, piece) pairs the peer rejected.
    declined: Vec<(K, u32)>,
}

/// A piece a peer supplied to a corrupt attempt.
#[derive(Copy, Clone, Debug)]
struct Contribution<K> {
    peer: K,
    size: u32,
    piece: u32,
    digest: [u8; 20],
}

/// Fetches one torrent's info dict from whichever peers offer it. The shell calls
/// [`next_request`](Self::next_request) when a session raises `MetadataOffered` or gets an
/// answer, passes [`Received::Metadata`](super::Received) to
/// [`on_piece`](Self::on_piece), `MetadataRequestDropped` to
/// [`on_dropped`](Self::on_dropped), and [`peer_gone`](Self::peer_gone) when a session
/// closes.
///
/// The size is the one offered by the first peer asked; peers offering another size get no
/// requests during that attempt, and a corrupt attempt lets the next peer asked choose the
/// size again (so one lying peer cannot pin a wrong size).
#[derive(Debug)]
pub struct MetadataAssembler<K> {
    info_hash: InfoHash,
    attempt: Option<Attempt<K>>,
    complete: bool,
    contributions: VecDeque<Contribution<K>>,
    banned: VecDeque<K>,
    failures: u32,
}

fn digest(bytes: &[u8]) -> [u8; 20] {
    Sha1::digest(bytes).into()
}

fn piece_range(size: u32, piece: u32) -> std::ops::Range<usize> {
    let start = piece as usize * METADATA_PIECE_BYTES;
    start..(start + METADATA_PIECE_BYTES).min(size as usize)
}

impl<K: Copy + Eq> MetadataAssembler<K> {
    /// An assembler for the torrent `info_hash`.
    pub fn new(info_hash: InfoHash) -> MetadataAssembler<K> {
        MetadataAssembler {
            info_hash,
            attempt: None,
            complete: false,
            contributions: VecDeque::new(),
            banned: VecDeque::new(),
            failures: 0,
        }
    }

    /// True once the info dict is verified.
    pub fn is_complete(&self) -> bool {
        self.complete
    }
    /// The size being fetched, once an attempt started.
    pub fn size(&self) -> Option<u32> {
        self.attempt.as_ref().map(|a| a.size)
    }
    /// Corrupt attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
    /// True when `peer` was proven to send bad data.
    pub fn is_banned(&self, peer: K) -> bool {
        self.banned.contains(&peer)
    }

    fn ban(&mut self, peer: K) {
        if self.banned.contains(&peer) {
            return;
        }
        if self.banned.len() == BANNED_MAX {
            self.banned.pop_front();
        }
        self.banned.push_back(peer);
        self.peer_gone(peer);
    }

    /// The metadata piece to request from `peer`, which offered an info dict of
    /// `offered_size` bytes; `None` when it has nothing to do (no piece free for it, another
    /// size being fetched, banned, or done). The piece is reserved for `peer` until it
    /// answers, is dropped, or [`METADATA_REQUEST_TIMEOUT`] passes.
    pub fn next_request(&mut self, peer: K, offered_size: u32, now: Instant) -> Option<u32> {
        let size_ok = (1..=METADATA_BYTES_MAX as u64).contains(&u64::from(offered_size));
        if self.complete || !size_ok || self.is_banned(peer) {
            return None;
        }
        let attempt = self.attempt.get_or_insert_with(|| Attempt {
            size: offered_size,
            started_at: now,
            data: Vec::new(),
            slots: vec![Slot::Missing; (offered_size as usize).div_ceil(METADATA_PIECE_BYTES)],
            received: 0,
            declined: Vec::new(),
        });
        if attempt.size != offered_size {
            return None;
        }
        // After a corrupt attempt, a peer is not asked again for a piece it supplied to it,
        // so the retry can tell good peers from bad — unless no one else has answered for
        // a timeout, so a swarm of one good peer and a few slow ones still finishes.
        let avoid_own = now < attempt.started_at + METADATA_REQUEST_TIMEOUT;
        let contributions = &self.contributions;
        let piece = (0..attempt.slots.len() as u32).find(|&i| {
            let free = match attempt.slots[i as usize] {
                Slot::Missing => true,
                Slot::Requested { peer: p, at } => {
                    p != peer && now >= at + METADATA_REQUEST_TIMEOUT
                }
                Slot::Have { .. } => false,
            };
            let declined = attempt.declined.contains(&(peer, i));
            let supplied_before = avoid_own
                && contributions
                    .iter()
                    .any(|c| c.peer == peer && c.piece == i && c.size == offered_size);
            free && !declined && !supplied_before
        })?;
        attempt.slots[piece as usize] = Slot::Requested { peer, at: now };
        Some(piece)
    }

    /// A request to `peer` was rejected or timed out: the piece is free for others (and,
    /// if rejected, not asked of `peer` again in this attempt).
    pub fn on_dropped(&mut self, peer: K, piece: u32, reason: DropReason) {
        let Some(attempt) = &mut self.attempt else {
            return;
        };
        if let Some(slot) = attempt.slots.get_mut(piece as usize) {
            if matches!(*slot, Slot::Requested { peer: p, .. } if p == peer) {
                *slot = Slot::Missing;
            }
        }
        if reason == DropReason::Rejected && attempt.declined.len() < DECLINED_MAX {
            attempt.declined.push((peer, piece));
        }
    }

    /// `peer`'s session closed: its reserved pieces are free for others.
    pub fn peer_gone(&mut self, peer: K) {
        if let Some(attempt) = &mut self.attempt {
            for slot in &mut attempt.slots {
                if matches!(*slot, Slot::Requested { peer: p, .. } if p == peer) {
                    *slot = Slot::Missing;
                }
            }
            attempt.declined.retain(|&(p, _)| p != peer);
        }
    }

    /// Stores piece `piece` of an info dict of `total_size` bytes sent by `peer`, and
    /// verifies the whole when it is the last one missing.
    pub fn on_piece(
        &mut self,
        peer: K,
        piece: u32,
        total_size: u32,
        data: &[u8],
    ) -> MetadataProgress<K> {
        if self.complete {
            return MetadataProgress::Ignored;
        }
        let Some(attempt) = &mut self.attempt else {
            return MetadataProgress::Ignored;
        };
        let slots = attempt.slots.len() as u32;
        let fits = total_size == attempt.size
            && piece < slots
            && data.len() == piece_range(attempt.size, piece).len();
        if !fits {
            self.ban(peer);
            return MetadataProgress::BadPeer(peer);
        }
        if matches!(attempt.slots[piece as usize], Slot::Have { .. }) {
            return MetadataProgress::Ignored;
        }
        if attempt.data.is_empty() {
            attempt.data = vec![0; attempt.size as usize];
        }
        attempt.data[piece_range(attempt.size, piece)].copy_from_slice(data);
        attempt.slots[piece as usize] = Slot::Have { peer };
        attempt.received += 1;
        if attempt.received < slots {
            return MetadataProgress::Incomplete;
        }
        let attempt = self.attempt.take().expect("attempt");
        self.verify(attempt)
    }

    fn verify(&mut self, attempt: Attempt<K>) -> MetadataProgress<K> {
        let size = attempt.size;
        let suppliers = attempt
            .slots
            .iter()
            .enumerate()
            .map(|(i, slot)| match *slot {
                Slot::Have { peer } => (i as u32, peer),
                _ => unreachable!("every piece received"),
            });
        if digest(&attempt.data) == self.info_hash.0 {
            self.complete = true;
            let mut bad_peers = Vec::new();
            for c in self.contributions.drain(..).filter(|c| c.size == size) {
                let good = digest(&attempt.data[piece_range(size, c.piece)]);
                if c.digest != good && !bad_peers.contains(&c.peer) {
                    bad_peers.push(c.peer);
                }
            }
            for &peer in &bad_peers {
                self.ban(peer);
            }
            return MetadataProgress::Complete {
                info: Arc::from(attempt.data),
                bad_peers,
            };
        }
        self.failures += 1;
        let mut peers: Vec<K> = Vec::new();
        for (piece, peer) in suppliers {
            if !peers.contains(&peer) {
                peers.push(peer);
            }
            if self.contributions.len() == METADATA_CONTRIBUTIONS_MAX {
                self.contributions.pop_front();
            }
            self.contributions.push_back(Contribution {
                peer,
                size,
                piece,
                digest: digest(&attempt.data[piece_range(size, piece)]),
            });
        }
        let bad_peers = if peers.len() == 1 { peers } else { Vec::new() };
        for &peer in &bad_peers {
            self.ban(peer);
        }
        MetadataProgress::Corrupt { bad_peers }
    }
}
