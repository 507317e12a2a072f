//! BEP 11 peer exchange: the `ut_pex` extension message (`added`, `added.f`, `added6`,
//! `added6.f`, `dropped`, `dropped6`) in compact form, both directions.
//!
//! The BEP leaves the size of a message open; clients agreed on at most 50 added and 50
//! dropped peers per message (IPv4 and IPv6 together) and one message a minute. We decode the
//! first [`PEX_ADDED_MAX`] / [`PEX_DROPPED_MAX`] and ignore the rest rather than close a peer
//! over it; malformed optional keys read as absent, like the extension handshake's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{MessageId, WireError, EXTENDED_FRAME_BYTES_MAX};
use crate::bencode::{decode, Dict, Encoder, Limits, Value};

/// Most added peers (IPv4 and IPv6 together) taken from, or written to, one message: the
/// 50 agreed by µTorrent and Azureus developers for ut_pex and AZ_PEX.
pub const PEX_ADDED_MAX: usize = 50;

/// Most dropped peers taken from, or written to, one message (same agreement).
pub const PEX_DROPPED_MAX: usize = 50;

/// Bytes of an IPv4 contact in compact form: address and big-endian port.
const COMPACT_V4_BYTES: usize = 6;
/// Bytes of an IPv6 contact in compact form.
const COMPACT_V6_BYTES: usize = 18;

/// BEP 11 flags of an added peer (one byte each in `added.f` / `added6.f`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// 0x01: the peer prefers encrypted connections.
    pub const PREFERS_ENCRYPTION: u8 = 0x01;
    /// 0x02: the peer is a seed or upload-only.
    pub const SEED: u8 = 0x02;
    /// 0x04: the peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// 0x08: the peer supports `ut_holepunch`.
    pub const HOLEPUNCH: u8 = 0x08;
    /// 0x10: the sender connected to the peer itself, so the address is reachable.
    pub const REACHABLE: u8 = 0x10;

    /// True when every bit of `mask` is set.
    pub fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// The peer is a seed or upload-only (no use connecting to it when we seed too).
    pub fn is_seed(self) -> bool {
        self.contains(Self::SEED)
    }
    /// The sender reached the peer with an outgoing connection.
    pub fn is_reachable(self) -> bool {
        self.contains(Self::REACHABLE)
    }
}

/// A peer the sender is connected to, with what it knows about it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct PexPeer {
    /// Address and listen port.
    pub addr: SocketAddr,
    /// BEP 11 flags (0 when the sender gave none).
    pub flags: PexFlags,
}

/// One `ut_pex` message: peers the sender connected to and peers it dropped since its last
/// message to us.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// New peers, IPv4 and IPv6 mixed; at most [`PEX_ADDED_MAX`] are encoded or decoded.
    pub added: Vec<PexPeer>,
    /// Peers gone; at most [`PEX_DROPPED_MAX`] are encoded or decoded.
    pub dropped: Vec<SocketAddr>,
}

/// An address a peer could listen on: a port and a specified (not all-zero) IP.
fn usable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified()
}

fn put_compact(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn compact_v4(c: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
    SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([c[4], c[5]]))
}

fn compact_v6(c: &[u8]) -> SocketAddr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&c[..16]);
    let port = u16::from_be_bytes([c[16], c[17]]);
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(octets)), port)
}

/// The compact string under `key`, if it is a byte string of whole entries; anything else
/// reads as absent.
fn compact<'a>(d: &Dict<'a>, key: &[u8], entry_bytes: usize) -> &'a [u8] {
    d.get(key)
        .and_then(Value::as_bytes)
        .filter(|b| b.len() % entry_bytes == 0)
        .unwrap_or_default()
}

impl PexMessage {
    /// True when there is nothing to tell.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.dropped.is_empty()
    }

    /// Appends the bencoded payload (after the extension id) to `out`. Only the first
    /// [`PEX_ADDED_MAX`] added and [`PEX_DROPPED_MAX`] dropped peers are written, and only
    /// usable addresses (non-zero port and IP), so what we send always decodes whole.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let added = self
            .added
            .iter()
            .filter(|p| usable(&p.addr))
            .take(PEX_ADDED_MAX);
        let dropped = self
            .dropped
            .iter()
            .filter(|a| usable(a))
            .take(PEX_DROPPED_MAX);
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for p in added {
            let (list, flags) = if p.addr.is_ipv4() {
                (&mut a4, &mut f4)
            } else {
                (&mut a6, &mut f6)
            };
            put_compact(list, &p.addr);
            flags.push(p.flags.0);
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for a in dropped {
            put_compact(if a.is_ipv4() { &mut d4 } else { &mut d6 }, a);
        }
        // Keys in bencode (byte-wise sorted) order: "added" < "added.f" < "added6".
        let mut e = Encoder::new(out);
        e.begin_dict();
        for (key, value) in [
            ("added", &a4),
            ("added.f", &f4),
            ("added6", &a6),
            ("added6.f", &f6),
            ("dropped", &d4),
            ("dropped6", &d6),
        ] {
            e.key(key);
            e.bytes(value);
        }
        e.end();
    }

    /// Decodes a `ut_pex` payload. Past [`PEX_ADDED_MAX`] added or [`PEX_DROPPED_MAX`]
    /// dropped peers the rest is ignored (IPv4 is read first); unusable addresses (port or
    /// IP zero) are skipped; a missing or short flags string gives flags 0.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, WireError> {
        if payload.len() > EXTENDED_FRAME_BYTES_MAX {
            return Err(WireError::MessageTooLong {
                id: Some(MessageId::Extended as u8),
                len: payload.len(),
                max: EXTENDED_FRAME_BYTES_MAX,
            });
        }
        let root = decode(payload, Limits::MESSAGE)?;
        let d = root.as_dict().ok_or(WireError::ExtensionInvalid {
            reason: "ut_pex message is not a dict",
        })?;
        let mut msg = PexMessage::default();
        for (key, flags_key, size, parse) in [
            (
                &b"added"[..],
                &b"added.f"[..],
                COMPACT_V4_BYTES,
                compact_v4 as fn(&[u8]) -> _,
            ),
            (b"added6", b"added6.f", COMPACT_V6_BYTES, compact_v6),
        ] {
            let flags = d.get(flags_key).and_then(Value::as_bytes).unwrap_or(&[]);
            for (i, c) in compact(d, key, size).chunks_exact(size).enumerate() {
                if msg.added.len() == PEX_ADDED_MAX {
                    break;
                }
                let addr = parse(c);
                if usable(&addr) {
                    let flags = PexFlags(flags.get(i).copied().unwrap_or(0));
                    msg.added.push(PexPeer { addr, flags });
                }
            }
        }
        for (key, size, parse) in [
            (
                &b"dropped"[..],
                COMPACT_V4_BYTES,
                compact_v4 as fn(&[u8]) -> _,
            ),
            (b"dropped6", COMPACT_V6_BYTES, compact_v6),
        ] {
            for c in compact(d, key, size).chunks_exact(size) {
                if msg.dropped.len() == PEX_DROPPED_MAX {
                    break;
                }
                let addr = parse(c);
                if usable(&addr) {
                    msg.dropped.push(addr);
                }
            }
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn v4(a: u8, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)), port)
    }

    fn v6(a: u16, port: u16) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, a)),
            port,
        )
    }

    fn encoded(m: &PexMessage) -> Vec<u8> {
        let mut out = Vec::new();
        m.encode(&mut out);
        out
    }

    #[test]
    fn both_families_and_flags_round_trip_in_the_bep_11_layout() {
        // IPv4 and IPv6 peers land in their own keys with one flag byte each, and decode back.
        let m = PexMessage {
            added: vec![
                PexPeer {
                    addr: v4(1, 6881),
                    flags: PexFlags(PexFlags::SEED | PexFlags::REACHABLE),
                },
                PexPeer {
                    addr: v6(2, 51413),
                    flags: PexFlags(PexFlags::UTP),
                },
            ],
            dropped: vec![v4(3, 1), v6(4, 2)],
        };
        let bytes = encoded(&m);
        let want = b"d5:added6:\x0a\x00\x00\x01\x1a\xe17:added.f1:\x12\
                     6:added618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\xc8\xd5\
                     8:added6.f1:\x04\
                     7:dropped6:\x0a\x00\x00\x03\x00\x01\
                     8:dropped618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x04\x00\x02e";
        assert_eq!(bytes, want.to_vec());
        let back = PexMessage::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert!(back.added[0].flags.is_seed() && back.added[0].flags.is_reachable());
        assert!(!back.added[1].flags.is_seed());
    }

    #[test]
    fn more_than_fifty_peers_are_cut_to_the_limit_both_ways() {
        // A message with 80 added and 70 dropped decodes to the first 50 of each (IPv4 first),
        // and we never write more than 50 of each either.
        let added: Vec<PexPeer> = (0..40)
            .map(|i| v4(i, 1000))
            .chain((0..40u16).map(|i| v6(i, 2000)))
            .map(|addr| PexPeer {
                addr,
                flags: PexFlags(0),
            })
            .collect();
        let dropped: Vec<SocketAddr> = (0..70).map(|i| v4(i, 3000)).collect();
        let big = PexMessage { added, dropped };
        let bytes = encoded(&big);
        let back = PexMessage::decode(&bytes).unwrap();
        assert_eq!(back.added, big.added[..PEX_ADDED_MAX]);
        assert_eq!(back.dropped, big.dropped[..PEX_DROPPED_MAX]);

        // Someone else's oversized message: 60 IPv4 added, read up to the limit.
        let mut raw = Vec::new();
        let mut e = Encoder::new(&mut raw);
        e.begin_dict();
        e.key("added");
        let mut compact = Vec::new();
        for i in 0..60 {
            put_compact(&mut compact, &v4(i, 7));
        }
        e.bytes(&compact);
        e.end();
        let back = PexMessage::decode(&raw).unwrap();
        assert_eq!(back.added.len(), PEX_ADDED_MAX);
        assert_eq!(back.added[49].addr, v4(49, 7));
    }

    #[test]
    fn malformed_keys_read_as_absent_and_structure_errors_are_errors() {
        // A compact string of the wrong length, a flags string too short, an unusable address
        // and unknown keys are tolerated; a payload that is not a dict is an error.
        let mut raw = Vec::new();
        let mut e = Encoder::new(&mut raw);
        e.begin_dict();
        e.key("added");
        e.bytes(&[10, 0, 0, 1, 0, 80, 10, 0, 0, 2, 0, 81, 0, 0, 0, 0, 0, 82]);
        e.key("added.f");
        e.bytes(&[0x02]);
        e.key("added6");
        e.bytes(&[1, 2, 3]);
        e.key("dropped");
        e.int(5);
        e.key("zzz");
        e.int(1);
        e.end();
        let m = PexMessage::decode(&raw).unwrap();
        assert_eq!(
            m.added,
            vec![
                PexPeer {
                    addr: v4(1, 80),
                    flags: PexFlags(0x02)
                },
                PexPeer {
                    addr: v4(2, 81),
                    flags: PexFlags(0)
                },
            ]
        );
        assert!(m.dropped.is_empty());
        assert!(matches!(
            PexMessage::decode(b"li1ee"),
            Err(WireError::ExtensionInvalid { .. })
        ));
        assert!(matches!(
            PexMessage::decode(b"d5:added"),
            Err(WireError::ExtensionBencode(_))
        ));
        assert!(PexMessage::decode(b"de").unwrap().is_empty());
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    proptest! {
        #[test]
        fn decode_of_encode_keeps_usable_peers_up_to_the_limits(
            added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..70),
            dropped in proptest::collection::vec(arb_addr(), 0..70),
        ) {
            // decode(encode(m)) is m with unusable addresses removed, each list cut to its
            // limit, and IPv4 entries ahead of IPv6 ones (their order on the wire).
            let m = PexMessage {
                added: added.iter().map(|&(addr, f)| PexPeer { addr, flags: PexFlags(f) }).collect(),
                dropped: dropped.clone(),
            };
            let back = PexMessage::decode(&encoded(&m)).unwrap();
            let mut want_added: Vec<PexPeer> =
                m.added.iter().copied().filter(|p| usable(&p.addr)).take(PEX_ADDED_MAX).collect();
            want_added.sort_by_key(|p| p.addr.is_ipv6());
            let mut want_dropped: Vec<SocketAddr> =
                dropped.into_iter().filter(usable).take(PEX_DROPPED_MAX).collect();
            want_dropped.sort_by_key(|a| a.is_ipv6());
            prop_assert_eq!(back.added, want_added);
            prop_assert_eq!(back.dropped, want_dropped);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_stay_within_limits(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        ) {
            // Whatever the payload, decode returns Ok or Err and never more than the limits.
            if let Ok(m) = PexMessage::decode(&bytes) {
                prop_assert!(m.added.len() <= PEX_ADDED_MAX);
                prop_assert!(m.dropped.len() <= PEX_DROPPED_MAX);
            }
        }

        #[test]
        fn arbitrary_compact_strings_decode_within_limits(
            a4 in proptest::collection::vec(any::<u8>(), 0..700),
            f4 in proptest::collection::vec(any::<u8>(), 0..120),
            a6 in proptest::collection::vec(any::<u8>(), 0..1000),
        ) {
            // Well-formed dicts with random compact strings: every decoded address is usable
            // and the flags are the sender's byte at the peer's position.
            let mut raw = Vec::new();
            let mut e = Encoder::new(&mut raw);
            e.begin_dict();
            e.key("added");
            e.bytes(&a4);
            e.key("added.f");
            e.bytes(&f4);
            e.key("added6");
            e.bytes(&a6);
            e.end();
            let m = PexMessage::decode(&raw).unwrap();
            prop_assert!(m.added.len() <= PEX_ADDED_MAX);
            for p in &m.added {
                prop_assert!(usable(&p.addr));
            }
            if a4.len() % 6 == 0 {
                let want: Vec<PexPeer> = a4
                    .chunks_exact(6)
                    .enumerate()
                    .map(|(i, c)| PexPeer {
                        addr: compact_v4(c),
                        flags: PexFlags(f4.get(i).copied().unwrap_or(0)),
                    })
                    .filter(|p| usable(&p.addr))
                    .take(PEX_ADDED_MAX)
                    .collect();
                prop_assert_eq!(&m.added[..want.len()], &want[..]);
            }
        }
    }
}
