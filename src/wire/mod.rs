//! The peer wire protocol codec: handshake and messages of BEP 3, the fast extension (BEP 6),
//! the extension protocol (BEP 10), metadata exchange (BEP 9) and peer exchange (BEP 11), in
//! both directions.
//!
//! Decoding works on a byte slice the caller owns, never copies a block payload, and says how
//! many bytes are missing when a frame is incomplete. Every length is checked against a
//! constant below before anything is buffered. No policy lives here: that is `peer`'s job.

mod bitfield;
mod extension;
mod handshake;
mod message;
mod pex;

pub use bitfield::Bitfield;
pub use extension::{
    write_extended, ExtensionHandshake, MetadataMessage, CLIENT_NAME_BYTES_MAX,
    EXTENSION_NAMES_MAX, EXTENSION_NAME_BYTES_MAX,
};
pub use handshake::{Handshake, Reserved, HANDSHAKE_BYTES, PROTOCOL};
pub use message::{decode_message, piece_header, Message, MessageId, RawBlock};
pub use pex::{PexFlags, PexMessage, PexPeer, PEX_ADDED_MAX, PEX_DROPPED_MAX};

use crate::bencode::{BencodeError, Limits};
use crate::metainfo::BLOCK_BYTES_MAX;

/// Bytes of the big-endian length prefix in front of every message.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Header of a `piece` message: length prefix, id, piece index, offset.
pub const PIECE_HEADER_BYTES: usize = LENGTH_PREFIX_BYTES + 1 + 4 + 4;

/// Largest `piece` frame: a 16 KiB block (the most any peer may request) and its header.
pub const PIECE_FRAME_BYTES_MAX: usize = PIECE_HEADER_BYTES + BLOCK_BYTES_MAX as usize;

/// Most pieces in any torrent we accept. A `.torrent` file's `pieces` string is at most
/// `Limits::TORRENT_FILE.string_bytes_max` (64 MiB), i.e. 3,355,443 SHA-1 hashes. A 100 GB
/// release therefore needs pieces of 32 KiB or more (at the 16 KiB `PIECE_LENGTH_MIN` it
/// would have 6.1 M pieces and a 122 MB `pieces` string, which the parser refuses).
pub const PIECE_COUNT_MAX: u32 = (Limits::TORRENT_FILE.string_bytes_max / 20) as u32;

/// Largest bitfield payload: one bit per piece of the largest torrent we accept (410 KiB).
pub const BITFIELD_BYTES_MAX: usize = PIECE_COUNT_MAX.div_ceil(8) as usize;

/// Largest `bitfield` frame.
pub const BITFIELD_FRAME_BYTES_MAX: usize = LENGTH_PREFIX_BYTES + 1 + BITFIELD_BYTES_MAX;

/// Size of one metadata piece (BEP 9 fixes it at 16 KiB; only the last may be shorter).
pub const METADATA_PIECE_BYTES: usize = 16 * 1024;

/// Largest info dict we serve or fetch over BEP 9: the same 64 MiB we accept as a whole
/// `.torrent` file, so anything we can load from a file we can also exchange as metadata.
pub const METADATA_BYTES_MAX: usize = Limits::TORRENT_FILE.total_bytes_max;

/// Number of 16 KiB pieces of the largest info dict.
pub const METADATA_PIECES_MAX: u32 = METADATA_BYTES_MAX.div_ceil(METADATA_PIECE_BYTES) as u32;

/// Room for the bencoded dict of an extension message: the whole of an extension handshake,
/// or the dict in front of a metadata piece. Real handshakes (libtorrent, Transmission,
/// qBittorrent) are 100-400 bytes; 8 KiB leaves room for clients that add many keys.
pub const EXTENDED_DICT_BYTES_MAX: usize = 8 * 1024;

/// Largest `extended` frame: prefix, id 20, extension id, dict and a 16 KiB metadata piece.
pub const EXTENDED_FRAME_BYTES_MAX: usize =
    LENGTH_PREFIX_BYTES + 2 + EXTENDED_DICT_BYTES_MAX + METADATA_PIECE_BYTES;

/// Largest frame with an id we do not know (BEP 52 hash messages, vendor extensions). They
/// are skipped, so they need not be large; a 24 KiB bound covers every known one.
pub const UNKNOWN_FRAME_BYTES_MAX: usize = EXTENDED_FRAME_BYTES_MAX;

/// Largest frame of any kind, length prefix included: the bitfield of the largest torrent
/// we accept dominates a `piece` frame (16 KiB + 13) and an extension message (24 KiB).
/// A length prefix beyond this is refused before a single payload byte is buffered, and a
/// frame beyond its own kind's bound is refused as soon as its id byte arrives.
pub const MESSAGE_BYTES_MAX: usize = max(
    BITFIELD_FRAME_BYTES_MAX,
    max(PIECE_FRAME_BYTES_MAX, EXTENDED_FRAME_BYTES_MAX),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Result of decoding from a buffer that may hold only part of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole value, which used the first `used` bytes of the buffer.
    Complete {
        /// The decoded value (may borrow from the buffer).
        value: T,
        /// Bytes consumed from the front of the buffer.
        used: usize,
    },
    /// The buffer holds a valid beginning; at least `missing` more bytes are needed.
    Incomplete {
        /// Bytes still missing (at least 1). Exact once the length prefix has arrived.
        missing: usize,
    },
}

/// What is wrong with bytes received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first bytes are not `\x13BitTorrent protocol`: another protocol, an encrypted
    /// (MSE) handshake, which we do not speak, or plain garbage.
    #[error("not a BitTorrent handshake: byte 0x{byte:02x} at offset {at}")]
    NotBitTorrent {
        /// Offset of the first mismatching byte.
        at: usize,
        /// The byte found there.
        byte: u8,
    },
    /// A length prefix beyond the limit for all messages, or for this message's kind.
    #[error("message of {len} bytes (id {id:?}) exceeds the limit of {max}")]
    MessageTooLong {
        /// The message id, when it had arrived.
        id: Option<u8>,
        /// Frame length claimed by the prefix, prefix included.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// A fixed-size message with the wrong length.
    #[error("message id {id} has a {len}-byte body; it must be {expected}")]
    WrongLength {
        /// The message id.
        id: u8,
        /// The body length found (id byte included).
        len: usize,
        /// The only valid body length.
        expected: usize,
    },
    /// A variable-size message shorter than its fixed part.
    #[error("message id {id} has a {len}-byte body; it needs at least {min}")]
    TooShort {
        /// The message id.
        id: u8,
        /// The body length found (id byte included).
        len: usize,
        /// The shortest valid body.
        min: usize,
    },
    /// A bitfield whose length does not match the torrent's piece count.
    #[error("bitfield of {len} bytes; {expected} expected for this torrent")]
    BitfieldLength {
        /// Bytes received.
        len: usize,
        /// Bytes the piece count calls for.
        expected: usize,
    },
    /// A bitfield with bits set past the last piece (BEP 3: spare bits must be zero).
    #[error("bitfield sets spare bits past the last piece")]
    BitfieldSpareBits,
    /// An extension message whose bencoded part does not decode.
    #[error("extension message is not valid bencode: {0}")]
    ExtensionBencode(#[from] BencodeError),
    /// An extension message whose bencoded part is not a dict, or lacks a required key.
    #[error("extension message: {reason}")]
    ExtensionInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// An extension handshake with more names in `m` than we keep.
    #[error("extension handshake lists {count} extensions; at most {max} accepted")]
    ExtensionNamesTooMany {
        /// Names found so far.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A metadata piece (BEP 9) larger than 16 KiB.
    #[error("metadata piece of {len} bytes exceeds {max}")]
    MetadataPieceTooLong {
        /// Bytes of data after the dict.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A metadata message naming a piece or total size beyond our limits.
    #[error("metadata {field} = {value} is outside 0..={max}")]
    MetadataOutOfRange {
        /// The offending key.
        field: &'static str,
        /// Its value.
        value: i64,
        /// The largest value accepted.
        max: u64,
    },
}

#[cfg(test)]
mod tests;
