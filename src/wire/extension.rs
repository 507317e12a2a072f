//! Extension messages: the BEP 10 extension handshake and BEP 9 `ut_metadata` messages.
//!
//! Optional handshake keys with a wrong type or an out-of-range value are read as absent:
//! BEP 10 lets every key be missing, and refusing a peer over a field we do not need would
//! only lose a peer. Structure (not a dict, bad bencode, too many names) is an error.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{
    MessageId, WireError, EXTENDED_DICT_BYTES_MAX, EXTENDED_FRAME_BYTES_MAX, LENGTH_PREFIX_BYTES,
    METADATA_BYTES_MAX, METADATA_PIECES_MAX, METADATA_PIECE_BYTES,
};
use crate::bencode::{decode, decode_prefix, Dict, Encoder, Limits, Value};

/// Most extension names accepted in one handshake's `m` dict. Clients send 3-10
/// (libtorrent: `ut_metadata`, `ut_pex`, `lt_donthave`, `upload_only`, `ut_holepunch`…).
pub const EXTENSION_NAMES_MAX: usize = 64;

/// Longest extension name kept; longer names cannot be one we implement and are skipped.
pub const EXTENSION_NAME_BYTES_MAX: usize = 64;

/// Longest client name (`v`) kept; longer names are cut (they are only shown in logs).
pub const CLIENT_NAME_BYTES_MAX: usize = 64;

/// Appends an `extended` frame: length prefix, id 20, `ext_id`, then whatever `body` writes.
/// The prefix is patched afterwards, so the body is written once, straight into `out`.
pub fn write_extended(out: &mut Vec<u8>, ext_id: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    out.push(MessageId::Extended as u8);
    out.push(ext_id);
    body(out);
    let body_len = out.len() - start - LENGTH_PREFIX_BYTES;
    debug_assert!(body_len + LENGTH_PREFIX_BYTES <= EXTENDED_FRAME_BYTES_MAX);
    out[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(body_len as u32).to_be_bytes());
}

/// The BEP 10 extension handshake (extension id 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtensionHandshake {
    /// `m`: extension name → the id the sender wants to receive it under. 0 disables the
    /// extension (in a later handshake that updates an earlier one).
    pub m: BTreeMap<String, u8>,
    /// `v`: client name and version, cut to [`CLIENT_NAME_BYTES_MAX`].
    pub v: Option<String>,
    /// `p`: the sender's listen port.
    pub p: Option<u16>,
    /// `reqq`: how many outstanding requests the sender queues.
    pub reqq: Option<u32>,
    /// `metadata_size` (BEP 9): length of the info dict the sender can serve. Not checked
    /// against `METADATA_BYTES_MAX` here: whoever fetches metadata decides what to accept.
    pub metadata_size: Option<u64>,
    /// `yourip`: the address the sender sees for us.
    pub yourip: Option<IpAddr>,
}

impl ExtensionHandshake {
    /// Appends the bencoded dict (the payload after the extension id) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(out);
        e.begin_dict();
        e.key("m");
        e.begin_dict();
        for (name, id) in &self.m {
            e.key(name);
            e.int(i64::from(*id));
        }
        e.end();
        if let Some(size) = self.metadata_size {
            e.key("metadata_size");
            e.int(i64::try_from(size).unwrap_or(i64::MAX));
        }
        if let Some(p) = self.p {
            e.key("p");
            e.int(i64::from(p));
        }
        if let Some(reqq) = self.reqq {
            e.key("reqq");
            e.int(i64::from(reqq));
        }
        if let Some(v) = &self.v {
            e.key("v");
            e.key(v);
        }
        match self.yourip {
            Some(IpAddr::V4(ip)) => {
                e.key("yourip");
                e.bytes(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                e.key("yourip");
                e.bytes(&ip.octets());
            }
            None => {}
        }
        e.end();
    }

    /// Decodes the payload of an extension handshake.
    pub fn decode(payload: &[u8]) -> Result<ExtensionHandshake, WireError> {
        if payload.len() > EXTENDED_DICT_BYTES_MAX {
            return Err(WireError::MessageTooLong {
                id: Some(MessageId::Extended as u8),
                len: payload.len(),
                max: EXTENDED_DICT_BYTES_MAX,
            });
        }
        let root = decode(payload, Limits::MESSAGE)?;
        let d = root.as_dict().ok_or(WireError::ExtensionInvalid {
            reason: "extension handshake is not a dict",
        })?;
        let int = |key: &[u8]| d.get(key).and_then(Value::as_int);
        Ok(ExtensionHandshake {
            m: decode_names(d)?,
            v: d.get(b"v").and_then(Value::as_bytes).map(client_name),
            p: int(b"p")
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            reqq: int(b"reqq").and_then(|q| u32::try_from(q).ok()),
            metadata_size: int(b"metadata_size").and_then(|s| u64::try_from(s).ok()),
            yourip: d.get(b"yourip").and_then(Value::as_bytes).and_then(ip),
        })
    }
}

fn decode_names(d: &Dict<'_>) -> Result<BTreeMap<String, u8>, WireError> {
    let mut names = BTreeMap::new();
    let Some(m) = d.get(b"m").and_then(Value::as_dict) else {
        return Ok(names);
    };
    if m.entries.len() > EXTENSION_NAMES_MAX {
        return Err(WireError::ExtensionNamesTooMany {
            count: m.entries.len(),
            max: EXTENSION_NAMES_MAX,
        });
    }
    for (name, id) in &m.entries {
        let Ok(name) = std::str::from_utf8(name) else {
            continue;
        };
        let Some(id) = id.as_int().and_then(|i| u8::try_from(i).ok()) else {
            continue;
        };
        if name.len() <= EXTENSION_NAME_BYTES_MAX {
            names.insert(name.to_owned(), id);
        }
    }
    Ok(names)
}

fn client_name(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(CLIENT_NAME_BYTES_MAX)];
    String::from_utf8_lossy(cut).into_owned()
}

fn ip(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// A BEP 9 `ut_metadata` message: a bencoded dict, followed by raw bytes for `data`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MetadataMessage<'a> {
    /// `msg_type` 0: please send metadata piece `piece`.
    Request {
        /// Index of a 16 KiB piece of the info dict.
        piece: u32,
    },
    /// `msg_type` 1: metadata piece `piece` of an info dict of `total_size` bytes.
    Data {
        /// Index of a 16 KiB piece of the info dict.
        piece: u32,
        /// Length of the whole info dict.
        total_size: u32,
        /// The piece's bytes (16 KiB except for the last piece).
        data: &'a [u8],
    },
    /// `msg_type` 2: the sender will not send metadata piece `piece`.
    Reject {
        /// Index of a 16 KiB piece of the info dict.
        piece: u32,
    },
}

impl<'a> MetadataMessage<'a> {
    const REQUEST: i64 = 0;
    const DATA: i64 = 1;
    const REJECT: i64 = 2;

    /// Appends the payload (dict, then data for `Data`) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (msg_type, piece, data) = match *self {
            MetadataMessage::Request { piece } => (Self::REQUEST, piece, None),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => (Self::DATA, piece, Some((total_size, data))),
            MetadataMessage::Reject { piece } => (Self::REJECT, piece, None),
        };
        let mut e = Encoder::new(out);
        e.begin_dict();
        e.key("msg_type");
        e.int(msg_type);
        e.key("piece");
        e.int(i64::from(piece));
        if let Some((total_size, _)) = data {
            e.key("total_size");
            e.int(i64::from(total_size));
        }
        e.end();
        if let Some((_, bytes)) = data {
            out.extend_from_slice(bytes);
        }
    }

    /// Decodes a `ut_metadata` payload. `Ok(None)` is a `msg_type` we do not know, which
    /// BEP 9 says must be ignored.
    pub fn decode(payload: &'a [u8]) -> Result<Option<MetadataMessage<'a>>, WireError> {
        let (root, used) = decode_prefix(payload, Limits::MESSAGE)?;
        let d = root.as_dict().ok_or(WireError::ExtensionInvalid {
            reason: "ut_metadata message is not a dict",
        })?;
        let int = |key: &'static str| {
            d.get(key.as_bytes())
                .and_then(Value::as_int)
                .ok_or(WireError::ExtensionInvalid {
                    reason: "ut_metadata message lacks an integer msg_type, piece or total_size",
                })
        };
        let msg_type = int("msg_type")?;
        if !(Self::REQUEST..=Self::REJECT).contains(&msg_type) {
            return Ok(None);
        }
        let piece = in_range("piece", int("piece")?, u64::from(METADATA_PIECES_MAX) - 1)?;
        let rest = &payload[used..];
        if msg_type != Self::DATA {
            if !rest.is_empty() {
                return Err(WireError::ExtensionInvalid {
                    reason: "bytes after a ut_metadata request or reject",
                });
            }
            return Ok(Some(if msg_type == Self::REQUEST {
                MetadataMessage::Request { piece }
            } else {
                MetadataMessage::Reject { piece }
            }));
        }
        let total_size = in_range("total_size", int("total_size")?, METADATA_BYTES_MAX as u64)?;
        if rest.len() > METADATA_PIECE_BYTES {
            return Err(WireError::MetadataPieceTooLong {
                len: rest.len(),
                max: METADATA_PIECE_BYTES,
            });
        }
        Ok(Some(MetadataMessage::Data {
            piece,
            total_size,
            data: rest,
        }))
    }
}

fn in_range(field: &'static str, value: i64, max: u64) -> Result<u32, WireError> {
    u64::try_from(value)
        .ok()
        .filter(|&v| v <= max)
        .map(|v| v as u32)
        .ok_or(WireError::MetadataOutOfRange { field, value, max })
}
