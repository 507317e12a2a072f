//! Unit and property tests for the wire codec.

use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::metainfo::{InfoHash, Layout, PeerId};

fn complete<T: std::fmt::Debug>(d: Decoded<T>) -> (T, usize) {
    match d {
        Decoded::Complete { value, used } => (value, used),
        other => panic!("expected a complete value, got {other:?}"),
    }
}

fn encoded(m: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    m.encode(&mut out);
    out
}

#[test]
fn handshake_round_trips_and_keeps_unknown_reserved_bits() {
    // Feature bits read correctly, and bits we do not know survive decode and re-encode.
    let h = Handshake {
        reserved: Reserved([0x80, 0, 0, 0, 0, 0x10, 0, 0x05]),
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId(*b"-XX0001-abcdefghijkl"),
    };
    let bytes = h.encode();
    assert_eq!(&bytes[..20], PROTOCOL);
    let (back, used) = complete(Handshake::decode(&bytes).unwrap());
    assert_eq!((back, used), (h, HANDSHAKE_BYTES));
    assert!(back.reserved.fast() && back.reserved.extension_protocol() && back.reserved.dht());
    assert_eq!(back.reserved.0[0], 0x80);
    let ours = Reserved::OURS;
    assert!(ours.fast() && ours.extension_protocol() && !ours.dht());
    assert_eq!(
        ours.with_fast(false).with_dht(true).0,
        [0, 0, 0, 0, 0, 0x10, 0, 0x01]
    );
}

#[test]
fn handshake_garbage_is_refused_at_the_first_wrong_byte() {
    // An HTTP request or an encrypted handshake is refused without waiting for 68 bytes.
    assert_eq!(
        Handshake::decode(b"GET / HTTP/1.1"),
        Err(WireError::NotBitTorrent { at: 0, byte: b'G' })
    );
    assert_eq!(
        Handshake::decode(b"\x13BitTorrent protocoX"),
        Err(WireError::NotBitTorrent { at: 19, byte: b'X' })
    );
    assert_eq!(
        Handshake::decode(b"\x13BitTor"),
        Ok(Decoded::Incomplete { missing: 61 })
    );
    assert_eq!(
        Handshake::decode(b""),
        Ok(Decoded::Incomplete { missing: 68 })
    );
}

#[test]
fn oversized_length_prefix_is_refused_before_buffering() {
    // Four bytes claiming a huge frame are an error at once; so is a piece frame longer than
    // a 16 KiB block as soon as its id byte arrives.
    let huge = ((MESSAGE_BYTES_MAX - LENGTH_PREFIX_BYTES + 1) as u32).to_be_bytes();
    assert!(matches!(
        decode_message(&huge),
        Err(WireError::MessageTooLong { id: None, .. })
    ));
    let mut piece = (9 + 16 * 1024 + 1u32).to_be_bytes().to_vec();
    piece.push(MessageId::Piece as u8);
    assert_eq!(
        decode_message(&piece),
        Err(WireError::MessageTooLong {
            id: Some(7),
            len: PIECE_FRAME_BYTES_MAX + 1,
            max: PIECE_FRAME_BYTES_MAX
        })
    );
    let mut have = 6u32.to_be_bytes().to_vec();
    have.push(MessageId::Have as u8);
    assert_eq!(
        decode_message(&have),
        Err(WireError::WrongLength {
            id: 4,
            len: 6,
            expected: 5
        })
    );
    let mut short_piece = 8u32.to_be_bytes().to_vec();
    short_piece.push(MessageId::Piece as u8);
    assert!(matches!(
        decode_message(&short_piece),
        Err(WireError::TooShort { id: 7, .. })
    ));
}

#[test]
fn limits_fit_the_largest_valid_messages() {
    // The bitfield of the largest torrent, a 16 KiB block and a full metadata piece all
    // decode; the frame limit is exactly the largest of them.
    assert_eq!(PIECE_COUNT_MAX, 3_355_443);
    assert_eq!(MESSAGE_BYTES_MAX, 5 + 419_431);
    let bits = vec![0u8; BITFIELD_BYTES_MAX];
    let frame = encoded(&Message::Bitfield(&bits));
    assert_eq!(frame.len(), MESSAGE_BYTES_MAX);
    assert_eq!(complete(decode_message(&frame).unwrap()).1, frame.len());
    let block = vec![1u8; 16 * 1024];
    let frame = encoded(&Message::Piece {
        piece: 1,
        offset: 0,
        data: &block,
    });
    assert_eq!(frame.len(), PIECE_FRAME_BYTES_MAX);
    assert!(decode_message(&frame).is_ok());
    let data = vec![2u8; METADATA_PIECE_BYTES];
    let mut frame = Vec::new();
    write_extended(&mut frame, 3, |out| {
        MetadataMessage::Data {
            piece: METADATA_PIECES_MAX - 1,
            total_size: METADATA_BYTES_MAX as u32,
            data: &data,
        }
        .encode(out)
    });
    assert!(frame.len() <= EXTENDED_FRAME_BYTES_MAX);
    assert!(decode_message(&frame).is_ok());
    // 100 GB at 32 KiB pieces fits in the piece count we accept; at 16 KiB it does not.
    assert!(100_000_000_000u64.div_ceil(32 * 1024) <= u64::from(PIECE_COUNT_MAX));
    assert!(100_000_000_000u64.div_ceil(16 * 1024) > u64::from(PIECE_COUNT_MAX));
}

#[test]
fn piece_payload_is_borrowed_not_copied() {
    // The decoded block points into the caller's buffer.
    let block = [9u8; 100];
    let frame = encoded(&Message::Piece {
        piece: 3,
        offset: 16384,
        data: &block,
    });
    let (msg, used) = complete(decode_message(&frame).unwrap());
    assert_eq!(used, frame.len());
    let Message::Piece { data, .. } = msg else {
        panic!("not a piece: {msg:?}")
    };
    assert_eq!(data.as_ptr(), frame[PIECE_HEADER_BYTES..].as_ptr());
}

#[test]
fn piece_header_matches_the_encoded_piece_message() {
    // The runtime's header + disk data is byte-identical to an encoded `piece` message.
    let block = [5u8; 16384];
    let frame = encoded(&Message::Piece {
        piece: 0x0102_0304,
        offset: 0x4000,
        data: &block,
    });
    assert_eq!(
        piece_header(0x0102_0304, 0x4000, 16384),
        frame[..PIECE_HEADER_BYTES]
    );
}

#[test]
fn incomplete_frames_report_the_exact_missing_count() {
    // With the prefix known, `missing` is exactly what completes the frame.
    let frame = encoded(&Message::Request(RawBlock {
        piece: 1,
        offset: 2,
        len: 3,
    }));
    assert_eq!(frame.len(), 17);
    assert_eq!(
        decode_message(&frame[..2]),
        Ok(Decoded::Incomplete { missing: 2 })
    );
    for cut in 4..frame.len() {
        assert_eq!(
            decode_message(&frame[..cut]),
            Ok(Decoded::Incomplete {
                missing: frame.len() - cut
            })
        );
    }
}

#[test]
fn unknown_ids_decode_as_unknown_and_fixed_ids_as_their_message() {
    // An id we do not know is framed and skippable; keep-alive is a zero-length frame.
    let frame = [0, 0, 0, 3, 21, 0xaa, 0xbb];
    let (msg, used) = complete(decode_message(&frame).unwrap());
    assert_eq!(
        msg,
        Message::Unknown {
            id: 21,
            payload: &[0xaa, 0xbb]
        }
    );
    assert_eq!(used, 7);
    assert_eq!(encoded(&msg), frame);
    assert_eq!(
        complete(decode_message(&[0, 0, 0, 0, 99]).unwrap()),
        (Message::KeepAlive, 4)
    );
    assert_eq!(
        complete(decode_message(&[0, 0, 0, 3, 9, 0x1a, 0xe1]).unwrap()).0,
        Message::Port(6881)
    );
}

#[test]
fn bitfield_difference_and_iteration_name_the_right_pieces() {
    // What a declaration adds (new minus known) and the pieces it lists, across a byte
    // boundary and up to the last piece.
    let layout = Layout::new(16384, &[11 * 16384]).unwrap();
    let set = |pieces: &[u32]| {
        let mut b = Bitfield::empty(11);
        for &p in pieces {
            b.set(layout.piece(p).unwrap());
        }
        b
    };
    let added = set(&[0, 7, 8, 10]).difference(&set(&[7, 9]));
    assert_eq!(added, set(&[0, 8, 10]));
    assert_eq!(added.count(), 3);
    assert_eq!(added.iter().collect::<Vec<_>>(), vec![0, 8, 10]);
    assert_eq!(Bitfield::full(11).iter().count(), 11);
}

#[test]
fn bitfield_checks_length_and_spare_bits() {
    // A bitfield must have exactly ceil(n/8) bytes and zero bits past the last piece.
    let layout = Layout::new(16384, &[16384 * 10]).unwrap();
    let p = |i| layout.piece(i).unwrap();
    assert_eq!(
        Bitfield::from_wire(&[0xff], 10),
        Err(WireError::BitfieldLength {
            len: 1,
            expected: 2
        })
    );
    assert_eq!(
        Bitfield::from_wire(&[0xff, 0xe0], 10),
        Err(WireError::BitfieldSpareBits)
    );
    let b = Bitfield::from_wire(&[0x80, 0x40], 10).unwrap();
    assert_eq!(b.count(), 2);
    assert!(b.get(p(0)) && b.get(p(9)) && !b.get(p(1)));
    let full = Bitfield::full(10);
    assert_eq!(full.as_bytes(), &[0xff, 0xc0]);
    assert!(full.is_full());
    let mut e = Bitfield::empty(10);
    assert!(e.set(p(9)));
    assert!(!e.set(p(9)));
    assert_eq!((e.count(), e.as_bytes()), (1, &[0x00, 0x40][..]));
    assert_eq!(Bitfield::full(16).as_bytes(), &[0xff, 0xff]);
}

#[test]
fn extension_handshake_reads_a_real_clients_dict() {
    // A libtorrent-style handshake yields its ids, port, reqq, name and our address.
    let payload = b"d1:md11:lt_donthavei7e6:ut_pexi1e11:ut_metadatai2ee\
13:metadata_sizei31235e1:pi6881e4:reqqi500e1:v18:libtorrent 2.0.8.06:yourip4:\x7f\x00\x00\x01e";
    let h = ExtensionHandshake::decode(payload).unwrap();
    assert_eq!(h.m.get("ut_metadata"), Some(&2));
    assert_eq!(h.m.get("ut_pex"), Some(&1));
    assert_eq!(h.metadata_size, Some(31235));
    assert_eq!((h.p, h.reqq), (Some(6881), Some(500)));
    assert_eq!(h.v.as_deref(), Some("libtorrent 2.0.8.0"));
    assert_eq!(h.yourip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
}

#[test]
fn extension_handshake_ignores_bad_optional_fields_but_not_bad_structure() {
    // Wrong-typed or out-of-range optional keys read as absent; a non-dict is an error.
    let payload = b"d1:md1:ai300e1:bi3ee1:pi70000e4:reqq1:x6:yourip3:abce";
    let h = ExtensionHandshake::decode(payload).unwrap();
    assert_eq!(h.m.len(), 1);
    assert_eq!((h.p, h.reqq, h.yourip), (None, None, None));
    assert!(ExtensionHandshake::decode(b"li1ee").is_err());
    assert!(ExtensionHandshake::decode(b"d1:m").is_err());
    let mut many = String::from("d1:md");
    for i in 0..=EXTENSION_NAMES_MAX {
        many.push_str(&format!("3:x{i:02}i1e"));
    }
    many.push_str("ee");
    assert!(matches!(
        ExtensionHandshake::decode(many.as_bytes()),
        Err(WireError::ExtensionNamesTooMany { .. })
    ));
}

#[test]
fn metadata_messages_decode_per_bep9() {
    // Request, data (raw bytes after the dict) and reject; unknown types are ignored.
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei0e5:piecei3ee"),
        Ok(Some(MetadataMessage::Request { piece: 3 }))
    );
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei1e5:piecei0e10:total_sizei5eeHELLO"),
        Ok(Some(MetadataMessage::Data {
            piece: 0,
            total_size: 5,
            data: b"HELLO"
        }))
    );
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei2e5:piecei1ee"),
        Ok(Some(MetadataMessage::Reject { piece: 1 }))
    );
    assert_eq!(
        MetadataMessage::decode(b"d8:msg_typei7e5:piecei1ee"),
        Ok(None)
    );
    assert!(matches!(
        MetadataMessage::decode(b"d8:msg_typei0e5:piecei-1ee"),
        Err(WireError::MetadataOutOfRange { field: "piece", .. })
    ));
    assert!(MetadataMessage::decode(b"d8:msg_typei0e5:piecei1eexx").is_err());
    assert!(MetadataMessage::decode(b"d8:msg_typei1e5:piecei1ee").is_err());
    let mut big = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
    big.extend(std::iter::repeat_n(0u8, METADATA_PIECE_BYTES + 1));
    assert!(matches!(
        MetadataMessage::decode(&big),
        Err(WireError::MetadataPieceTooLong { .. })
    ));
}

/// A message's parts, owned so proptest can generate them; `build` borrows them.
type Parts = (u8, u32, u32, u32, Vec<u8>);

fn arb_parts() -> impl Strategy<Value = Parts> {
    let ids = prop_oneof![
        Just(255u8), // keep-alive
        0u8..=9,
        13u8..=17,
        Just(20u8),
        Just(21u8), // unknown
        Just(200u8),
    ];
    (
        ids,
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..600),
    )
}

fn build(parts: &Parts) -> Message<'_> {
    let (id, a, b, c, ref bytes) = *parts;
    let raw = RawBlock {
        piece: a,
        offset: b,
        len: c,
    };
    match id {
        0 => Message::Choke,
        1 => Message::Unchoke,
        2 => Message::Interested,
        3 => Message::NotInterested,
        4 => Message::Have { piece: a },
        5 => Message::Bitfield(bytes),
        6 => Message::Request(raw),
        7 => Message::Piece {
            piece: a,
            offset: b,
            data: bytes,
        },
        8 => Message::Cancel(raw),
        9 => Message::Port(a as u16),
        13 => Message::Suggest { piece: a },
        14 => Message::HaveAll,
        15 => Message::HaveNone,
        16 => Message::Reject(raw),
        17 => Message::AllowedFast { piece: a },
        20 => Message::Extended {
            id: c as u8,
            payload: bytes,
        },
        255 => Message::KeepAlive,
        id => Message::Unknown { id, payload: bytes },
    }
}

proptest! {
    #[test]
    fn every_message_round_trips(parts in arb_parts()) {
        // decode(encode(m)) == m and uses exactly the encoded bytes.
        let msg = build(&parts);
        let frame = encoded(&msg);
        prop_assert_eq!(frame.len(), msg.frame_len());
        let (back, used) = complete(decode_message(&frame).unwrap());
        prop_assert_eq!(back, msg);
        prop_assert_eq!(used, frame.len());
    }

    #[test]
    fn a_stream_split_anywhere_decodes_to_the_same_messages(
        parts in proptest::collection::vec(arb_parts(), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        // Feeding a stream in two chunks (as a socket would) yields the same messages, and
        // `missing` never overstates what the next frame needs.
        let mut stream = Vec::new();
        for p in &parts {
            build(p).encode(&mut stream);
        }
        let cut = cut.index(stream.len() + 1);
        let mut buf = stream[..cut].to_vec();
        let mut fed = cut;
        let mut got = 0;
        loop {
            match decode_message(&buf).unwrap() {
                Decoded::Complete { value, used } => {
                    prop_assert_eq!(value, build(&parts[got]));
                    got += 1;
                    buf.drain(..used);
                }
                Decoded::Incomplete { missing } => {
                    if fed == stream.len() {
                        prop_assert!(buf.is_empty());
                        break;
                    }
                    prop_assert!(buf.len() + missing <= buf.len() + stream.len() - fed);
                    buf.extend_from_slice(&stream[fed..]);
                    fed = stream.len();
                }
            }
        }
        prop_assert_eq!(got, parts.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_reencode_exactly(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        // Whatever arrives, decoding returns; a decoded frame re-encodes to the same bytes.
        let _ = Handshake::decode(&bytes);
        let _ = ExtensionHandshake::decode(&bytes);
        let _ = MetadataMessage::decode(&bytes);
        let _ = Bitfield::from_wire(&bytes, bytes.len() as u32 * 7 / 8);
        if let Ok(Decoded::Complete { value, used }) = decode_message(&bytes) {
            prop_assert_eq!(encoded(&value), &bytes[..used]);
        }
    }

    #[test]
    fn handshakes_round_trip(reserved in any::<[u8; 8]>(), ih in any::<[u8; 20]>(),
                             id in any::<[u8; 20]>()) {
        // Any reserved bits, info-hash and peer id survive encode and decode.
        let h = Handshake { reserved: Reserved(reserved), info_hash: InfoHash(ih),
                            peer_id: PeerId(id) };
        prop_assert_eq!(complete(Handshake::decode(&h.encode()).unwrap()), (h, 68));
    }

    #[test]
    fn extension_handshakes_round_trip(
        m in proptest::collection::btree_map("[a-z_]{1,20}", any::<u8>(), 0..10),
        v in proptest::option::of("[ -~]{0,64}"),
        p in proptest::option::of(1u16..),
        reqq in proptest::option::of(any::<u32>()),
        metadata_size in proptest::option::of(0u64..(1 << 40)),
        yourip in proptest::option::of(any::<[u8; 16]>()),
    ) {
        // Every field we model survives encode and decode.
        let h = ExtensionHandshake { m, v, p, reqq, metadata_size,
                                     yourip: yourip.map(IpAddr::from) };
        let mut out = Vec::new();
        h.encode(&mut out);
        prop_assert_eq!(ExtensionHandshake::decode(&out).unwrap(), h);
    }

    #[test]
    fn metadata_messages_round_trip(kind in 0u8..3, piece in 0..METADATA_PIECES_MAX,
                                    total in 1..=METADATA_BYTES_MAX as u32,
                                    data in proptest::collection::vec(any::<u8>(), 0..=300)) {
        // Request, data and reject survive encode and decode, raw bytes included.
        let msg = match kind {
            0 => MetadataMessage::Request { piece },
            1 => MetadataMessage::Data { piece, total_size: total, data: &data },
            _ => MetadataMessage::Reject { piece },
        };
        let mut out = Vec::new();
        msg.encode(&mut out);
        prop_assert_eq!(MetadataMessage::decode(&out).unwrap(), Some(msg));
    }
}
