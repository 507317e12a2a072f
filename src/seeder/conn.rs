//! One seeding connection as the shard drives it: a `peer::Session` plus the file ids of
//! its torrent on this shard. Translates between the session (BitTorrent) and the runtime's
//! `Connection` contract (bytes, blocks as file spans, timers).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::registry::ServedTorrent;
use crate::metainfo::InfoHash;
use crate::peer::{Event, LocalConfig, PeerError, PieceSet, Session};
use crate::runtime::{
    BlockSend, BlockSource, CloseReason, Connection, FileId, FileSpan, FileSpans,
};
use crate::time::Instant;
use crate::torrent::rate_limit::{earliest, SharedBucket, UploadThrottle};
use crate::wire::piece_header;

/// A torrent as one shard serves it: the shared state and this shard's file ids.
#[derive(Clone)]
pub struct ShardTorrent {
    /// Shared, read-only torrent state.
    pub served: Arc<ServedTorrent>,
    /// This shard's registered file for each file of the torrent (`None`: zero-length).
    pub files: Arc<[Option<FileId>]>,
}

/// The torrents one shard serves, by info-hash (built once when the shard starts).
pub type ShardTorrents = Rc<HashMap<InfoHash, ShardTorrent>>;

/// A seeding connection.
pub struct SeedConn {
    session: Session,
    torrents: ShardTorrents,
    torrent: Option<ShardTorrent>,
    throttle: UploadThrottle,
}

fn protocol(e: PeerError) -> CloseReason {
    CloseReason::Protocol(Box::new(e))
}

impl SeedConn {
    /// A connection a peer opened; the torrent is resolved from its handshake.
    pub fn inbound(
        torrents: ShardTorrents,
        local: LocalConfig,
        bucket: Option<SharedBucket>,
        now: Instant,
    ) -> SeedConn {
        SeedConn {
            session: Session::inbound(local, now),
            torrents,
            torrent: None,
            throttle: UploadThrottle::new(bucket, now),
        }
    }

    /// A connection we open to a peer for `torrent`.
    pub fn outbound(
        torrents: ShardTorrents,
        torrent: ShardTorrent,
        local: LocalConfig,
        bucket: Option<SharedBucket>,
        now: Instant,
    ) -> SeedConn {
        SeedConn {
            session: Session::outbound(torrent.served.seed.clone(), PieceSet::All, local, now),
            torrents,
            torrent: Some(torrent),
            throttle: UploadThrottle::new(bucket, now),
        }
    }

    /// The protocol state (for the choker and logs).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Chokes or unchokes the peer.
    pub fn set_choked(&mut self, choked: bool, now: Instant) {
        self.session.set_choked(choked, now);
    }

    /// The torrent this connection serves, once known.
    pub fn torrent(&self) -> Option<&ShardTorrent> {
        self.torrent.as_ref()
    }

    fn drain_events(&mut self, now: Instant) -> Result<(), CloseReason> {
        // The shard's choker tick (every `CHOKE_TICK`) reads interest directly; a seeder
        // never requests, so the download side's events need no answer.
        while let Some(event) = self.session.poll_event() {
            if let Event::AttachRequested { info_hash } = event {
                let Some(t) = self.torrents.get(&info_hash).cloned() else {
                    return Err(CloseReason::App("unknown info-hash"));
                };
                self.session
                    .attach(t.served.seed.clone(), PieceSet::All, now)
                    .map_err(protocol)?;
                self.torrent = Some(t);
            }
        }
        Ok(())
    }
}

impl Connection for SeedConn {
    fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<usize, CloseReason> {
        self.throttle.note_now(now);
        let mut used = 0;
        loop {
            let input = self
                .session
                .handle_input(&bytes[used..], now)
                .map_err(protocol)?;
            used += input.used;
            // A seeder requests nothing, so `input.received` is always `None`.
            debug_assert!(input.received.is_none());
            let attached_before = self.torrent.is_some();
            self.drain_events(now)?;
            let attached_now = !attached_before && self.torrent.is_some();
            // Input pauses for an attach (the bytes after the handshake) and when events
            // pile up: feed the rest again until a call consumes nothing.
            if used == bytes.len() || (input.used == 0 && !attached_now) {
                return Ok(used);
            }
        }
    }

    fn write_control(&mut self, out: &mut Vec<u8>) {
        self.session.write_control(out);
    }

    fn poll_block(&mut self) -> Option<BlockSend> {
        let torrent = self.torrent.as_ref()?;
        if !self.session.has_block_to_send() || !self.throttle.admit() {
            return None;
        }
        let (block, requested_at) = self.session.poll_block_timed()?;
        self.throttle.spend(u64::from(block.len));
        let layout = torrent
            .served
            .seed
            .layout()
            .expect("seeded torrents have metadata");
        let mut spans = FileSpans::new();
        for s in layout.spans(block.piece, block.offset, block.len) {
            let file = torrent.files[s.file].expect("spans never include zero-length files");
            let span = FileSpan {
                file,
                offset: s.offset,
                len: s.len as u32,
            };
            if spans.push(span).is_err() {
                // Only torrents of many tiny files can hit this; such a block is skipped.
                return None;
            }
        }
        Some(BlockSend {
            header: piece_header(block.piece.get(), block.offset, block.len),
            source: BlockSource::Files(spans),
            requested_at: Some(requested_at),
        })
    }

    fn on_sent(&mut self, bytes: usize, now: Instant) {
        self.throttle.note_now(now);
        self.session.on_block_sent(bytes as u32, now);
        if let Some(t) = &self.torrent {
            t.served.uploaded.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.throttle.note_now(now);
        self.session.handle_timeout(now).map_err(protocol)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.session.poll_timeout(), self.throttle.wake_at())
    }
}
