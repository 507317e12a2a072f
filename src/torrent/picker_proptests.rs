//! Property test: random sequences of announcements, picks, arrivals, drops, chokes,
//! departures and hash verdicts keep every picker invariant, checked against a model swarm.

use std::collections::HashSet;

use proptest::prelude::*;

use super::*;

const PEERS: usize = 4;

#[derive(Clone, Debug)]
enum Op {
    Bitfield {
        peer: usize,
        bits: Vec<bool>,
    },
    HaveAll {
        peer: usize,
    },
    Have {
        peer: usize,
        piece: u32,
    },
    Pick {
        peer: usize,
        count: usize,
    },
    Receive {
        peer: usize,
        nth: usize,
        hash_ok: bool,
    },
    Stray {
        peer: usize,
        piece: u32,
        block: u32,
    },
    Drop {
        peer: usize,
        nth: usize,
    },
    Choke {
        peer: usize,
    },
    Leave {
        peer: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let peer = 0..PEERS;
    prop_oneof![
        1 => (peer.clone(), prop::collection::vec(any::<bool>(), 16))
            .prop_map(|(peer, bits)| Op::Bitfield { peer, bits }),
        1 => peer.clone().prop_map(|peer| Op::HaveAll { peer }),
        1 => (peer.clone(), 0..16u32).prop_map(|(peer, piece)| Op::Have { peer, piece }),
        3 => (peer.clone(), 0..8usize).prop_map(|(peer, count)| Op::Pick { peer, count }),
        3 => (peer.clone(), 0..8usize, prop::bool::weighted(0.8))
            .prop_map(|(peer, nth, hash_ok)| Op::Receive { peer, nth, hash_ok }),
        1 => (peer.clone(), 0..16u32, 0..4u32)
            .prop_map(|(peer, piece, block)| Op::Stray { peer, piece, block }),
        1 => (peer.clone(), 0..8usize).prop_map(|(peer, nth)| Op::Drop { peer, nth }),
        1 => peer.clone().prop_map(|peer| Op::Choke { peer }),
        1 => peer.prop_map(|peer| Op::Leave { peer }),
    ]
}

/// What a model peer announced.
#[derive(Clone, Debug)]
struct Model {
    seed: bool,
    bits: Bitfield,
}

impl PieceView for Model {
    fn has(&self, piece: PieceIndex) -> bool {
        self.seed || self.bits.get(piece)
    }
    fn is_seed(&self) -> bool {
        self.seed || self.bits.is_full()
    }
}

struct Swarm {
    layout: Layout,
    picker: Picker<usize>,
    peers: Vec<Option<Model>>,
}

impl Swarm {
    fn model(&mut self, peer: usize) -> &mut Model {
        let count = self.layout.piece_count();
        self.peers[peer].get_or_insert_with(|| Model {
            seed: false,
            bits: Bitfield::empty(count),
        })
    }

    fn apply(&mut self, op: Op) {
        let count = self.layout.piece_count();
        match op {
            Op::Bitfield { peer, bits } => {
                let mut b = Bitfield::empty(count);
                for i in (0..count).filter(|&i| bits[i as usize]) {
                    b.set(self.layout.piece(i).unwrap());
                }
                let fresh = self.peers[peer]
                    .as_ref()
                    .is_none_or(|m| !m.seed && m.bits.count() == 0);
                let result = self.picker.peer_bitfield(peer, &b);
                assert_eq!(result.is_ok(), fresh, "{result:?}");
                if fresh {
                    *self.model(peer) = Model {
                        seed: b.is_full(),
                        bits: b,
                    };
                }
            }
            Op::HaveAll { peer } => {
                let ok = self.peers[peer]
                    .as_ref()
                    .is_none_or(|m| m.seed || m.bits.count() == 0);
                assert_eq!(self.picker.peer_have_all(peer).is_ok(), ok);
                if ok {
                    self.model(peer).seed = true;
                }
            }
            Op::Have { peer, piece } => {
                let Some(piece) = self.layout.piece(piece) else {
                    return;
                };
                let m = self.model(peer);
                if m.seed || m.bits.get(piece) {
                    return; // the session reports each piece once
                }
                m.bits.set(piece);
                let lack = self.picker.peer_have(peer, piece);
                assert_eq!(lack, !self.picker.have().get(piece));
            }
            Op::Pick { peer, count } => self.pick(peer, count),
            Op::Receive { peer, nth, hash_ok } => {
                let requests = self.picker.requests(peer);
                if !requests.is_empty() {
                    let block = requests[nth % requests.len()];
                    self.receive(peer, block, hash_ok);
                }
            }
            Op::Stray { peer, piece, block } => self.stray(peer, piece, block),
            Op::Drop { peer, nth } => {
                let requests = self.picker.requests(peer);
                if !requests.is_empty() {
                    let block = requests[nth % requests.len()];
                    assert!(self.picker.block_dropped(peer, block));
                    assert!(!self.picker.requests(peer).contains(&block));
                }
            }
            Op::Choke { peer } => {
                self.picker.peer_choked(peer);
                assert_eq!(self.picker.outstanding(peer), 0);
            }
            Op::Leave { peer } => {
                let m = self.peers[peer].take();
                match m {
                    Some(m) if m.seed => self.picker.peer_left(peer, &AllPieces),
                    Some(m) => self.picker.peer_left(peer, &m.bits),
                    None => self.picker.peer_left(peer, &NoPieces),
                }
            }
        }
    }

    fn pick(&mut self, peer: usize, count: usize) {
        let view = self.model(peer).clone();
        let before = self.picker.outstanding(peer);
        let mut out = Vec::new();
        let n = self.picker.pick(peer, &view, count, &mut out);
        assert_eq!(n, out.len());
        assert!(n <= count);
        assert_eq!(self.picker.outstanding(peer), before + n);
        for b in &out {
            assert!(view.has(b.piece), "{b:?} from a peer without it");
            assert!(
                !self.picker.have().get(b.piece),
                "verified piece re-requested"
            );
            assert_eq!(
                self.picker.geometry.block(b.piece.get(), b.offset, b.len),
                Some(*b)
            );
            let slot = match self.picker.slots[b.piece.idx()] {
                Slot::Active(s) => s as usize,
                other => panic!("picked block of a {other:?} piece"),
            };
            let idx = (b.offset / BLOCK_BYTES) as usize;
            let ap = &self.picker.active[slot];
            if let Block::Requested { extra, .. } = ap.blocks[idx] {
                assert!(
                    extra == 0 || self.picker.in_endgame(),
                    "duplicate outside endgame"
                );
            } else {
                panic!("picked block not marked requested");
            }
        }
    }

    fn receive(&mut self, peer: usize, block: BlockRef, hash_ok: bool) {
        let mut cancel = Vec::new();
        let arrival = self.picker.block_received(peer, block, &mut cancel);
        let Arrival::New { piece_complete } = arrival else {
            panic!("outstanding block arrived as {arrival:?}");
        };
        for k in std::iter::once(peer).chain(cancel.iter().copied()) {
            assert!(!self.picker.requests(k).contains(&block), "peer {k}");
        }
        assert!(!cancel.contains(&peer));
        if piece_complete {
            assert_eq!(self.picker.piece_state(block.piece), PieceState::Verifying);
            if hash_ok {
                self.picker.piece_verified(block.piece);
            } else {
                let mut contributors = Vec::new();
                self.picker.piece_failed(block.piece, &mut contributors);
                assert!(contributors.contains(&peer));
                assert_eq!(self.picker.piece_state(block.piece), PieceState::Wanted);
            }
        }
    }

    fn stray(&mut self, peer: usize, piece: u32, block: u32) {
        let Some(p) = self.layout.piece(piece) else {
            return;
        };
        let offset = block * BLOCK_BYTES;
        let Some(b) = self.layout.piece_len(p).checked_sub(offset) else {
            return;
        };
        let Some(b) = self.layout.block(piece, offset, b.clamp(1, BLOCK_BYTES)) else {
            return;
        };
        if self.picker.requests(peer).contains(&b) {
            return self.receive(peer, b, true);
        }
        let mut cancel = Vec::new();
        let arrival = self.picker.block_received(peer, b, &mut cancel);
        assert!(
            !matches!(arrival, Arrival::New { .. }),
            "unrequested block taken"
        );
        assert!(cancel.is_empty());
    }

    /// Every invariant of the picker, against the model and by recounting.
    fn check(&self) {
        let p = &self.picker;
        p.avail.assert_consistent();
        let mut min = u32::MAX;
        for piece in self.layout.pieces() {
            let expected = self.peers.iter().flatten().filter(|m| m.has(piece)).count();
            assert_eq!(
                p.availability(piece) as usize,
                expected,
                "availability of {piece:?}"
            );
            min = min.min(expected as u32);
            match p.slots[piece.idx()] {
                Slot::Have => assert!(p.have.get(piece)),
                Slot::Wanted => assert!(!p.have.get(piece) && p.avail.is_wanted(piece)),
                Slot::Active(s) => {
                    assert!(!p.have.get(piece) && !p.avail.is_wanted(piece));
                    assert_eq!(p.active[s as usize].piece, piece);
                }
            }
        }
        assert_eq!(p.min_availability(), min);
        let mut missing_total = 0;
        let mut requested_total = 0;
        let mut with_missing = HashSet::new();
        for (_, ap) in &p.active {
            let (mut missing, mut received, mut extra_total) = (0, 0, 0);
            for (idx, block) in ap.blocks.iter().enumerate() {
                match *block {
                    Block::Missing => {
                        assert!(idx as u32 >= ap.first_missing);
                        missing += 1;
                    }
                    Block::Received(_) => received += 1,
                    Block::Requested { by, extra } => {
                        let extras: Vec<_> =
                            ap.extras.iter().filter(|e| e.0 == idx as u32).collect();
                        assert_eq!(extras.len(), usize::from(extra));
                        assert!(extras.iter().all(|e| e.1 != by));
                        extra_total += usize::from(extra);
                        requested_total += 1 + usize::from(extra);
                    }
                }
            }
            assert_eq!(
                extra_total,
                ap.extras.len(),
                "extras of blocks not requested"
            );
            assert_eq!((ap.missing, ap.received), (missing, received));
            assert!(
                missing < ap.blocks.len() as u32,
                "an untouched piece must be wanted"
            );
            if missing > 0 {
                with_missing.insert(ap.piece);
            }
            missing_total += u64::from(missing);
        }
        assert_eq!(p.blocks_missing, missing_total);
        assert_eq!(
            p.with_missing.len(),
            with_missing.len(),
            "with_missing has duplicates"
        );
        assert_eq!(
            p.with_missing.iter().copied().collect::<HashSet<_>>(),
            with_missing
        );
        let mut listed = 0;
        for (&k, entry) in &p.peers {
            let distinct: HashSet<_> = entry.requests.iter().collect();
            assert_eq!(
                distinct.len(),
                entry.requests.len(),
                "peer {k} requests twice"
            );
            for b in &entry.requests {
                let Slot::Active(s) = p.slots[b.piece.idx()] else {
                    panic!("request for an inactive piece");
                };
                let ap = &p.active[s as usize];
                let idx = b.offset / BLOCK_BYTES;
                let Block::Requested { by, .. } = ap.blocks[idx as usize] else {
                    panic!("peer {k} lists {b:?}, which is not requested");
                };
                assert!(by == k || ap.extras.contains(&(idx, k)));
            }
            listed += entry.requests.len();
        }
        assert_eq!(listed, requested_total, "requests listed vs. marked");
        for list in p.suspects.values() {
            assert!(list.iter().all(|k| p.peers.contains_key(k)));
        }
    }
}

fn geometry() -> impl Strategy<Value = (u32, u32, u32, Vec<bool>)> {
    (
        1..=12u32,
        prop_oneof![Just(16 * 1024), Just(40 * 1024)],
        0..16 * 1024u32,
    )
        .prop_flat_map(|(pieces, piece_len, tail)| {
            let have = prop::collection::vec(prop::bool::weighted(0.2), pieces as usize);
            (Just(pieces), Just(piece_len), Just(tail), have)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_operations_keep_invariants(
        (pieces, piece_len, tail, have) in geometry(),
        seed in any::<u64>(),
        dense in any::<bool>(),
        ops in prop::collection::vec(op(), 1..200),
    ) {
        // Availability equals the model's sum over peers, every block is in one consistent
        // state, requests match the blocks marked requested, verified pieces are never
        // picked, and duplicates appear only in endgame; with either availability layout.
        let total = u64::from(pieces) * u64::from(piece_len) - u64::from(tail);
        let layout = Layout::new(piece_len, &[total]).unwrap();
        let mut bits = Bitfield::empty(layout.piece_count());
        for p in layout.pieces().filter(|p| have[p.idx()]) {
            bits.set(p);
        }
        let mut picker = Picker::new(&layout, bits, seed);
        if dense {
            prop_assert!(picker.use_dense_availability());
        }
        let mut swarm = Swarm {
            picker,
            layout,
            peers: vec![None; PEERS],
        };
        for op in ops {
            swarm.apply(op);
            swarm.check();
        }
    }
}
