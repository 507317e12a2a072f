//! Length-prefixed messages (BEP 3, BEP 6, BEP 10 framing): decode from a borrowed buffer,
//! encode into a caller's `Vec`.
//!
//! Unknown message ids are decoded as [`Message::Unknown`] and skipped by the session rather
//! than treated as errors. BEP 3 frames every message with its length, so skipping is always
//! safe; ids are only sent after a feature was negotiated (reserved bits, BEP 10), and
//! clients that set bits we do not read (BEP 52 hash messages 21-23, vendor extensions) may
//! still send them. Their size is bounded by [`UNKNOWN_FRAME_BYTES_MAX`].

use super::{
    Decoded, WireError, BITFIELD_BYTES_MAX, EXTENDED_FRAME_BYTES_MAX, LENGTH_PREFIX_BYTES,
    MESSAGE_BYTES_MAX, PIECE_FRAME_BYTES_MAX, PIECE_HEADER_BYTES, UNKNOWN_FRAME_BYTES_MAX,
};
use crate::metainfo::BlockRef;

/// Message ids we know (BEP 3, BEP 5 `port`, BEP 6, BEP 10).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageId {
    /// BEP 3 `choke`.
    Choke = 0,
    /// BEP 3 `unchoke`.
    Unchoke = 1,
    /// BEP 3 `interested`.
    Interested = 2,
    /// BEP 3 `not interested`.
    NotInterested = 3,
    /// BEP 3 `have`.
    Have = 4,
    /// BEP 3 `bitfield`.
    Bitfield = 5,
    /// BEP 3 `request`.
    Request = 6,
    /// BEP 3 `piece`.
    Piece = 7,
    /// BEP 3 `cancel`.
    Cancel = 8,
    /// BEP 5 `port` (the sender's DHT port).
    Port = 9,
    /// BEP 6 `suggest piece`.
    Suggest = 13,
    /// BEP 6 `have all`.
    HaveAll = 14,
    /// BEP 6 `have none`.
    HaveNone = 15,
    /// BEP 6 `reject request`.
    Reject = 16,
    /// BEP 6 `allowed fast`.
    AllowedFast = 17,
    /// BEP 10 `extended`.
    Extended = 20,
}

impl MessageId {
    /// The id for a byte, if we know it.
    pub fn from_u8(id: u8) -> Option<MessageId> {
        use MessageId::*;
        Some(match id {
            0 => Choke,
            1 => Unchoke,
            2 => Interested,
            3 => NotInterested,
            4 => Have,
            5 => Bitfield,
            6 => Request,
            7 => Piece,
            8 => Cancel,
            9 => Port,
            13 => Suggest,
            14 => HaveAll,
            15 => HaveNone,
            16 => Reject,
            17 => AllowedFast,
            20 => Extended,
            _ => return None,
        })
    }

    /// Valid body lengths (id byte included) as `(min, max)`.
    fn body_len_range(self) -> (usize, usize) {
        use MessageId::*;
        let prefix = LENGTH_PREFIX_BYTES;
        match self {
            Choke | Unchoke | Interested | NotInterested | HaveAll | HaveNone => (1, 1),
            Have | Suggest | AllowedFast => (5, 5),
            Request | Cancel | Reject => (13, 13),
            Port => (3, 3),
            Bitfield => (1, 1 + BITFIELD_BYTES_MAX),
            Piece => (9, PIECE_FRAME_BYTES_MAX - prefix),
            Extended => (2, EXTENDED_FRAME_BYTES_MAX - prefix),
        }
    }
}

/// A block as named on the wire, not yet checked against a torrent (see `Layout::block`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawBlock {
    /// Piece index.
    pub piece: u32,
    /// Byte offset inside the piece.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

impl From<BlockRef> for RawBlock {
    fn from(b: BlockRef) -> RawBlock {
        RawBlock {
            piece: b.piece.get(),
            offset: b.offset,
            len: b.len,
        }
    }
}

/// One peer wire message. Payloads borrow from the decoded buffer.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A zero-length frame.
    KeepAlive,
    /// We will not serve your requests.
    Choke,
    /// We will serve your requests.
    Unchoke,
    /// We want pieces you have.
    Interested,
    /// We want nothing from you.
    NotInterested,
    /// We completed and verified a piece.
    Have {
        /// The piece.
        piece: u32,
    },
    /// Our pieces, one bit each, high bit of byte 0 first.
    Bitfield(&'a [u8]),
    /// Please send this block.
    Request(RawBlock),
    /// A block of data.
    Piece {
        /// The piece.
        piece: u32,
        /// Byte offset inside the piece.
        offset: u32,
        /// The block's bytes.
        data: &'a [u8],
    },
    /// Forget an earlier request.
    Cancel(RawBlock),
    /// Our DHT port (BEP 5).
    Port(u16),
    /// You might want this piece (BEP 6).
    Suggest {
        /// The piece.
        piece: u32,
    },
    /// We have every piece (BEP 6).
    HaveAll,
    /// We have no piece (BEP 6).
    HaveNone,
    /// We will not serve this request (BEP 6).
    Reject(RawBlock),
    /// You may request this piece even while choked (BEP 6).
    AllowedFast {
        /// The piece.
        piece: u32,
    },
    /// An extension message (BEP 10): extension id 0 is the extension handshake.
    Extended {
        /// The extension id, as assigned by the receiver's handshake.
        id: u8,
        /// The rest of the message.
        payload: &'a [u8],
    },
    /// A message whose id we do not know. Only for ids [`MessageId::from_u8`] rejects.
    Unknown {
        /// The id byte.
        id: u8,
        /// The rest of the message.
        payload: &'a [u8],
    },
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn raw_block(body: &[u8]) -> RawBlock {
    RawBlock {
        piece: be32(&body[0..4]),
        offset: be32(&body[4..8]),
        len: be32(&body[8..12]),
    }
}

/// Checks a body length against what the id allows, as soon as the id byte is known.
fn check_body_len(id: u8, body_len: usize) -> Result<(), WireError> {
    let (min, max) = match MessageId::from_u8(id) {
        Some(known) => known.body_len_range(),
        None => (1, UNKNOWN_FRAME_BYTES_MAX - LENGTH_PREFIX_BYTES),
    };
    if min == max && body_len != min {
        return Err(WireError::WrongLength {
            id,
            len: body_len,
            expected: min,
        });
    }
    if body_len < min {
        return Err(WireError::TooShort {
            id,
            len: body_len,
            min,
        });
    }
    if body_len > max {
        return Err(WireError::MessageTooLong {
            id: Some(id),
            len: body_len + LENGTH_PREFIX_BYTES,
            max: max + LENGTH_PREFIX_BYTES,
        });
    }
    Ok(())
}

/// Decodes one message from the front of `buf` without copying its payload.
///
/// A length prefix beyond [`MESSAGE_BYTES_MAX`] is an error with only 4 bytes buffered, and a
/// length wrong for the message's kind is an error with 5; so a hostile peer can never make
/// the caller buffer more than the largest valid frame of the kind it announced.
pub fn decode_message(buf: &[u8]) -> Result<Decoded<Message<'_>>, WireError> {
    if buf.len() < LENGTH_PREFIX_BYTES {
        return Ok(Decoded::Incomplete {
            missing: LENGTH_PREFIX_BYTES - buf.len(),
        });
    }
    let body_len = be32(buf) as usize;
    if body_len == 0 {
        return Ok(Decoded::Complete {
            value: Message::KeepAlive,
            used: LENGTH_PREFIX_BYTES,
        });
    }
    if body_len > MESSAGE_BYTES_MAX - LENGTH_PREFIX_BYTES {
        return Err(WireError::MessageTooLong {
            id: buf.get(LENGTH_PREFIX_BYTES).copied(),
            len: body_len.saturating_add(LENGTH_PREFIX_BYTES),
            max: MESSAGE_BYTES_MAX,
        });
    }
    let frame_len = LENGTH_PREFIX_BYTES + body_len;
    let Some(&id) = buf.get(LENGTH_PREFIX_BYTES) else {
        return Ok(Decoded::Incomplete {
            missing: frame_len - buf.len(),
        });
    };
    check_body_len(id, body_len)?;
    if buf.len() < frame_len {
        return Ok(Decoded::Incomplete {
            missing: frame_len - buf.len(),
        });
    }
    let body = &buf[LENGTH_PREFIX_BYTES + 1..frame_len];
    Ok(Decoded::Complete {
        value: parse_body(id, body),
        used: frame_len,
    })
}

/// Builds the message from a body whose length `check_body_len` accepted for `id`.
fn parse_body(id: u8, body: &[u8]) -> Message<'_> {
    let Some(known) = MessageId::from_u8(id) else {
        return Message::Unknown { id, payload: body };
    };
    match known {
        MessageId::Choke => Message::Choke,
        MessageId::Unchoke => Message::Unchoke,
        MessageId::Interested => Message::Interested,
        MessageId::NotInterested => Message::NotInterested,
        MessageId::Have => Message::Have { piece: be32(body) },
        MessageId::Bitfield => Message::Bitfield(body),
        MessageId::Request => Message::Request(raw_block(body)),
        MessageId::Piece => Message::Piece {
            piece: be32(&body[0..4]),
            offset: be32(&body[4..8]),
            data: &body[8..],
        },
        MessageId::Cancel => Message::Cancel(raw_block(body)),
        MessageId::Port => Message::Port(u16::from_be_bytes([body[0], body[1]])),
        MessageId::Suggest => Message::Suggest { piece: be32(body) },
        MessageId::HaveAll => Message::HaveAll,
        MessageId::HaveNone => Message::HaveNone,
        MessageId::Reject => Message::Reject(raw_block(body)),
        MessageId::AllowedFast => Message::AllowedFast { piece: be32(body) },
        MessageId::Extended => Message::Extended {
            id: body[0],
            payload: &body[1..],
        },
    }
}

/// The 13-byte header of a `piece` message carrying `len` bytes at `offset` of `piece`.
/// The runtime sends it followed by the block read from disk, so the data is never copied
/// into a message buffer.
pub fn piece_header(piece: u32, offset: u32, len: u32) -> [u8; PIECE_HEADER_BYTES] {
    let mut h = [0u8; PIECE_HEADER_BYTES];
    h[0..4].copy_from_slice(&(9 + len).to_be_bytes());
    h[4] = MessageId::Piece as u8;
    h[5..9].copy_from_slice(&piece.to_be_bytes());
    h[9..13].copy_from_slice(&offset.to_be_bytes());
    h
}

impl Message<'_> {
    /// The id byte, or `None` for a keep-alive.
    pub fn id(&self) -> Option<u8> {
        use MessageId as I;
        let known = match self {
            Message::KeepAlive => return None,
            Message::Unknown { id, .. } => return Some(*id),
            Message::Choke => I::Choke,
            Message::Unchoke => I::Unchoke,
            Message::Interested => I::Interested,
            Message::NotInterested => I::NotInterested,
            Message::Have { .. } => I::Have,
            Message::Bitfield(_) => I::Bitfield,
            Message::Request(_) => I::Request,
            Message::Piece { .. } => I::Piece,
            Message::Cancel(_) => I::Cancel,
            Message::Port(_) => I::Port,
            Message::Suggest { .. } => I::Suggest,
            Message::HaveAll => I::HaveAll,
            Message::HaveNone => I::HaveNone,
            Message::Reject(_) => I::Reject,
            Message::AllowedFast { .. } => I::AllowedFast,
            Message::Extended { .. } => I::Extended,
        };
        Some(known as u8)
    }

    /// Bytes after the id byte.
    fn payload_len(&self) -> usize {
        match self {
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 0,
            Message::Have { .. } | Message::Suggest { .. } | Message::AllowedFast { .. } => 4,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 12,
            Message::Port(_) => 2,
            Message::Bitfield(b) => b.len(),
            Message::Piece { data, .. } => 8 + data.len(),
            Message::Extended { payload, .. } => 1 + payload.len(),
            Message::Unknown { payload, .. } => payload.len(),
        }
    }

    /// Bytes this message takes on the wire, length prefix included.
    pub fn frame_len(&self) -> usize {
        match self {
            Message::KeepAlive => LENGTH_PREFIX_BYTES,
            _ => LENGTH_PREFIX_BYTES + 1 + self.payload_len(),
        }
    }

    /// Appends the whole frame to `out`. Messages we build stay within the limits the
    /// decoder enforces; that is checked in debug builds.
    pub fn encode(&self, out: &mut Vec<u8>) {
        debug_assert!(self.frame_len() <= MESSAGE_BYTES_MAX, "{self:?} too long");
        let body_len = self.frame_len() - LENGTH_PREFIX_BYTES;
        out.extend_from_slice(&(body_len as u32).to_be_bytes());
        let Some(id) = self.id() else {
            return;
        };
        out.push(id);
        match *self {
            Message::Have { piece }
            | Message::Suggest { piece }
            | Message::AllowedFast { piece } => out.extend_from_slice(&piece.to_be_bytes()),
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                out.extend_from_slice(&b.piece.to_be_bytes());
                out.extend_from_slice(&b.offset.to_be_bytes());
                out.extend_from_slice(&b.len.to_be_bytes());
            }
            Message::Port(port) => out.extend_from_slice(&port.to_be_bytes()),
            Message::Bitfield(bits) => out.extend_from_slice(bits),
            Message::Piece {
                piece,
                offset,
                data,
            } => {
                out.extend_from_slice(&piece.to_be_bytes());
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
            }
            Message::Extended { id, payload } => {
                out.push(id);
                out.extend_from_slice(payload);
            }
            Message::Unknown { payload, .. } => out.extend_from_slice(payload),
            Message::KeepAlive
            | Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => {}
        }
    }
}
