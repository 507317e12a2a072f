//! What an active [`Session`] does with each message from the peer.
//!
//! Policy, where the BEPs leave a choice:
//! - Fast-extension messages from a peer that did not negotiate BEP 6 close the connection
//!   (BEP 6 says MUST); so do `extended` messages without the BEP 10 bit (libtorrent does).
//! - BEP 3 wants the bitfield first and once, but real clients bend it (aria2 1.36 sends a
//!   `bitfield` after an earlier declaration), so declarations accumulate: a later
//!   `bitfield`/`have all` adds to what we knew, `have none` adds nothing. A wrong-sized
//!   bitfield still closes the connection.
//! - Invalid requests (outside the torrent, over 16 KiB, pieces we lack): rejected with
//!   BEP 6, dropped without, choked or not; the connection closes past
//!   `PEER_REQUESTS_INVALID_MAX`.
//! - Valid requests while we choke: rejected with BEP 6, dropped without (a request sent
//!   before our choke arrived is a normal race, so they are not counted as invalid); only
//!   past `PEER_REQUESTS_WHILE_CHOKED_MAX` since our last choke does the connection close.
//! - Duplicate requests are ignored; a `cancel` with BEP 6 is answered by a `reject`
//!   ("every request gets exactly one response"), without BEP 6 it just drops the request.
//! - Unknown message ids and extension ids we did not assign are skipped.

use super::session::{PeerPieces, Session};
use super::{
    PeerError, METADATA_REQUESTS_QUEUED_MAX, PEER_REQUESTS_INVALID_MAX, PEER_REQUESTS_OVERFLOW_MAX,
    PEER_REQUESTS_QUEUED_MAX, PEER_REQUESTS_WHILE_CHOKED_MAX, UT_METADATA_ID,
};
use crate::wire::{
    write_extended, Bitfield, ExtensionHandshake, Message, MetadataMessage, RawBlock,
    METADATA_PIECE_BYTES,
};

fn unexpected(what: &'static str, why: &'static str) -> PeerError {
    PeerError::UnexpectedMessage { what, why }
}

impl Session {
    /// Handles one message while `Active`.
    pub(super) fn on_message(&mut self, msg: Message<'_>) -> Result<(), PeerError> {
        match msg {
            Message::KeepAlive | Message::Unknown { .. } => {}
            Message::Choke => self.peer_choking = true,
            Message::Unchoke => self.peer_choking = false,
            Message::Interested => self.set_peer_interested(true),
            Message::NotInterested => self.set_peer_interested(false),
            Message::Have { piece } => self.on_have(piece)?,
            Message::Bitfield(bits) => self.on_bitfield(bits)?,
            Message::HaveAll => {
                self.require_fast("have all")?;
                self.declare_pieces(PeerPieces::All);
            }
            Message::HaveNone => {
                self.require_fast("have none")?;
                self.declare_pieces(PeerPieces::None);
            }
            Message::Request(raw) => self.on_request(raw)?,
            Message::Cancel(raw) => self.on_cancel(raw),
            Message::Piece { .. } => {
                return Err(unexpected("piece", "we never requested a block"));
            }
            Message::Port(port) => self.dht_port = Some(port),
            // Hints for a downloader; a seeder has nothing to do with them.
            Message::Suggest { .. } => self.require_fast("suggest piece")?,
            Message::AllowedFast { .. } => self.require_fast("allowed fast")?,
            Message::Reject(_) => {
                self.require_fast("reject request")?;
                // BEP 6: a reject for a request never sent SHOULD close the connection.
                return Err(unexpected("reject request", "we never sent a request"));
            }
            Message::Extended { id, payload } => self.on_extended(id, payload)?,
        }
        Ok(())
    }

    fn require_fast(&self, what: &'static str) -> Result<(), PeerError> {
        if self.peer_supports_fast() {
            Ok(())
        } else {
            Err(unexpected(what, "the fast extension was not negotiated"))
        }
    }

    fn set_peer_interested(&mut self, interested: bool) {
        if self.peer_interested != interested {
            self.peer_interested = interested;
            self.event_interest = true;
        }
    }

    fn piece_count(&self) -> u32 {
        self.torrent
            .as_ref()
            .expect("active")
            .layout()
            .piece_count()
    }

    fn declare_pieces(&mut self, pieces: PeerPieces) {
        self.peer_pieces = match (
            std::mem::replace(&mut self.peer_pieces, PeerPieces::None),
            pieces,
        ) {
            (PeerPieces::All, _) | (_, PeerPieces::All) => PeerPieces::All,
            (known, PeerPieces::None) => known,
            (PeerPieces::None, new) => new,
            (PeerPieces::Some(mut a), PeerPieces::Some(b)) => {
                a.union_with(&b);
                if a.is_full() {
                    PeerPieces::All
                } else {
                    PeerPieces::Some(a)
                }
            }
        };
    }

    fn on_bitfield(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        let bits = Bitfield::from_wire(bytes, self.piece_count())?;
        let pieces = if bits.is_full() {
            PeerPieces::All
        } else {
            PeerPieces::Some(bits)
        };
        self.declare_pieces(pieces);
        Ok(())
    }

    fn on_have(&mut self, piece: u32) -> Result<(), PeerError> {
        let count = self.piece_count();
        let layout = self.torrent.as_ref().expect("active").layout();
        let index = layout
            .piece(piece)
            .ok_or(PeerError::HaveOutOfRange { piece, count })?;
        match &mut self.peer_pieces {
            PeerPieces::All => {}
            PeerPieces::Some(bits) => {
                bits.set(index);
            }
            none @ PeerPieces::None => {
                let mut bits = Bitfield::empty(count);
                bits.set(index);
                *none = PeerPieces::Some(bits);
            }
        }
        Ok(())
    }

    fn reject(&mut self, raw: RawBlock) {
        if self.peer_supports_fast() {
            Message::Reject(raw).encode(&mut self.control);
        }
    }

    fn on_request(&mut self, raw: RawBlock) -> Result<(), PeerError> {
        let torrent = self.torrent.as_ref().expect("active");
        let block = torrent
            .layout()
            .block(raw.piece, raw.offset, raw.len)
            .filter(|b| torrent.has(b.piece));
        let Some(block) = block else {
            self.requests_invalid += 1;
            if self.requests_invalid > PEER_REQUESTS_INVALID_MAX {
                return Err(PeerError::InvalidRequests {
                    count: self.requests_invalid,
                    max: PEER_REQUESTS_INVALID_MAX,
                    last: raw,
                });
            }
            self.reject(raw);
            return Ok(());
        };
        if self.am_choking {
            self.requests_while_choked += 1;
            if self.requests_while_choked > PEER_REQUESTS_WHILE_CHOKED_MAX {
                return Err(PeerError::RequestsWhileChoked {
                    count: self.requests_while_choked,
                    max: PEER_REQUESTS_WHILE_CHOKED_MAX,
                });
            }
            self.reject(raw);
            return Ok(());
        }
        if self.requests.contains(&block) {
            return Ok(());
        }
        if self.requests.len() >= PEER_REQUESTS_QUEUED_MAX {
            self.requests_overflowed += 1;
            if !self.peer_supports_fast() || self.requests_overflowed > PEER_REQUESTS_OVERFLOW_MAX {
                return Err(PeerError::RequestFlood {
                    queued: self.requests.len(),
                    max: PEER_REQUESTS_QUEUED_MAX,
                });
            }
            self.reject(raw);
            return Ok(());
        }
        self.requests.push_back(block);
        Ok(())
    }

    fn on_cancel(&mut self, raw: RawBlock) {
        // A cancel for a block already sent (or never queued) is the normal race: ignore.
        if let Some(i) = self.requests.iter().position(|&b| RawBlock::from(b) == raw) {
            self.requests.remove(i);
            self.reject(raw);
        }
    }

    fn on_extended(&mut self, id: u8, payload: &[u8]) -> Result<(), PeerError> {
        if !self.peer_supports_extensions() {
            return Err(unexpected(
                "extended",
                "the extension protocol was not negotiated",
            ));
        }
        match id {
            0 => self.on_extension_handshake(&ExtensionHandshake::decode(payload)?),
            UT_METADATA_ID => self.on_metadata(payload)?,
            _ => {}
        }
        Ok(())
    }

    /// Merges a (possibly updating, BEP 10) extension handshake: keys present replace what
    /// we knew, `m` entries with id 0 disable an extension.
    fn on_extension_handshake(&mut self, h: &ExtensionHandshake) {
        if let Some(&id) = h.m.get("ut_metadata") {
            self.ext.ut_metadata = (id != 0).then_some(id);
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
    }

    fn on_metadata(&mut self, payload: &[u8]) -> Result<(), PeerError> {
        let Some(msg) = MetadataMessage::decode(payload)? else {
            return Ok(()); // BEP 9: unknown msg_type is ignored
        };
        let MetadataMessage::Request { piece } = msg else {
            // Data and rejects answer requests, and a seeder never requests metadata.
            return Ok(());
        };
        let Some(their_id) = self.ext.ut_metadata else {
            return Err(unexpected(
                "ut_metadata request",
                "the peer announced no ut_metadata id to answer with",
            ));
        };
        if self.metadata_replies >= METADATA_REQUESTS_QUEUED_MAX {
            return Err(PeerError::MetadataRequestFlood {
                max: METADATA_REQUESTS_QUEUED_MAX,
            });
        }
        self.metadata_replies += 1;
        let torrent = self.torrent.as_ref().expect("active");
        let info = torrent.info_bytes();
        let reply = if piece < torrent.metadata_pieces() {
            let start = piece as usize * METADATA_PIECE_BYTES;
            let end = (start + METADATA_PIECE_BYTES).min(info.len());
            MetadataMessage::Data {
                piece,
                total_size: info.len() as u32,
                data: &info[start..end],
            }
        } else {
            MetadataMessage::Reject { piece }
        };
        write_extended(&mut self.control, their_id, |out| reply.encode(out));
        Ok(())
    }
}
