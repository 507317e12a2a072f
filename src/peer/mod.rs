//! One peer connection as a sans-IO state machine ([`Session`]): bytes and time in, control
//! bytes, blocks to serve, received blocks, events and timers out. Owns the connection's
//! protocol state in both directions (handshake, choke and interest flags, both sides'
//! pieces and extensions, both request queues, rates and timeouts); torrent-wide decisions
//! (which block to request, who to unchoke, whom to ban) belong to `torrent`. Implements
//! BEP 3, BEP 6, BEP 10, BEP 9 (serving and fetching metadata) and BEP 11 (PEX).

mod download;
mod event;
mod extension;
mod getters;
mod metadata;
mod pieces;
mod rate;
mod receive;
mod session;
mod torrent;

pub use event::{DropReason, Event, Input, Received};
pub use metadata::{MetadataAssembler, MetadataProgress, METADATA_CONTRIBUTIONS_MAX};
pub use pieces::PieceSet;
pub use rate::{RateMeter, RATE_TIME_CONSTANT};
pub use session::{Direction, LocalConfig, Session};
pub use torrent::TorrentShared;

use std::time::Duration;

use crate::metainfo::InfoHash;
use crate::time::Instant;
use crate::wire::{RawBlock, WireError};

/// Outstanding block requests we queue per peer, and the `reqq` we advertise (BEP 10).
/// 250 blocks is 4 MiB in flight, enough to fill a 1 Gbit/s path with 30 ms of RTT
/// (libtorrent's default was 250, now 500); more is a broken or hostile peer.
pub const PEER_REQUESTS_QUEUED_MAX: usize = 250;

/// Requests past a full queue that a fast-extension peer may send (each gets a reject)
/// before we close. A peer that read our `reqq` never overflows at all.
pub const PEER_REQUESTS_OVERFLOW_MAX: u32 = 250;

/// Requests for blocks outside the torrent, larger than 16 KiB or of pieces we do not have,
/// tolerated per connection before we close. A correct peer sends none: it knows the
/// layout and our bitfield.
pub const PEER_REQUESTS_INVALID_MAX: u32 = 16;

/// Requests tolerated while we choke the peer, counted from our last choke, before we close.
/// Requests that crossed our choke are a normal race, but a peer can have at most its
/// queue (our `reqq`) in flight plus the overflow we reject: more is a peer that ignores
/// choking, and each of its requests would cost us a `reject` to send.
pub const PEER_REQUESTS_WHILE_CHOKED_MAX: u32 =
    PEER_REQUESTS_QUEUED_MAX as u32 + PEER_REQUESTS_OVERFLOW_MAX;

/// Most block requests we keep outstanding to one peer, whatever its `reqq` says: the same
/// 4 MiB in flight as [`PEER_REQUESTS_QUEUED_MAX`]. The picker decides how many it actually
/// wants in flight (from the peer's rate); this is the hard ceiling.
pub const REQUESTS_OUTSTANDING_MAX: usize = 250;

/// Requests we dropped (cancelled, or lost to a choke) whose late answers we still
/// recognise, so a block that crossed our `cancel` is "late", not "unrequested".
pub const REQUESTS_ABANDONED_REMEMBERED_MAX: usize = REQUESTS_OUTSTANDING_MAX;

/// Blocks we never asked for (or no longer remember asking for) tolerated per connection
/// before we close. Each one is up to 16 KiB of bandwidth the peer chose to waste; late
/// answers to cancelled requests are remembered and not counted.
pub const PEER_BLOCKS_UNREQUESTED_MAX: u32 = 64;

/// A peer with requests outstanding that delivers no block for this long is stalled: its
/// waiting requests are reported as timed out so the picker can hand them to other peers
/// (libtorrent's `request_timeout` is 60 s too).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A waiting request that this many later requests were answered before is taken as
/// dropped: the peer passed over it and will not send it. Peers that claim pieces they lack
/// do this. Honest ones answer roughly in order, but libtorrent's disk threads reorder by
/// dozens of blocks (with 4, a libtorrent seeder had most requests dropped, the late
/// answers overflowed what we remember and the connection closed). A pipeline too shallow
/// to show this many skips relies on endgame and the request timeout instead.
pub const REQUEST_SKIPS_MAX: u16 = 64;

/// `allowed fast` pieces (BEP 6) we remember per peer. BEP 6 suggests sets of 10;
/// libtorrent sends up to its `allowed_fast_set_size` (5); more are ignored.
pub const ALLOWED_FAST_MAX: usize = 32;

/// Events the session queues before `handle_input` stops reading frames and waits for the
/// shell to drain them. One frame adds at most [`REQUESTS_OUTSTANDING_MAX`] events (a choke
/// dropping every request) and a timeout as many plus the metadata requests, so the queue
/// never exceeds this plus those.
pub const EVENTS_BACKLOG_MAX: usize = 64;

/// `ut_metadata` requests answered but not yet written out. A magnet client asks for a few
/// pieces at a time; 64 × 16 KiB bounds what one peer can make us buffer to 1 MiB.
pub const METADATA_REQUESTS_QUEUED_MAX: usize = 64;

/// `ut_metadata` requests we keep outstanding to one peer: four 16 KiB pieces in flight
/// fetch a typical (< 100 KiB) info dict in two round trips without leaning on one peer.
pub const METADATA_REQUESTS_OUTSTANDING_MAX: usize = 4;

/// A metadata request unanswered for this long is dropped and reported, so the assembler
/// asks another peer. Shorter than [`REQUEST_TIMEOUT`]: the piece is small and a magnet
/// download can do nothing until it arrives.
pub const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// BEP 11 / client convention: at most one PEX message a minute in each direction.
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);

/// PEX messages arriving sooner than this after the last one we accepted are ignored. Less
/// than [`PEX_INTERVAL`] because clients send "just under a minute" apart (the convention
/// asks receivers for that tolerance).
pub const PEX_RECEIVE_INTERVAL_MIN: Duration = Duration::from_secs(45);

/// Time from connection to an attached, handshaken session (libtorrent uses 10 s too).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A keep-alive goes out after this long without sending anything (BEP 3: "generally
/// sent once every two minutes").
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(120);

/// A peer that sends nothing for this long is gone: two keep-alive intervals, so one lost
/// or late keep-alive is not fatal.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(240);

/// The id we ask peers to use for `ut_metadata` messages to us (libtorrent uses 2 as well).
pub const UT_METADATA_ID: u8 = 2;

/// The id we ask peers to use for `ut_pex` messages to us (libtorrent uses 1 as well).
pub const UT_PEX_ID: u8 = 1;

/// Our client name and version for the BEP 10 `v` key.
pub const CLIENT_NAME: &str = concat!(
    "ringseed ",
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);

/// Why a command was not carried out. The connection is fine; the caller (picker, PEX
/// scheduler, metadata assembler) keeps whatever it wanted to hand out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Handshakes are not done, or no torrent is attached.
    #[error("the session is not active")]
    NotActive,
    /// The command needs the info dict, which this (magnet) session does not have yet.
    #[error("the torrent's metadata is not known yet")]
    NoMetadata,
    /// The command only makes sense before the metadata is known.
    #[error("the torrent's metadata is already known")]
    HaveMetadata,
    /// The peer chokes us and the piece is not in its `allowed fast` set.
    #[error("the peer is choking us")]
    PeerChoking,
    /// The peer has not told us it has the piece.
    #[error("the peer does not have piece {piece}")]
    PeerLacksPiece {
        /// The piece.
        piece: u32,
    },
    /// As many requests are outstanding as the peer queues (`reqq`) or we allow.
    #[error("{outstanding} requests outstanding, limit {limit}")]
    NoRequestSlot {
        /// Requests outstanding.
        outstanding: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The same block (or metadata piece) is already requested from this peer.
    #[error("already requested")]
    AlreadyRequested,
    /// The metadata piece is past the end of the info dict the peer offered.
    #[error("metadata piece {piece} is outside the peer's {pieces}-piece info dict")]
    MetadataPieceOutOfRange {
        /// The piece asked for.
        piece: u32,
        /// Pieces of the peer's info dict.
        pieces: u32,
    },
    /// The peer did not announce the extension (BEP 10 `m` key) the command needs.
    #[error("the peer does not support {extension}")]
    ExtensionUnsupported {
        /// The extension's name.
        extension: &'static str,
    },
    /// BEP 27: peer exchange is off for private torrents.
    #[error("the torrent is private")]
    Private,
    /// BEP 11 allows one PEX message a minute; the next may go at `ready_at`.
    #[error("too soon for another PEX message")]
    TooSoon {
        /// When the next message may be sent.
        ready_at: Instant,
    },
}

/// Why a connection must be closed. The shell closes that one connection and logs the
/// reason; nothing else is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Bytes that do not parse: garbage instead of a handshake, an oversized or
    /// wrongly sized message, a bad bitfield, a malformed extension message.
    #[error("protocol violation: {0}")]
    Wire(#[from] WireError),
    /// The peer answered our outbound connection for another torrent (or the shell attached
    /// a torrent other than the one the peer asked for).
    #[error("peer handshake names torrent {found}, expected {expected}")]
    InfoHashMismatch {
        /// The torrent we wanted.
        expected: InfoHash,
        /// The torrent the peer named.
        found: InfoHash,
    },
    /// The peer id in the handshake is ours: we dialled our own listening socket.
    #[error("connected to ourselves")]
    ConnectedToSelf,
    /// A `have` for a piece the torrent does not have (before we know the metadata,
    /// `count` is the largest piece count we accept and the check is repeated later).
    #[error("have for piece {piece}; the torrent has {count} pieces")]
    HaveOutOfRange {
        /// The piece named.
        piece: u32,
        /// Pieces in the torrent.
        count: u32,
    },
    /// More outstanding requests than we queue (and, with the fast extension, more than
    /// [`PEER_REQUESTS_OVERFLOW_MAX`] of them rejected).
    #[error("request flood: {queued} requests queued, limit {max}")]
    RequestFlood {
        /// Requests queued when the flood was detected.
        queued: usize,
        /// The queue limit.
        max: usize,
    },
    /// More requests while choked than [`PEER_REQUESTS_WHILE_CHOKED_MAX`].
    #[error("{count} requests while choked, limit {max}")]
    RequestsWhileChoked {
        /// Requests received since our last choke.
        count: u32,
        /// The limit.
        max: u32,
    },
    /// Too many requests for blocks that do not exist or that we do not have.
    #[error("{count} invalid requests (last {last:?}), limit {max}")]
    InvalidRequests {
        /// Invalid requests received.
        count: u32,
        /// The limit.
        max: u32,
        /// The last offending request.
        last: RawBlock,
    },
    /// More unanswered `ut_metadata` requests than we buffer.
    #[error("metadata request flood: more than {max} requests pending")]
    MetadataRequestFlood {
        /// The limit.
        max: usize,
    },
    /// More blocks we did not request than [`PEER_BLOCKS_UNREQUESTED_MAX`].
    #[error("{count} unrequested blocks (last {last:?}), limit {max}")]
    UnrequestedBlocks {
        /// Unrequested blocks received.
        count: u32,
        /// The limit.
        max: u32,
        /// The last one, as named on the wire.
        last: RawBlock,
    },
    /// A well-formed message that makes no sense in this state.
    #[error("unexpected {what}: {why}")]
    UnexpectedMessage {
        /// The message.
        what: &'static str,
        /// Why it is refused.
        why: &'static str,
    },
    /// No complete, attached handshake within [`HANDSHAKE_TIMEOUT`].
    #[error("no handshake after {after:?}")]
    HandshakeTimeout {
        /// The timeout.
        after: Duration,
    },
    /// Nothing received for [`PEER_IDLE_TIMEOUT`].
    #[error("peer silent for {idle:?}")]
    IdleTimeout {
        /// Time since the last byte received.
        idle: Duration,
    },
}

#[cfg(test)]
mod tests;
