//! Counters the shard publishes for the control plane (progress display, tracker announces,
//! resume saves). Relaxed atomics written a few times a second; a mutex only for the resume
//! snapshot, which is taken at most once per save.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::wire::Bitfield;

/// Live state of a download.
#[derive(Debug, Default)]
pub struct GetStats {
    /// Payload bytes received that were new to us.
    pub downloaded: AtomicU64,
    /// Bytes sent on open connections.
    pub uploaded_live: AtomicU64,
    /// Bytes sent on connections since closed.
    pub uploaded_closed: AtomicU64,
    /// Sum of per-peer download rates, bytes/s.
    pub download_rate: AtomicU64,
    /// Sum of per-peer upload rates, bytes/s.
    pub upload_rate: AtomicU64,
    /// Handshaken connections.
    pub peers: AtomicUsize,
    /// Candidate addresses waiting.
    pub candidates: AtomicUsize,
    /// Short of peers: below the dial target with no candidate ready (`Swarm::wants_peers`);
    /// the announcer then announces as soon as the tracker's `min interval` allows.
    pub wants_peers: AtomicBool,
    /// Verified pieces.
    pub pieces_have: AtomicU32,
    /// Bytes still missing.
    pub left: AtomicU64,
    /// Every piece verified.
    pub complete: AtomicBool,
    /// Complete and the seeding policy is satisfied: the process may exit.
    pub finished: AtomicBool,
    /// Pieces that failed their hash check.
    pub hash_failures: AtomicU64,
    /// IPs banned.
    pub bans: AtomicU64,
    /// Bumped on every verified piece (the resume writer saves when it changed).
    pub version: AtomicU64,
    snapshot: Mutex<Option<Bitfield>>,
}

impl GetStats {
    /// Stats for a download starting with `have` and `left` bytes missing.
    pub fn new(have: &Bitfield, left: u64) -> GetStats {
        let s = GetStats::default();
        s.pieces_have.store(have.count(), Ordering::Relaxed);
        s.left.store(left, Ordering::Relaxed);
        *s.snapshot.lock().expect("stats lock") = Some(have.clone());
        s
    }

    /// Records a newly verified (and durable) piece set.
    pub fn piece_verified(&self, have: &Bitfield, left: u64) {
        self.pieces_have.store(have.count(), Ordering::Relaxed);
        self.left.store(left, Ordering::Relaxed);
        *self.snapshot.lock().expect("stats lock") = Some(have.clone());
        self.version.fetch_add(1, Ordering::Release);
    }

    /// The latest verified piece set.
    pub fn have_snapshot(&self) -> Option<Bitfield> {
        self.snapshot.lock().expect("stats lock").clone()
    }

    /// Total bytes uploaded.
    pub fn uploaded(&self) -> u64 {
        self.uploaded_live.load(Ordering::Relaxed) + self.uploaded_closed.load(Ordering::Relaxed)
    }
}
