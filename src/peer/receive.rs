//! What an active [`Session`] does with each message from the peer: dispatch, the peer's
//! piece declarations and interest, and serving its requests. Our own requests are
//! handled in `download.rs`, extension messages in `extension.rs`.
//!
//! Policy, where the BEPs leave a choice:
//! - Fast-extension messages from a peer that did not negotiate BEP 6 close the connection
//!   (BEP 6 says MUST); so do `extended` messages without the BEP 10 bit (libtorrent does).
//! - BEP 3 wants the bitfield first and once, but real clients bend it (aria2 1.36 sends a
//!   `bitfield` after an earlier declaration), so declarations accumulate: a later
//!   `bitfield`/`have all` adds to what we knew, `have none` adds nothing. A wrong-sized
//!   bitfield still closes the connection. Before a magnet session knows the piece count,
//!   declarations are kept raw and checked by `set_metadata`.
//! - Invalid requests (outside the torrent, over 16 KiB, pieces we lack): rejected with
//!   BEP 6, dropped without, choked or not; the connection closes past
//!   `PEER_REQUESTS_INVALID_MAX`.
//! - Valid requests while we choke: rejected with BEP 6, dropped without (a request sent
//!   before our choke arrived is a normal race, so they are not counted as invalid); only
//!   past `PEER_REQUESTS_WHILE_CHOKED_MAX` since our last choke does the connection close.
//! - Duplicate requests are ignored; a `cancel` with BEP 6 is answered by a `reject`
//!   ("every request gets exactly one response"), without BEP 6 it just drops the request.
//! - Unknown message ids and extension ids we did not assign are skipped.

use super::event::Event;
use super::pieces::PieceSet;
use super::session::{MessageResult, Session};
use super::{
    PeerError, PEER_REQUESTS_INVALID_MAX, PEER_REQUESTS_OVERFLOW_MAX, PEER_REQUESTS_QUEUED_MAX,
    PEER_REQUESTS_WHILE_CHOKED_MAX,
};
use crate::time::Instant;
use crate::wire::{Bitfield, Message, RawBlock};

pub(super) fn unexpected(what: &'static str, why: &'static str) -> PeerError {
    PeerError::UnexpectedMessage { what, why }
}

impl Session {
    /// Handles one message while `Active`; returns the payload it carried, if any.
    pub(super) fn on_message<'a>(&mut self, msg: Message<'a>, now: Instant) -> MessageResult<'a> {
        match msg {
            Message::KeepAlive | Message::Unknown { .. } => {}
            Message::Choke => self.on_peer_choke(),
            Message::Unchoke => self.on_peer_unchoke(),
            Message::Interested => self.set_peer_interested(true),
            Message::NotInterested => self.set_peer_interested(false),
            Message::Have { piece } => self.on_have(piece)?,
            Message::Bitfield(bits) => self.on_bitfield(bits)?,
            Message::HaveAll => {
                self.require_fast("have all")?;
                self.declare_pieces(PieceSet::All);
            }
            Message::HaveNone => self.require_fast("have none")?,
            Message::Request(raw) => self.on_request(raw, now)?,
            Message::Cancel(raw) => self.on_cancel(raw),
            Message::Piece {
                piece,
                offset,
                data,
            } => return self.on_piece(piece, offset, data, now),
            Message::Port(port) => self.dht_port = Some(port),
            Message::Suggest { piece } => {
                self.require_fast("suggest piece")?;
                self.on_suggest(piece);
            }
            Message::AllowedFast { piece } => {
                self.require_fast("allowed fast")?;
                self.on_allowed_fast(piece);
            }
            Message::Reject(raw) => {
                self.require_fast("reject request")?;
                self.on_reject(raw)?;
            }
            Message::Extended { id, payload } => return self.on_extended(id, payload, now),
        }
        Ok(None)
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
            self.events.push_back(Event::InterestChanged { interested });
        }
    }

    /// Adds a bulk declaration (known piece count) and reports what it added.
    fn declare_pieces(&mut self, declared: PieceSet) {
        let Some(count) = self.layout().map(|l| l.piece_count()) else {
            debug_assert_eq!(declared, PieceSet::All);
            self.peer_pieces_pending.have_all();
            return;
        };
        if let Some(added) = self.peer_pieces.declare(declared, count) {
            self.events.push_back(Event::PeerPieces { added });
        }
    }

    fn on_bitfield(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        let Some(count) = self.layout().map(|l| l.piece_count()) else {
            return self.peer_pieces_pending.bitfield(bytes);
        };
        let bits = Bitfield::from_wire(bytes, count)?;
        self.declare_pieces(PieceSet::Partial(bits));
        Ok(())
    }

    fn on_have(&mut self, piece: u32) -> Result<(), PeerError> {
        let Some(layout) = self.layout() else {
            return self.peer_pieces_pending.have(piece);
        };
        let count = layout.piece_count();
        let index = layout
            .piece(piece)
            .ok_or(PeerError::HaveOutOfRange { piece, count })?;
        if self.peer_pieces.insert(index, count) {
            self.events.push_back(Event::PeerHave { piece: index });
        }
        Ok(())
    }

    fn reject(&mut self, raw: RawBlock) {
        if self.peer_supports_fast() {
            Message::Reject(raw).encode(&mut self.control);
        }
    }

    fn on_request(&mut self, raw: RawBlock, now: Instant) -> Result<(), PeerError> {
        let block = self
            .layout()
            .and_then(|l| l.block(raw.piece, raw.offset, raw.len))
            .filter(|b| self.have.has(b.piece));
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
        if self.requests.iter().any(|(b, _)| *b == block) {
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
        self.requests.push_back((block, now));
        Ok(())
    }

    fn on_cancel(&mut self, raw: RawBlock) {
        // A cancel for a block already sent (or never queued) is the normal race: ignore.
        if let Some(i) = self
            .requests
            .iter()
            .position(|&(b, _)| RawBlock::from(b) == raw)
        {
            self.requests.remove(i);
            self.reject(raw);
        }
    }
}
