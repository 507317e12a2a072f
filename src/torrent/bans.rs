//! Piece integrity bookkeeping: who sent each block, smart-ban, and per-IP bans.
//!
//! While a piece downloads we remember each block's sender and an XXH3-64 fingerprint of its
//! bytes. When the piece fails its SHA-1 check the record is kept; when a later attempt passes,
//! blocks whose fingerprints differ from the passing data name the peers that sent bad data
//! (libtorrent's "smart ban"). An IP is banned after its second bad piece. Sans-IO and bounded.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

use xxhash_rust::xxh3::xxh3_64;

use crate::metainfo::{BlockRef, PieceIndex, BLOCK_BYTES, PIECE_LENGTH_MAX};

/// Bad pieces an IP may send before it is banned.
///
/// One bad piece can be an accident (a flipped bit on a path without checksums, a disk error
/// at the peer); a second one from the same address is a broken or hostile client, and every
/// bad piece costs the swarm a re-download.
pub const BAD_PIECES_TO_BAN: u32 = 2;

/// Failed piece attempts remembered while waiting for the piece to pass.
///
/// An honest swarm fails a piece rarely; a poisoner fails many, but after two of its pieces
/// pass elsewhere it is banned and stops. 64 attempts in wait cover a download with that many
/// pieces in flight all failing at once; beyond that the oldest record is forgotten, which
/// only loses evidence, never blames anyone wrongly.
pub const FAILED_ATTEMPTS_MAX: usize = 64;

/// Block records held across all remembered failed attempts (about 40 bytes each: 2.5 MiB).
///
/// 65,536 blocks of 16 KiB are 1 GiB of failed data, e.g. 64 failed 16 MiB pieces; with
/// larger pieces fewer attempts fit, oldest evicted first.
pub const FAILED_BLOCKS_MAX: usize = 1 << 16;

/// Block records held for pieces in progress (about 40 bytes each: 10 MiB).
///
/// 262,144 blocks of 16 KiB are 4 GiB of data in flight, far more than any piece picker
/// keeps open; a caller that never reports a piece's outcome loses its oldest records
/// instead of leaking memory.
pub const IN_PROGRESS_BLOCKS_MAX: usize = 1 << 18;

/// Block records kept for one piece in progress: twice the blocks of the largest piece, so
/// endgame duplicates fit; past it, the duplicates are compacted (the latest copy wins).
pub const PIECE_BLOCK_RECORDS_MAX: usize = 2 * (PIECE_LENGTH_MAX / BLOCK_BYTES) as usize;

/// Addresses with bad pieces but not (yet) banned that we remember.
///
/// More than the peers a torrent meets in a session; past it the oldest entry is forgotten,
/// so a peer with one old strike may need two new ones.
pub const STRIKE_IPS_MAX: usize = 4096;

/// Banned addresses remembered (about 60 bytes each).
///
/// Far more than the peers a torrent connects to; an attacker rotating through more
/// addresses evicts the oldest bans, the addresses least likely to come back.
pub const BANNED_IPS_MAX: usize = 4096;

/// Bounds and thresholds; the defaults are the constants above. Tests and the simulator use
/// small values to reach the bounds quickly.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BansLimits {
    /// See [`BAD_PIECES_TO_BAN`].
    pub bad_pieces_to_ban: u32,
    /// See [`FAILED_ATTEMPTS_MAX`].
    pub failed_attempts_max: usize,
    /// See [`FAILED_BLOCKS_MAX`].
    pub failed_blocks_max: usize,
    /// See [`IN_PROGRESS_BLOCKS_MAX`].
    pub in_progress_blocks_max: usize,
    /// See [`STRIKE_IPS_MAX`].
    pub strike_ips_max: usize,
    /// See [`BANNED_IPS_MAX`].
    pub banned_ips_max: usize,
}

impl Default for BansLimits {
    fn default() -> Self {
        BansLimits {
            bad_pieces_to_ban: BAD_PIECES_TO_BAN,
            failed_attempts_max: FAILED_ATTEMPTS_MAX,
            failed_blocks_max: FAILED_BLOCKS_MAX,
            in_progress_blocks_max: IN_PROGRESS_BLOCKS_MAX,
            strike_ips_max: STRIKE_IPS_MAX,
            banned_ips_max: BANNED_IPS_MAX,
        }
    }
}

/// How a peer was shown to have sent bad data.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    /// Every block of the failed piece came from this address.
    SoleSource,
    /// Its blocks differ from the same blocks of the attempt that passed.
    BlocksDiffered,
}

/// A peer that sent bad data for one piece attempt. The shell disconnects it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Fault<K> {
    /// The connection that sent the data.
    pub key: K,
    /// Its address (IPv4-mapped IPv6 addresses are reported as IPv4).
    pub ip: IpAddr,
    /// The piece it corrupted.
    pub piece: PieceIndex,
    /// How many of its blocks were bad (all its blocks for [`Evidence::SoleSource`]).
    pub bad_blocks: u32,
    /// How we know.
    pub evidence: Evidence,
}

/// Why an address is banned, for logs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BanReason {
    /// Pieces it sent bad data for.
    pub bad_pieces: u32,
    /// The piece that tipped it over.
    pub last_piece: PieceIndex,
}

impl fmt::Display for BanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent data failing the hash check in {} pieces (last: piece {})",
            self.bad_pieces,
            self.last_piece.get()
        )
    }
}

/// A new ban: the shell closes every connection from `ip` and refuses new ones.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Ban {
    /// The banned address.
    pub ip: IpAddr,
    /// Why.
    pub reason: BanReason,
}

/// What a piece's hash result revealed. Empty in the usual case, and then allocation-free.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict<K> {
    /// Peers shown to have sent bad data, one entry per connection and piece attempt.
    pub faulty: Vec<Fault<K>>,
    /// Addresses banned because of this result.
    pub bans: Vec<Ban>,
}

impl<K> Verdict<K> {
    fn empty() -> Verdict<K> {
        Verdict {
            faulty: Vec::new(),
            bans: Vec::new(),
        }
    }

    /// Nothing to act on.
    pub fn is_empty(&self) -> bool {
        self.faulty.is_empty() && self.bans.is_empty()
    }
}

/// Sizes of the tables, for metrics and for checking the bounds.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub struct BansStats {
    /// Pieces with block records in progress.
    pub pieces_in_progress: usize,
    /// Block records of pieces in progress.
    pub in_progress_blocks: usize,
    /// Failed attempts awaiting a pass.
    pub failed_attempts: usize,
    /// Block records of those attempts.
    pub failed_blocks: usize,
    /// Addresses with bad pieces, not banned.
    pub ips_with_strikes: usize,
    /// Banned addresses.
    pub banned_ips: usize,
}

/// One block as received: where it lies, a fingerprint of its bytes, and who sent it.
#[derive(Copy, Clone, Debug)]
struct BlockRecord<K> {
    offset: u32,
    len: u32,
    fingerprint: u64,
    key: K,
    ip: IpAddr,
}

#[derive(Debug)]
struct InProgress<K> {
    /// Creation order, to evict the oldest piece.
    seq: u64,
    blocks: Vec<BlockRecord<K>>,
}

#[derive(Debug)]
struct FailedAttempt<K> {
    piece: PieceIndex,
    /// Sorted by offset, one record per offset.
    blocks: Vec<BlockRecord<K>>,
}

#[derive(Copy, Clone, Debug)]
struct Strikes {
    bad_pieces: u32,
    /// Creation order, to evict the oldest entry.
    seq: u64,
}

/// The torrent's integrity bookkeeping; see the module docs. `K` is the shell's connection
/// handle. Calls: [`Bans::block_received`] for every block written, then exactly one of
/// [`Bans::piece_passed`], [`Bans::piece_failed`] or [`Bans::piece_dropped`] per piece.
#[derive(Debug)]
pub struct Bans<K> {
    limits: BansLimits,
    seq: u64,
    in_progress: HashMap<PieceIndex, InProgress<K>>,
    in_progress_blocks: usize,
    /// Oldest first.
    failed: VecDeque<FailedAttempt<K>>,
    failed_blocks: usize,
    strikes: HashMap<IpAddr, Strikes>,
    banned: HashMap<IpAddr, BanReason>,
    /// Banned addresses, oldest first, for eviction.
    ban_order: VecDeque<IpAddr>,
}

impl<K: Copy + Eq> Default for Bans<K> {
    fn default() -> Self {
        Bans::new(BansLimits::default())
    }
}

impl<K: Copy + Eq> Bans<K> {
    /// Empty bookkeeping with the given bounds.
    pub fn new(limits: BansLimits) -> Bans<K> {
        Bans {
            limits,
            seq: 0,
            in_progress: HashMap::new(),
            in_progress_blocks: 0,
            failed: VecDeque::new(),
            failed_blocks: 0,
            strikes: HashMap::new(),
            banned: HashMap::new(),
            ban_order: VecDeque::new(),
        }
    }

    /// Records that `key` at `ip` sent `data` for `block`, as written to the piece. If the same
    /// block arrives twice (endgame), the later call should describe the copy that was kept.
    pub fn block_received(&mut self, block: BlockRef, key: K, ip: IpAddr, data: &[u8]) {
        debug_assert_eq!(data.len(), block.len as usize, "data is the block");
        let record = BlockRecord {
            offset: block.offset,
            len: block.len,
            fingerprint: xxh3_64(data),
            key,
            ip: ip.to_canonical(),
        };
        self.seq += 1;
        let seq = self.seq;
        let entry = self
            .in_progress
            .entry(block.piece)
            .or_insert_with(|| InProgress {
                seq,
                blocks: Vec::new(),
            });
        if entry.blocks.len() >= PIECE_BLOCK_RECORDS_MAX {
            let before = entry.blocks.len();
            normalize(&mut entry.blocks);
            self.in_progress_blocks -= before - entry.blocks.len();
            if entry.blocks.len() >= PIECE_BLOCK_RECORDS_MAX {
                // Only with blocks far smaller than 16 KiB: give up on this piece's record.
                self.in_progress_blocks -= entry.blocks.len();
                self.in_progress.remove(&block.piece);
                return;
            }
        }
        entry.blocks.push(record);
        self.in_progress_blocks += 1;
        while self.in_progress_blocks > self.limits.in_progress_blocks_max {
            self.evict_oldest_in_progress(block.piece);
        }
    }

    /// The piece failed its hash check and will be downloaded again. A piece that came
    /// entirely from one address blames it at once; otherwise the record waits for a pass.
    /// `piece_len` is the piece's length, to tell a complete record from a partial one.
    pub fn piece_failed(&mut self, piece: PieceIndex, piece_len: u32) -> Verdict<K> {
        let mut verdict = Verdict::empty();
        let Some(record) = self.in_progress.remove(&piece) else {
            return verdict;
        };
        self.in_progress_blocks -= record.blocks.len();
        let mut blocks = record.blocks;
        normalize(&mut blocks);
        let Some(sole_ip) = blocks.first().map(|b| b.ip) else {
            return verdict;
        };
        if covers(&blocks, piece_len) && blocks.iter().all(|b| b.ip == sole_ip) {
            for b in &blocks {
                add_fault(&mut verdict.faulty, 0, b, piece, Evidence::SoleSource);
            }
            self.strike(sole_ip, piece, &mut verdict);
            return verdict;
        }
        self.failed_blocks += blocks.len();
        self.failed.push_back(FailedAttempt { piece, blocks });
        while self.failed.len() > self.limits.failed_attempts_max
            || self.failed_blocks > self.limits.failed_blocks_max
        {
            let oldest = self.failed.pop_front().expect("counts are positive");
            self.failed_blocks -= oldest.blocks.len();
        }
        verdict
    }

    /// The piece passed its hash check. Each remembered failed attempt of it is compared
    /// block by block with the passing data; senders of blocks that differ are at fault.
    /// Blocks not received again (kept from the failed attempt) count as unchanged.
    pub fn piece_passed(&mut self, piece: PieceIndex) -> Verdict<K> {
        let mut verdict = Verdict::empty();
        let mut passing = match self.in_progress.remove(&piece) {
            Some(record) => {
                self.in_progress_blocks -= record.blocks.len();
                record.blocks
            }
            None => Vec::new(),
        };
        if !self.failed.iter().any(|a| a.piece == piece) {
            return verdict;
        }
        normalize(&mut passing);
        let mut strikes_from = 0;
        let mut i = 0;
        while i < self.failed.len() {
            if self.failed[i].piece != piece {
                i += 1;
                continue;
            }
            let attempt = self.failed.remove(i).expect("index in range");
            self.failed_blocks -= attempt.blocks.len();
            for b in &attempt.blocks {
                let good = passing
                    .binary_search_by_key(&b.offset, |p| p.offset)
                    .ok()
                    .map(|j| &passing[j])
                    .filter(|p| p.len == b.len);
                if good.is_some_and(|p| p.fingerprint != b.fingerprint) {
                    add_fault(
                        &mut verdict.faulty,
                        strikes_from,
                        b,
                        piece,
                        Evidence::BlocksDiffered,
                    );
                }
            }
            // One strike per address per failed attempt, however many of its blocks were bad.
            let mut ips: Vec<IpAddr> = verdict.faulty[strikes_from..]
                .iter()
                .map(|f| f.ip)
                .collect();
            ips.sort_unstable();
            ips.dedup();
            for ip in ips {
                self.strike(ip, piece, &mut verdict);
            }
            strikes_from = verdict.faulty.len();
        }
        verdict
    }

    /// The piece's download was abandoned without a hash check (blocks discarded): forget
    /// its blocks in progress. Failed attempts of it are kept for a later pass.
    pub fn piece_dropped(&mut self, piece: PieceIndex) {
        if let Some(record) = self.in_progress.remove(&piece) {
            self.in_progress_blocks -= record.blocks.len();
        }
    }

    /// Whether `ip` is banned.
    pub fn is_banned(&self, ip: IpAddr) -> bool {
        self.banned.contains_key(&ip.to_canonical())
    }

    /// Why `ip` is banned, if it is.
    pub fn ban_reason(&self, ip: IpAddr) -> Option<BanReason> {
        self.banned.get(&ip.to_canonical()).copied()
    }

    /// Whether `ip` sent blocks of a failed attempt of `piece` not yet resolved by a pass:
    /// the picker should ask other peers for that piece.
    pub fn sent_failed_data(&self, piece: PieceIndex, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.failed
            .iter()
            .filter(|a| a.piece == piece)
            .any(|a| a.blocks.iter().any(|b| b.ip == ip))
    }

    /// Sizes of the tables.
    pub fn stats(&self) -> BansStats {
        BansStats {
            pieces_in_progress: self.in_progress.len(),
            in_progress_blocks: self.in_progress_blocks,
            failed_attempts: self.failed.len(),
            failed_blocks: self.failed_blocks,
            ips_with_strikes: self.strikes.len(),
            banned_ips: self.banned.len(),
        }
    }

    /// Counts one bad piece against `ip`, banning it at the threshold.
    fn strike(&mut self, ip: IpAddr, piece: PieceIndex, verdict: &mut Verdict<K>) {
        if self.banned.contains_key(&ip) {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        let entry = self
            .strikes
            .entry(ip)
            .or_insert(Strikes { bad_pieces: 0, seq });
        entry.bad_pieces += 1;
        let bad_pieces = entry.bad_pieces;
        if bad_pieces >= self.limits.bad_pieces_to_ban {
            self.strikes.remove(&ip);
            self.ban(
                ip,
                BanReason {
                    bad_pieces,
                    last_piece: piece,
                },
                verdict,
            );
        } else if self.strikes.len() > self.limits.strike_ips_max {
            let oldest = self
                .strikes
                .iter()
                .min_by_key(|(_, s)| s.seq)
                .map(|(&ip, _)| ip);
            if let Some(oldest) = oldest {
                self.strikes.remove(&oldest);
            }
        }
    }

    fn ban(&mut self, ip: IpAddr, reason: BanReason, verdict: &mut Verdict<K>) {
        if self.limits.banned_ips_max == 0 {
            return;
        }
        while self.banned.len() >= self.limits.banned_ips_max {
            let oldest = self
                .ban_order
                .pop_front()
                .expect("ban_order lists every ban");
            self.banned.remove(&oldest);
        }
        self.banned.insert(ip, reason);
        self.ban_order.push_back(ip);
        verdict.bans.push(Ban { ip, reason });
    }

    /// Forgets the piece in progress created first, other than `keep` unless it is alone.
    fn evict_oldest_in_progress(&mut self, keep: PieceIndex) {
        let oldest = self
            .in_progress
            .iter()
            .filter(|(&p, _)| p != keep)
            .min_by_key(|(_, r)| r.seq)
            .map(|(&p, _)| p)
            .unwrap_or(keep);
        if let Some(record) = self.in_progress.remove(&oldest) {
            self.in_progress_blocks -= record.blocks.len();
        }
    }
}

/// Sorts block records by offset, keeping the latest record for each offset.
fn normalize<K>(blocks: &mut Vec<BlockRecord<K>>) {
    // Stable sort keeps arrival order among equal offsets; keep the last of each run.
    blocks.sort_by_key(|b| b.offset);
    let mut w = 0;
    for r in 0..blocks.len() {
        if r + 1 < blocks.len() && blocks[r + 1].offset == blocks[r].offset {
            continue;
        }
        blocks.swap(w, r);
        w += 1;
    }
    blocks.truncate(w);
}

/// Whether sorted, deduplicated `blocks` tile `0..piece_len` exactly.
fn covers<K>(blocks: &[BlockRecord<K>], piece_len: u32) -> bool {
    let mut end = 0u64;
    for b in blocks {
        if u64::from(b.offset) != end {
            return false;
        }
        end += u64::from(b.len);
    }
    end == u64::from(piece_len)
}

/// Adds one bad block from `b`'s sender to the faults, merging with its entry for the same
/// attempt (the entries from `attempt_start` on).
fn add_fault<K: Copy + Eq>(
    faulty: &mut Vec<Fault<K>>,
    attempt_start: usize,
    b: &BlockRecord<K>,
    piece: PieceIndex,
    evidence: Evidence,
) {
    let existing = faulty[attempt_start..]
        .iter_mut()
        .find(|f| f.key == b.key && f.ip == b.ip);
    match existing {
        Some(f) => f.bad_blocks += 1,
        None => faulty.push(Fault {
            key: b.key,
            ip: b.ip,
            piece,
            bad_blocks: 1,
            evidence,
        }),
    }
}

#[cfg(test)]
mod tests;
