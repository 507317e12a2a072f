//! Smart-ban tests: scripted pieces assembled from honest and corrupt peers.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::*;
use crate::metainfo::Layout;

/// Four 16 KiB blocks per piece.
const PIECE_LEN: u32 = 4 * BLOCK_BYTES;
const PIECES: u32 = 64;

fn ip(n: u16) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8))
}

/// The correct bytes of a block, and a corrupt version of them.
fn data(piece: u32, block: u32, corrupt: bool) -> Vec<u8> {
    let mut d = vec![(piece * 4 + block) as u8; BLOCK_BYTES as usize];
    if corrupt {
        d[100] ^= 0x5a;
    }
    d
}

struct Rig {
    layout: Layout,
    bans: Bans<u32>,
}

impl Rig {
    fn new() -> Rig {
        Rig::with_limits(BansLimits::default())
    }

    fn with_limits(limits: BansLimits) -> Rig {
        Rig {
            layout: Layout::new(PIECE_LEN, &[u64::from(PIECE_LEN) * u64::from(PIECES)]).unwrap(),
            bans: Bans::new(limits),
        }
    }

    fn piece(&self, p: u32) -> PieceIndex {
        self.layout.piece(p).unwrap()
    }

    fn receive(&mut self, piece: u32, block: u32, key: u32, from: IpAddr, corrupt: bool) {
        let b = self
            .layout
            .block(piece, block * BLOCK_BYTES, BLOCK_BYTES)
            .unwrap();
        self.bans
            .block_received(b, key, from, &data(piece, block, corrupt));
    }

    /// Downloads a whole piece: block `i` from `senders[i]` = (key, ip, corrupt).
    fn download(&mut self, piece: u32, senders: [(u32, IpAddr, bool); 4]) {
        for (block, (key, from, corrupt)) in (0..).zip(senders) {
            self.receive(piece, block, key, from, corrupt);
        }
    }

    fn failed(&mut self, piece: u32) -> Verdict<u32> {
        let p = self.piece(piece);
        self.bans.piece_failed(p, PIECE_LEN)
    }

    fn passed(&mut self, piece: u32) -> Verdict<u32> {
        let p = self.piece(piece);
        self.bans.piece_passed(p)
    }
}

fn keys(v: &Verdict<u32>) -> BTreeSet<u32> {
    v.faulty.iter().map(|f| f.key).collect()
}

#[test]
fn corrupt_block_among_three_peers_is_blamed_on_pass_and_banned_on_second_piece() {
    // Piece from A, B and C where C's one block is corrupt: the failure alone blames no
    // one; when the piece passes (re-downloaded from A and B) C alone is at fault, and C's
    // second bad piece bans its IP.
    let (a, b, c) = ((1, ip(1), false), (2, ip(2), false), (3, ip(3), true));
    let mut rig = Rig::new();
    for (n, piece) in [5u32, 9].into_iter().enumerate() {
        rig.download(piece, [a, b, c, a]);
        assert!(rig.failed(piece).is_empty());
        let p = rig.piece(piece);
        assert!(rig.bans.sent_failed_data(p, ip(3)));
        assert!(
            rig.bans.sent_failed_data(p, ip(1)),
            "every sender is a suspect until the pass"
        );
        rig.download(piece, [a, b, b, a]);
        let v = rig.passed(piece);
        assert!(!rig.bans.sent_failed_data(p, ip(3)));
        assert_eq!(
            v.faulty,
            vec![Fault {
                key: 3,
                ip: ip(3),
                piece: p,
                bad_blocks: 1,
                evidence: Evidence::BlocksDiffered,
            }]
        );
        if n == 0 {
            assert!(v.bans.is_empty());
            assert!(!rig.bans.is_banned(ip(3)));
        } else {
            let reason = BanReason {
                bad_pieces: 2,
                last_piece: p,
            };
            assert_eq!(v.bans, vec![Ban { ip: ip(3), reason }]);
            assert!(rig.bans.is_banned(ip(3)));
            assert_eq!(rig.bans.ban_reason(ip(3)), Some(reason));
            assert_eq!(
                reason.to_string(),
                "sent data failing the hash check in 2 pieces (last: piece 9)"
            );
        }
    }
    assert!(!rig.bans.is_banned(ip(1)) && !rig.bans.is_banned(ip(2)));
}

#[test]
fn honest_peers_are_never_blamed() {
    // Over many failed pieces, peers whose blocks were correct, in the failed attempt and
    // in the passing one (even the same peer again), are never at fault nor banned.
    let mut rig = Rig::new();
    let honest = [(1, ip(1), false), (2, ip(2), false)];
    for piece in 0..40 {
        let corrupt = (100 + piece, ip(100 + piece as u16), true);
        rig.download(piece, [honest[0], corrupt, honest[1], honest[0]]);
        assert!(rig.failed(piece).is_empty());
        rig.download(piece, [honest[0], honest[1], honest[1], honest[0]]);
        let v = rig.passed(piece);
        assert_eq!(keys(&v), BTreeSet::from([100 + piece]));
    }
    assert!(!rig.bans.is_banned(ip(1)) && !rig.bans.is_banned(ip(2)));
    assert_eq!(rig.bans.stats().ips_with_strikes, 40);
}

#[test]
fn piece_entirely_from_one_corrupt_peer_blames_it_at_once() {
    // A failed piece whose every block came from one address blames it on failure, without
    // waiting for a pass; a second such piece bans it. The later pass blames no one again.
    let mut rig = Rig::new();
    let d = (7, ip(7), false);
    let d_bad = (7, ip(7), true);
    let v = rig.failed_after(0, [d, d_bad, d, d]);
    assert_eq!(v.faulty.len(), 1);
    assert_eq!(v.faulty[0].evidence, Evidence::SoleSource);
    assert_eq!(
        v.faulty[0].bad_blocks, 4,
        "all its blocks of the piece are counted"
    );
    assert!(v.bans.is_empty());
    rig.download(0, [(1, ip(1), false); 4]);
    assert!(rig.passed(0).is_empty(), "already blamed: no record kept");
    let v = rig.failed_after(1, [d, d, d, d_bad]);
    assert_eq!(v.bans.len(), 1);
    assert!(rig.bans.is_banned(ip(7)));
}

#[test]
fn partial_record_from_one_peer_is_not_sole_source_evidence() {
    // If we hold records for only part of a failed piece (the rest were dropped), one
    // address in the record does not prove it sent every block: no one is blamed yet.
    let mut rig = Rig::new();
    for block in 0..3 {
        rig.receive(2, block, 7, ip(7), block == 1);
    }
    assert!(rig.failed(2).is_empty());
    rig.download(2, [(1, ip(1), false); 4]);
    assert_eq!(keys(&rig.passed(2)), BTreeSet::from([7]));
}

#[test]
fn bans_are_per_ip_across_connections() {
    // Two connections from one address each corrupt one piece: the address is banned
    // after the second, in its IPv4-mapped IPv6 form too; another address is untouched.
    let mut rig = Rig::new();
    let shared = ip(9);
    let v = rig.failed_after(0, [(1, shared, true); 4]);
    assert!(v.bans.is_empty());
    let v = rig.failed_after(1, [(2, shared, true); 4]);
    assert_eq!(v.faulty[0].key, 2);
    assert_eq!(v.bans.len(), 1);
    assert!(rig.bans.is_banned(shared));
    let IpAddr::V4(v4) = shared else {
        unreachable!()
    };
    assert!(rig.bans.is_banned(IpAddr::V6(v4.to_ipv6_mapped())));
    assert!(!rig.bans.is_banned(ip(10)));
}

#[test]
fn ipv4_mapped_senders_count_as_their_ipv4_address() {
    // A peer seen once over IPv4 and once as an IPv4-mapped IPv6 address is one address.
    let mut rig = Rig::new();
    let IpAddr::V4(v4) = ip(9) else {
        unreachable!()
    };
    let mapped = IpAddr::V6(v4.to_ipv6_mapped());
    assert!(rig.failed_after(0, [(1, mapped, true); 4]).bans.is_empty());
    let v = rig.failed_after(1, [(2, ip(9), true); 4]);
    assert_eq!(v.bans[0].ip, ip(9));
}

#[test]
fn latest_copy_of_a_duplicate_block_is_the_one_judged() {
    // In endgame a block can arrive twice; the copy reported last (the one written) is
    // judged, so an honest first sender is not blamed for the corrupt second copy.
    let mut rig = Rig::new();
    rig.receive(3, 1, 1, ip(1), false);
    rig.download(
        3,
        [
            (2, ip(2), false),
            (3, ip(3), true),
            (2, ip(2), false),
            (2, ip(2), false),
        ],
    );
    assert!(rig.failed(3).is_empty());
    rig.download(3, [(2, ip(2), false); 4]);
    assert_eq!(keys(&rig.passed(3)), BTreeSet::from([3]));
}

#[test]
fn every_failed_attempt_of_a_piece_is_judged_at_the_pass() {
    // A piece that fails twice with different culprits blames both when it passes; a
    // culprit present in both attempts gets two strikes and is banned.
    let mut rig = Rig::new();
    let h = (1, ip(1), false);
    rig.download(4, [h, (3, ip(3), true), h, h]);
    assert!(rig.failed(4).is_empty());
    rig.download(4, [h, h, (5, ip(5), true), (3, ip(3), true)]);
    assert!(rig.failed(4).is_empty());
    rig.download(4, [h; 4]);
    let v = rig.passed(4);
    assert_eq!(v.faulty.len(), 3);
    assert_eq!(keys(&v), BTreeSet::from([3, 5]));
    assert_eq!(v.bans.len(), 1);
    assert_eq!(v.bans[0].ip, ip(3));
    assert_eq!(rig.bans.stats().failed_attempts, 0);
}

#[test]
fn blocks_kept_across_attempts_count_as_unchanged() {
    // If the caller re-downloads only some blocks after a failure, blocks it did not fetch
    // again are not compared, so their senders are not blamed.
    let mut rig = Rig::new();
    rig.download(
        6,
        [
            (1, ip(1), false),
            (3, ip(3), true),
            (2, ip(2), false),
            (2, ip(2), false),
        ],
    );
    assert!(rig.failed(6).is_empty());
    rig.receive(6, 1, 4, ip(4), false);
    assert_eq!(keys(&rig.passed(6)), BTreeSet::from([3]));
}

#[test]
fn dropped_piece_forgets_its_blocks_but_keeps_failed_attempts() {
    // Dropping a piece in progress frees its records; a failed attempt still waits for the
    // pass that judges it.
    let mut rig = Rig::new();
    rig.download(
        1,
        [
            (1, ip(1), false),
            (3, ip(3), true),
            (1, ip(1), false),
            (1, ip(1), false),
        ],
    );
    assert!(rig.failed(1).is_empty());
    rig.receive(1, 0, 2, ip(2), false);
    rig.bans.piece_dropped(rig.piece(1));
    let s = rig.bans.stats();
    assert_eq!((s.pieces_in_progress, s.in_progress_blocks), (0, 0));
    assert_eq!((s.failed_attempts, s.failed_blocks), (1, 4));
    rig.download(1, [(2, ip(2), false); 4]);
    assert_eq!(keys(&rig.passed(1)), BTreeSet::from([3]));
}

#[test]
fn banned_addresses_stay_within_the_cap_oldest_evicted_first() {
    // With the default limits, banning more addresses than BANNED_IPS_MAX keeps the table at
    // the cap and forgets the oldest bans first.
    let mut rig = Rig::new();
    let n = BANNED_IPS_MAX as u16 + 100;
    for k in 0..n {
        for piece in 0..2 {
            let _ = rig.failed_after(piece, [(u32::from(k), ip(k), true); 4]);
        }
    }
    let s = rig.bans.stats();
    assert_eq!(s.banned_ips, BANNED_IPS_MAX);
    assert!(!rig.bans.is_banned(ip(0)) && !rig.bans.is_banned(ip(99)));
    assert!(rig.bans.is_banned(ip(100)) && rig.bans.is_banned(ip(n - 1)));
    assert_eq!(s.ips_with_strikes, 0);
}

impl Rig {
    /// Downloads `piece` from `senders` and reports it failed.
    fn failed_after(&mut self, piece: u32, senders: [(u32, IpAddr, bool); 4]) -> Verdict<u32> {
        self.download(piece, senders);
        self.failed(piece)
    }
}

/// One step of the randomized swarm: a block arrives, or a piece is dropped.
#[derive(Clone, Debug)]
enum Op {
    Receive {
        piece: u32,
        block: u32,
        peer: u32,
        corrupt: bool,
    },
    Drop {
        piece: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u32..12, 0u32..4, 0u32..24, any::<bool>())
            .prop_map(|(piece, block, peer, corrupt)| Op::Receive { piece, block, peer, corrupt }),
        1 => (0u32..12).prop_map(|piece| Op::Drop { piece }),
    ]
}

/// Peers 0..4 are honest; the others may corrupt and share an address in pairs.
fn peer_ip(peer: u32) -> IpAddr {
    if peer < 4 {
        ip(peer as u16)
    } else {
        ip(100 + (peer / 2) as u16)
    }
}

proptest! {
    #[test]
    fn memory_stays_bounded_and_honest_peers_are_never_blamed(
        ops in proptest::collection::vec(op(), 1..600),
    ) {
        // Under random arrivals, drops and hash results (a piece fails iff a written block
        // is corrupt), every table stays within its limit and no honest address is ever
        // at fault or banned.
        let limits = BansLimits {
            bad_pieces_to_ban: 2,
            failed_attempts_max: 4,
            failed_blocks_max: 10,
            in_progress_blocks_max: 12,
            strike_ips_max: 3,
            banned_ips_max: 3,
        };
        let mut rig = Rig::with_limits(limits);
        // What the caller has written for each piece in progress: block -> corrupt.
        let mut written: Vec<[Option<bool>; 4]> = vec![[None; 4]; 12];
        for op in ops {
            let mut verdict = None;
            match op {
                Op::Receive { piece, block, peer, corrupt } => {
                    let corrupt = corrupt && peer >= 4;
                    rig.receive(piece, block, peer, peer_ip(peer), corrupt);
                    let w = &mut written[piece as usize];
                    w[block as usize] = Some(corrupt);
                    if w.iter().all(Option::is_some) {
                        let bad = w.contains(&Some(true));
                        *w = [None; 4];
                        verdict = Some(if bad { rig.failed(piece) } else { rig.passed(piece) });
                    }
                }
                Op::Drop { piece } => {
                    written[piece as usize] = [None; 4];
                    rig.bans.piece_dropped(rig.piece(piece));
                }
            }
            if let Some(v) = verdict {
                prop_assert!(v.faulty.iter().all(|f| f.key >= 4 && f.ip == peer_ip(f.key)));
                prop_assert!(v.bans.iter().all(|b| (0..4).all(|h| b.ip != ip(h))));
            }
            let s = rig.bans.stats();
            prop_assert!(s.failed_attempts <= limits.failed_attempts_max);
            prop_assert!(s.failed_blocks <= limits.failed_blocks_max);
            prop_assert!(s.in_progress_blocks <= limits.in_progress_blocks_max);
            prop_assert!(s.ips_with_strikes <= limits.strike_ips_max);
            prop_assert!(s.banned_ips <= limits.banned_ips_max);
        }
        for honest in 0..4 {
            prop_assert!(!rig.bans.is_banned(ip(honest)));
        }
    }
}
