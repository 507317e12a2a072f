//! Handshakes, the greeting after them, and BEP 9 metadata serving.

use sha1::{Digest, Sha1};

use super::*;

const FAST_EXT: Reserved = Reserved::OURS;
const PLAIN: Reserved = Reserved([0; 8]);

#[test]
fn inbound_peer_gets_handshake_have_all_and_extension_handshake() {
    // A fast + BEP 10 peer asks for a torrent we seed: after attach we send our handshake
    // (same torrent, our bits), `have all` and an extension handshake offering ut_metadata.
    let torrent = seed(10);
    let mut h = Harness::inbound(torrent.clone(), FAST_EXT);
    assert_eq!(
        h.events,
        vec![Event::AttachRequested {
            info_hash: torrent.info_hash()
        }]
    );
    let got = h.received();
    let Got::Handshake(ours) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(ours.info_hash, torrent.info_hash());
    assert_eq!(ours.peer_id, local(1).peer_id);
    assert!(ours.reserved.fast() && ours.reserved.extension_protocol());
    assert_eq!(got[1], Got::HaveAll);
    let Got::ExtHandshake(ext) = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(ext.m.get("ut_metadata"), Some(&UT_METADATA_ID));
    assert_eq!(ext.m.get("ut_pex"), Some(&UT_PEX_ID));
    assert_eq!(ext.metadata_size, Some(torrent.info_bytes().len() as u64));
    assert_eq!(ext.reqq, Some(PEER_REQUESTS_QUEUED_MAX as u32));
    assert_eq!(ext.v.as_deref(), Some("ringseed 0.1"));
    assert_eq!(ext.p, Some(6881));
    assert_eq!(got.len(), 3);
    assert!(h.session.am_choking() && !h.session.peer_interested());
    assert_eq!(h.session.peer_id(), Some(PeerId(*b"-XX0001-remote-peer-")));
}

#[test]
fn peer_without_extensions_gets_a_full_bitfield_and_nothing_else() {
    // Without BEP 6 the only way to say "all pieces" is a bitfield; without BEP 10 no
    // extension handshake is sent.
    let torrent = seed(10);
    let mut h = Harness::inbound(torrent.clone(), PLAIN);
    let got = h.received();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], Got::Bitfield(vec![0xff, 0xc0]));
}

#[test]
fn partial_and_empty_torrents_announce_what_they_have() {
    // Some pieces: a bitfield even to fast peers. No pieces: `have none` to fast peers and
    // nothing at all to others (BEP 3 lets the bitfield be omitted).
    let mut h = Harness::inbound(partial(10, &[0, 9]), FAST_EXT);
    assert_eq!(h.received()[1], Got::Bitfield(vec![0x80, 0x40]));
    let mut h = Harness::inbound(partial(10, &[]), FAST_EXT);
    assert_eq!(h.received()[1], Got::HaveNone);
    let mut h = Harness::inbound(partial(10, &[]), PLAIN);
    assert_eq!(h.received().len(), 1);
}

#[test]
fn outbound_session_sends_its_handshake_first_and_checks_the_reply() {
    // We speak first; the greeting follows only once the peer's handshake names our torrent,
    // and a reply for another torrent closes the connection.
    let torrent = seed(4);
    let now = Instant::from_secs(1000);
    let session = Session::outbound(Arc::clone(&torrent.shared), PieceSet::All, local(1), now);
    let mut h = Harness::new(session, torrent.clone());
    h.flush();
    let got = h.received();
    assert!(matches!(&got[..], [Got::Handshake(hs)] if hs.info_hash == torrent.info_hash()));
    h.send_handshake(FAST_EXT, torrent.info_hash()).unwrap();
    assert!(h.session.is_active() && h.events.is_empty());
    assert_eq!(h.received()[0], Got::HaveAll);

    let session = Session::outbound(Arc::clone(&torrent.shared), PieceSet::All, local(1), now);
    let mut h = Harness::new(session, torrent.clone());
    let other = InfoHash([0xee; 20]);
    assert_eq!(
        h.send_handshake(FAST_EXT, other),
        Err(PeerError::InfoHashMismatch {
            expected: torrent.info_hash(),
            found: other
        })
    );
}

#[test]
fn two_sessions_connect_and_see_each_other_as_seeds() {
    // An outbound and an inbound session of ours complete both handshakes, exchange `have
    // all` and extension handshakes, and neither is interested in the other.
    let mut pair = Pair::connect(seed(7));
    pair.drive().unwrap();
    for s in [&pair.a.session, &pair.b.session] {
        assert!(s.is_active());
        assert!(s.peer_supports_fast() && s.peer_supports_extensions());
        assert!(s.peer_is_seed());
        assert!(!s.peer_interested() && s.am_choking());
        assert_eq!(s.client_name(), Some(CLIENT_NAME));
        assert_eq!(s.peer_reqq(), Some(PEER_REQUESTS_QUEUED_MAX as u32));
    }
    assert_eq!(pair.a.session.peer_id(), Some(local(0xb).peer_id));
    assert_eq!(pair.b.session.peer_id(), Some(local(0xa).peer_id));
    assert_eq!(pair.a.session.direction(), Direction::Outbound);
}

#[test]
fn connecting_to_ourselves_is_refused() {
    // Our own peer id in the reply means we dialled our own listener.
    let torrent = seed(2);
    let mut pair = Pair::connect(torrent.clone());
    pair.b.session = Session::inbound(local(0xa), pair.now);
    assert_eq!(pair.drive(), Err(PeerError::ConnectedToSelf));
}

#[test]
fn magnet_peer_fetches_the_whole_info_dict_over_ut_metadata() {
    // A peer with only the info-hash requests every 16 KiB metadata piece; reassembled,
    // the bytes hash to the info-hash. A piece past the end is rejected.
    let torrent = seed(1700);
    let info_len = torrent.info_bytes().len();
    assert!(
        info_len > 2 * 16384,
        "want a multi-piece info dict, got {info_len}"
    );
    let mut h = Harness::active(torrent.clone(), FAST_EXT);
    h.send_extension_handshake().unwrap();
    let pieces = info_len.div_ceil(16384) as u32;
    let mut payload = Vec::new();
    let mut assembled = vec![0u8; info_len];
    for piece in 0..=pieces {
        payload.clear();
        MetadataMessage::Request { piece }.encode(&mut payload);
        h.send(Message::Extended {
            id: UT_METADATA_ID,
            payload: &payload,
        })
        .unwrap();
        let got = h.received();
        match &got[..] {
            [Got::MetadataData {
                piece: p,
                total_size,
                data,
            }] if piece < pieces => {
                assert_eq!((*p, *total_size as usize), (piece, info_len));
                let start = piece as usize * 16384;
                assert!(data.len() == 16384 || start + data.len() == info_len);
                assert_eq!(data.len(), (info_len - start).min(16384));
                assembled[start..start + data.len()].copy_from_slice(data);
            }
            [Got::MetadataReject(p)] if piece == pieces => assert_eq!(*p, pieces),
            other => panic!("piece {piece}: {other:?}"),
        }
    }
    let digest: [u8; 20] = Sha1::digest(&assembled).into();
    assert_eq!(InfoHash(digest), torrent.info_hash());
}

#[test]
fn metadata_request_flood_closes_the_connection() {
    // More than METADATA_REQUESTS_QUEUED_MAX requests in one read close the connection.
    let mut h = Harness::active(seed(3), FAST_EXT);
    h.send_extension_handshake().unwrap();
    let mut payload = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut payload);
    let req = Message::Extended {
        id: UT_METADATA_ID,
        payload: &payload,
    };
    assert!(h.send_all(&vec![req; METADATA_REQUESTS_QUEUED_MAX]).is_ok());
    h.received();
    assert_eq!(
        h.send_all(&vec![req; METADATA_REQUESTS_QUEUED_MAX + 1]),
        Err(PeerError::MetadataRequestFlood {
            max: METADATA_REQUESTS_QUEUED_MAX
        })
    );
}

#[test]
fn metadata_request_without_an_announced_id_is_refused() {
    // We can only answer under the id the peer chose; a peer that never gave one broke BEP 10.
    let mut h = Harness::active(seed(3), FAST_EXT);
    let mut payload = Vec::new();
    MetadataMessage::Request { piece: 0 }.encode(&mut payload);
    let err = h
        .send(Message::Extended {
            id: UT_METADATA_ID,
            payload: &payload,
        })
        .unwrap_err();
    assert!(matches!(err, PeerError::UnexpectedMessage { .. }), "{err}");
}

#[test]
fn extension_handshake_update_can_disable_ut_metadata() {
    // BEP 10: a later handshake with id 0 for an extension turns it off.
    let mut h = Harness::active(seed(3), FAST_EXT);
    h.send_extension_handshake().unwrap();
    let off = ExtensionHandshake {
        m: [("ut_metadata".to_owned(), 0)].into(),
        ..ExtensionHandshake::default()
    };
    let mut payload = Vec::new();
    off.encode(&mut payload);
    h.send(Message::Extended {
        id: 0,
        payload: &payload,
    })
    .unwrap();
    assert_eq!(h.session.client_name(), Some("remote 1.0"));
    payload.clear();
    MetadataMessage::Request { piece: 0 }.encode(&mut payload);
    let req = Message::Extended {
        id: UT_METADATA_ID,
        payload: &payload,
    };
    assert!(matches!(
        h.send(req),
        Err(PeerError::UnexpectedMessage { .. })
    ));
}
