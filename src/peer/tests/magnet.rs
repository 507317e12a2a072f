//! Magnet sessions: fetching the info dict over BEP 9 with the [`MetadataAssembler`],
//! declarations kept until the metadata arrives, and the upgrade to a full session.

use super::*;

const FAST: Reserved = Reserved::OURS;

/// A magnet link's torrent as a test shell holds it.
fn magnet(info_hash: InfoHash) -> TestTorrent {
    TestTorrent::new(TorrentShared::magnet(info_hash), PieceSet::Empty)
}

/// A seed that serves `info_bytes` (perhaps corrupt) under `good`'s info-hash.
fn seed_serving(good: &TestTorrent, info_bytes: Vec<u8>) -> TestTorrent {
    let shared = TorrentShared::new(
        good.info_hash(),
        good.layout().clone(),
        info_bytes.into(),
        false,
    );
    TestTorrent::new(shared, PieceSet::All)
}

fn metadata_payload(msg: MetadataMessage<'_>) -> Vec<u8> {
    let mut payload = Vec::new();
    msg.encode(&mut payload);
    payload
}

/// The magnet side of one connection: hands out metadata requests and feeds answers to the
/// shared assembler. Returns the assembler's verdicts.
fn fetch_round(
    node: &mut Node,
    key: u8,
    assembler: &mut MetadataAssembler<u8>,
    per_peer: usize,
    now: Instant,
) -> Vec<MetadataProgress<u8>> {
    let mut verdicts = Vec::new();
    for rx in std::mem::take(&mut node.rx) {
        if let Rx::Metadata {
            piece,
            total_size,
            data,
        } = rx
        {
            verdicts.push(assembler.on_piece(key, piece, total_size, &data));
        }
    }
    for ev in std::mem::take(&mut node.events) {
        if let Event::MetadataRequestDropped { piece, reason } = ev {
            assembler.on_dropped(key, piece, reason);
        }
    }
    let Some(size) = node.session.peer_metadata_size() else {
        return verdicts;
    };
    let outstanding = METADATA_REQUESTS_OUTSTANDING_MAX - node.session.metadata_request_slots();
    for _ in outstanding..per_peer {
        let Some(piece) = assembler.next_request(key, size, now) else {
            break;
        };
        node.session.request_metadata(piece, now).unwrap();
    }
    verdicts
}

#[test]
fn a_magnet_session_fetches_the_info_dict_then_downloads_the_torrent() {
    // Only the info-hash: the session greets with `have none`, learns the size from the
    // seed's extension handshake, fetches every metadata piece, the assembler verifies
    // them against the info-hash, and after `set_metadata` the seed's `have all` (received
    // before the piece count was known) is reported and blocks can be requested.
    let full = seed(1700);
    let info_len = full.info_bytes().len();
    assert!(info_len > 2 * 16384, "want a multi-piece info dict");
    let mut pair = Pair::new(magnet(full.info_hash()), vec![full.clone()]);
    pair.chunk = 5000;
    pair.drive().unwrap();
    assert!(!pair.a.session.peer_is_seed() && pair.a.session.layout().is_none());
    assert_eq!(
        pair.a.events,
        vec![Event::MetadataOffered {
            total_size: info_len as u32
        }]
    );
    pair.a.events.clear();
    let mut assembler = MetadataAssembler::new(full.info_hash());
    let mut info = None;
    for _ in 0..100 {
        for v in fetch_round(&mut pair.a, 0, &mut assembler, 4, pair.now) {
            match v {
                MetadataProgress::Incomplete => {}
                MetadataProgress::Complete { info: i, bad_peers } => {
                    assert!(bad_peers.is_empty());
                    info = Some(i);
                }
                other => panic!("{other:?}"),
            }
        }
        if info.is_some() {
            break;
        }
        pair.step().unwrap();
    }
    let info = info.expect("metadata fetched");
    assert_eq!(&info[..], full.info_bytes());
    let shared = TorrentShared::from_info_bytes(full.info_hash(), info).unwrap();
    assert_eq!(shared.layout(), Some(full.layout()));
    pair.a
        .session
        .set_metadata(Arc::new(shared), pair.now)
        .unwrap();
    assert_eq!(
        pair.a.session.poll_event(),
        Some(Event::PeerPieces {
            added: PieceSet::All
        })
    );
    assert!(pair.a.session.peer_is_seed());
    pair.a.session.set_interested(true, pair.now);
    pair.drive().unwrap();
    pair.b.session.set_choked(false, pair.now);
    pair.drive().unwrap();
    let b = full.layout().block(1699, 0, 16384).unwrap();
    pair.a.session.request(b, pair.now).unwrap();
    pair.drive().unwrap();
    pair.a.disk = vec![0; full.layout().total_length() as usize];
    let got = pair.a.store_blocks();
    assert!(matches!(&got[..], [Rx::Block { block, late: false, .. }] if *block == b));
}

#[test]
fn a_corrupt_metadata_peer_is_named_and_the_good_one_supplies_its_pieces() {
    // A magnet client connected to a good seed and one serving a corrupt info dict under the
    // same info-hash, one metadata request each at a time: the first attempt mixes pieces
    // and fails the hash; the retry asks each peer for the pieces the other supplied,
    // verifies, and names the corrupt peer by comparing its earlier piece.
    let good = seed(1700);
    let mut corrupt_bytes = good.info_bytes().to_vec();
    corrupt_bytes[16384 + 100] ^= 0xff; // inside metadata piece 1
    let corrupt = seed_serving(&good, corrupt_bytes);
    let ih = good.info_hash();
    let mut to_good = Pair::new(magnet(ih), vec![good.clone()]);
    let mut to_corrupt = Pair::new(magnet(ih), vec![corrupt]);
    to_good.drive().unwrap();
    to_corrupt.drive().unwrap();
    let (good_key, corrupt_key) = (0u8, 1u8);
    let mut assembler = MetadataAssembler::new(ih);
    let mut verdicts = Vec::new();
    for _ in 0..200 {
        // The good peer is asked first, so it takes piece 0 and the corrupt one piece 1.
        verdicts.extend(fetch_round(
            &mut to_good.a,
            good_key,
            &mut assembler,
            1,
            to_good.now,
        ));
        verdicts.extend(fetch_round(
            &mut to_corrupt.a,
            corrupt_key,
            &mut assembler,
            1,
            to_corrupt.now,
        ));
        if assembler.is_complete() {
            break;
        }
        let moved = to_good.step().unwrap() | to_corrupt.step().unwrap();
        assert!(moved || assembler.is_complete(), "stalled: {verdicts:?}");
    }
    verdicts.retain(|v| *v != MetadataProgress::Incomplete);
    assert_eq!(assembler.failures(), 1);
    match &verdicts[..] {
        [MetadataProgress::Corrupt { bad_peers }, MetadataProgress::Complete {
            info,
            bad_peers: named,
        }] => {
            assert!(bad_peers.is_empty(), "two contributors: no one proven yet");
            assert_eq!(&info[..], good.info_bytes());
            assert_eq!(named, &vec![corrupt_key]);
        }
        other => panic!("{other:?}"),
    }
    assert!(assembler.is_banned(corrupt_key) && !assembler.is_banned(good_key));
}

#[test]
fn declarations_before_the_metadata_are_checked_when_it_arrives() {
    // A bitfield and haves received by a magnet session raise nothing; `set_metadata`
    // turns them into one PeerPieces event, or closes if they do not fit the torrent.
    let full = partial(10, &[]);
    let p = |i| full.layout().piece(i).unwrap();
    let mut h = Harness::active(magnet(full.info_hash()), FAST);
    h.send_all(&[
        Message::Have { piece: 9 },
        Message::Bitfield(&[0x80, 0x00]),
        Message::Suggest { piece: 1 },
        Message::AllowedFast { piece: 1 },
    ])
    .unwrap();
    assert!(h.take_events().is_empty());
    assert!(h.session.peer_pieces().is_empty());
    h.session
        .set_metadata(Arc::clone(&full.shared), h.now)
        .unwrap();
    let mut want = Bitfield::empty(10);
    want.set(p(0));
    want.set(p(9));
    assert_eq!(
        h.session.poll_event(),
        Some(Event::PeerPieces {
            added: PieceSet::Partial(want)
        })
    );
    assert!(h.session.peer_has(p(9)) && !h.session.peer_has(p(1)));

    let mut h = Harness::active(magnet(full.info_hash()), FAST);
    h.send(Message::Have { piece: 10 }).unwrap();
    assert_eq!(
        h.session.set_metadata(Arc::clone(&full.shared), h.now),
        Err(PeerError::HaveOutOfRange {
            piece: 10,
            count: 10
        })
    );
}

#[test]
fn a_magnet_session_greets_without_pieces_and_updates_its_extension_handshake() {
    // Before the metadata: `have none`, ut_metadata offered but no metadata_size, and
    // requests for metadata or blocks are rejected. After: an updated extension handshake
    // with our metadata_size, and ut_pex switched off because this torrent is private.
    let m = build_torrent(&info(4, true), &TorrentBuilder::default())
        .unwrap()
        .1;
    let private = TorrentShared::from_metainfo(&m);
    let mut h = Harness::inbound(magnet(m.info_hash), FAST);
    let got = h.received();
    assert_eq!(got[1], Got::HaveNone);
    let Got::ExtHandshake(ext) = &got[2] else {
        panic!("{got:?}")
    };
    assert_eq!(ext.metadata_size, None);
    assert_eq!(ext.m.get("ut_pex"), Some(&UT_PEX_ID));
    h.send_extension_handshake().unwrap();
    let payload = metadata_payload(MetadataMessage::Request { piece: 0 });
    h.send(Message::Extended {
        id: UT_METADATA_ID,
        payload: &payload,
    })
    .unwrap();
    h.send(Harness::request(0, 0, 16384)).unwrap();
    assert_eq!(
        h.received(),
        vec![
            Got::MetadataReject(0),
            Got::Reject(RawBlock {
                piece: 0,
                offset: 0,
                len: 16384
            })
        ]
    );
    h.session.set_metadata(Arc::new(private), h.now).unwrap();
    h.flush();
    let got = h.received();
    let [Got::ExtHandshake(ext)] = &got[..] else {
        panic!("{got:?}")
    };
    assert_eq!(ext.metadata_size, Some(m.info_bytes.len() as u64));
    assert_eq!(ext.m.get("ut_pex"), Some(&0));
    assert_eq!(
        h.session.request_metadata(0, h.now),
        Err(Refused::HaveMetadata)
    );
}

#[test]
fn metadata_requests_are_bounded_and_answers_are_matched() {
    // Requests need an offer, stay inside the offered size and under the per-peer bound;
    // a reject and a timeout are reported; data for a piece we did not request is dropped.
    let full = seed(1700);
    let pieces = full.info_bytes().len().div_ceil(16384) as u32;
    let mut h = Harness::active(magnet(full.info_hash()), FAST);
    assert_eq!(
        h.session.request_metadata(0, h.now),
        Err(Refused::ExtensionUnsupported {
            extension: "ut_metadata"
        })
    );
    h.send_extension_handshake_with(|e| e.metadata_size = Some(full.info_bytes().len() as u64))
        .unwrap();
    assert_eq!(
        h.take_events(),
        vec![Event::MetadataOffered {
            total_size: full.info_bytes().len() as u32
        }]
    );
    assert_eq!(
        h.session.request_metadata(pieces, h.now),
        Err(Refused::MetadataPieceOutOfRange {
            piece: pieces,
            pieces
        })
    );
    h.session.request_metadata(0, h.now).unwrap();
    assert_eq!(
        h.session.request_metadata(0, h.now),
        Err(Refused::AlreadyRequested)
    );
    h.session.request_metadata(1, h.now).unwrap();
    h.flush();
    assert_eq!(
        h.received(),
        vec![Got::MetadataRequest(0), Got::MetadataRequest(1)]
    );
    let reject = metadata_payload(MetadataMessage::Reject { piece: 0 });
    let data = metadata_payload(MetadataMessage::Data {
        piece: 2,
        total_size: full.info_bytes().len() as u32,
        data: &full.info_bytes()[2 * 16384..],
    });
    for payload in [&reject, &data] {
        h.send(Message::Extended {
            id: UT_METADATA_ID,
            payload,
        })
        .unwrap();
    }
    assert!(h.rx.is_empty(), "piece 2 was never requested");
    assert_eq!(
        h.take_events(),
        vec![Event::MetadataRequestDropped {
            piece: 0,
            reason: DropReason::Rejected
        }]
    );
    h.send(Message::KeepAlive).unwrap();
    h.advance(METADATA_REQUEST_TIMEOUT).unwrap();
    assert_eq!(
        h.take_events(),
        vec![Event::MetadataRequestDropped {
            piece: 1,
            reason: DropReason::TimedOut
        }]
    );
    assert_eq!(
        h.session.metadata_request_slots(),
        METADATA_REQUESTS_OUTSTANDING_MAX
    );
}

#[test]
fn oversized_metadata_offers_are_not_offers() {
    // A metadata_size beyond METADATA_BYTES_MAX raises no event and allows no request.
    let full = seed(3);
    let mut h = Harness::active(magnet(full.info_hash()), FAST);
    let too_big = crate::wire::METADATA_BYTES_MAX as u64 + 1;
    h.send_extension_handshake_with(|e| e.metadata_size = Some(too_big))
        .unwrap();
    assert!(h.take_events().is_empty());
    assert_eq!(h.session.peer_metadata_size(), None);
    assert_eq!(h.session.metadata_request_slots(), 0);
}

#[test]
fn assembler_bans_a_lone_corrupt_peer_and_one_that_lies_about_sizes() {
    // A peer that supplied every piece of a corrupt attempt is named at once; a piece whose
    // total_size or length contradicts the attempt names its sender; banned peers get no
    // more requests, and a dropped request frees its piece for others.
    let good = seed(1700);
    let info = good.info_bytes();
    let size = info.len() as u32;
    let pieces = info.len().div_ceil(16384) as u32;
    let now = Instant::from_secs(7);
    let mut a = MetadataAssembler::new(good.info_hash());
    for p in 0..pieces {
        assert_eq!(a.next_request(1u8, size, now), Some(p));
    }
    assert_eq!(a.next_request(1, size, now), None, "all reserved");
    assert_eq!(a.next_request(2, size + 1, now), None, "another size");
    for p in 0..pieces {
        let range = p as usize * 16384..((p as usize + 1) * 16384).min(info.len());
        let mut data = info[range].to_vec();
        data[0] ^= 1;
        let v = a.on_piece(1, p, size, &data);
        if p + 1 < pieces {
            assert_eq!(v, MetadataProgress::Incomplete);
        } else {
            assert_eq!(v, MetadataProgress::Corrupt { bad_peers: vec![1] });
        }
    }
    assert!(a.is_banned(1));
    assert_eq!(a.next_request(1, size, now), None);
    assert_eq!(a.next_request(2, size, now), Some(0));
    a.on_dropped(2, 0, DropReason::Rejected);
    assert_eq!(
        a.next_request(2, size, now),
        Some(1),
        "not asked again for 0"
    );
    assert_eq!(a.next_request(3, size, now), Some(0));
    assert_eq!(
        a.on_piece(3, 0, size + 5, &info[..16384]),
        MetadataProgress::BadPeer(3)
    );
    assert_eq!(
        a.on_piece(2, 1, size, &info[..10]),
        MetadataProgress::BadPeer(2)
    );
    assert!(a.is_banned(2) && a.is_banned(3));
    assert_eq!(
        a.next_request(4, size, now),
        Some(0),
        "banned peers' pieces are free"
    );
}
