//! The DHT over real UDP sockets on 127.0.0.x: a small network of ringseed nodes in one
//! process where every node finds an announced peer, and a node that restarts from its
//! saved routing table finds it again without any bootstrap node.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringseed::dht_udp::{Dht, DhtConfig};
use ringseed::metainfo::InfoHash;

type Found = Arc<Mutex<HashMap<usize, Vec<SocketAddr>>>>;

fn start(
    i: usize,
    bootstrap: Vec<SocketAddrV4>,
    state: Option<std::path::PathBuf>,
    found: &Found,
) -> Dht {
    let ip = Ipv4Addr::new(127, 0, 3, 10 + i as u8);
    let f = found.clone();
    let sink = Box::new(move |_ih: InfoHash, peers: &[SocketAddr]| {
        f.lock()
            .unwrap()
            .entry(i)
            .or_default()
            .extend_from_slice(peers);
    });
    let cfg = DhtConfig {
        listen: SocketAddr::V4(SocketAddrV4::new(ip, 0)),
        bootstrap,
        state,
    };
    Dht::start(cfg, sink).expect("DHT node starts")
}

fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn every_node_of_a_udp_network_finds_the_announced_peer() {
    // 24 nodes on distinct loopback addresses bootstrap from the first; node 5 announces a
    // torrent on port 7000; every other node's search finds 127.0.3.15:7000.
    let found: Found = Arc::default();
    let n = 24;
    let first = start(0, Vec::new(), None, &found);
    let boot = first.local_addr();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start(i, vec![boot], None, &found));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let ih = InfoHash([0x42; 20]);
    nodes[5].track(ih, Some(7000), false);
    std::thread::sleep(Duration::from_millis(1000));
    for (i, node) in nodes.iter().enumerate() {
        if i != 5 {
            node.track(ih, None, true);
        }
    }
    let want: SocketAddr = "127.0.3.15:7000".parse().unwrap();
    let all = wait_for(Duration::from_secs(30), || {
        let f = found.lock().unwrap();
        (0..n)
            .filter(|&i| i != 5)
            .all(|i| f.get(&i).is_some_and(|p| p.contains(&want)))
    });
    let f = found.lock().unwrap().clone();
    assert!(all, "not every node found the peer: {f:?}");
    for peers in f.values() {
        assert!(peers.iter().all(|p| *p == want), "stray peers: {peers:?}");
    }
}

#[test]
fn node_restarted_from_saved_table_needs_no_bootstrap() {
    // A node saves its table at exit (atomically); restarted with that file and no
    // bootstrap address, it keeps its id, reaches the network and finds the peer.
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dht.dat");
    let found: Found = Arc::default();
    let first = start(30, Vec::new(), None, &found);
    let boot = first.local_addr();
    let mut nodes = vec![first];
    for i in 31..42 {
        nodes.push(start(i, vec![boot], None, &found));
    }
    let roamer = start(50, vec![boot], Some(state.clone()), &found);
    std::thread::sleep(Duration::from_millis(1500));
    roamer.shutdown();
    let saved = std::fs::read(&state).expect("state file written");
    let (id, saved_nodes) = ringseed::dht::routing::parse_saved(&saved).unwrap();
    assert!(
        saved_nodes.len() >= 8,
        "only {} nodes saved",
        saved_nodes.len()
    );
    let ih = InfoHash([0x77; 20]);
    nodes[3].track(ih, Some(9000), false);
    std::thread::sleep(Duration::from_millis(1000));
    let roamer = start(50, Vec::new(), Some(state.clone()), &found);
    roamer.track(ih, None, true);
    let want: SocketAddr = "127.0.3.43:9000".parse().unwrap();
    let ok = wait_for(Duration::from_secs(20), || {
        found
            .lock()
            .unwrap()
            .get(&50)
            .is_some_and(|p| p.contains(&want))
    });
    assert!(ok, "restarted node did not find the peer");
    roamer.shutdown();
    let (id_again, _) =
        ringseed::dht::routing::parse_saved(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(id, id_again, "the node id changed across the restart");
}
