//! Read-only views of a [`Session`], for the picker, the choker, PEX and logs.

use std::sync::Arc;
use std::time::Duration;

use super::pieces::PieceSet;
use super::session::{Direction, Session, State};
use super::torrent::TorrentShared;
use super::METADATA_REQUESTS_OUTSTANDING_MAX;
use crate::metainfo::{BlockRef, Layout, PeerId, PieceIndex};
use crate::time::Instant;
use crate::wire::Reserved;

impl Session {
    /// Who opened the connection.
    pub fn direction(&self) -> Direction {
        self.direction
    }
    /// True once handshakes are exchanged and a torrent is attached.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }
    /// The attached torrent.
    pub fn torrent(&self) -> Option<&Arc<TorrentShared>> {
        self.torrent.as_ref()
    }
    /// The attached torrent's layout, once its metadata is known.
    pub fn layout(&self) -> Option<&Layout> {
        self.torrent.as_ref().and_then(|t| t.layout())
    }
    /// The peer's id, once its handshake arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.remote.map(|h| h.peer_id)
    }
    /// The peer's reserved bits, once its handshake arrived.
    pub fn peer_reserved(&self) -> Option<Reserved> {
        self.remote.map(|h| h.reserved)
    }
    /// The peer speaks the fast extension (BEP 6; we always do, so it is negotiated).
    pub fn peer_supports_fast(&self) -> bool {
        self.remote.is_some_and(|h| h.reserved.fast())
    }
    /// The peer speaks the extension protocol (BEP 10).
    pub fn peer_supports_extensions(&self) -> bool {
        self.remote.is_some_and(|h| h.reserved.extension_protocol())
    }
    /// The peer accepts `ut_pex` messages (BEP 11).
    pub fn peer_supports_pex(&self) -> bool {
        self.ext.ut_pex.is_some()
    }
    /// The info dict size the peer offers over `ut_metadata`, if it offers one we would
    /// accept (BEP 9 `metadata_size`, at most `METADATA_BYTES_MAX`).
    pub fn peer_metadata_size(&self) -> Option<u32> {
        self.ext.offered_metadata_size()
    }
    /// The peer's client name (`v` of its extension handshake).
    pub fn client_name(&self) -> Option<&str> {
        self.ext.client.as_deref()
    }
    /// The peer's listen port (`p` of its extension handshake).
    pub fn peer_listen_port(&self) -> Option<u16> {
        self.ext.listen_port
    }
    /// How many requests the peer queues (`reqq` of its extension handshake).
    pub fn peer_reqq(&self) -> Option<u32> {
        self.ext.reqq
    }
    /// The peer's DHT port (BEP 5 `port` message).
    pub fn dht_port(&self) -> Option<u16> {
        self.dht_port
    }
    /// We are choking the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }
    /// We told the peer we are interested.
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }
    /// The peer is choking us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }
    /// The peer wants pieces from us.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }
    /// The pieces we have and serve on this connection.
    pub fn have_pieces(&self) -> &PieceSet {
        &self.have
    }
    /// What the peer told us it has (empty until the metadata is known).
    pub fn peer_pieces(&self) -> &PieceSet {
        &self.peer_pieces
    }
    /// The peer has `piece`, as far as it told us.
    pub fn peer_has(&self, piece: PieceIndex) -> bool {
        self.peer_pieces.has(piece)
    }
    /// The peer has every piece (a seed: two seeds have nothing to exchange).
    pub fn peer_is_seed(&self) -> bool {
        self.peer_pieces.is_full()
    }
    /// Pieces the peer allows us to request while it chokes us (BEP 6).
    pub fn allowed_fast(&self) -> &[PieceIndex] {
        &self.downloads.allowed_fast
    }
    /// The peer's requests queued and not yet served.
    pub fn requests_queued(&self) -> usize {
        self.requests.len()
    }
    /// Our requests the peer has not answered (timed-out ones included: they keep their
    /// slot until answered or cancelled).
    pub fn requests_outstanding(&self) -> usize {
        self.downloads.outstanding()
    }
    /// True when `block` is requested from this peer and unanswered.
    pub fn is_requested(&self, block: BlockRef) -> bool {
        self.downloads.is_outstanding(block)
    }
    /// Most requests this peer may have outstanding: its `reqq`, capped at
    /// [`REQUESTS_OUTSTANDING_MAX`](super::REQUESTS_OUTSTANDING_MAX).
    pub fn request_limit(&self) -> usize {
        self.downloads.limit(self.ext.reqq)
    }
    /// How many more requests [`request`](Self::request) would accept now (0 while choked;
    /// allowed-fast pieces aside).
    pub fn request_slots(&self) -> usize {
        if self.state != State::Active || self.peer_choking {
            return 0;
        }
        self.request_limit()
            .saturating_sub(self.downloads.outstanding())
    }
    /// How many more metadata requests [`request_metadata`](Self::request_metadata) would
    /// accept now (0 once the metadata is known or if the peer offers none).
    pub fn metadata_request_slots(&self) -> usize {
        if self.state != State::Active || self.layout().is_some() {
            return 0;
        }
        if self.ext.offered_metadata_size().is_none() {
            return 0;
        }
        METADATA_REQUESTS_OUTSTANDING_MAX.saturating_sub(self.downloads.metadata_outstanding())
    }
    /// Requests reported timed out over the connection's life.
    pub fn requests_timed_out(&self) -> u32 {
        self.downloads.timed_out
    }
    /// Blocks received that we had not requested (or no longer remembered).
    pub fn blocks_unrequested(&self) -> u32 {
        self.downloads.unrequested
    }
    /// Our download rate from this peer at `now`, in bytes per second.
    pub fn download_rate(&self, now: Instant) -> u64 {
        self.downloads.rate.rate(now)
    }

    /// Our download rate from this peer over about the last second (for pipeline depth).
    pub fn download_rate_fast(&self, now: Instant) -> u64 {
        self.downloads.fast_rate.rate(now)
    }
    /// Block bytes received from this peer (late ones included).
    pub fn downloaded_bytes(&self) -> u64 {
        self.downloads.bytes
    }
    /// When the last block arrived (anti-snubbing: a peer that unchokes us but sends
    /// nothing for a minute is snubbing us).
    pub fn last_block_received(&self) -> Option<Instant> {
        self.downloads.last_block_at
    }
    /// Our upload rate to this peer at `now`, in bytes per second.
    pub fn upload_rate(&self, now: Instant) -> u64 {
        self.upload.rate(now)
    }
    /// Block bytes sent to this peer.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes
    }
    /// When the session was created.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }
    /// Time since the peer last sent a byte.
    pub fn idle(&self, now: Instant) -> Duration {
        now - self.last_received
    }
}
