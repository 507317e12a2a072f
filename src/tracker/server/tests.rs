//! Tests of the built-in tracker's core: store, UDP and HTTP fronts, admission.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use proptest::prelude::*;

use super::http::{announce_reply, parse_announce, parse_scrape, scrape_reply};
use super::udp::{write_announce_reply, write_scrape_reply, UdpAction, UdpFront};
use super::*;
use crate::metainfo::{InfoHash, PeerId};
use crate::time::Instant;
use crate::tracker::udp_client::{UdpExchange, UdpGoal, UdpOutcome};
use crate::tracker::{parse_response, AnnounceRequest, Event};

const H: InfoHash = InfoHash([7; 20]);

fn ann(n: u8, addr: &str, left: u64, event: Event) -> PeerAnnounce {
    PeerAnnounce {
        info_hash: H,
        peer_id: PeerId([n; 20]),
        addr: addr.parse().unwrap(),
        left,
        event,
        numwant: 50,
    }
}

fn store() -> SwarmStore {
    SwarmStore::new(ServerLimits::default(), 1)
}

#[test]
fn peers_of_one_swarm_find_each_other_but_not_themselves() {
    // Three peers: each sees the other two; counts split seeders and leechers.
    let mut s = store();
    let t = Instant::from_secs(1);
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::Started), t)
        .unwrap();
    s.announce(&ann(2, "10.0.0.2:2", 5, Event::Started), t)
        .unwrap();
    let a = s
        .announce(&ann(3, "10.0.0.3:3", 5, Event::Started), t)
        .unwrap();
    assert_eq!((a.seeders, a.leechers), (1, 2));
    let mut got: Vec<SocketAddr> = a.peers.iter().map(|p| p.1).collect();
    got.sort();
    assert_eq!(
        got,
        vec!["10.0.0.1:1".parse().unwrap(), "10.0.0.2:2".parse().unwrap()]
    );
    let mut few = ann(3, "10.0.0.3:3", 5, Event::None);
    few.numwant = 1;
    assert_eq!(s.announce(&few, t).unwrap().peers.len(), 1);
}

#[test]
fn a_seeder_is_handed_only_leechers() {
    // Seeds 1 and 2, leechers 3 and 4: a leecher sees everyone, a seed only the leechers
    // (two seeds have nothing to trade); once the leechers are gone a seed gets no peers.
    let mut s = store();
    let t = Instant::from_secs(1);
    for (n, left) in [(1, 0), (2, 0), (3, 5), (4, 5)] {
        s.announce(&ann(n, &format!("10.0.0.{n}:{n}"), left, Event::Started), t)
            .unwrap();
    }
    let addrs = |a: AnnounceAnswer| {
        let mut v: Vec<SocketAddr> = a.peers.iter().map(|p| p.1).collect();
        v.sort();
        v
    };
    let leecher = s
        .announce(&ann(3, "10.0.0.3:3", 5, Event::None), t)
        .unwrap();
    assert_eq!(addrs(leecher).len(), 3);
    let seed = s
        .announce(&ann(1, "10.0.0.1:1", 0, Event::None), t)
        .unwrap();
    assert_eq!((seed.seeders, seed.leechers), (2, 2));
    assert_eq!(
        addrs(seed),
        vec!["10.0.0.3:3".parse().unwrap(), "10.0.0.4:4".parse().unwrap()]
    );
    // Leecher 3 completes: seeds now see only leecher 4.
    s.announce(&ann(3, "10.0.0.3:3", 0, Event::Completed), t)
        .unwrap();
    let seed = s
        .announce(&ann(2, "10.0.0.2:2", 0, Event::None), t)
        .unwrap();
    assert_eq!(addrs(seed), vec!["10.0.0.4:4".parse().unwrap()]);
    s.announce(&ann(4, "10.0.0.4:4", 5, Event::Stopped), t)
        .unwrap();
    let seed = s
        .announce(&ann(2, "10.0.0.2:2", 0, Event::None), t)
        .unwrap();
    assert!(seed.peers.is_empty());
}

#[test]
fn stopped_removes_and_completed_is_counted_once() {
    // A leecher completes (counted), then stops (gone, and the empty swarm with it).
    let mut s = store();
    let t = Instant::from_secs(1);
    s.announce(&ann(1, "10.0.0.1:1", 5, Event::Started), t)
        .unwrap();
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::Completed), t)
        .unwrap();
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::None), t)
        .unwrap();
    let st = s.scrape(&H);
    assert_eq!((st.seeders, st.completed, st.leechers), (1, 1, 0));
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::Stopped), t)
        .unwrap();
    assert_eq!((s.peer_count(), s.swarm_count()), (0, 0));
}

#[test]
fn peer_that_misses_an_interval_expires() {
    // Interval 30 min: a peer seen at 0 is kept at 44 min, dropped at 46 (1.5 intervals).
    let mut s = store();
    s.announce(&ann(1, "10.0.0.1:1", 5, Event::Started), Instant::ZERO)
        .unwrap();
    s.announce(
        &ann(2, "10.0.0.2:1", 5, Event::Started),
        Instant::from_secs(40 * 60),
    )
    .unwrap();
    assert_eq!(s.expire(Instant::from_secs(44 * 60)), 0);
    assert_eq!(s.expire(Instant::from_secs(46 * 60)), 1);
    assert_eq!(s.peer_count(), 1);
    assert_eq!(s.expire(Instant::from_secs(200 * 60)), 1);
    assert_eq!(s.swarm_count(), 0);
}

#[test]
fn swarm_and_peer_bounds_refuse_newcomers_but_serve_known_peers() {
    // swarms_max 1, 2 peers per swarm: a second torrent and a third peer are refused.
    let limits = ServerLimits {
        swarms_max: 1,
        peers_per_swarm_max: 2,
        ..ServerLimits::default()
    };
    let mut s = SwarmStore::new(limits, 1);
    let t = Instant::ZERO;
    s.announce(&ann(1, "10.0.0.1:1", 5, Event::Started), t)
        .unwrap();
    s.announce(&ann(2, "[::1]:1", 5, Event::Started), t)
        .unwrap();
    let err = s
        .announce(&ann(3, "10.0.0.3:1", 5, Event::Started), t)
        .unwrap_err();
    assert_eq!(err, ServerError::SwarmFull { max: 2 });
    assert!(s.announce(&ann(1, "10.0.0.1:1", 5, Event::None), t).is_ok());
    let mut other = ann(4, "10.0.0.4:1", 5, Event::Started);
    other.info_hash = InfoHash([8; 20]);
    assert_eq!(
        s.announce(&other, t),
        Err(ServerError::SwarmsFull { max: 1 })
    );
    assert_eq!(s.swarm_count(), 1);
}

#[test]
fn ipv4_and_ipv6_peers_are_handed_to_their_own_family() {
    // A v6 announcer gets v6 peers; counts include both families.
    let mut s = store();
    let t = Instant::ZERO;
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::Started), t)
        .unwrap();
    s.announce(&ann(2, "[::2]:2", 0, Event::Started), t)
        .unwrap();
    let a = s
        .announce(&ann(3, "[::3]:3", 5, Event::Started), t)
        .unwrap();
    assert_eq!(a.peers.len(), 1);
    assert_eq!(a.peers[0].1, "[::2]:2".parse::<SocketAddr>().unwrap());
    assert_eq!((a.seeders, a.leechers), (2, 1));
}

/// Runs a client exchange against the UDP front and a store, as a worker would.
fn udp_roundtrip(
    front: &UdpFront,
    store: &mut SwarmStore,
    goal: UdpGoal,
    src: SocketAddr,
    now: Instant,
) -> UdpOutcome {
    let access = AccessList::default();
    let mut rate = RateLimiter::new(0, 0);
    let mut ex = UdpExchange::new(goal, None, src.is_ipv6(), 3, 5);
    let (mut req, mut out) = (Vec::new(), Vec::new());
    while ex.outcome().is_none() {
        assert!(ex.poll_transmit(now, &mut req));
        match front.handle(&req, src, now, &access, &mut rate, &mut out) {
            UdpAction::Reply => {}
            UdpAction::Announce(tid, a) => {
                write_announce_reply(tid, &store.announce(&a, now), 1800, &mut out)
            }
            UdpAction::Scrape(tid, hashes) => write_scrape_reply(
                tid,
                hashes.iter().map(|h| store.scrape(h)).collect(),
                &mut out,
            ),
            UdpAction::Drop(why) => panic!("dropped: {why}"),
        }
        let _ = ex.handle_datagram(&out, now);
    }
    ex.outcome().unwrap().clone().unwrap()
}

fn request(n: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: H,
        peer_id: PeerId([n; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(500),
        key: 1,
        tracker_id: None,
    }
}

#[test]
fn our_udp_client_and_udp_front_agree() {
    // Client exchange against the server front: connect, announce, scrape, all over BEP 15.
    let front = UdpFront::new(99);
    let mut s = store();
    let now = Instant::from_secs(500);
    let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let b: SocketAddr = "127.0.0.2:5001".parse().unwrap();
    udp_roundtrip(
        &front,
        &mut s,
        UdpGoal::Announce(request(1, 6881, 0)),
        a,
        now,
    );
    let UdpOutcome::Announce(r) = udp_roundtrip(
        &front,
        &mut s,
        UdpGoal::Announce(request(2, 6882, 9)),
        b,
        now,
    ) else {
        panic!()
    };
    assert_eq!(
        r.peers,
        vec!["127.0.0.1:6881".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(
        (r.complete, r.incomplete, r.interval_secs),
        (Some(1), Some(1), Some(1800))
    );
    let UdpOutcome::Scrape(st) = udp_roundtrip(&front, &mut s, UdpGoal::Scrape(vec![H]), a, now)
    else {
        panic!()
    };
    assert_eq!((st[0].seeders, st[0].leechers), (1, 1));
}

#[test]
fn connection_ids_live_one_to_two_minutes_and_are_bound_to_the_source_ip() {
    // An id from second 60 works at 179 s, not at 180 s; from another port of the same IP
    // yes, from another IP never.
    let front = UdpFront::new(3);
    let src: SocketAddr = "127.0.0.1:1000".parse().unwrap();
    let id = front.connection_id(src, Instant::from_secs(60));
    let mut req = Vec::new();
    crate::tracker::udp_proto::UdpRequest::Scrape {
        connection_id: id,
        transaction_id: crate::tracker::udp_proto::TransactionId(1),
        info_hashes: vec![H],
    }
    .encode(&mut req);
    let mut rate = RateLimiter::new(0, 0);
    let acc = AccessList::default();
    let mut out = Vec::new();
    let mut at = |secs, from: SocketAddr| {
        front.handle(
            &req,
            from,
            Instant::from_secs(secs),
            &acc,
            &mut rate,
            &mut out,
        )
    };
    assert!(matches!(at(179, src), UdpAction::Scrape(..)));
    assert_eq!(at(180, src), UdpAction::Drop("bad connection id"));
    assert!(matches!(
        at(61, "127.0.0.1:1001".parse().unwrap()),
        UdpAction::Scrape(..)
    ));
    assert_eq!(
        at(61, "127.0.0.2:1000".parse().unwrap()),
        UdpAction::Drop("bad connection id")
    );
}

#[test]
fn http_announce_compact_and_dict_replies_parse_in_our_client() {
    // Compact and dict-form replies both decode to the same peers with our client parser.
    let mut s = store();
    let t = Instant::ZERO;
    s.announce(&ann(1, "10.0.0.1:6881", 0, Event::Started), t)
        .unwrap();
    let q = format!(
        "info_hash={}&peer_id={}&port=7000&uploaded=0&downloaded=0&left=3&event=started",
        "%07".repeat(20),
        "B".repeat(20)
    );
    let ip: IpAddr = "10.0.0.2".parse().unwrap();
    for compact in ["1", "0"] {
        let req = parse_announce(&format!("{q}&compact={compact}"), ip).unwrap();
        assert_eq!(req.announce.addr, "10.0.0.2:7000".parse().unwrap());
        let answer = s.announce(&req.announce, t);
        let r = parse_response(&announce_reply(&req, &answer, 900)).unwrap();
        assert_eq!(
            r.peers,
            vec!["10.0.0.1:6881".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            (r.complete, r.incomplete, r.interval_secs),
            (Some(1), Some(1), Some(900))
        );
    }
    let v6 = parse_announce(&q, "::5".parse().unwrap()).unwrap();
    let body = announce_reply(&v6, &s.announce(&v6.announce, t), 900);
    assert!(parse_response(&body).unwrap().peers.is_empty());
}

#[test]
fn bad_http_queries_are_refused_with_their_reason() {
    // Missing or malformed parameters name the parameter.
    let ip: IpAddr = "10.0.0.2".parse().unwrap();
    assert_eq!(
        parse_announce("port=1", ip),
        Err(ServerError::MissingParam("info_hash"))
    );
    let short = "info_hash=abc&peer_id=x&port=1&left=0";
    assert_eq!(
        parse_announce(short, ip).unwrap_err().to_string(),
        "bad `info_hash`: not 20 bytes"
    );
    let body = super::http::failure(&ServerError::NotAllowed);
    assert_eq!(
        parse_response(&body).unwrap_err().to_string(),
        "tracker refused the announce: torrent not allowed on this tracker"
    );
    assert!(parse_announce(&"a".repeat(9000), ip).is_err());
}

#[test]
fn http_scrape_reply_round_trips_through_our_client() {
    // BEP 48 reply: per-hash counts come back as sent.
    let mut s = store();
    s.announce(&ann(1, "10.0.0.1:1", 0, Event::Started), Instant::ZERO)
        .unwrap();
    let hashes = parse_scrape(&format!("info_hash={}", "%07".repeat(20))).unwrap();
    let stats: Vec<_> = hashes.iter().map(|h| (*h, s.scrape(h))).collect();
    let back = crate::tracker::parse_scrape(&scrape_reply(&stats)).unwrap();
    assert_eq!(back, stats);
}

#[test]
fn allow_and_deny_lists_decide_admission() {
    // Allow-list present: only listed hashes; deny-list wins over it; bad lines reported.
    let h7 = H.to_hex();
    let h8 = InfoHash([8; 20]).to_hex();
    let (acc, bad) = AccessList::parse(Some(&format!("# ours\n{h7}\n{h8}\nnothex\n")), Some(&h8));
    assert_eq!(bad, vec![4]);
    assert!(acc.allows(&H));
    assert!(!acc.allows(&InfoHash([8; 20])));
    assert!(!acc.allows(&InfoHash([9; 20])));
    assert!(AccessList::default().allows(&InfoHash([9; 20])));
}

#[test]
fn rate_limit_allows_a_burst_then_refills_over_time() {
    // 10/s with a burst of 3: three pass, the fourth fails, one passes 100 ms later.
    let mut r = RateLimiter::new(10, 3);
    let ip: IpAddr = "10.1.1.1".parse().unwrap();
    let t = Instant::from_secs(5);
    assert!((0..3).all(|_| r.check(ip, t)));
    assert!(!r.check(ip, t));
    assert!(r.check(ip, t + Duration::from_millis(100)));
    assert!(r.check("10.1.1.2".parse().unwrap(), t));
}

proptest! {
    #[test]
    fn hostile_datagrams_and_queries_never_panic_the_fronts(
        b in proptest::collection::vec(any::<u8>(), 0..200),
        q in ".{0,300}",
    ) {
        // Any bytes into the UDP front and any text into the HTTP parsers: an answer, no panic.
        let front = UdpFront::new(1);
        let mut rate = RateLimiter::new(100, 100);
        let mut out = Vec::new();
        let src: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let _ = front.handle(&b, src, Instant::ZERO, &AccessList::default(), &mut rate, &mut out);
        let _ = parse_announce(&q, src.ip());
        let _ = parse_scrape(&q);
    }

    #[test]
    fn store_stays_within_its_bounds(ops in proptest::collection::vec((0u8..6, 0u8..40, 0u8..4, 0u64..3), 1..300)) {
        // Random announces, stops and expiries never exceed the limits or break the counts.
        let limits = ServerLimits { swarms_max: 3, peers_per_swarm_max: 5, peers_total_max: 12, interval: Duration::from_secs(60) };
        let mut s = SwarmStore::new(limits, 9);
        let mut now = Instant::ZERO;
        for (h, p, ev, left) in ops {
            now += Duration::from_secs(7);
            let event = [Event::Started, Event::None, Event::Completed, Event::Stopped][ev as usize];
            let a = PeerAnnounce { info_hash: InfoHash([h; 20]), peer_id: PeerId([p; 20]), addr: SocketAddr::from(([10, 0, 0, p], 1)), left, event, numwant: 50 };
            if let Ok(ans) = s.announce(&a, now) {
                prop_assert!(ans.peers.len() <= 5);
                prop_assert!((ans.seeders + ans.leechers) as usize <= 5);
            }
            if p % 7 == 0 { s.expire(now); }
            prop_assert!(s.swarm_count() <= 3 && s.peer_count() <= 12);
        }
    }
}
