//! The 68-byte BitTorrent handshake (BEP 3) and its reserved bits (BEP 4 registry).

use super::{Decoded, WireError};
use crate::metainfo::{InfoHash, PeerId};

/// The protocol header: the length byte 19 followed by the protocol name.
pub const PROTOCOL: &[u8; 20] = b"\x13BitTorrent protocol";

/// Bytes in a handshake: header (20), reserved (8), info-hash (20), peer id (20).
pub const HANDSHAKE_BYTES: usize = 68;

/// The 8 reserved bytes of a handshake. Bits we do not know are kept as received, so a
/// decoded handshake re-encodes to the same bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Reserved(pub [u8; 8]);

impl Reserved {
    /// BEP 10 extension protocol: `reserved[5] & 0x10`.
    const EXTENSION_PROTOCOL: (usize, u8) = (5, 0x10);
    /// BEP 6 fast extension: `reserved[7] & 0x04`.
    const FAST: (usize, u8) = (7, 0x04);
    /// BEP 5 DHT: `reserved[7] & 0x01`.
    const DHT: (usize, u8) = (7, 0x01);

    /// What we send: fast extension and extension protocol.
    pub const OURS: Reserved = Reserved([0, 0, 0, 0, 0, 0x10, 0, 0x04]);

    fn bit(self, (byte, mask): (usize, u8)) -> bool {
        self.0[byte] & mask != 0
    }

    fn with_bit(mut self, (byte, mask): (usize, u8), on: bool) -> Reserved {
        if on {
            self.0[byte] |= mask;
        } else {
            self.0[byte] &= !mask;
        }
        self
    }

    /// The sender supports the fast extension (BEP 6).
    pub fn fast(self) -> bool {
        self.bit(Self::FAST)
    }

    /// The sender supports the extension protocol (BEP 10).
    pub fn extension_protocol(self) -> bool {
        self.bit(Self::EXTENSION_PROTOCOL)
    }

    /// The sender runs a DHT node (BEP 5) and may send a `port` message.
    pub fn dht(self) -> bool {
        self.bit(Self::DHT)
    }

    /// A copy with the fast bit set or cleared.
    pub fn with_fast(self, on: bool) -> Reserved {
        self.with_bit(Self::FAST, on)
    }

    /// A copy with the extension-protocol bit set or cleared.
    pub fn with_extension_protocol(self, on: bool) -> Reserved {
        self.with_bit(Self::EXTENSION_PROTOCOL, on)
    }

    /// A copy with the DHT bit set or cleared.
    pub fn with_dht(self, on: bool) -> Reserved {
        self.with_bit(Self::DHT, on)
    }
}

/// A BitTorrent handshake.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// Feature bits.
    pub reserved: Reserved,
    /// The torrent the connection is about.
    pub info_hash: InfoHash,
    /// The sender's peer id.
    pub peer_id: PeerId,
}

impl Handshake {
    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; HANDSHAKE_BYTES] {
        let mut out = [0u8; HANDSHAKE_BYTES];
        out[..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved.0);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decodes a handshake from the front of `buf`. The protocol header is checked as far as
    /// it has arrived, so a non-BitTorrent peer is refused on its first byte, not its 68th.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Handshake>, WireError> {
        let header_seen = buf.len().min(PROTOCOL.len());
        if let Some(at) = (0..header_seen).find(|&i| buf[i] != PROTOCOL[i]) {
            return Err(WireError::NotBitTorrent { at, byte: buf[at] });
        }
        if buf.len() < HANDSHAKE_BYTES {
            return Ok(Decoded::Incomplete {
                missing: HANDSHAKE_BYTES - buf.len(),
            });
        }
        let mut reserved = [0u8; 8];
        reserved.copy_from_slice(&buf[20..28]);
        let mut info_hash = [0u8; 20];
        info_hash.copy_from_slice(&buf[28..48]);
        let mut peer_id = [0u8; 20];
        peer_id.copy_from_slice(&buf[48..68]);
        Ok(Decoded::Complete {
            value: Handshake {
                reserved: Reserved(reserved),
                info_hash: InfoHash(info_hash),
                peer_id: PeerId(peer_id),
            },
            used: HANDSHAKE_BYTES,
        })
    }
}
