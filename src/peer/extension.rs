//! Extension messages of a [`Session`]: the BEP 10 handshake both ways, BEP 9 metadata
//! (serving it, and fetching it for a magnet session) and BEP 11 peer exchange.
//!
//! Policy, where the BEPs leave a choice:
//! - We advertise `ut_metadata` always (we serve the info dict, or fetch it) and `ut_pex`
//!   unless the torrent is private (BEP 27); a magnet session learns privacy with the
//!   metadata and then switches `ut_pex` off with an updated handshake (BEP 10 allows it).
//! - Metadata data or rejects for pieces we did not request (or no longer need) are
//!   ignored; a `metadata_size` over `METADATA_BYTES_MAX` is not an offer.
//! - PEX arriving within [`PEX_RECEIVE_INTERVAL_MIN`] of the last accepted message is
//!   ignored rather than closed on; a malformed PEX dict closes like any bad extension
//!   message.

use std::collections::BTreeMap;

use super::event::{DropReason, Event, Received};
use super::receive::unexpected;
use super::session::{MessageResult, Session, State};
use super::{
    PeerError, Refused, CLIENT_NAME, METADATA_REQUESTS_OUTSTANDING_MAX,
    METADATA_REQUESTS_QUEUED_MAX, PEER_REQUESTS_QUEUED_MAX, PEX_INTERVAL, PEX_RECEIVE_INTERVAL_MIN,
    UT_METADATA_ID, UT_PEX_ID,
};
use crate::time::Instant;
use crate::wire::{
    write_extended, ExtensionHandshake, MetadataMessage, PexMessage, METADATA_BYTES_MAX,
    METADATA_PIECE_BYTES,
};

/// What the peer's extension handshakes told us (for extensions we implement), and our
/// per-connection extension bookkeeping.
#[derive(Clone, Debug, Default)]
pub(super) struct ExtensionState {
    /// The id the peer wants `ut_metadata` messages under.
    pub ut_metadata: Option<u8>,
    /// The id the peer wants `ut_pex` messages under.
    pub ut_pex: Option<u8>,
    /// The peer's `metadata_size`, as sent.
    pub metadata_size: Option<u64>,
    pub client: Option<String>,
    pub listen_port: Option<u16>,
    pub reqq: Option<u32>,
    /// `ut_metadata` replies in the control buffer not yet written out.
    pub metadata_replies: usize,
    pex_sent_at: Option<Instant>,
    pex_received_at: Option<Instant>,
}

impl ExtensionState {
    /// The info dict size the peer can serve, if it announced `ut_metadata` and a size we
    /// accept.
    pub(super) fn offered_metadata_size(&self) -> Option<u32> {
        self.ut_metadata?;
        self.metadata_size
            .filter(|&s| (1..=METADATA_BYTES_MAX as u64).contains(&s))
            .map(|s| s as u32)
    }
}

impl Session {
    /// Queues our extension handshake (first, or updated after `set_metadata`).
    pub(super) fn queue_extension_handshake(&mut self) {
        let torrent = self.torrent.as_ref().expect("active");
        let pex_id = if torrent.is_private() { 0 } else { UT_PEX_ID };
        let m: BTreeMap<String, u8> = [
            ("ut_metadata".to_owned(), UT_METADATA_ID),
            ("ut_pex".to_owned(), pex_id),
        ]
        .into();
        let ours = ExtensionHandshake {
            m,
            v: Some(CLIENT_NAME.to_owned()),
            p: self.local.listen_port,
            reqq: Some(PEER_REQUESTS_QUEUED_MAX as u32),
            metadata_size: torrent.info_bytes().map(|b| b.len() as u64),
            yourip: None,
        };
        write_extended(&mut self.control, 0, |out| ours.encode(out));
    }

    fn pex_enabled(&self) -> bool {
        self.torrent.as_ref().is_some_and(|t| !t.is_private())
    }

    pub(super) fn on_extended<'a>(
        &mut self,
        id: u8,
        payload: &'a [u8],
        now: Instant,
    ) -> MessageResult<'a> {
        if !self.peer_supports_extensions() {
            return Err(unexpected(
                "extended",
                "the extension protocol was not negotiated",
            ));
        }
        match id {
            0 => self.on_extension_handshake(&ExtensionHandshake::decode(payload)?),
            UT_METADATA_ID => return self.on_metadata(payload),
            UT_PEX_ID if self.pex_enabled() => self.on_pex(payload, now)?,
            _ => {}
        }
        Ok(None)
    }

    /// Merges a (possibly updating, BEP 10) extension handshake: keys present replace what
    /// we knew, `m` entries with id 0 disable an extension.
    fn on_extension_handshake(&mut self, h: &ExtensionHandshake) {
        let offered_before = self.ext.offered_metadata_size();
        if let Some(&id) = h.m.get("ut_metadata") {
            self.ext.ut_metadata = (id != 0).then_some(id);
        }
        if let Some(&id) = h.m.get("ut_pex") {
            self.ext.ut_pex = (id != 0).then_some(id);
        }
        if h.v.is_some() {
            self.ext.client.clone_from(&h.v);
        }
        if h.p.is_some() {
            self.ext.listen_port = h.p;
        }
        if h.reqq.is_some() {
            self.ext.reqq = h.reqq;
        }
        if h.metadata_size.is_some() {
            self.ext.metadata_size = h.metadata_size;
        }
        let offered = self.ext.offered_metadata_size();
        let magnet = self.torrent.as_ref().is_some_and(|t| !t.has_metadata());
        if let Some(total_size) = offered.filter(|_| magnet && offered != offered_before) {
            self.events.push_back(Event::MetadataOffered { total_size });
        }
    }

    fn on_metadata<'a>(&mut self, payload: &'a [u8]) -> MessageResult<'a> {
        let Some(msg) = MetadataMessage::decode(payload)? else {
            return Ok(None); // BEP 9: unknown msg_type is ignored
        };
        match msg {
            MetadataMessage::Request { piece } => self.serve_metadata(piece)?,
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                if self.downloads.take_metadata_request(piece) {
                    return Ok(Some(Received::Metadata {
                        piece,
                        total_size,
                        data,
                    }));
                }
            }
            MetadataMessage::Reject { piece } => {
                if self.downloads.take_metadata_request(piece) {
                    self.events.push_back(Event::MetadataRequestDropped {
                        piece,
                        reason: DropReason::Rejected,
                    });
                }
            }
        }
        Ok(None)
    }

    fn serve_metadata(&mut self, piece: u32) -> Result<(), PeerError> {
        let Some(their_id) = self.ext.ut_metadata else {
            return Err(unexpected(
                "ut_metadata request",
                "the peer announced no ut_metadata id to answer with",
            ));
        };
        if self.ext.metadata_replies >= METADATA_REQUESTS_QUEUED_MAX {
            return Err(PeerError::MetadataRequestFlood {
                max: METADATA_REQUESTS_QUEUED_MAX,
            });
        }
        self.ext.metadata_replies += 1;
        let torrent = self.torrent.as_ref().expect("active");
        let reply = match torrent.info_bytes() {
            Some(info) if piece < torrent.metadata_pieces() => {
                let start = piece as usize * METADATA_PIECE_BYTES;
                let end = (start + METADATA_PIECE_BYTES).min(info.len());
                MetadataMessage::Data {
                    piece,
                    total_size: info.len() as u32,
                    data: &info[start..end],
                }
            }
            // Past the end, or a magnet session that has nothing to serve yet.
            _ => MetadataMessage::Reject { piece },
        };
        write_extended(&mut self.control, their_id, |out| reply.encode(out));
        Ok(())
    }

    /// Requests 16 KiB piece `piece` of the info dict (a magnet session, after
    /// [`Event::MetadataOffered`]). The answer comes back as [`Received::Metadata`] or
    /// [`Event::MetadataRequestDropped`]. At most [`METADATA_REQUESTS_OUTSTANDING_MAX`] are
    /// outstanding per peer.
    pub fn request_metadata(&mut self, piece: u32, now: Instant) -> Result<(), Refused> {
        if self.state != State::Active {
            return Err(Refused::NotActive);
        }
        if self.layout().is_some() {
            return Err(Refused::HaveMetadata);
        }
        let (Some(their_id), Some(size)) = (self.ext.ut_metadata, self.ext.offered_metadata_size())
        else {
            return Err(Refused::ExtensionUnsupported {
                extension: "ut_metadata",
            });
        };
        let pieces = (size as usize).div_ceil(METADATA_PIECE_BYTES) as u32;
        if piece >= pieces {
            return Err(Refused::MetadataPieceOutOfRange { piece, pieces });
        }
        if self.downloads.metadata_requested(piece) {
            return Err(Refused::AlreadyRequested);
        }
        let outstanding = self.downloads.metadata_outstanding();
        if outstanding >= METADATA_REQUESTS_OUTSTANDING_MAX {
            return Err(Refused::NoRequestSlot {
                outstanding,
                limit: METADATA_REQUESTS_OUTSTANDING_MAX,
            });
        }
        let msg = MetadataMessage::Request { piece };
        write_extended(&mut self.control, their_id, |out| msg.encode(out));
        self.downloads.add_metadata_request(piece, now);
        self.note_output(now);
        Ok(())
    }

    /// Sends a BEP 11 PEX message (the shell chooses its contents: peers connected and
    /// dropped since the last one; only the first 50 of each are sent). Refused for private
    /// torrents, peers without `ut_pex`, and within [`PEX_INTERVAL`] of the last one.
    pub fn send_pex(&mut self, msg: &PexMessage, now: Instant) -> Result<(), Refused> {
        if self.state != State::Active {
            return Err(Refused::NotActive);
        }
        if !self.pex_enabled() {
            return Err(Refused::Private);
        }
        let Some(their_id) = self.ext.ut_pex else {
            return Err(Refused::ExtensionUnsupported {
                extension: "ut_pex",
            });
        };
        if let Some(ready_at) = self.ext.pex_sent_at.map(|at| at + PEX_INTERVAL) {
            if now < ready_at {
                return Err(Refused::TooSoon { ready_at });
            }
        }
        write_extended(&mut self.control, their_id, |out| msg.encode(out));
        self.ext.pex_sent_at = Some(now);
        self.note_output(now);
        Ok(())
    }

    fn on_pex(&mut self, payload: &[u8], now: Instant) -> Result<(), PeerError> {
        let msg = PexMessage::decode(payload)?;
        let too_soon = self
            .ext
            .pex_received_at
            .is_some_and(|at| now < at + PEX_RECEIVE_INTERVAL_MIN);
        if too_soon {
            return Ok(());
        }
        self.ext.pex_received_at = Some(now);
        if !msg.is_empty() {
            self.events.push_back(Event::Pex(msg));
        }
        Ok(())
    }
}
