//! KRPC datagrams never panic the codec or the DHT node, and what decodes re-encodes to
//! something that decodes the same.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use ringseed::dht::{krpc::Message, Node, NodeConfig, NodeId};
use ringseed::time::Instant;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data) {
        let again = Message::decode(&m.to_bytes()).expect("our encoding decodes");
        assert_eq!(again, m);
    }
    let cfg = NodeConfig {
        id: NodeId([7; 20]),
        bootstrap: Vec::new(),
        known: Vec::new(),
        seed: 1,
    };
    let now = Instant::from_secs(1);
    let mut node = Node::new(cfg, now);
    node.handle_datagram(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6881), data, now);
    node.handle_timeout(now);
    while node.poll_transmit().is_some() {}
});
