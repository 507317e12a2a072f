//! BEP 11 peer exchange through sessions: advertising, sending, receiving, limits, privacy.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::*;
use crate::wire::{PexFlags, PexMessage, PexPeer, PEX_ADDED_MAX};

const FAST: Reserved = Reserved::OURS;

fn peers(n: u8) -> PexMessage {
    PexMessage {
        added: (0..n)
            .map(|i| PexPeer {
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)), 6881),
                flags: PexFlags(PexFlags::REACHABLE),
            })
            .collect(),
        dropped: vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)),
            51413,
        )],
    }
}

fn send_pex(h: &mut Harness, msg: &PexMessage) -> Result<(), PeerError> {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    h.send(Message::Extended {
        id: UT_PEX_ID,
        payload: &payload,
    })
}

#[test]
fn pex_goes_from_one_session_to_the_other_at_most_once_a_minute() {
    // Both sessions advertise ut_pex; a message sent by one is raised as an event by the
    // other, whole. A second message within PEX_INTERVAL is refused, and allowed after it.
    let mut pair = Pair::connect(seed(3));
    pair.drive().unwrap();
    assert!(pair.a.session.peer_supports_pex() && pair.b.session.peer_supports_pex());
    let msg = peers(3);
    pair.b.events.clear();
    pair.a.session.send_pex(&msg, pair.now).unwrap();
    pair.drive().unwrap();
    assert_eq!(pair.b.events, vec![Event::Pex(msg.clone())]);
    let soon = pair.now + (PEX_INTERVAL - Duration::from_secs(1));
    assert_eq!(
        pair.a.session.send_pex(&msg, soon),
        Err(Refused::TooSoon {
            ready_at: pair.now + PEX_INTERVAL
        })
    );
    pair.now += PEX_INTERVAL;
    pair.a.session.send_pex(&peers(1), pair.now).unwrap();
    pair.drive().unwrap();
    assert_eq!(pair.b.events.last(), Some(&Event::Pex(peers(1))));
}

#[test]
fn at_most_fifty_peers_go_out_or_come_in() {
    // We write at most PEX_ADDED_MAX added peers, and read at most that many from a peer
    // that sends more.
    let mut h = Harness::active(seed(3), FAST);
    h.send_extension_handshake().unwrap();
    h.session.send_pex(&peers(80), h.now).unwrap();
    h.flush();
    let got = h.received();
    let [Got::Pex(sent)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(sent.added.len(), PEX_ADDED_MAX);

    let mut raw = Vec::new();
    let mut e = crate::bencode::Encoder::new(&mut raw);
    e.begin_dict();
    e.key("added");
    let compact: Vec<u8> = (0..80u8).flat_map(|i| [10, 3, 0, i, 0x1a, 0xe1]).collect();
    e.bytes(&compact);
    e.end();
    h.send(Message::Extended {
        id: UT_PEX_ID,
        payload: &raw,
    })
    .unwrap();
    let events = h.take_events();
    let [Event::Pex(got)] = &events[..] else {
        panic!("{events:?}")
    };
    assert_eq!(got.added.len(), PEX_ADDED_MAX);
}

#[test]
fn pex_arriving_too_often_is_ignored_and_malformed_pex_closes() {
    // A second message within PEX_RECEIVE_INTERVAL_MIN is dropped; after it, accepted. An
    // empty message raises nothing. A payload that is not a dict is a protocol violation.
    let mut h = Harness::active(seed(3), FAST);
    send_pex(&mut h, &peers(2)).unwrap();
    send_pex(&mut h, &peers(4)).unwrap();
    assert_eq!(h.take_events(), vec![Event::Pex(peers(2))]);
    h.now += PEX_RECEIVE_INTERVAL_MIN;
    send_pex(&mut h, &PexMessage::default()).unwrap();
    assert!(h.take_events().is_empty());
    h.now += PEX_RECEIVE_INTERVAL_MIN;
    send_pex(&mut h, &peers(4)).unwrap();
    assert_eq!(h.take_events(), vec![Event::Pex(peers(4))]);
    let err = h
        .send(Message::Extended {
            id: UT_PEX_ID,
            payload: b"le",
        })
        .unwrap_err();
    assert!(matches!(err, PeerError::Wire(_)), "{err}");
}

#[test]
fn private_torrents_neither_offer_nor_accept_pex() {
    // BEP 27: ut_pex is advertised with id 0, sending is refused, and PEX sent to our usual
    // id anyway is skipped like any unassigned extension id.
    let m = build_torrent(&info(3, true), &TorrentBuilder::default())
        .unwrap()
        .1;
    let private = TestTorrent::new(TorrentShared::from_metainfo(&m), PieceSet::All);
    let mut h = Harness::inbound(private, FAST);
    let got = h.received();
    let Got::ExtHandshake(ext) = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(ext.m.get("ut_pex"), Some(&0));
    h.events.clear();
    h.send_extension_handshake().unwrap();
    assert_eq!(h.session.send_pex(&peers(1), h.now), Err(Refused::Private));
    send_pex(&mut h, &peers(2)).unwrap();
    assert!(h.take_events().is_empty());
}

#[test]
fn pex_needs_a_peer_that_speaks_it() {
    // No ut_pex in the peer's handshake (or one switching it off): sending is refused.
    let mut h = Harness::active(seed(3), FAST);
    assert_eq!(
        h.session.send_pex(&peers(1), h.now),
        Err(Refused::ExtensionUnsupported {
            extension: "ut_pex"
        })
    );
    h.send_extension_handshake().unwrap();
    assert!(h.session.peer_supports_pex());
    h.send_extension_handshake_with(|e| {
        e.m.insert("ut_pex".into(), 0);
    })
    .unwrap();
    assert!(!h.session.peer_supports_pex());
    let mut h = Harness::inbound_idle(seed(3));
    assert_eq!(
        h.session.send_pex(&peers(1), h.now),
        Err(Refused::NotActive)
    );
    h.flush();
}
