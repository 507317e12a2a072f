//! Tests of the BEP 15 codec and the UDP exchange under virtual time.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::udp_client::*;
use super::udp_proto::*;
use super::{AnnounceRequest, Event, TrackerError};
use crate::metainfo::{InfoHash, PeerId};
use crate::time::Instant;

fn announce_goal() -> UdpGoal {
    UdpGoal::Announce(AnnounceRequest {
        info_hash: InfoHash([9; 20]),
        peer_id: PeerId([8; 20]),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 3,
        event: Event::Started,
        numwant: Some(50),
        key: 77,
        tracker_id: None,
    })
}

/// Sends what the exchange wants at `now` and decodes it as the tracker would.
fn sent(ex: &mut UdpExchange, now: Instant) -> Option<UdpRequest> {
    let mut buf = Vec::new();
    ex.poll_transmit(now, &mut buf)
        .then(|| UdpRequest::decode(&buf).expect("the client sends valid packets"))
}

fn tid_of(r: &UdpRequest) -> TransactionId {
    match r {
        UdpRequest::Connect { transaction_id } => *transaction_id,
        UdpRequest::Announce(a) => a.transaction_id,
        UdpRequest::Scrape { transaction_id, .. } => *transaction_id,
    }
}

fn reply(r: &UdpResponse) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

fn connect_reply(tid: TransactionId, id: u64) -> Vec<u8> {
    reply(&UdpResponse::Connect {
        transaction_id: tid,
        connection_id: ConnectionId(id),
    })
}

#[test]
fn connect_then_announce_yields_peers_and_counts() {
    // The happy path: connect, announce with the id received, reply turned into peers.
    let t0 = Instant::from_secs(100);
    let mut ex = UdpExchange::new(announce_goal(), None, false, ATTEMPTS_MAX, 42);
    let c = sent(&mut ex, t0).unwrap();
    assert!(matches!(c, UdpRequest::Connect { .. }));
    ex.handle_datagram(&connect_reply(tid_of(&c), 0xabc), t0)
        .unwrap();
    let a = sent(&mut ex, t0).unwrap();
    let UdpRequest::Announce(ann) = &a else {
        panic!("{a:?}")
    };
    assert_eq!(ann.connection_id, ConnectionId(0xabc));
    assert_eq!(
        (ann.event, ann.num_want, ann.port, ann.key),
        (2, 50, 6881, 77)
    );
    let peers: Vec<SocketAddr> = vec!["10.0.0.1:1".parse().unwrap(), "10.0.0.2:0".parse().unwrap()];
    let r = reply(&UdpResponse::Announce {
        transaction_id: tid_of(&a),
        interval: 900,
        leechers: 4,
        seeders: 5,
        peers,
    });
    ex.handle_datagram(&r, t0).unwrap();
    let Some(Ok(UdpOutcome::Announce(resp))) = ex.outcome() else {
        panic!("{:?}", ex.outcome())
    };
    assert_eq!(resp.interval_secs, Some(900));
    assert_eq!((resp.complete, resp.incomplete), (Some(5), Some(4)));
    assert_eq!(
        resp.peers,
        vec!["10.0.0.1:1".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(ex.connection().unwrap().id, ConnectionId(0xabc));
}

#[test]
fn retransmits_after_15_times_2_to_the_n_seconds_then_gives_up() {
    // Virtual time: sends at 0, 15, 45, 105 s (waits 15, 30, 60), failure at 225 s.
    let t0 = Instant::ZERO;
    let mut ex = UdpExchange::new(announce_goal(), None, false, 4, 1);
    let mut sends = Vec::new();
    let mut now = t0;
    let mut tids = std::collections::HashSet::new();
    while ex.outcome().is_none() {
        if let Some(r) = sent(&mut ex, now) {
            assert!(matches!(r, UdpRequest::Connect { .. }));
            tids.insert(tid_of(&r));
            sends.push((now - t0).as_secs());
        }
        let at = ex.poll_timeout().unwrap();
        // Nothing happens a moment before the deadline.
        ex.handle_timeout(Instant::from_nanos(at.as_nanos() - 1));
        assert!(!ex.poll_transmit(now, &mut Vec::new()));
        now = at;
        ex.handle_timeout(now);
    }
    assert_eq!(sends, vec![0, 15, 45, 105]);
    assert_eq!((now - t0).as_secs(), 225);
    assert_eq!(
        tids.len(),
        4,
        "each retransmission has a fresh transaction id"
    );
    assert_eq!(
        ex.outcome().unwrap().clone().unwrap_err(),
        TrackerError::UdpTimedOut { attempts: 4 }
    );
}

#[test]
fn expired_connection_id_is_replaced_before_retransmitting() {
    // An id cached 50 s ago is used at once; by the retransmission (15+30 s later) it is
    // older than a minute, so the exchange connects again instead of reusing it.
    let t0 = Instant::from_secs(1000);
    let cached = CachedConnection {
        id: ConnectionId(5),
        received_at: Instant::from_secs(950),
    };
    let mut ex = UdpExchange::new(announce_goal(), Some(cached), false, ATTEMPTS_MAX, 9);
    let first = sent(&mut ex, t0).unwrap();
    assert!(matches!(first, UdpRequest::Announce(ref a) if a.connection_id == ConnectionId(5)));
    let at = ex.poll_timeout().unwrap();
    assert_eq!(at, t0 + Duration::from_secs(15));
    ex.handle_timeout(at);
    let again = sent(&mut ex, at).unwrap();
    assert!(matches!(again, UdpRequest::Connect { .. }), "{again:?}");
    assert_eq!(ex.connection(), None);
}

#[test]
fn fresh_cached_connection_skips_the_connect() {
    // An id younger than a minute is reused; one exactly a minute old is not.
    let t0 = Instant::from_secs(1000);
    let fresh = CachedConnection {
        id: ConnectionId(5),
        received_at: Instant::from_secs(941),
    };
    let mut ex = UdpExchange::new(announce_goal(), Some(fresh), false, ATTEMPTS_MAX, 9);
    assert!(matches!(sent(&mut ex, t0), Some(UdpRequest::Announce(_))));
    let stale = CachedConnection {
        received_at: Instant::from_secs(940),
        ..fresh
    };
    let mut ex = UdpExchange::new(announce_goal(), Some(stale), false, ATTEMPTS_MAX, 9);
    assert!(matches!(
        sent(&mut ex, t0),
        Some(UdpRequest::Connect { .. })
    ));
}

#[test]
fn replies_with_another_transaction_id_are_ignored() {
    // A stale or spoofed reply is refused and the exchange still accepts the right one.
    let t0 = Instant::ZERO;
    let mut ex = UdpExchange::new(announce_goal(), None, false, ATTEMPTS_MAX, 3);
    let c = sent(&mut ex, t0).unwrap();
    let wrong = TransactionId(tid_of(&c).0.wrapping_add(1));
    let err = ex
        .handle_datagram(&connect_reply(wrong, 1), t0)
        .unwrap_err();
    assert!(
        matches!(err, TrackerError::UdpWrongTransaction { .. }),
        "{err}"
    );
    assert!(ex.outcome().is_none());
    assert!(ex.handle_datagram(b"short", t0).is_err());
    assert!(ex.outcome().is_none());
    ex.handle_datagram(&connect_reply(tid_of(&c), 2), t0)
        .unwrap();
    assert!(matches!(sent(&mut ex, t0), Some(UdpRequest::Announce(_))));
}

#[test]
fn malformed_and_refusing_replies_end_the_exchange_with_clear_errors() {
    // An error packet gives its text; a ragged peer list or wrong kind gives its own error.
    type MakeReply = Box<dyn Fn(TransactionId) -> Vec<u8>>;
    let cases: Vec<(MakeReply, &str)> = vec![
        (
            Box::new(|t| {
                reply(&UdpResponse::Error {
                    transaction_id: t,
                    message: "torrent not registered".into(),
                })
            }),
            "tracker refused the announce: torrent not registered",
        ),
        (
            Box::new(|t| {
                let mut b = reply(&UdpResponse::Announce {
                    transaction_id: t,
                    interval: 1,
                    leechers: 0,
                    seeders: 0,
                    peers: vec![],
                });
                b.extend_from_slice(&[1, 2, 3]);
                b
            }),
            "bad UDP tracker packet: announce peers is 3 bytes, not a multiple of 6",
        ),
        (
            Box::new(|t| connect_reply(t, 1)),
            "UDP tracker sent a reply of another kind than the request",
        ),
    ];
    for (make, text) in cases {
        let cached = CachedConnection {
            id: ConnectionId(1),
            received_at: Instant::ZERO,
        };
        let mut ex = UdpExchange::new(announce_goal(), Some(cached), false, 2, 5);
        let a = sent(&mut ex, Instant::ZERO).unwrap();
        let err = ex
            .handle_datagram(&make(tid_of(&a)), Instant::ZERO)
            .unwrap_err();
        assert_eq!(err.to_string(), text);
        assert_eq!(ex.outcome().unwrap().clone().unwrap_err(), err);
    }
}

#[test]
fn scrape_reply_must_have_one_entry_per_hash() {
    // Two hashes asked, one entry back: an error, not a silent short list.
    let cached = CachedConnection {
        id: ConnectionId(1),
        received_at: Instant::ZERO,
    };
    let goal = UdpGoal::Scrape(vec![InfoHash([1; 20]), InfoHash([2; 20])]);
    let mut ex = UdpExchange::new(goal.clone(), Some(cached), false, 2, 5);
    let s = sent(&mut ex, Instant::ZERO).unwrap();
    let one = reply(&UdpResponse::Scrape {
        transaction_id: tid_of(&s),
        stats: vec![ScrapeStats::default()],
    });
    let err = ex.handle_datagram(&one, Instant::ZERO).unwrap_err();
    assert_eq!(err, TrackerError::UdpScrapeCount { asked: 2, got: 1 });
    let mut ex = UdpExchange::new(goal, Some(cached), false, 2, 5);
    let s = sent(&mut ex, Instant::ZERO).unwrap();
    let stats = vec![
        ScrapeStats {
            seeders: 1,
            completed: 2,
            leechers: 3,
        },
        ScrapeStats::default(),
    ];
    let two = reply(&UdpResponse::Scrape {
        transaction_id: tid_of(&s),
        stats: stats.clone(),
    });
    ex.handle_datagram(&two, Instant::ZERO).unwrap();
    assert_eq!(
        ex.outcome().unwrap().clone().unwrap(),
        UdpOutcome::Scrape(stats)
    );
}

fn arb_peer(v6: bool) -> impl Strategy<Value = SocketAddr> {
    if v6 {
        (any::<[u8; 16]>(), 1u16..)
            .prop_map(|(ip, port)| SocketAddr::from((ip, port)))
            .boxed()
    } else {
        (any::<[u8; 4]>(), 1u16..)
            .prop_map(|(ip, port)| SocketAddr::from((ip, port)))
            .boxed()
    }
}

fn arb_request() -> impl Strategy<Value = UdpRequest> {
    prop_oneof![
        any::<u32>().prop_map(|t| UdpRequest::Connect {
            transaction_id: TransactionId(t)
        }),
        (
            any::<(u64, u32, [u8; 20], [u8; 20], u64, u64, u64)>(),
            any::<(u32, u32, u32, i32, u16)>()
        )
            .prop_map(|((c, t, h, p, d, l, u), (e, ip, k, n, port))| {
                UdpRequest::Announce(UdpAnnounce {
                    connection_id: ConnectionId(c),
                    transaction_id: TransactionId(t),
                    info_hash: InfoHash(h),
                    peer_id: PeerId(p),
                    downloaded: d,
                    left: l,
                    uploaded: u,
                    event: e,
                    ip,
                    key: k,
                    num_want: n,
                    port,
                })
            }),
        (
            any::<u64>(),
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 20]>(), 1..=SCRAPE_HASHES_MAX)
        )
            .prop_map(|(c, t, hs)| UdpRequest::Scrape {
                connection_id: ConnectionId(c),
                transaction_id: TransactionId(t),
                info_hashes: hs.into_iter().map(InfoHash).collect(),
            }),
    ]
}

proptest! {
    #[test]
    fn requests_decode_to_what_was_encoded(r in arb_request()) {
        // decode(encode(x)) == x for every request kind.
        let mut b = Vec::new();
        r.encode(&mut b);
        prop_assert_eq!(UdpRequest::decode(&b).unwrap(), r);
    }

    #[test]
    fn announce_responses_decode_to_what_was_encoded(
        v6 in any::<bool>(),
        t in any::<u32>(),
        counts in any::<(u32, u32, u32)>(),
        peers in proptest::collection::vec(arb_peer(false), 0..50),
        peers6 in proptest::collection::vec(arb_peer(true), 0..50),
    ) {
        // Peers of the datagram's family survive the round trip.
        let r = UdpResponse::Announce {
            transaction_id: TransactionId(t),
            interval: counts.0,
            leechers: counts.1,
            seeders: counts.2,
            peers: if v6 { peers6 } else { peers },
        };
        let mut b = Vec::new();
        r.encode(&mut b);
        prop_assert_eq!(UdpResponse::decode(&b, v6).unwrap(), r);
    }

    #[test]
    fn arbitrary_datagrams_never_panic_either_parser(
        b in proptest::collection::vec(any::<u8>(), 0..400),
        v6 in any::<bool>(),
    ) {
        // Any bytes: a value or an error, for both directions and the exchange.
        let _ = UdpRequest::decode(&b);
        let _ = UdpResponse::decode(&b, v6);
        let mut ex = UdpExchange::new(announce_goal(), None, v6, 3, 1);
        let _ = ex.poll_transmit(Instant::ZERO, &mut Vec::new());
        let _ = ex.handle_datagram(&b, Instant::ZERO);
    }
}
