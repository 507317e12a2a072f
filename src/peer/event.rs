//! What a [`Session`](super::Session) hands back to the shell: events to react to, and the
//! block or metadata piece a frame carried (borrowing the shell's input buffer).

use super::pieces::PieceSet;
use crate::metainfo::{BlockRef, InfoHash, PieceIndex};
use crate::wire::PexMessage;

/// Why a request we sent will not be answered (or not in time).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The peer rejected it (BEP 6 `reject request`, BEP 9 `reject`).
    Rejected,
    /// The peer choked us without the fast extension: BEP 3 says that discards requests.
    Choked,
    /// No answer in time ([`REQUEST_TIMEOUT`](super::REQUEST_TIMEOUT) without any block, or
    /// [`METADATA_REQUEST_TIMEOUT`](super::METADATA_REQUEST_TIMEOUT)). A block request
    /// keeps its slot until the peer answers it or the shell cancels it, so a stalled peer
    /// gets no new requests; a late answer arrives with `late: true`.
    TimedOut,
    /// The peer answered [`REQUEST_SKIPS_MAX`](super::REQUEST_SKIPS_MAX) later requests
    /// before this one: it passed over it (likely it lacks the piece it claimed). The slot
    /// is freed; a late answer still arrives with `late: true`.
    Skipped,
}

/// Something the shell must know about; see [`Session::poll_event`](super::Session::poll_event).
///
/// Piece availability is reported as deltas, so a picker that keeps only per-piece counts
/// stays exact: `PeerHave` and `PeerPieces` name only pieces new to this peer, and the union
/// of everything reported equals [`Session::peer_pieces`](super::Session::peer_pieces) —
/// including its variant: `PieceSet::All` is reported (and kept) only when the peer's first
/// declaration says "all", so what the picker subtracts when the peer leaves is exactly what
/// it added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Inbound only: the peer's handshake names this torrent. Call
    /// [`Session::attach`](super::Session::attach) with it, or close the connection if we
    /// do not serve it.
    AttachRequested {
        /// The torrent the peer asked for.
        info_hash: InfoHash,
    },
    /// The peer's interest in our pieces changed; the choker can fill or free a slot at once.
    InterestChanged {
        /// The peer's interest now.
        interested: bool,
    },
    /// The peer choked us. Without the fast extension, `RequestDropped { reason: Choked }`
    /// follows for every waiting request; with it, the peer rejects them one by one.
    PeerChoked,
    /// The peer unchoked us: requests may flow.
    PeerUnchoked,
    /// The peer has a piece it did not have before.
    PeerHave {
        /// The piece.
        piece: PieceIndex,
    },
    /// A bulk declaration (bitfield, `have all`, or what a magnet session received before
    /// it knew the piece count) added these pieces to what the peer has.
    PeerPieces {
        /// Pieces new to this peer.
        added: PieceSet,
    },
    /// A block request we sent will not be answered; the picker may hand it to another peer.
    RequestDropped {
        /// The block.
        block: BlockRef,
        /// Why.
        reason: DropReason,
    },
    /// BEP 6: we may request this piece while the peer chokes us.
    AllowedFast {
        /// The piece.
        piece: PieceIndex,
    },
    /// BEP 6: the peer suggests we download this piece (it has it in cache).
    Suggested {
        /// The piece.
        piece: PieceIndex,
    },
    /// BEP 11: peers the remote connected to or dropped. Never raised for private torrents.
    Pex(PexMessage),
    /// A magnet session's peer can serve the info dict (BEP 9): ask the
    /// [`MetadataAssembler`](super::MetadataAssembler) which pieces to request from it.
    MetadataOffered {
        /// The info dict's length as the peer announced it (at most `METADATA_BYTES_MAX`).
        total_size: u32,
    },
    /// A metadata request we sent will not be answered.
    MetadataRequestDropped {
        /// The 16 KiB metadata piece.
        piece: u32,
        /// Why.
        reason: DropReason,
    },
}

/// A payload carried by the last frame [`handle_input`](super::Session::handle_input)
/// consumed. It borrows the shell's input buffer: copy it (into a disk write buffer, the
/// metadata assembler) before feeding more input.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// A block of a piece, as requested.
    Block {
        /// Which block.
        block: BlockRef,
        /// Its bytes (`block.len` of them).
        data: &'a [u8],
        /// True when we had already dropped the request (cancelled it, lost it to a choke, or
        /// reported it timed out): the picker may have handed the block to another peer.
        late: bool,
    },
    /// A piece of the info dict that this session requested (BEP 9).
    Metadata {
        /// The 16 KiB metadata piece.
        piece: u32,
        /// The info dict's length as the peer states it.
        total_size: u32,
        /// The piece's bytes.
        data: &'a [u8],
    },
}

/// What one call of [`handle_input`](super::Session::handle_input) did.
#[must_use]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Input<'a> {
    /// Bytes consumed from the front of the input (whole frames only).
    pub used: usize,
    /// The payload of the last frame consumed, if it carried one; input stops right after
    /// such a frame so the shell can store it before the buffer moves.
    pub received: Option<Received<'a>>,
}
