//! DHT node: queries answered per BEP 5, tokens enforced, hostile input, and a virtual
//! network of 200+ nodes where every node finds an announced peer in few hops.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use proptest::prelude::*;

use super::krpc::{Body, Message, Query, Response};
use super::sim::Net;
use super::*;
use crate::time::Instant;

fn addr(last: u8, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, last), port)
}

fn lone_node(seed: u64) -> Node {
    let cfg = NodeConfig {
        id: NodeId([seed as u8; 20]),
        bootstrap: Vec::new(),
        known: Vec::new(),
        seed,
    };
    Node::new(cfg, Instant::from_secs(1))
}

fn query(id: u8, tid: &[u8], q: Query) -> Vec<u8> {
    Message {
        tid: tid.to_vec(),
        body: Body::Query {
            id: NodeId([id; 20]),
            query: q,
            read_only: false,
        },
    }
    .to_bytes()
}

fn reply(node: &mut Node) -> Message {
    let t = node.poll_transmit().expect("a reply");
    Message::decode(&t.bytes).unwrap()
}

#[test]
fn get_peers_reply_carries_token_that_announce_peer_accepts() {
    // get_peers hands out a token; announce_peer with it stores the peer (implied port uses
    // the source port), with a wrong token it is refused with error 203.
    let now = Instant::from_secs(1);
    let mut node = lone_node(1);
    let ih = NodeId([0xab; 20]);
    let from = addr(9, 5000);
    node.handle_datagram(
        from,
        &query(2, b"t1", Query::GetPeers { info_hash: ih }),
        now,
    );
    let Body::Response(r) = reply(&mut node).body else {
        panic!("expected a response")
    };
    let token = r.token.expect("a token");
    let bad = Query::AnnouncePeer {
        info_hash: ih,
        port: 7000,
        implied_port: false,
        token: b"nope".to_vec(),
    };
    node.handle_datagram(from, &query(2, b"t2", bad), now);
    assert!(matches!(
        reply(&mut node).body,
        Body::Error { code: 203, .. }
    ));
    let good = Query::AnnouncePeer {
        info_hash: ih,
        port: 7000,
        implied_port: true,
        token: token.clone(),
    };
    node.handle_datagram(from, &query(2, b"t3", good), now);
    assert!(matches!(reply(&mut node).body, Body::Response(_)));
    // Another IP cannot use that token.
    let stolen = Query::AnnouncePeer {
        info_hash: ih,
        port: 7001,
        implied_port: false,
        token,
    };
    node.handle_datagram(addr(10, 5000), &query(3, b"t4", stolen), now);
    assert!(matches!(reply(&mut node).body, Body::Error { .. }));
    node.handle_datagram(
        from,
        &query(4, b"t5", Query::GetPeers { info_hash: ih }),
        now,
    );
    let Body::Response(r) = reply(&mut node).body else {
        panic!("expected a response")
    };
    assert_eq!(r.values, vec![from]);
}

#[test]
fn unknown_method_gets_error_204_and_ping_is_answered_with_our_id() {
    // BEP 5 error codes for what we do not implement; ping echoes the transaction id.
    let now = Instant::from_secs(1);
    let mut node = lone_node(5);
    let unknown = Query::Unknown {
        method: b"vote".to_vec(),
    };
    node.handle_datagram(addr(3, 1), &query(2, b"xy", unknown), now);
    assert!(matches!(
        reply(&mut node).body,
        Body::Error { code: 204, .. }
    ));
    node.handle_datagram(addr(3, 1), &query(2, b"zz", Query::Ping), now);
    let m = reply(&mut node);
    assert_eq!(m.tid, b"zz");
    assert_eq!(
        m.body,
        Body::Response(Response {
            id: node.id(),
            ..Response::default()
        })
    );
}

#[test]
fn query_flood_from_one_ip_is_rate_limited() {
    // 1000 pings at once from one IP get at most the burst allowance of replies; another IP
    // is still answered.
    let now = Instant::from_secs(1);
    let mut node = lone_node(6);
    for i in 0..1000u16 {
        node.handle_datagram(addr(7, 1), &query(2, &i.to_be_bytes(), Query::Ping), now);
    }
    let mut replies = 0;
    while node.poll_transmit().is_some() {
        replies += 1;
    }
    assert_eq!(replies, peers::QUERIES_PER_IP_BURST as usize);
    node.handle_datagram(addr(8, 1), &query(3, b"ok", Query::Ping), now);
    assert!(node.poll_transmit().is_some());
}

#[test]
fn replies_from_the_wrong_address_are_ignored() {
    // A reply with a valid transaction id but from another address completes nothing.
    let now = Instant::from_secs(1);
    let mut node = lone_node(7);
    node.add_bootstrap(addr(1, 6881));
    node.find_node(NodeId([1; 20]), now).unwrap();
    let q = node.poll_transmit().unwrap();
    assert_eq!(q.to, addr(1, 6881));
    let tid = Message::decode(&q.bytes).unwrap().tid;
    let fake = Message {
        tid,
        body: Body::Response(Response {
            id: NodeId([0x44; 20]),
            ..Response::default()
        }),
    };
    node.handle_datagram(addr(2, 6881), &fake.to_bytes(), now);
    assert!(node.table().is_empty());
    node.handle_datagram(addr(1, 6881), &fake.to_bytes(), now);
    assert_eq!(node.table().len(), 1);
}

proptest! {
    #[test]
    fn hostile_datagrams_never_panic_or_grow_state(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..50),
    ) {
        // Garbage from many sources leaves the node answering and its stores bounded.
        let mut node = lone_node(8);
        for (i, p) in packets.iter().enumerate() {
            node.handle_datagram(addr(i as u8, 1), p, Instant::from_secs(1));
        }
        while node.poll_transmit().is_some() {}
        prop_assert!(node.table().len() <= 160 * K);
        prop_assert_eq!(node.store().peer_count(), 0);
    }
}

/// Builds an `n`-node network bootstrapped from node 0 and runs it for `settle`.
fn network(n: usize, seed: u64, settle: Duration) -> Net {
    let mut net = Net::new(seed);
    net.add(&[]);
    let boot = net.addrs[0];
    for _ in 1..n {
        net.add(&[boot]);
    }
    net.run_for(settle);
    net
}

#[test]
fn every_node_of_a_200_node_network_finds_an_announced_peer() {
    // 200 nodes bootstrap from one; node 17 announces a torrent; then every other node's
    // get_peers lookup finds node 17's address, in few hops. Prints the hop distribution.
    let mut net = network(200, 42, Duration::from_secs(120));
    let tables: Vec<usize> = net.nodes.iter().map(|n| n.table().len()).collect();
    assert!(tables.iter().all(|&t| t >= K), "thin tables: {tables:?}");
    let ih = NodeId([0x5c; 20]);
    let seeder = 17;
    let now = net.now;
    net.nodes[seeder].announce(ih, 7000, now);
    let announced = net.run_until(net.now + Duration::from_secs(30), |net| {
        net.events
            .iter()
            .any(|(i, e)| *i == seeder && matches!(e, Event::LookupDone(r) if r.announced_to > 0))
    });
    assert!(announced, "the seeder's announce lookup never finished");
    net.events.clear();
    let want = SocketAddrV4::new(*net.addrs[seeder].ip(), 7000);
    let now = net.now;
    for i in (0..net.nodes.len()).filter(|&i| i != seeder) {
        net.nodes[i].get_peers(ih, now).expect("room for a lookup");
    }
    let finished = net.run_until(net.now + Duration::from_secs(60), |net| {
        let done = net
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::LookupDone(_)))
            .count();
        done >= net.nodes.len() - 1
    });
    assert!(finished, "lookups did not all finish");
    let mut hops: BTreeMap<u8, usize> = BTreeMap::new();
    let mut first: BTreeMap<u8, usize> = BTreeMap::new();
    for (i, e) in &net.events {
        match e {
            Event::LookupDone(r) => {
                assert!(r.peers >= 1, "node {i} found no peer: {r:?}");
                *hops.entry(r.hops).or_default() += 1;
                *first.entry(r.first_peers_hop.unwrap_or(0)).or_default() += 1;
            }
            Event::Peers { peers, .. } => assert_eq!(peers, &vec![want]),
        }
    }
    eprintln!("200 nodes: hops to the closest node {hops:?}; hop of first peers {first:?}");
    assert!(*hops.keys().max().unwrap() <= 8, "{hops:?}");
}

#[test]
fn network_survives_a_third_of_nodes_leaving_and_reannounces() {
    // After a third of a 240-node network goes offline for 20 virtual minutes (past the
    // 15-minute expiry), the seeder's re-announce still reaches live nodes and a late
    // lookup finds it; tables shed dead nodes.
    let mut net = network(240, 7, Duration::from_secs(60));
    let ih = NodeId([0x11; 20]);
    let now = net.now;
    net.nodes[3].announce(ih, 6000, now);
    net.run_for(Duration::from_secs(20));
    for i in (0..240).filter(|i| i % 3 == 1) {
        net.offline.insert(i);
    }
    net.run_for(Duration::from_secs(20 * 60));
    let dead: std::collections::HashSet<SocketAddrV4> =
        net.offline.iter().map(|&i| net.addrs[i]).collect();
    let node = &net.nodes[200];
    let live = node
        .table()
        .entries()
        .filter(|e| !dead.contains(&e.info.addr))
        .count();
    assert!(live >= K, "table of node 200 lost its live nodes");
    let dead_kept = node
        .table()
        .entries()
        .filter(|e| dead.contains(&e.info.addr))
        .count();
    assert!(
        dead_kept <= 2,
        "node 200 still holds {dead_kept} dead nodes"
    );
    net.events.clear();
    let now = net.now;
    net.nodes[200].get_peers(ih, now).unwrap();
    let found = net.run_until(net.now + Duration::from_secs(30), |net| {
        net.events
            .iter()
            .any(|(i, e)| *i == 200 && matches!(e, Event::LookupDone(r) if r.peers > 0))
    });
    assert!(found, "late lookup found no peer");
}

#[test]
fn lookups_in_a_1000_node_network_take_few_hops() {
    // Five times the nodes: a sample of 100 lookups still converges in a handful of hops
    // (Kademlia's log2(n/k) growth); prints the distribution.
    let mut net = network(1000, 99, Duration::from_secs(40));
    let ih = NodeId([0xc3; 20]);
    let now = net.now;
    net.nodes[567].announce(ih, 9000, now);
    net.run_for(Duration::from_secs(20));
    net.events.clear();
    let now = net.now;
    for i in (0..1000).step_by(10) {
        net.nodes[i].get_peers(ih, now).unwrap();
    }
    let finished = net.run_until(net.now + Duration::from_secs(60), |net| {
        let done = net
            .events
            .iter()
            .filter(|(_, e)| matches!(e, Event::LookupDone(_)))
            .count();
        done >= 100
    });
    assert!(finished);
    let mut hops: BTreeMap<u8, usize> = BTreeMap::new();
    for (_, e) in &net.events {
        if let Event::LookupDone(r) = e {
            assert!(r.peers >= 1, "{r:?}");
            *hops.entry(r.hops).or_default() += 1;
        }
    }
    eprintln!("1000 nodes: hops to the closest node {hops:?}");
    assert!(*hops.keys().max().unwrap() <= 8, "{hops:?}");
}

#[test]
fn node_pings_the_oldest_before_letting_a_newcomer_in() {
    // Through the node itself: a newcomer meeting a full bucket of quiet nodes makes the node
    // ping the least recently seen one; it answers and keeps its place. A second newcomer's
    // eviction ping goes unanswered, and that newcomer replaces the silent node.
    let t0 = Instant::from_secs(1);
    let own = NodeId([0; 20]);
    let mut node = Node::new(
        NodeConfig {
            id: own,
            bootstrap: Vec::new(),
            known: Vec::new(),
            seed: 3,
        },
        t0,
    );
    let far = |salt: u8| own.random_with_prefix(0, [salt; 20]);
    for i in 0..K as u8 {
        let q = Message {
            tid: vec![i],
            body: Body::Query {
                id: far(i + 1),
                query: Query::Ping,
                read_only: false,
            },
        };
        node.handle_datagram(addr(10 + i, 6881), &q.to_bytes(), t0);
    }
    let close = Message {
        tid: b"c".to_vec(),
        body: Body::Query {
            id: own.random_with_prefix(9, [3; 20]),
            query: Query::Ping,
            read_only: false,
        },
    };
    node.handle_datagram(addr(99, 6881), &close.to_bytes(), t0);
    while node.poll_transmit().is_some() {}
    assert_eq!(node.table().len(), K + 1);

    let t1 = t0 + routing::QUESTIONABLE_AFTER + Duration::from_secs(1);
    let newcomer = |id: NodeId, last: u8| Message {
        tid: vec![last],
        body: Body::Query {
            id,
            query: Query::Ping,
            read_only: false,
        },
    };
    node.handle_datagram(addr(50, 6881), &newcomer(far(50), 50).to_bytes(), t1);
    let ping = sent_to(&mut node, addr(10, 6881)).expect("a ping to the oldest node");
    let tid = Message::decode(&ping.bytes).unwrap().tid;
    let pong = Message {
        tid,
        body: Body::Response(Response {
            id: far(1),
            ..Response::default()
        }),
    };
    node.handle_datagram(addr(10, 6881), &pong.to_bytes(), t1);
    assert!(node.table().get(&far(50)).is_none(), "newcomer got in");
    assert!(node.table().get(&far(1)).is_some());

    node.handle_datagram(addr(51, 6881), &newcomer(far(51), 51).to_bytes(), t1);
    assert!(
        sent_to(&mut node, addr(11, 6881)).is_some(),
        "no ping to the next oldest"
    );
    node.handle_timeout(t1 + node::QUERY_TIMEOUT);
    assert!(node.table().get(&far(2)).is_none(), "silent node kept");
    assert!(node.table().get(&far(51)).is_some(), "newcomer not added");
    assert_eq!(
        node.table().get(&far(1)).unwrap().first_seen,
        t0,
        "long-lived node lost its age"
    );
}

/// The first queued datagram to `to` (the others are dropped).
fn sent_to(node: &mut Node, to: SocketAddrV4) -> Option<Transmit> {
    let mut found = None;
    while let Some(t) = node.poll_transmit() {
        if t.to == to && found.is_none() {
            found = Some(t);
        }
    }
    found
}
