//! UDP tracker datagrams (BEP 15) never panic either parser or the client exchange, and a
//! request that decodes re-encodes to the bytes it came from (its fixed part).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::metainfo::{InfoHash, PeerId};
use ringseed::time::Instant;
use ringseed::tracker::server::udp::UdpFront;
use ringseed::tracker::server::{AccessList, RateLimiter};
use ringseed::tracker::udp_client::{UdpExchange, UdpGoal};
use ringseed::tracker::udp_proto::{UdpRequest, UdpResponse};
use ringseed::tracker::{AnnounceRequest, Event};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = UdpRequest::decode(data) {
        let mut out = Vec::new();
        req.encode(&mut out);
        assert_eq!(&data[..out.len()], &out[..]);
    }
    let front = UdpFront::new(5);
    let mut rate = RateLimiter::new(0, 0);
    let mut out = Vec::new();
    let src = "127.0.0.1:9".parse().unwrap();
    let _ = front.handle(data, src, Instant::ZERO, &AccessList::default(), &mut rate, &mut out);
    assert!(out.len() <= 2048);
    let _ = UdpResponse::decode(data, false);
    let _ = UdpResponse::decode(data, true);
    let goal = UdpGoal::Announce(AnnounceRequest {
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        port: 1,
        uploaded: 0,
        downloaded: 0,
        left: 0,
        event: Event::Started,
        numwant: None,
        key: 0,
        tracker_id: None,
    });
    let mut ex = UdpExchange::new(goal, None, false, 3, 7);
    let mut buf = Vec::new();
    assert!(ex.poll_transmit(Instant::ZERO, &mut buf));
    // Make the fuzzer's bytes answer our transaction, so the decoding paths run.
    let mut reply = data.to_vec();
    if reply.len() >= 8 {
        reply[4..8].copy_from_slice(&buf[12..16]);
    }
    let _ = ex.handle_datagram(&reply, Instant::ZERO);
});
