//! Property tests of the downloading side: whatever the peer does with our requests, each
//! request is accounted for exactly once, and a magnet session survives any declarations.

use proptest::prelude::*;

use super::violations::{arb_message, build};
use super::*;

const FAST: Reserved = Reserved::OURS;
const PLAIN: Reserved = Reserved([0; 8]);

/// One thing that happens to a downloading session.
#[derive(Clone, Debug)]
enum Step {
    /// We request the next block never requested.
    RequestNext,
    /// The peer sends the k-th requested block (again, perhaps).
    Answer(usize),
    /// The peer rejects the k-th requested block (fast peers only).
    Reject(usize),
    /// We cancel the k-th requested block.
    Cancel(usize),
    Choke,
    Unchoke,
    /// A block we never requested.
    Stray(u32),
    /// Virtual time passes, firing timers.
    Advance(u64),
}

fn arb_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => Just(Step::RequestNext),
        4 => (0usize..40).prop_map(Step::Answer),
        1 => (0usize..40).prop_map(Step::Reject),
        1 => (0usize..40).prop_map(Step::Cancel),
        1 => Just(Step::Choke),
        2 => Just(Step::Unchoke),
        1 => (0u32..10).prop_map(Step::Stray),
        1 => (0u64..90).prop_map(Step::Advance),
    ]
}

/// What became of each request, as the shell saw it.
#[derive(Default)]
struct Ledger {
    requested: Vec<BlockRef>,
    on_time: Vec<u32>,
    dropped: Vec<u32>,
    cancelled: Vec<bool>,
}

impl Ledger {
    fn index(&self, b: BlockRef) -> usize {
        self.requested
            .iter()
            .position(|&r| r == b)
            .expect("only requested blocks are delivered or dropped")
    }
}

fn all_blocks(t: &TestTorrent) -> Vec<BlockRef> {
    let l = t.layout();
    l.pieces()
        .flat_map(|p| {
            let len = l.piece_len(p);
            (0..len)
                .step_by(16384)
                .map(move |o| l.block(p.get(), o, (len - o).min(16384)).unwrap())
        })
        .collect()
}

/// Runs one step; `Err` ends the connection (a legal outcome for a misbehaving peer).
fn run(
    h: &mut Harness,
    ledger: &mut Ledger,
    blocks: &[BlockRef],
    step: &Step,
) -> Result<(), PeerError> {
    let pick = |k: usize| {
        ledger
            .requested
            .get(k % ledger.requested.len().max(1))
            .copied()
    };
    match *step {
        Step::RequestNext => {
            if let Some(&b) = blocks.get(ledger.requested.len()) {
                if h.session.request(b, h.now).is_ok() {
                    ledger.requested.push(b);
                    ledger.on_time.push(0);
                    ledger.dropped.push(0);
                    ledger.cancelled.push(false);
                }
            }
        }
        Step::Answer(k) => {
            if let Some(b) = pick(k) {
                let start = h.torrent.layout().piece_start(b.piece) + u64::from(b.offset);
                let data: Vec<u8> = (start..start + u64::from(b.len)).map(content).collect();
                h.send(Message::Piece {
                    piece: b.piece.get(),
                    offset: b.offset,
                    data: &data,
                })?;
            }
        }
        Step::Reject(k) => {
            if let Some(b) = pick(k).filter(|_| h.session.peer_supports_fast()) {
                h.send(Message::Reject(b.into()))?;
            }
        }
        Step::Cancel(k) => {
            if let Some(b) = pick(k) {
                // Cancelling a request already reported timed out frees its slot; it is not
                // another end of it.
                let i = ledger.index(b);
                if h.session.cancel(b, h.now) && ledger.dropped[i] == 0 {
                    ledger.cancelled[i] = true;
                }
            }
        }
        Step::Choke => h.send(Message::Choke)?,
        Step::Unchoke => h.send(Message::Unchoke)?,
        Step::Stray(p) => h.send(Message::Piece {
            piece: p,
            offset: 3,
            data: b"stray",
        })?,
        Step::Advance(s) => {
            h.send(Message::KeepAlive)?;
            h.advance(Duration::from_secs(s))?;
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_request_ends_exactly_once(
        fast in any::<bool>(),
        steps in proptest::collection::vec(arb_step(), 0..80),
    ) {
        // Whatever order blocks, rejects, chokes, cancels and timeouts come in: a request is
        // delivered on time, reported dropped, or cancelled by us at most once altogether,
        // and one that is none of these is still outstanding; every payload is the block
        // asked for; and requests never exceed the limit.
        let t = partial(10, &[]);
        let blocks = all_blocks(&t);
        let mut h = Harness::active(t, if fast { FAST } else { FAST.with_fast(false) });
        h.send_extension_handshake_with(|e| e.reqq = Some(8)).unwrap();
        h.send_all(&[Message::Bitfield(Bitfield::full(10).as_bytes()), Message::Unchoke]).unwrap();
        h.take_events();
        let mut ledger = Ledger::default();
        for step in &steps {
            let outcome = run(&mut h, &mut ledger, &blocks, step);
            for rx in std::mem::take(&mut h.rx) {
                let Rx::Block { block, data, late } = rx else { panic!("metadata?") };
                let i = ledger.index(block);
                let start = h.torrent.layout().piece_start(block.piece) + u64::from(block.offset);
                let want: Vec<u8> = (start..start + u64::from(block.len)).map(content).collect();
                prop_assert_eq!(data, want);
                if !late {
                    ledger.on_time[i] += 1;
                }
            }
            for ev in h.take_events() {
                if let Event::RequestDropped { block, .. } = ev {
                    let i = ledger.index(block);
                    ledger.dropped[i] += 1;
                }
            }
            prop_assert!(h.session.requests_outstanding() <= h.session.request_limit());
            for (i, &b) in ledger.requested.iter().enumerate() {
                let ends = ledger.on_time[i] + ledger.dropped[i] + u32::from(ledger.cancelled[i]);
                prop_assert!(ends <= 1, "{:?} ended {} times", b, ends);
                if ends == 0 {
                    prop_assert!(h.session.is_requested(b), "{:?} lost", b);
                }
                if ledger.on_time[i] == 1 || ledger.cancelled[i] {
                    prop_assert!(!h.session.is_requested(b));
                }
            }
            if outcome.is_err() {
                break;
            }
        }
    }

    #[test]
    fn magnet_sessions_survive_any_declarations_then_metadata(
        fast in any::<bool>(),
        msgs in proptest::collection::vec(arb_message(), 0..40),
        payload in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        // Random messages before the metadata end in Ok or a PeerError; `set_metadata`
        // afterwards either closes or leaves a peer set that fits the torrent, reported
        // as at most one event.
        let full = partial(10, &[]);
        let magnet = TestTorrent::new(TorrentShared::magnet(full.info_hash()), PieceSet::Empty);
        let mut h = Harness::active(magnet, if fast { FAST } else { PLAIN });
        for m in &msgs {
            if h.send(build(*m, &payload)).is_err() {
                return Ok(());
            }
        }
        h.take_events();
        if h.session.set_metadata(Arc::clone(&full.shared), h.now).is_ok() {
            let events: Vec<Event> = std::iter::from_fn(|| h.session.poll_event()).collect();
            prop_assert!(events.len() <= 1);
            let pieces = h.session.peer_pieces().clone();
            if let PieceSet::Partial(bits) = &pieces {
                prop_assert_eq!(bits.len(), 10);
            }
            match &events[..] {
                [] => prop_assert!(pieces.is_empty()),
                [Event::PeerPieces { added }] => prop_assert_eq!(added, &pieces),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }
}

#[test]
fn a_burst_of_haves_is_read_in_slices_of_the_event_backlog() {
    // 200 haves in one read: one `handle_input` call stops once EVENTS_BACKLOG_MAX events
    // wait, and the shell's loop (drain, feed again) reads them all.
    let t = partial(300, &[]);
    let mut h = Harness::active(t, FAST);
    let mut bytes = Vec::new();
    for piece in 0..200 {
        Message::Have { piece }.encode(&mut bytes);
    }
    let input = h.session.handle_input(&bytes, h.now).unwrap();
    assert_eq!(input.used, EVENTS_BACKLOG_MAX * 9);
    assert!(input.received.is_none());
    let first = std::iter::from_fn(|| h.session.poll_event()).count();
    assert_eq!(first, EVENTS_BACKLOG_MAX);
    h.inbox = bytes[input.used..].to_vec();
    h.pump().unwrap();
    assert_eq!(first + h.take_events().len(), 200);
    assert!(h.inbox.is_empty());
}
