//! One peer connection as a sans-IO state machine ([`Session`]): bytes and time in, control
//! bytes, blocks to serve, events and timers out. Owns the connection's protocol state
//! (handshake, choke and interest flags, the peer's pieces and extensions, its request
//! queue, rate and timeouts); torrent-wide decisions (who to unchoke) belong to `torrent`.
//! Implements the seeding side of BEP 3, BEP 6, BEP 10 and BEP 9; downloading comes later.

mod rate;
mod receive;
mod session;
mod torrent;

pub use rate::{RateMeter, RATE_TIME_CONSTANT};
pub use session::{Direction, Event, LocalConfig, Session};
pub use torrent::SeedTorrent;

use std::time::Duration;

use crate::metainfo::InfoHash;
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

/// `ut_metadata` requests answered but not yet written out. A magnet client asks for a few
/// pieces at a time; 64 × 16 KiB bounds what one peer can make us buffer to 1 MiB.
pub const METADATA_REQUESTS_QUEUED_MAX: usize = 64;

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

/// Our client name and version for the BEP 10 `v` key.
pub const CLIENT_NAME: &str = concat!(
    "ringseed ",
    env!("CARGO_PKG_VERSION_MAJOR"),
    ".",
    env!("CARGO_PKG_VERSION_MINOR")
);

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
    /// A `have` for a piece the torrent does not have.
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
