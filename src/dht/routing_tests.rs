//! Routing table: bucket splitting, preference for long-lived nodes, expiry, saved form.

use std::net::SocketAddrV4;
use std::time::Duration;

use proptest::prelude::*;

use super::routing::*;
use super::{NodeId, NodeInfo, ID_BITS, K};
use crate::time::Instant;

fn node(id: NodeId, n: u32) -> NodeInfo {
    NodeInfo {
        id,
        addr: SocketAddrV4::new((0x0a00_0000 + n).into(), 6881),
    }
}

/// An id sharing exactly `bits` leading bits with `own`, varied by `salt`.
fn at_prefix(own: &NodeId, bits: usize, salt: u8) -> NodeId {
    own.random_with_prefix(bits, [salt.wrapping_mul(37).wrapping_add(11); 20])
}

#[test]
fn long_lived_nodes_are_kept_over_newcomers() {
    // A full far bucket refuses newcomers while its nodes are fresh; once the oldest is
    // questionable it is pinged, and because it answers it stays and the newcomer is dropped.
    let own = NodeId([0; 20]);
    let t0 = Instant::from_secs(0);
    let mut table = RoutingTable::new(own, t0);
    let old: Vec<NodeInfo> = (0..K as u8)
        .map(|i| node(at_prefix(&own, 0, i), u32::from(i)))
        .collect();
    for (i, n) in old.iter().enumerate() {
        assert_eq!(
            table.heard_from(*n, t0 + Duration::from_secs(i as u64)),
            Insert::Added
        );
    }
    // One close node forces the split that leaves the far nodes in an unsplittable bucket.
    assert_eq!(
        table.heard_from(node(at_prefix(&own, 5, 1), 100), t0),
        Insert::Added
    );
    let newcomer = node(at_prefix(&own, 0, 200), 200);
    let t1 = t0 + Duration::from_secs(60);
    assert_eq!(table.heard_from(newcomer, t1), Insert::Dropped);
    let t2 = t0 + QUESTIONABLE_AFTER + Duration::from_secs(60);
    assert_eq!(table.heard_from(newcomer, t2), Insert::PingOldest(old[0]));
    assert_eq!(table.heard_from(old[0], t2), Insert::Refreshed);
    assert!(table.get(&newcomer.id).is_none());
    assert!(old.iter().all(|n| table.get(&n.id).is_some()));
    assert_eq!(table.get(&old[0].id).unwrap().first_seen, t0);
}

#[test]
fn questionable_node_that_fails_its_ping_is_replaced() {
    // The pinged least-recently-seen node stays silent: the waiting newcomer takes its place.
    let own = NodeId([0xff; 20]);
    let t0 = Instant::from_secs(0);
    let mut table = RoutingTable::new(own, t0);
    let old: Vec<NodeInfo> = (0..K as u8)
        .map(|i| node(at_prefix(&own, 0, i), u32::from(i)))
        .collect();
    for n in &old {
        table.heard_from(*n, t0);
    }
    table.heard_from(node(at_prefix(&own, 3, 9), 99), t0);
    let newcomer = node(at_prefix(&own, 0, 77), 77);
    let t1 = t0 + QUESTIONABLE_AFTER;
    let Insert::PingOldest(pinged) = table.heard_from(newcomer, t1) else {
        panic!("expected a ping of the oldest node");
    };
    table.failed(&pinged.id, t1 + Duration::from_secs(2));
    assert!(table.get(&pinged.id).is_none());
    assert!(table.get(&newcomer.id).is_some());
}

#[test]
fn nodes_failing_twice_are_dropped() {
    // Two unanswered queries in a row make a node bad; one answer in between resets the count.
    let own = NodeId([1; 20]);
    let t = Instant::from_secs(5);
    let mut table = RoutingTable::new(own, t);
    let n = node(NodeId([2; 20]), 1);
    table.heard_from(n, t);
    table.failed(&n.id, t);
    table.heard_from(n, t);
    table.failed(&n.id, t);
    assert!(table.get(&n.id).is_some());
    table.failed(&n.id, t);
    assert!(table.get(&n.id).is_none());
}

#[test]
fn saved_table_reloads_with_same_id_and_nodes() {
    // The saved form keeps our id and every node's id and address.
    let own = NodeId([7; 20]);
    let t = Instant::ZERO;
    let mut table = RoutingTable::new(own, t);
    for i in 0..40u32 {
        let mut id = [0u8; 20];
        id[..4].copy_from_slice(&(i.wrapping_mul(0x9e37_79b9)).to_be_bytes());
        table.heard_from(node(NodeId(id), i), t);
    }
    let (id, nodes) = parse_saved(&table.to_bytes()).unwrap();
    assert_eq!(id, own);
    let mut saved: Vec<NodeInfo> = table.entries().map(|e| e.info).collect();
    let mut loaded = nodes.clone();
    saved.sort_by_key(|n| n.id);
    loaded.sort_by_key(|n| n.id);
    assert_eq!(saved, loaded);
    assert!(parse_saved(b"d2:id3:abce").is_err());
    assert!(parse_saved(b"garbage").is_err());
}

#[test]
fn buckets_unchanged_for_15_minutes_get_refresh_targets_in_their_range() {
    // Refresh targets fall in the stale bucket's range, and a bucket is refreshed once.
    let own = NodeId([0x33; 20]);
    let t0 = Instant::ZERO;
    let mut table = RoutingTable::new(own, t0);
    for i in 0..30u8 {
        table.heard_from(
            node(at_prefix(&own, usize::from(i % 6), i), u32::from(i)),
            t0,
        );
    }
    let mut seed = 1u8;
    let mut rnd = || {
        seed = seed.wrapping_mul(29).wrapping_add(7);
        [seed; 20]
    };
    assert!(table
        .refresh_targets(t0 + Duration::from_secs(60), &mut rnd)
        .is_empty());
    let later = t0 + BUCKET_REFRESH_AFTER;
    let targets = table.refresh_targets(later, &mut rnd);
    assert_eq!(targets.len(), table.bucket_count());
    for (i, t) in targets.iter().enumerate() {
        let bits = own.common_prefix_bits(t);
        if i + 1 < targets.len() {
            assert_eq!(bits, i);
        } else {
            assert!(bits >= i);
        }
    }
    assert!(table.refresh_targets(later, &mut rnd).is_empty());
}

proptest! {
    #[test]
    fn buckets_hold_k_nodes_of_their_own_range(
        own in any::<[u8; 20]>(),
        ids in proptest::collection::vec(any::<[u8; 20]>(), 0..400),
    ) {
        // Whatever arrives, buckets never exceed K, never exceed 160, and every node
        // sits in the bucket its shared prefix with our id names.
        let own = NodeId(own);
        let mut table = RoutingTable::new(own, Instant::ZERO);
        for (i, id) in ids.iter().enumerate() {
            table.heard_from(node(NodeId(*id), i as u32), Instant::ZERO);
        }
        prop_assert!(table.bucket_count() <= ID_BITS);
        prop_assert!(table.len() <= table.bucket_count() * K);
        let closest = table.closest(&own, K);
        for w in closest.windows(2) {
            prop_assert!(own.distance(&w[0].id) <= own.distance(&w[1].id));
        }
    }
}
