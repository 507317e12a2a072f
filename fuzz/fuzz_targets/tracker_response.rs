//! Tracker replies never panic the parser or the scheduler, and the schedule stays sane.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::metainfo::{InfoHash, PeerId};
use ringseed::time::Instant;
use ringseed::tracker::{
    parse_response, AnnounceParams, AnnounceScheduler, Progress, INTERVAL_MAX, PEERS_MAX, RETRY_MAX,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(reply) = parse_response(data) {
        assert!(reply.peers.len() <= PEERS_MAX);
    }
    let params = AnnounceParams {
        info_hash: InfoHash([1; 20]),
        peer_id: PeerId([2; 20]),
        port: 6881,
        numwant: None,
        key: 3,
    };
    let now = Instant::from_secs(1);
    let mut s = AnnounceScheduler::new(params, Progress::default(), now);
    let _ = s.poll_announce(now).expect("started is due at once");
    let _ = s.handle_response(data, now);
    let (at, _) = s.next_announce().expect("an announce is always scheduled");
    assert!(at > now && at - now <= INTERVAL_MAX.max(RETRY_MAX));
});
