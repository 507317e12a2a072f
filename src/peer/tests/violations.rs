//! Protocol violations, partial input, timers, and arbitrary input.

use proptest::prelude::*;

use super::*;
use crate::wire::{WireError, MESSAGE_BYTES_MAX};

const FAST: Reserved = Reserved::OURS;
const PLAIN: Reserved = Reserved([0; 8]);

#[test]
fn oversized_message_closes_before_it_is_buffered() {
    // A length prefix past MESSAGE_BYTES_MAX is refused with only the prefix received.
    let mut h = Harness::active(seed(4), FAST);
    let prefix = (MESSAGE_BYTES_MAX as u32).to_be_bytes();
    let err = h.send_raw(&prefix).unwrap_err();
    assert!(
        matches!(err, PeerError::Wire(WireError::MessageTooLong { .. })),
        "{err}"
    );
}

#[test]
fn garbage_instead_of_a_handshake_closes_at_once() {
    // An HTTP request (or an encrypted handshake we do not speak) is refused on its first
    // byte, before any torrent is looked up.
    let mut h = Harness::inbound_idle(seed(4));
    assert_eq!(
        h.send_raw(b"GET /announce HTTP/1.1\r\n"),
        Err(PeerError::Wire(WireError::NotBitTorrent {
            at: 0,
            byte: b'G'
        }))
    );
    assert!(h.events.is_empty());
}

#[test]
fn handshake_and_messages_split_across_reads_are_reassembled() {
    // Bytes arriving one at a time consume nothing until a frame is whole, and
    // `bytes_missing` says how much the frame still needs.
    let torrent = seed(4);
    let mut h = Harness::inbound_idle(torrent.clone());
    let hs = Handshake {
        reserved: FAST,
        info_hash: torrent.info_hash(),
        peer_id: PeerId([9; 20]),
    }
    .encode();
    for (i, &byte) in hs.iter().enumerate().take(67) {
        h.send_raw(&[byte]).unwrap();
        assert_eq!(h.session.bytes_missing(), 67 - i);
        assert!(h.events.is_empty());
    }
    h.send_raw(&hs[67..]).unwrap();
    assert!(h.session.is_active());
    let mut frame = Vec::new();
    Message::Have { piece: 2 }.encode(&mut frame);
    h.send_raw(&frame[..6]).unwrap();
    assert_eq!(h.session.bytes_missing(), 3);
    h.send_raw(&frame[6..]).unwrap();
    assert!(h.session.peer_has(torrent.layout().piece(2).unwrap()));
    assert_eq!(h.session.bytes_missing(), 0);
}

#[test]
fn bytes_after_the_handshake_wait_for_attach() {
    // A peer that sends its handshake and bitfield in one packet has the bitfield read
    // only after the shell attached the torrent.
    let torrent = seed(4);
    let mut h = Harness::inbound_idle(torrent.clone());
    let mut bytes = Handshake {
        reserved: FAST,
        info_hash: torrent.info_hash(),
        peer_id: PeerId([9; 20]),
    }
    .encode()
    .to_vec();
    Message::HaveAll.encode(&mut bytes);
    assert_eq!(
        h.session.handle_input(&bytes, h.now).map(|i| i.used),
        Ok(68)
    );
    assert!(!h.session.is_active());
    assert_eq!(
        h.session.handle_input(&bytes[68..], h.now).map(|i| i.used),
        Ok(0)
    );
    h.inbox = bytes[68..].to_vec();
    h.pump().unwrap();
    assert!(h.session.is_active() && h.session.peer_is_seed());
}

#[test]
fn bad_bitfields_close_the_connection() {
    // Wrong length, spare bits set, or a second declaration of the peer's pieces.
    type Case<'a> = (&'a [Message<'a>], fn(&PeerError) -> bool);
    let cases: [Case<'_>; 2] = [
        (&[Message::Bitfield(&[0xf8, 0])], |e| {
            matches!(e, PeerError::Wire(WireError::BitfieldLength { .. }))
        }),
        (&[Message::Bitfield(&[0xfc])], |e| {
            matches!(e, PeerError::Wire(WireError::BitfieldSpareBits))
        }),
    ];
    for (msgs, check) in cases {
        let mut h = Harness::active(seed(5), FAST);
        let err = h.send_all(msgs).unwrap_err();
        assert!(check(&err), "{msgs:?}: {err}");
    }
}

#[test]
fn repeated_piece_declarations_accumulate() {
    // aria2 sends a bitfield after an earlier declaration: later ones add to what we knew.
    let torrent = seed(5);
    let p = |i| torrent.layout().piece(i).unwrap();
    let mut h = Harness::active(torrent.clone(), FAST);
    h.send_all(&[Message::Have { piece: 1 }, Message::Bitfield(&[0x80])])
        .unwrap();
    assert!(h.session.peer_has(p(0)) && h.session.peer_has(p(1)) && !h.session.peer_has(p(2)));
    h.send_all(&[Message::HaveNone]).unwrap();
    assert!(h.session.peer_has(p(1)));
    h.send_all(&[Message::HaveAll, Message::Bitfield(&[0x00])])
        .unwrap();
    assert!(h.session.peer_is_seed());
}

#[test]
fn haves_are_tracked_and_bounded_by_the_piece_count() {
    // `have` adds to what the peer has; a piece past the end closes the connection.
    let torrent = seed(5);
    let mut h = Harness::active(torrent.clone(), FAST);
    let p = |i| torrent.layout().piece(i).unwrap();
    h.send(Message::Have { piece: 4 }).unwrap();
    assert!(h.session.peer_has(p(4)) && !h.session.peer_has(p(3)));
    assert!(!h.session.peer_is_seed());
    assert_eq!(
        h.send(Message::Have { piece: 5 }),
        Err(PeerError::HaveOutOfRange { piece: 5, count: 5 })
    );
}

#[test]
fn extensions_not_negotiated_are_violations() {
    // BEP 6 messages from a peer without the fast bit, or BEP 10 messages without the
    // extension bit, close the connection.
    for msg in [
        Message::HaveAll,
        Message::HaveNone,
        Message::Suggest { piece: 0 },
        Message::AllowedFast { piece: 0 },
        Message::Reject(RawBlock {
            piece: 0,
            offset: 0,
            len: 1,
        }),
        Message::Extended {
            id: 0,
            payload: b"de",
        },
    ] {
        let mut h = Harness::active(seed(3), PLAIN);
        let err = h.send(msg).unwrap_err();
        assert!(
            matches!(err, PeerError::UnexpectedMessage { .. }),
            "{msg:?}: {err}"
        );
    }
}

#[test]
fn rejects_for_requests_never_sent_are_violations() {
    // A seeder never requests, so a reject sent to it is a broken peer (BEP 6 SHOULD close);
    // unrequested blocks are counted instead (see the download tests).
    let mut h = Harness::active(seed(3), FAST);
    let err = h
        .send(Message::Reject(RawBlock {
            piece: 0,
            offset: 0,
            len: 1,
        }))
        .unwrap_err();
    assert!(matches!(err, PeerError::UnexpectedMessage { .. }));
}

#[test]
fn unknown_ids_and_hints_are_skipped() {
    // Messages we do not act on (unknown ids, extension ids we did not assign, suggest,
    // allowed fast, port) leave the connection open and the next message is handled.
    let mut h = Harness::active(seed(3), FAST);
    h.send_all(&[
        Message::Unknown {
            id: 21,
            payload: &[1, 2, 3],
        },
        Message::Extended {
            id: 77,
            payload: b"whatever",
        },
        Message::Suggest { piece: 1 },
        Message::AllowedFast { piece: 1 },
        Message::Port(6881),
        Message::KeepAlive,
        Message::Interested,
    ])
    .unwrap();
    assert!(h.session.peer_interested());
    assert_eq!(h.session.dht_port(), Some(6881));
}

#[test]
fn handshake_must_complete_within_the_timeout() {
    // A connection that never completes its handshake is closed after HANDSHAKE_TIMEOUT.
    let mut h = Harness::inbound_idle(seed(3));
    assert_eq!(h.session.poll_timeout(), Some(h.now + HANDSHAKE_TIMEOUT));
    h.send_raw(&crate::wire::PROTOCOL[..10]).unwrap();
    assert_eq!(
        h.advance(HANDSHAKE_TIMEOUT),
        Err(PeerError::HandshakeTimeout {
            after: HANDSHAKE_TIMEOUT
        })
    );
}

#[test]
fn keepalives_go_out_when_silent_and_silent_peers_time_out() {
    // With nothing to say we send a keep-alive every KEEPALIVE_INTERVAL; a peer that keeps
    // sending keep-alives stays; one that goes quiet is closed after PEER_IDLE_TIMEOUT.
    let mut h = Harness::active(seed(3), FAST);
    h.advance(KEEPALIVE_INTERVAL - Duration::from_secs(1))
        .unwrap();
    assert!(h.received().is_empty());
    h.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(h.received(), vec![Got::KeepAlive]);
    for _ in 0..5 {
        h.send(Message::KeepAlive).unwrap();
        h.advance(KEEPALIVE_INTERVAL).unwrap();
    }
    assert_eq!(h.received(), vec![Got::KeepAlive; 5]);
    h.send(Message::KeepAlive).unwrap();
    let quiet_since = h.now;
    let err = h.advance(PEER_IDLE_TIMEOUT * 2).unwrap_err();
    assert_eq!(h.received(), vec![Got::KeepAlive]);
    assert_eq!(
        err,
        PeerError::IdleTimeout {
            idle: PEER_IDLE_TIMEOUT
        }
    );
    assert_eq!(h.now, quiet_since + PEER_IDLE_TIMEOUT);
}

#[test]
fn sending_blocks_postpones_the_keepalive() {
    // Keep-alives are for silent connections only: serving a block resets the interval.
    let mut h = Harness::active(seed(3), FAST);
    h.send(Message::Interested).unwrap();
    h.session.set_choked(false, h.now);
    h.advance(Duration::from_secs(100)).unwrap();
    h.send(Harness::request(0, 0, 100)).unwrap();
    h.advance(Duration::from_secs(100)).unwrap();
    let got = h.received();
    assert_eq!(
        got.len(),
        2,
        "unchoke and one block, no keep-alive: {got:?}"
    );
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(20))
    );
}

/// A message from a small alphabet with small numbers, so random sequences hit real states.
pub(super) fn arb_message() -> impl Strategy<Value = (u8, u32, u32, u32)> {
    (
        prop::sample::select(vec![
            0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 14, 15, 16, 17, 20, 42,
        ]),
        0u32..12,
        0u32..40_000,
        0u32..20_000,
    )
}

pub(super) fn build((id, a, b, c): (u8, u32, u32, u32), payload: &[u8]) -> Message<'_> {
    let block = RawBlock {
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
        5 => Message::Bitfield(&payload[..(a as usize).min(payload.len())]),
        6 => Message::Request(block),
        7 => Message::Piece {
            piece: a,
            offset: b,
            data: payload,
        },
        8 => Message::Cancel(block),
        9 => Message::Port(c as u16),
        13 => Message::Suggest { piece: a },
        14 => Message::HaveAll,
        15 => Message::HaveNone,
        16 => Message::Reject(block),
        17 => Message::AllowedFast { piece: a },
        20 => Message::Extended {
            id: (a % 4) as u8,
            payload,
        },
        _ => Message::Unknown { id, payload },
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_after_a_handshake_never_panic(
        fast in any::<bool>(),
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
    ) {
        // Whatever a peer sends, the session returns Ok or Err, never consumes more than
        // it was given, and its outputs stay decodable.
        let mut h = Harness::active(seed(10), if fast { FAST } else { PLAIN });
        h.session.set_choked(false, h.now);
        if let Ok(input) = h.session.handle_input(&bytes, h.now) {
            prop_assert!(input.used <= bytes.len());
        }
        h.flush();
        h.received();
    }

    #[test]
    fn random_message_sequences_never_panic(
        fast in any::<bool>(),
        msgs in proptest::collection::vec(arb_message(), 0..60),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
        choke_at in any::<prop::sample::Index>(),
    ) {
        // Valid frames in any order and with any numbers end in Ok or a PeerError, and the
        // blocks served are always inside the torrent.
        let mut h = Harness::active(seed(10), if fast { FAST } else { PLAIN });
        h.session.set_choked(false, h.now);
        let choke_at = choke_at.index(msgs.len() + 1);
        for (i, m) in msgs.iter().enumerate() {
            if i == choke_at {
                h.session.set_choked(true, h.now);
            }
            if h.send(build(*m, &payload)).is_err() {
                break;
            }
            for got in h.received() {
                if let Got::Piece { piece, offset, data } = got {
                    let layout = h.torrent.layout();
                    prop_assert!(layout.block(piece, offset, data.len() as u32).is_some());
                }
            }
        }
    }
}
