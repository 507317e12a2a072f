//! Building the simulated peers: addresses, per-peer RNG seeds, each peer's picker, choker
//! and swarm policy from its class, and small helpers over peers' bitfields.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use super::engine::{Peer, PeerId, Status};
use super::scenario::{PickOrderConfig, Scenario};
use crate::metainfo::Layout;
use crate::torrent::{
    Choker, ChokerConfig, LeechChokerConfig, PickOrder, Picker, Swarm, SwarmConfig,
};
use crate::wire::Bitfield;

pub(super) fn addr_of(p: PeerId) -> SocketAddr {
    let [_, a, b, c] = p.to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, a, b, c), 6881))
}

pub(super) fn peer_of(addr: SocketAddr) -> PeerId {
    match addr {
        SocketAddr::V4(v4) => {
            let [_, a, b, c] = v4.ip().octets();
            u32::from_be_bytes([0, a, b, c])
        }
        SocketAddr::V6(_) => unreachable!("the simulator uses IPv4 addresses only"),
    }
}

pub(super) fn secs_to_ns(s: f64) -> u64 {
    (s.max(0.0) * 1e9).round() as u64
}

/// A per-peer RNG seed from the scenario seed (SplitMix64 step).
fn derive_seed(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(super) fn new_peer(sc: &Scenario, ci: usize, id: PeerId, layout: &Layout) -> Peer {
    let class = &sc.classes[ci];
    let seed = derive_seed(sc.seed, u64::from(id));
    let pieces = layout.piece_count();
    let (ann, picker, choker) = if class.seed {
        let cfg = ChokerConfig {
            upload_slots: class.upload_slots,
            ..ChokerConfig::default()
        };
        (Bitfield::full(pieces), None, Choker::seeding(cfg, seed))
    } else {
        let mut picker = Picker::new(layout, Bitfield::empty(pieces), seed);
        // Thousands of pickers share the caches here: the dense index is the faster one
        // (docs/CAPACITY.md §7); it finds the same rarest pieces.
        picker.use_dense_availability();
        picker.set_order(match sc.pick_order {
            PickOrderConfig::Rarest => PickOrder::RarestFirst,
            PickOrderConfig::Sequential => PickOrder::Sequential,
            PickOrderConfig::Random => PickOrder::Random,
        });
        let choker = if sc.tit_for_tat {
            let cfg = LeechChokerConfig {
                regular_slots: sc.leech_regular_slots,
                ..LeechChokerConfig::default()
            };
            Choker::leeching(cfg, seed ^ 1)
        } else {
            let cfg = ChokerConfig {
                upload_slots: sc.leech_regular_slots + 1,
                ..ChokerConfig::default()
            };
            Choker::seeding(cfg, seed ^ 1)
        };
        (Bitfield::empty(pieces), Some(Box::new(picker)), choker)
    };
    let conns_max = class.conns_max.unwrap_or(sc.conns_max);
    let mut swarm = Swarm::new(SwarmConfig {
        conns_min: sc.conns_min.min(conns_max),
        conns_max,
        pool_max: 2_000,
        ..SwarmConfig::default()
    });
    swarm.set_own_addrs([addr_of(id)]);
    Peer {
        class: ci as u16,
        up: class.upload as f64 / 8.0,
        down: class.download as f64 / 8.0,
        lat: class.latency,
        free_rider: class.free_rider,
        status: Status::Waiting,
        joined: 0.0,
        completed: None,
        ann,
        picker,
        choker,
        swarm,
        conns: Vec::new(),
        out_flows: Vec::new(),
        in_flows: Vec::new(),
        uploaded: 0.0,
        downloaded: 0.0,
        tick_at: u64::MAX,
        last_tick: f64::NEG_INFINITY,
        last_announce: f64::NEG_INFINITY,
        leaving: false,
        done_version: 0,
        done_at: u64::MAX,
    }
}

/// Pieces set in `theirs` and not in `have`.
pub(super) fn count_missing(theirs: &Bitfield, have: &Bitfield) -> u32 {
    theirs
        .as_bytes()
        .iter()
        .zip(have.as_bytes())
        .map(|(a, b)| (a & !b).count_ones())
        .sum()
}

/// Two distinct peers, mutably.
pub(super) fn pair_mut(peers: &mut [Peer], a: PeerId, b: PeerId) -> (&mut Peer, &mut Peer) {
    let (a, b) = (a as usize, b as usize);
    assert_ne!(a, b, "a connection joins two peers");
    if a < b {
        let (lo, hi) = peers.split_at_mut(b);
        (&mut lo[a], &mut hi[0])
    } else {
        let (lo, hi) = peers.split_at_mut(a);
        (&mut hi[0], &mut lo[b])
    }
}
