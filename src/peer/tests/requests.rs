//! Serving blocks: requests, cancels, choking, invalid requests and floods.

use super::*;

const FAST: Reserved = Reserved::OURS;
const PLAIN: Reserved = Reserved([0; 8]);

fn req(piece: u32, offset: u32, len: u32) -> Message<'static> {
    Harness::request(piece, offset, len)
}

fn raw(piece: u32, offset: u32, len: u32) -> RawBlock {
    RawBlock { piece, offset, len }
}

/// An active session whose interested peer we have unchoked; greeting and unchoke read.
fn unchoked(torrent: TestTorrent, reserved: Reserved) -> Harness {
    let mut h = Harness::active(torrent, reserved);
    h.send(Message::Interested).unwrap();
    h.session.set_choked(false, h.now);
    h.flush();
    assert_eq!(h.received(), vec![Got::Unchoke]);
    h
}

fn expected_piece(piece: u32, offset: u32, len: u32) -> Got {
    let start = u64::from(piece) * u64::from(PIECE_BYTES) + u64::from(offset);
    Got::Piece {
        piece,
        offset,
        data: (start..start + u64::from(len)).map(content).collect(),
    }
}

#[test]
fn interested_peer_is_served_after_unchoke() {
    // Interest raises an event; after unchoke a request comes back as the right bytes,
    // including the short last block of the short last piece, and is counted as uploaded.
    let mut h = Harness::active(seed(10), FAST);
    h.send(Message::Interested).unwrap();
    assert_eq!(
        h.session.poll_event(),
        None,
        "the harness already drained it"
    );
    assert_eq!(
        h.events.last(),
        Some(&Event::InterestChanged { interested: true })
    );
    h.session.set_choked(false, h.now);
    h.send(req(0, 16384, 16384)).unwrap();
    let last_len = PIECE_BYTES - 5000 - 16384;
    h.send(req(9, 16384, last_len)).unwrap();
    assert_eq!(
        h.received(),
        vec![
            Got::Unchoke,
            expected_piece(0, 16384, 16384),
            expected_piece(9, 16384, last_len),
        ]
    );
    assert_eq!(h.session.uploaded_bytes(), u64::from(16384 + last_len));
    assert!(h.session.upload_rate(h.now) > 0);
    h.send(Message::NotInterested).unwrap();
    assert_eq!(
        h.events.last(),
        Some(&Event::InterestChanged { interested: false })
    );
}

#[test]
fn cancel_removes_a_queued_request() {
    // A cancelled request is never served; a fast peer gets the reject BEP 6 promises it,
    // a plain peer gets nothing.
    for (reserved, reject) in [(FAST, true), (PLAIN, false)] {
        let mut h = unchoked(seed(10), reserved);
        h.hold_blocks = true;
        h.send_all(&[req(1, 0, 16384), req(2, 0, 16384)]).unwrap();
        assert_eq!(h.session.requests_queued(), 2);
        h.send(Message::Cancel(raw(1, 0, 16384))).unwrap();
        h.send(Message::Cancel(raw(7, 0, 16384))).unwrap(); // not queued: ignored
        assert_eq!(h.session.requests_queued(), 1);
        h.hold_blocks = false;
        h.flush();
        let mut want = Vec::new();
        if reject {
            want.push(Got::Reject(raw(1, 0, 16384)));
        }
        want.push(expected_piece(2, 0, 16384));
        assert_eq!(h.received(), want);
    }
}

#[test]
fn choking_drops_the_queue_with_rejects_for_fast_peers() {
    // Choke discards queued requests: a fast peer gets a reject for each, in order; a plain
    // peer knows from BEP 3 that choke drops them all.
    for (reserved, reject) in [(FAST, true), (PLAIN, false)] {
        let mut h = unchoked(seed(10), reserved);
        h.hold_blocks = true;
        h.send_all(&[req(3, 0, 100), req(4, 0, 100), req(5, 0, 100)])
            .unwrap();
        h.session.set_choked(true, h.now);
        h.hold_blocks = false;
        h.flush();
        let mut want = vec![Got::Choke];
        if reject {
            want.extend([3, 4, 5].map(|p| Got::Reject(raw(p, 0, 100))));
        }
        assert_eq!(h.received(), want);
        assert_eq!(h.session.requests_queued(), 0);
        assert!(h.session.poll_block().is_none());
    }
}

#[test]
fn requests_while_choked_are_rejected_with_fast_and_ignored_without() {
    // A request that crossed our choke is not served; only a fast peer hears about it, and
    // it does not count as an invalid request.
    for (reserved, reject) in [(FAST, true), (PLAIN, false)] {
        let mut h = Harness::active(seed(10), reserved);
        for _ in 0..=PEER_REQUESTS_INVALID_MAX {
            h.send(req(0, 0, 16384)).unwrap();
        }
        let got = h.received();
        let want = if reject {
            vec![Got::Reject(raw(0, 0, 16384)); PEER_REQUESTS_INVALID_MAX as usize + 1]
        } else {
            vec![]
        };
        assert_eq!(got, want);
    }
}

#[test]
fn requests_that_ignore_our_choke_close_past_the_limit() {
    // A choked peer may race PEER_REQUESTS_WHILE_CHOKED_MAX requests against our choke
    // (each rejected with BEP 6); one more closes it, fast or not. Unchoking forgives.
    for reserved in [FAST, PLAIN] {
        let mut h = Harness::active(seed(10), reserved);
        for _ in 0..PEER_REQUESTS_WHILE_CHOKED_MAX {
            h.send(req(0, 0, 16384)).unwrap();
        }
        assert_eq!(
            h.send(req(0, 0, 16384)),
            Err(PeerError::RequestsWhileChoked {
                count: PEER_REQUESTS_WHILE_CHOKED_MAX + 1,
                max: PEER_REQUESTS_WHILE_CHOKED_MAX,
            })
        );
    }
    let mut h = unchoked(seed(10), FAST);
    h.session.set_choked(true, h.now);
    for _ in 0..PEER_REQUESTS_WHILE_CHOKED_MAX {
        h.send(req(0, 0, 16384)).unwrap();
    }
    h.session.set_choked(false, h.now);
    h.session.set_choked(true, h.now);
    h.send(req(0, 0, 16384)).unwrap();
}

#[test]
fn invalid_requests_count_while_choked_too() {
    // Requests outside the torrent are invalid whether or not we choke: a choked peer
    // sending them is closed after PEER_REQUESTS_INVALID_MAX, not after the choke limit.
    let mut h = Harness::active(seed(10), FAST);
    for _ in 0..PEER_REQUESTS_INVALID_MAX {
        h.send(req(10, 0, 16384)).unwrap();
    }
    assert!(matches!(
        h.send(req(10, 0, 16384)),
        Err(PeerError::InvalidRequests { .. })
    ));
}

#[test]
fn invalid_requests_are_rejected_and_too_many_close() {
    // Requests outside the torrent, past a piece's end, over 16 KiB or for pieces we lack
    // get a reject; one more than PEER_REQUESTS_INVALID_MAX closes the connection.
    let mut h = unchoked(partial(10, &[0, 1, 2, 3, 4, 5, 6, 7, 8]), FAST);
    let bad = [
        raw(10, 0, 16384),
        raw(0, PIECE_BYTES - 100, 101),
        raw(0, 0, 16385),
        raw(0, 0, 0),
        raw(9, 0, 16384), // a piece we do not have
    ];
    for r in bad {
        h.send(Message::Request(r)).unwrap();
        assert_eq!(h.received(), vec![Got::Reject(r)]);
    }
    for _ in bad.len() as u32..PEER_REQUESTS_INVALID_MAX {
        h.send(Message::Request(bad[0])).unwrap();
    }
    assert_eq!(
        h.send(Message::Request(bad[1])),
        Err(PeerError::InvalidRequests {
            count: PEER_REQUESTS_INVALID_MAX + 1,
            max: PEER_REQUESTS_INVALID_MAX,
            last: bad[1]
        })
    );
}

#[test]
fn request_flood_closes_plain_peers_at_once_and_fast_peers_after_rejects() {
    // The queue holds PEER_REQUESTS_QUEUED_MAX requests. One more closes a plain peer; a
    // fast peer gets rejects until PEER_REQUESTS_OVERFLOW_MAX more, then is closed.
    let distinct = |n: usize| -> Vec<Message<'static>> {
        (0..n as u32).map(|i| req(i % 10, i / 10, 1)).collect()
    };
    let flood = Err(PeerError::RequestFlood {
        queued: PEER_REQUESTS_QUEUED_MAX,
        max: PEER_REQUESTS_QUEUED_MAX,
    });
    let mut h = unchoked(seed(10), PLAIN);
    h.hold_blocks = true;
    h.send_all(&distinct(PEER_REQUESTS_QUEUED_MAX)).unwrap();
    assert_eq!(h.session.requests_queued(), PEER_REQUESTS_QUEUED_MAX);
    assert_eq!(h.send(req(0, 999, 1)), flood);

    let mut h = unchoked(seed(10), FAST);
    h.hold_blocks = true;
    let all = distinct(PEER_REQUESTS_QUEUED_MAX + PEER_REQUESTS_OVERFLOW_MAX as usize);
    h.send_all(&all).unwrap();
    let got = h.received();
    assert_eq!(got.len(), PEER_REQUESTS_OVERFLOW_MAX as usize);
    assert!(got.iter().all(|g| matches!(g, Got::Reject(_))));
    assert_eq!(h.send(req(0, 999, 1)), flood);
}

#[test]
fn duplicate_requests_are_served_once() {
    // The same block requested twice while queued is sent once.
    let mut h = unchoked(seed(10), FAST);
    h.hold_blocks = true;
    h.send_all(&[req(1, 0, 10), req(1, 0, 10)]).unwrap();
    assert_eq!(h.session.requests_queued(), 1);
    h.hold_blocks = false;
    h.flush();
    assert_eq!(h.received(), vec![expected_piece(1, 0, 10)]);
}

#[test]
fn unchoke_and_choke_are_sent_only_on_change() {
    // Repeating a command the peer already knows adds no bytes.
    let mut h = unchoked(seed(10), FAST);
    h.session.set_choked(false, h.now);
    h.flush();
    assert!(h.received().is_empty());
    h.session.set_choked(true, h.now);
    h.session.set_choked(true, h.now);
    h.flush();
    assert_eq!(h.received(), vec![Got::Choke]);
}

#[test]
fn queued_block_carries_the_instant_its_request_was_parsed() {
    // poll_block_timed hands back the `now` of the input that held the request, not the
    // `now` of the poll, so the shell can measure request-to-send latency.
    let mut h = unchoked(seed(4), FAST);
    h.hold_blocks = true;
    let asked_at = h.now;
    h.send(req(1, 0, 16384)).unwrap();
    h.now += Duration::from_millis(30);
    h.send(req(2, 0, 16384)).unwrap();
    let (first, first_at) = h.session.poll_block_timed().unwrap();
    let (second, second_at) = h.session.poll_block_timed().unwrap();
    assert_eq!((first.piece.get(), first_at), (1, asked_at));
    assert_eq!(
        (second.piece.get(), second_at),
        (2, asked_at + Duration::from_millis(30))
    );
    assert!(h.session.poll_block_timed().is_none());
}
