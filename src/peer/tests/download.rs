//! Downloading: requests and their fate (blocks, rejects, chokes, timeouts, cancels), our
//! `have`s, availability events, and whole downloads between two sessions.

use std::collections::VecDeque;

use super::*;

const FAST: Reserved = Reserved::OURS;
const PLAIN: Reserved = Reserved([0; 8]);

fn raw(piece: u32, offset: u32, len: u32) -> RawBlock {
    RawBlock { piece, offset, len }
}

fn block(t: &TestTorrent, piece: u32, offset: u32, len: u32) -> BlockRef {
    t.layout().block(piece, offset, len).unwrap()
}

fn piece_data(piece: u32, offset: u32, len: u32) -> Vec<u8> {
    let start = u64::from(piece) * u64::from(PIECE_BYTES) + u64::from(offset);
    (start..start + u64::from(len)).map(content).collect()
}

/// A session that has nothing, talking to a remote seed (`reserved`) that unchoked it.
fn leeching(reserved: Reserved) -> Harness {
    let mut h = Harness::active(partial(10, &[]), reserved);
    let full = Bitfield::full(10);
    h.send_all(&[Message::Bitfield(full.as_bytes()), Message::Unchoke])
        .unwrap();
    h.session.set_interested(true, h.now);
    h.flush();
    assert_eq!(h.received(), vec![Got::Interested]);
    assert_eq!(
        h.take_events(),
        vec![
            Event::PeerPieces {
                added: PieceSet::All
            },
            Event::PeerUnchoked
        ]
    );
    h
}

/// Requests the first `n` blocks of piece 0.. (16 KiB each) and returns them.
fn request_blocks(h: &mut Harness, n: u32) -> Vec<BlockRef> {
    let blocks: Vec<BlockRef> = (0..n)
        .map(|i| block(&h.torrent, i / 2, (i % 2) * 16384, 16384))
        .collect();
    for &b in &blocks {
        h.session.request(b, h.now).unwrap();
    }
    h.flush();
    let want: Vec<Got> = blocks.iter().map(|&b| Got::Request(b.into())).collect();
    assert_eq!(h.received(), want);
    blocks
}

fn send_piece(h: &mut Harness, piece: u32, offset: u32, len: u32) -> Result<(), PeerError> {
    let data = piece_data(piece, offset, len);
    h.send(Message::Piece {
        piece,
        offset,
        data: &data,
    })
}

#[test]
fn requested_blocks_come_back_as_payloads_and_are_metered() {
    // A requested block is handed to the shell with its bytes, counted in the download
    // rate and bytes, and stamps the last-block instant.
    let mut h = leeching(FAST);
    let blocks = request_blocks(&mut h, 2);
    assert_eq!(h.session.requests_outstanding(), 2);
    assert_eq!(h.session.last_block_received(), None);
    send_piece(&mut h, 0, 16384, 16384).unwrap();
    assert_eq!(
        h.rx,
        vec![Rx::Block {
            block: blocks[1],
            data: piece_data(0, 16384, 16384),
            late: false
        }]
    );
    assert_eq!(h.session.requests_outstanding(), 1);
    assert_eq!(h.session.downloaded_bytes(), 16384);
    assert!(h.session.download_rate(h.now) > 0);
    assert_eq!(h.session.last_block_received(), Some(h.now));
}

#[test]
fn input_stops_after_each_block_so_the_shell_can_copy_it() {
    // Two blocks in one read: the first call returns the first block and stops right after
    // its frame; the second call returns the other.
    let mut h = leeching(FAST);
    request_blocks(&mut h, 2);
    let mut bytes = Vec::new();
    for offset in [0, 16384] {
        let data = piece_data(0, offset, 16384);
        Message::Piece {
            piece: 0,
            offset,
            data: &data,
        }
        .encode(&mut bytes);
    }
    let first = h.session.handle_input(&bytes, h.now).unwrap();
    assert_eq!(first.used, bytes.len() / 2);
    assert!(matches!(first.received, Some(Received::Block { block, .. }) if block.offset == 0));
    let second = h.session.handle_input(&bytes[first.used..], h.now).unwrap();
    assert_eq!(second.used, bytes.len() / 2);
    assert!(
        matches!(second.received, Some(Received::Block { block, .. }) if block.offset == 16384)
    );
    assert_eq!(h.session.requests_outstanding(), 0);
}

#[test]
fn choke_without_fast_drops_every_request_with_events() {
    // BEP 3: a choke discards our requests. Each one is reported dropped, in order; a block
    // that was already on its way is still delivered, as late, and not counted unrequested.
    let mut h = leeching(PLAIN);
    let blocks = request_blocks(&mut h, 3);
    h.send(Message::Choke).unwrap();
    let mut want = vec![Event::PeerChoked];
    want.extend(blocks.iter().map(|&block| Event::RequestDropped {
        block,
        reason: DropReason::Choked,
    }));
    assert_eq!(h.take_events(), want);
    assert_eq!(h.session.requests_outstanding(), 0);
    assert_eq!(h.session.request_slots(), 0);
    assert_eq!(
        h.session.request(blocks[0], h.now),
        Err(Refused::PeerChoking)
    );
    send_piece(&mut h, 0, 0, 16384).unwrap();
    assert!(matches!(h.rx[..], [Rx::Block { late: true, .. }]));
    assert_eq!(h.session.blocks_unrequested(), 0);
    h.send(Message::Unchoke).unwrap();
    assert_eq!(h.take_events(), vec![Event::PeerUnchoked]);
    assert!(h.session.request_slots() > 0);
}

#[test]
fn choke_with_fast_keeps_requests_until_the_peer_rejects_them() {
    // BEP 6: the peer must answer each request after a choke. Rejects are reported one by
    // one; a request it serves anyway arrives normally.
    let mut h = leeching(FAST);
    let blocks = request_blocks(&mut h, 3);
    h.send(Message::Choke).unwrap();
    assert_eq!(h.take_events(), vec![Event::PeerChoked]);
    assert_eq!(h.session.requests_outstanding(), 3);
    h.send_all(&[
        Message::Reject(blocks[0].into()),
        Message::Reject(blocks[2].into()),
    ])
    .unwrap();
    assert_eq!(
        h.take_events(),
        vec![
            Event::RequestDropped {
                block: blocks[0],
                reason: DropReason::Rejected
            },
            Event::RequestDropped {
                block: blocks[2],
                reason: DropReason::Rejected
            },
        ]
    );
    send_piece(&mut h, 0, 16384, 16384).unwrap();
    assert!(matches!(h.rx[..], [Rx::Block { late: false, .. }]));
    assert_eq!(h.session.requests_outstanding(), 0);
}

#[test]
fn a_reject_for_a_request_never_sent_closes() {
    // BEP 6: a reject for something we did not request SHOULD close the connection.
    let mut h = leeching(FAST);
    request_blocks(&mut h, 1);
    let err = h.send(Message::Reject(raw(5, 0, 16384))).unwrap_err();
    assert!(matches!(
        err,
        PeerError::UnexpectedMessage {
            what: "reject request",
            ..
        }
    ));
}

#[test]
fn a_stalled_peer_has_its_requests_timed_out_but_keeps_their_slots() {
    // Requests outstanding with no block for REQUEST_TIMEOUT are reported timed out (the
    // clock restarts with every block); they keep their slots, so a stalled peer is not
    // fed more, and a late answer is delivered as late and frees the slot.
    let mut h = leeching(FAST);
    h.send_extension_handshake_with(|e| e.reqq = Some(3))
        .unwrap();
    let blocks = request_blocks(&mut h, 3);
    h.advance(Duration::from_secs(30)).unwrap();
    send_piece(&mut h, 0, 0, 16384).unwrap();
    h.advance(REQUEST_TIMEOUT - Duration::from_secs(1)).unwrap();
    assert!(h.take_events().is_empty(), "progress restarts the clock");
    h.advance(Duration::from_secs(1)).unwrap();
    assert_eq!(
        h.take_events(),
        blocks[1..]
            .iter()
            .map(|&block| Event::RequestDropped {
                block,
                reason: DropReason::TimedOut
            })
            .collect::<Vec<_>>()
    );
    assert_eq!(h.session.requests_timed_out(), 2);
    assert_eq!(h.session.requests_outstanding(), 2);
    assert_eq!(h.session.request_slots(), 1);
    send_piece(&mut h, 1, 0, 16384).unwrap();
    assert!(matches!(h.rx[..], [_, Rx::Block { late: true, .. }]));
    assert_eq!(h.session.request_slots(), 2);
    assert!(h.take_events().is_empty(), "a late block raises nothing");
}

#[test]
fn a_peer_that_never_answers_is_detected() {
    // Not a single block: the first requests time out REQUEST_TIMEOUT after they were sent
    // and the shell sees no block ever arrived.
    let mut h = leeching(PLAIN);
    let sent_at = h.now;
    let blocks = request_blocks(&mut h, 2);
    assert_eq!(h.session.poll_timeout(), Some(sent_at + REQUEST_TIMEOUT));
    h.send(Message::KeepAlive).unwrap();
    h.advance(REQUEST_TIMEOUT).unwrap();
    assert_eq!(h.take_events().len(), blocks.len());
    assert_eq!(h.session.last_block_received(), None);
    assert_eq!(h.session.requests_timed_out(), 2);
}

#[test]
fn cancelled_requests_free_their_slot_and_late_answers_are_absorbed() {
    // `cancel` sends a cancel and frees the slot; the block that crossed it arrives late;
    // with BEP 6 a reject answering the cancel raises nothing.
    let mut h = leeching(FAST);
    let blocks = request_blocks(&mut h, 3);
    assert!(h.session.cancel(blocks[0], h.now));
    assert!(h.session.cancel(blocks[1], h.now));
    assert!(!h.session.cancel(blocks[1], h.now), "already cancelled");
    h.flush();
    assert_eq!(
        h.received(),
        vec![Got::Cancel(blocks[0].into()), Got::Cancel(blocks[1].into())]
    );
    assert_eq!(h.session.requests_outstanding(), 1);
    send_piece(&mut h, 0, 0, 16384).unwrap();
    h.send(Message::Reject(blocks[1].into())).unwrap();
    assert!(matches!(h.rx[..], [Rx::Block { late: true, .. }]));
    assert!(h.take_events().is_empty());
    assert_eq!(h.session.blocks_unrequested(), 0);
}

#[test]
fn unrequested_blocks_are_counted_and_close_past_the_limit() {
    // Blocks we never asked for are dropped (no payload), counted, and one more than
    // PEER_BLOCKS_UNREQUESTED_MAX closes the connection — seeding sessions included.
    let mut h = Harness::active(seed(10), FAST);
    for _ in 0..PEER_BLOCKS_UNREQUESTED_MAX {
        send_piece(&mut h, 1, 0, 100).unwrap();
    }
    assert!(h.rx.is_empty());
    assert_eq!(h.session.blocks_unrequested(), PEER_BLOCKS_UNREQUESTED_MAX);
    assert_eq!(
        send_piece(&mut h, 1, 0, 100),
        Err(PeerError::UnrequestedBlocks {
            count: PEER_BLOCKS_UNREQUESTED_MAX + 1,
            max: PEER_BLOCKS_UNREQUESTED_MAX,
            last: raw(1, 0, 100)
        })
    );
}

#[test]
fn a_block_of_the_wrong_length_is_not_the_one_requested() {
    // The answer must match the request exactly; a shorter block is unrequested.
    let mut h = leeching(FAST);
    request_blocks(&mut h, 1);
    send_piece(&mut h, 0, 0, 16000).unwrap();
    assert!(h.rx.is_empty());
    assert_eq!(h.session.blocks_unrequested(), 1);
    assert_eq!(h.session.requests_outstanding(), 1);
}

#[test]
fn requests_are_refused_when_they_could_not_be_served() {
    // Before the peer has the piece, while choked (except allowed-fast pieces), twice the
    // same block, and past the peer's reqq: refused, nothing sent.
    let t = partial(10, &[]);
    let mut h = Harness::active(t.clone(), FAST);
    h.send_extension_handshake_with(|e| e.reqq = Some(2))
        .unwrap();
    let b = |p, o| block(&t, p, o, 16384);
    assert_eq!(
        h.session.request(b(0, 0), h.now),
        Err(Refused::PeerLacksPiece { piece: 0 })
    );
    h.send_all(&[Message::HaveAll, Message::AllowedFast { piece: 3 }])
        .unwrap();
    assert_eq!(h.session.request(b(0, 0), h.now), Err(Refused::PeerChoking));
    assert_eq!(h.session.request(b(3, 0), h.now), Ok(()));
    assert_eq!(
        h.session.request(b(3, 0), h.now),
        Err(Refused::AlreadyRequested)
    );
    h.send(Message::Unchoke).unwrap();
    assert_eq!(h.session.request_limit(), 2);
    assert_eq!(h.session.request_slots(), 1);
    assert_eq!(h.session.request(b(0, 0), h.now), Ok(()));
    assert_eq!(
        h.session.request(b(0, 16384), h.now),
        Err(Refused::NoRequestSlot {
            outstanding: 2,
            limit: 2
        })
    );
    h.flush();
    let got = h.received();
    assert_eq!(
        got,
        vec![
            Got::Request(raw(3, 0, 16384)),
            Got::Request(raw(0, 0, 16384))
        ]
    );
    let mut h = Harness::inbound_idle(partial(10, &[]));
    assert_eq!(h.session.request(b(0, 0), h.now), Err(Refused::NotActive));
    h.session.set_interested(true, h.now);
    h.flush();
    assert!(h.received().is_empty());
}

#[test]
fn peer_declarations_are_reported_as_deltas() {
    // `have` raises PeerHave once per new piece; a later bitfield reports only what it adds;
    // `have all` the rest; suggest and allowed fast are passed on for valid pieces only.
    let t = partial(10, &[]);
    let p = |i| t.layout().piece(i).unwrap();
    let mut h = Harness::active(t.clone(), FAST);
    h.send_all(&[
        Message::Have { piece: 1 },
        Message::Have { piece: 1 },
        Message::Bitfield(&[0xc0, 0x00]),
        Message::Suggest { piece: 2 },
        Message::Suggest { piece: 99 },
        Message::AllowedFast { piece: 4 },
        Message::AllowedFast { piece: 4 },
        Message::AllowedFast { piece: 99 },
        Message::HaveAll,
    ])
    .unwrap();
    let mut first = Bitfield::empty(10);
    first.set(p(0));
    let mut known = first.clone();
    known.set(p(1));
    let rest = Bitfield::full(10).difference(&known);
    assert_eq!(
        h.take_events(),
        vec![
            Event::PeerHave { piece: p(1) },
            Event::PeerPieces {
                added: PieceSet::Partial(first)
            },
            Event::Suggested { piece: p(2) },
            Event::AllowedFast { piece: p(4) },
            Event::PeerPieces {
                added: PieceSet::Partial(rest)
            },
        ]
    );
    assert!(h.session.peer_is_seed());
    assert_eq!(h.session.allowed_fast(), &[p(4)]);
}

#[test]
fn our_new_pieces_are_announced_once_and_served() {
    // A new piece is announced with `have` once, even to a peer that has it (so it can
    // tell when we become a seed); it is served from then on; a piece completed before the
    // handshake is part of the greeting instead.
    let t = partial(10, &[0]);
    let p = |i| t.layout().piece(i).unwrap();
    let mut h = Harness::active(t.clone(), FAST);
    h.send(Message::Have { piece: 5 }).unwrap();
    h.session.have(p(4), h.now);
    h.session.have(p(5), h.now);
    h.session.have(p(4), h.now);
    h.flush();
    assert_eq!(h.received(), vec![Got::Have(4), Got::Have(5)]);
    assert!(h.session.have_pieces().has(p(5)));
    h.send_all(&[Message::Interested]).unwrap();
    h.session.set_choked(false, h.now);
    h.send(Harness::request(4, 0, 100)).unwrap();
    let got = h.received();
    assert!(
        matches!(got.last(), Some(Got::Piece { piece: 4, .. })),
        "{got:?}"
    );

    let now = Instant::from_secs(1000);
    let session = Session::outbound(Arc::clone(&t.shared), t.have.clone(), local(1), now);
    let mut h = Harness::new(session, t.clone());
    h.session.have(p(9), now);
    h.send_handshake(FAST, t.info_hash()).unwrap();
    let got = h.received();
    assert_eq!(got[1], Got::Bitfield(vec![0x80, 0x40]));
    assert!(!got.contains(&Got::Have(9)));
}

#[test]
fn interest_is_sent_on_change_only() {
    // Repeating our interest state adds no bytes.
    let mut h = Harness::active(partial(10, &[]), FAST);
    h.session.set_interested(true, h.now);
    h.session.set_interested(true, h.now);
    h.session.set_interested(false, h.now);
    h.flush();
    assert_eq!(h.received(), vec![Got::Interested, Got::NotInterested]);
    assert!(!h.session.am_interested());
}

/// A trivial picker for tests: wants every block of the pieces its node lacks, requests
/// them in order, re-queues dropped ones, verifies pieces and announces them.
struct InOrderPicker {
    queue: VecDeque<BlockRef>,
    missing_blocks: Vec<u32>,
    hashes: Vec<[u8; 20]>,
    verified: u32,
}

impl InOrderPicker {
    fn new(session: &Session, hashes: &[[u8; 20]]) -> InOrderPicker {
        let layout = session.layout().unwrap().clone();
        let mut queue = VecDeque::new();
        let mut missing_blocks = vec![0; layout.piece_count() as usize];
        for piece in layout.pieces() {
            if session.have_pieces().has(piece) {
                continue;
            }
            let len = layout.piece_len(piece);
            for offset in (0..len).step_by(16384) {
                queue.push_back(
                    layout
                        .block(piece.get(), offset, (len - offset).min(16384))
                        .unwrap(),
                );
                missing_blocks[piece.idx()] += 1;
            }
        }
        InOrderPicker {
            queue,
            missing_blocks,
            hashes: hashes.to_vec(),
            verified: 0,
        }
    }

    fn is_done(&self) -> bool {
        self.missing_blocks.iter().all(|&m| m == 0)
    }

    /// Reacts to the node's events and payloads, then hands out requests.
    fn run(&mut self, node: &mut Node, now: Instant) {
        for ev in std::mem::take(&mut node.events) {
            if let Event::RequestDropped { block, .. } = ev {
                self.queue.push_front(block);
            }
        }
        for rx in node.store_blocks() {
            let Rx::Block { block, late, .. } = rx else {
                continue;
            };
            assert!(!late);
            let piece = block.piece;
            self.missing_blocks[piece.idx()] -= 1;
            if self.missing_blocks[piece.idx()] == 0 {
                let layout = node.session.layout().unwrap();
                let start = layout.piece_start(piece) as usize;
                let end = start + layout.piece_len(piece) as usize;
                let digest: [u8; 20] = Sha1::digest(&node.disk[start..end]).into();
                assert_eq!(digest, self.hashes[piece.idx()], "piece {piece:?}");
                self.verified += 1;
                node.session.have(piece, now);
            }
        }
        node.session.set_interested(!self.is_done(), now);
        while node.session.request_slots() > 0 {
            let Some(&b) = self.queue.front() else {
                break;
            };
            if node.session.request(b, now).is_err() {
                break;
            }
            self.queue.pop_front();
        }
    }
}

/// A trivial choker for tests: unchokes whoever is interested.
fn unchoke_interested(node: &mut Node, now: Instant) {
    let interested = node.session.peer_interested();
    node.session.set_choked(!interested, now);
}

#[test]
fn a_leecher_downloads_a_whole_torrent_from_a_seed_and_verifies_it() {
    // Two sessions, bytes split into 1500-byte reads: the leecher requests every block in
    // order and ends with every piece's SHA-1 right and a disk equal to the seed's.
    let info = info(13, false);
    let leecher = partial(13, &[]);
    let mut pair = Pair::new(leecher, vec![seed(13)]);
    pair.chunk = 1500;
    pair.drive().unwrap();
    let mut picker = InOrderPicker::new(&pair.a.session, &info.pieces);
    for _ in 0..100_000 {
        picker.run(&mut pair.a, pair.now);
        unchoke_interested(&mut pair.b, pair.now);
        if picker.is_done() {
            break;
        }
        pair.step().unwrap();
        pair.now += Duration::from_millis(1);
    }
    assert!(picker.is_done());
    pair.drive().unwrap();
    assert_eq!(picker.verified, 13);
    let total = pair.a.session.layout().unwrap().total_length();
    assert_eq!(pair.a.disk, pair.b.disk);
    assert_eq!(pair.a.session.downloaded_bytes(), total);
    assert_eq!(pair.b.session.uploaded_bytes(), total);
    assert!(pair.a.session.have_pieces().is_full());
    assert_eq!(pair.a.session.blocks_unrequested(), 0);
    // The seed heard a `have` for every piece and now sees us as a seed too.
    let haves = pair
        .b
        .events
        .iter()
        .filter(|e| matches!(e, Event::PeerHave { .. }));
    assert_eq!(haves.count(), 13);
    assert!(pair.b.session.peer_is_seed());
}

#[test]
fn two_leechers_with_complementary_halves_complete_each_other() {
    // Both directions on one connection at once: each side downloads the half it lacks,
    // announces each verified piece with `have`, and the other sees PeerHave events for
    // exactly those pieces.
    let info = info(8, false);
    let low = partial(8, &[0, 1, 2, 3]);
    let high = partial(8, &[4, 5, 6, 7]);
    let mut pair = Pair::new(low, vec![high]);
    pair.chunk = 4000;
    for (node, half) in [(&mut pair.a, 0..4), (&mut pair.b, 4..8)] {
        for i in half {
            let start = (i * PIECE_BYTES) as usize;
            let end = (start + PIECE_BYTES as usize).min(node.disk.len());
            for (k, byte) in node.disk[start..end].iter_mut().enumerate() {
                *byte = content((start + k) as u64);
            }
        }
    }
    pair.drive().unwrap();
    let mut pick_a = InOrderPicker::new(&pair.a.session, &info.pieces);
    let mut pick_b = InOrderPicker::new(&pair.b.session, &info.pieces);
    let mut b_saw = Vec::new();
    let mut a_saw = Vec::new();
    for _ in 0..100_000 {
        for (node, saw) in [(&mut pair.a, &mut a_saw), (&mut pair.b, &mut b_saw)] {
            saw.extend(node.events.iter().filter_map(|e| match e {
                Event::PeerHave { piece } => Some(piece.get()),
                _ => None,
            }));
        }
        pick_a.run(&mut pair.a, pair.now);
        pick_b.run(&mut pair.b, pair.now);
        unchoke_interested(&mut pair.a, pair.now);
        unchoke_interested(&mut pair.b, pair.now);
        let moved = pair.step().unwrap();
        if !moved && pick_a.is_done() && pick_b.is_done() {
            break;
        }
    }
    assert!(pick_a.is_done() && pick_b.is_done());
    assert_eq!(pair.a.disk, pair.b.disk);
    a_saw.sort_unstable();
    b_saw.sort_unstable();
    assert_eq!(a_saw, vec![0, 1, 2, 3]);
    assert_eq!(b_saw, vec![4, 5, 6, 7]);
    assert!(pair.a.session.peer_is_seed() && pair.b.session.peer_is_seed());
}

#[test]
fn a_request_passed_over_by_many_later_answers_is_dropped_as_skipped() {
    // A peer that claims every piece but answers only later requests (it lacks the first
    // piece): once REQUEST_SKIPS_MAX later blocks came first, the request is reported as
    // skipped and frees its slot; a late answer after that is still data, marked late.
    let pieces = 40;
    let mut h = Harness::active(partial(pieces, &[]), PLAIN);
    let full = Bitfield::full(pieces);
    h.send_all(&[Message::Bitfield(full.as_bytes()), Message::Unchoke])
        .unwrap();
    h.session.set_interested(true, h.now);
    h.flush();
    h.received();
    h.take_events();
    let n = u32::from(REQUEST_SKIPS_MAX) + 2;
    let blocks: Vec<BlockRef> = (0..n)
        .map(|i| block(&h.torrent, i / 2, (i % 2) * 16384, 16384))
        .collect();
    for &b in &blocks {
        h.session.request(b, h.now).unwrap();
    }
    h.flush();
    h.received();
    // Answer everything but the first block, in order.
    for i in 1..n {
        send_piece(&mut h, i / 2, (i % 2) * 16384, 16384).unwrap();
        let events = h.take_events();
        if i < u32::from(REQUEST_SKIPS_MAX) {
            assert!(events.is_empty(), "dropped too early, after {i} answers");
        } else if i == u32::from(REQUEST_SKIPS_MAX) {
            assert_eq!(
                events,
                vec![Event::RequestDropped {
                    block: blocks[0],
                    reason: DropReason::Skipped
                }]
            );
        }
    }
    assert_eq!(h.session.requests_outstanding(), 0);
    h.rx.clear();
    send_piece(&mut h, 0, 0, 16384).unwrap();
    assert!(matches!(h.rx[..], [Rx::Block { late: true, .. }]));
    assert_eq!(h.session.blocks_unrequested(), 0);
}
