//! Tests of announce URLs and reply parsing.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::bencode::OwnedValue;
use crate::metainfo::{InfoHash, PeerId};

fn request(event: Event) -> AnnounceRequest {
    let mut hash = [0u8; 20];
    for (i, b) in hash.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(0x7e);
    }
    AnnounceRequest {
        info_hash: InfoHash(hash),
        peer_id: PeerId(*b"-RS0100-abc~.-_ /+&="),
        port: 6881,
        uploaded: 1,
        downloaded: 2,
        left: 3,
        event,
        numwant: Some(50),
        key: 0xbeef,
        tracker_id: None,
    }
}

/// The query parameters of `url`, percent-decoded to raw bytes.
fn query(url: &str) -> Vec<(String, Vec<u8>)> {
    let q = url.split_once('?').unwrap().1;
    q.split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            let v = percent_encoding::percent_decode_str(v).collect();
            (k.to_owned(), v)
        })
        .collect()
}

fn param(url: &str, key: &str) -> Option<Vec<u8>> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

#[test]
fn binary_info_hash_and_peer_id_are_escaped_byte_for_byte() {
    // Every byte of the 20-byte hash and id survives the URL, and only unreserved bytes are
    // left as they are.
    let req = request(Event::None);
    let url = announce_url("http://t.example:6969/announce", &req).unwrap();
    assert!(url.starts_with("http://t.example:6969/announce?info_hash="));
    assert_eq!(param(&url, "info_hash").unwrap(), req.info_hash.0);
    assert_eq!(param(&url, "peer_id").unwrap(), req.peer_id.0);
    assert!(
        url.contains("peer_id=-RS0100-abc~.-_%20%2F%2B%26%3D&"),
        "{url}"
    );
    for (k, v) in [
        ("port", "6881"),
        ("uploaded", "1"),
        ("downloaded", "2"),
        ("left", "3"),
    ] {
        assert_eq!(param(&url, k).unwrap(), v.as_bytes(), "{k}");
    }
    assert_eq!(param(&url, "compact").unwrap(), b"1");
    assert_eq!(param(&url, "numwant").unwrap(), b"50");
    assert_eq!(param(&url, "key").unwrap(), b"0000beef");
}

#[test]
fn event_is_sent_only_for_events_and_tracker_id_is_echoed() {
    // Regular announces carry no `event`; the others name theirs; a tracker id goes back.
    let url = announce_url("http://t/a", &request(Event::None)).unwrap();
    assert_eq!(param(&url, "event"), None);
    assert_eq!(param(&url, "trackerid"), None);
    for (event, text) in [
        (Event::Started, "started"),
        (Event::Completed, "completed"),
        (Event::Stopped, "stopped"),
    ] {
        let mut req = request(event);
        req.tracker_id = Some(b"id 7".to_vec());
        let url = announce_url("http://t/a", &req).unwrap();
        assert_eq!(param(&url, "event").unwrap(), text.as_bytes());
        assert_eq!(param(&url, "trackerid").unwrap(), b"id 7");
    }
}

#[test]
fn existing_query_and_fragment_are_handled() {
    // A passkey query is kept and extended with `&`; a fragment is never sent.
    let req = request(Event::None);
    let url = announce_url("https://t/announce?passkey=abc", &req).unwrap();
    assert!(
        url.starts_with("https://t/announce?passkey=abc&info_hash="),
        "{url}"
    );
    let url = announce_url("http://t/announce?", &req).unwrap();
    assert!(url.starts_with("http://t/announce?info_hash="), "{url}");
    let url = announce_url("HTTP://t/announce?a=1&#frag", &req).unwrap();
    assert!(url.starts_with("HTTP://t/announce?a=1&info_hash="), "{url}");
    assert!(!url.contains("frag"));
    let err = announce_url("udp://t:80", &req).unwrap_err();
    assert!(matches!(err, TrackerError::UnsupportedScheme { .. }));
}

#[test]
fn compact_peers_and_counts_are_read() {
    // BEP 23 compact IPv4 peers with interval, min interval, counts, tracker id and warning.
    let body = b"d8:completei5e10:incompletei3e8:intervali1800e12:min intervali900e\
5:peers12:\x0a\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x00\x50\
10:tracker id3:xyz15:warning message4:slowe";
    let r = parse_response(body).unwrap();
    assert_eq!(r.interval_secs, Some(1800));
    assert_eq!(r.min_interval_secs, Some(900));
    assert_eq!((r.complete, r.incomplete), (Some(5), Some(3)));
    assert_eq!(r.tracker_id.as_deref(), Some(&b"xyz"[..]));
    assert_eq!(r.warning.as_deref(), Some("slow"));
    let expected: Vec<SocketAddr> = vec![
        "10.0.0.1:6881".parse().unwrap(),
        "127.0.0.1:80".parse().unwrap(),
    ];
    assert_eq!(r.peers, expected);
}

#[test]
fn dict_peers_and_peers6_are_read() {
    // Dict-form peers (IPv4 and IPv6 text), DNS names skipped, and BEP 7 peers6 after them.
    let mut peers6 = vec![0u8; 16];
    peers6[15] = 1;
    peers6.extend_from_slice(&51413u16.to_be_bytes());
    let peer = |ip: &str, port: i64| {
        let mut d = OwnedValue::dict();
        d.insert("ip", OwnedValue::str(ip));
        d.insert("port", OwnedValue::Int(port));
        d.insert("peer id", OwnedValue::Bytes(vec![1; 20]));
        d
    };
    let mut root = OwnedValue::dict();
    root.insert("interval", OwnedValue::Int(60));
    root.insert(
        "peers",
        OwnedValue::List(vec![
            peer("192.168.1.2", 7000),
            peer("2001:db8::5", 7001),
            peer("peer.example.org", 7002),
            peer("10.0.0.9", 0),
        ]),
    );
    root.insert("peers6", OwnedValue::Bytes(peers6));
    let r = parse_response(&root.to_bytes()).unwrap();
    let expected: Vec<SocketAddr> = ["192.168.1.2:7000", "[2001:db8::5]:7001", "[::1]:51413"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(r.peers, expected);
}

#[test]
fn failure_reason_is_an_error_carrying_the_text() {
    // A tracker's refusal reaches the caller verbatim, even with other keys present.
    let err = parse_response(b"d14:failure reason17:torrent not found8:intervali5ee").unwrap_err();
    assert_eq!(
        err,
        TrackerError::Failure {
            reason: "torrent not found".into()
        }
    );
}

#[test]
fn malformed_replies_name_the_field() {
    // Each malformed reply gives the variant for its problem and names the field.
    let cases: Vec<(&[u8], TrackerError)> = vec![
        (b"le", TrackerError::NotADict),
        (
            b"d5:peers7:abcdefge",
            TrackerError::CompactLength {
                field: "peers",
                len: 7,
                entry_bytes: 6,
            },
        ),
        (
            b"d6:peers65:abcdee",
            TrackerError::CompactLength {
                field: "peers6",
                len: 5,
                entry_bytes: 18,
            },
        ),
        (
            b"d8:intervali-1ee",
            TrackerError::OutOfRange {
                field: "interval",
                value: -1,
                min: 0,
                max: u32::MAX.into(),
            },
        ),
        (
            b"d8:interval2:10e",
            TrackerError::WrongType {
                field: "interval",
                expected: "an integer",
            },
        ),
        (
            b"d5:peersi3ee",
            TrackerError::WrongType {
                field: "peers",
                expected: "a byte string (compact) or a list of dicts",
            },
        ),
        (
            b"d5:peersli1eee",
            TrackerError::BadPeer {
                index: 0,
                reason: "not a dict",
            },
        ),
        (
            b"d5:peersld2:ip7:1.2.3.4eee",
            TrackerError::BadPeer {
                index: 0,
                reason: "no `port`",
            },
        ),
        (
            b"d5:peersld2:ip9:1.2.3.4004:porti1eeee",
            TrackerError::BadPeer {
                index: 0,
                reason: "`ip` is neither an IP address nor a host name",
            },
        ),
        (
            b"d5:peersld2:ip7:1.2.3.44:porti70000eeee",
            TrackerError::BadPeer {
                index: 0,
                reason: "`port` is not 0-65535",
            },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            parse_response(body).unwrap_err(),
            expected,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    assert!(matches!(
        parse_response(b"d5:peers"),
        Err(TrackerError::Bencode(_))
    ));
}

#[test]
fn peer_lists_and_strings_are_bounded() {
    // More than PEERS_MAX peers, an oversized tracker id or body are refused before use.
    let mut root = OwnedValue::dict();
    root.insert("peers", OwnedValue::Bytes(vec![1; 6 * (PEERS_MAX + 1)]));
    assert_eq!(
        parse_response(&root.to_bytes()).unwrap_err(),
        TrackerError::TooManyPeers {
            count: PEERS_MAX + 1,
            max: PEERS_MAX
        }
    );
    let mut root = OwnedValue::dict();
    root.insert("peers", OwnedValue::Bytes(vec![1; 6 * 1000]));
    root.insert("peers6", OwnedValue::Bytes(vec![1; 18 * 1001]));
    assert!(matches!(
        parse_response(&root.to_bytes()),
        Err(TrackerError::TooManyPeers { count: 2001, .. })
    ));
    let mut root = OwnedValue::dict();
    root.insert(
        "tracker id",
        OwnedValue::Bytes(vec![b'x'; TRACKER_ID_BYTES_MAX + 1]),
    );
    assert!(matches!(
        parse_response(&root.to_bytes()),
        Err(TrackerError::TooLong {
            field: "tracker id",
            ..
        })
    ));
    let huge = vec![b'x'; RESPONSE_BYTES_MAX + 1];
    assert!(matches!(
        parse_response(&huge),
        Err(TrackerError::Bencode(
            crate::bencode::BencodeError::TooLarge { .. }
        ))
    ));
}

#[test]
fn largest_allowed_dict_peer_reply_fits_the_limits() {
    // PEERS_MAX dict-form IPv6 peers with peer ids parse within RESPONSE_LIMITS.
    let peers = (0..PEERS_MAX)
        .map(|i| {
            let mut d = OwnedValue::dict();
            d.insert(
                "ip",
                OwnedValue::str(&format!("2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}")),
            );
            d.insert("port", OwnedValue::Int(65535));
            d.insert("peer id", OwnedValue::Bytes(vec![0xff; 20]));
            d
        })
        .collect();
    let mut root = OwnedValue::dict();
    root.insert("interval", OwnedValue::Int(1800));
    root.insert("peers", OwnedValue::List(peers));
    let body = root.to_bytes();
    assert!(body.len() <= RESPONSE_BYTES_MAX, "{} bytes", body.len());
    assert_eq!(parse_response(&body).unwrap().peers.len(), PEERS_MAX);
}

proptest! {
    #[test]
    fn compact_peers_round_trip(
        addrs in proptest::collection::vec((any::<[u8; 4]>(), 1u16..), 0..50),
        addrs6 in proptest::collection::vec((any::<[u8; 16]>(), 1u16..), 0..50),
    ) {
        // Any compact lists decode to exactly the addresses encoded, IPv4 first.
        let mut v4 = Vec::new();
        let mut expected: Vec<SocketAddr> = Vec::new();
        for (ip, port) in &addrs {
            v4.extend_from_slice(ip);
            v4.extend_from_slice(&port.to_be_bytes());
            expected.push(SocketAddr::from((*ip, *port)));
        }
        let mut v6 = Vec::new();
        for (ip, port) in &addrs6 {
            v6.extend_from_slice(ip);
            v6.extend_from_slice(&port.to_be_bytes());
            expected.push(SocketAddr::from((*ip, *port)));
        }
        let mut root = OwnedValue::dict();
        root.insert("peers", OwnedValue::Bytes(v4));
        root.insert("peers6", OwnedValue::Bytes(v6));
        prop_assert_eq!(parse_response(&root.to_bytes()).unwrap().peers, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        // Random bodies give a reply or an error, never a panic.
        let _ = parse_response(&bytes);
        let mut prefixed = b"d5:peers".to_vec();
        prefixed.extend_from_slice(&bytes);
        let _ = parse_response(&prefixed);
    }

    #[test]
    fn url_carries_any_hash_exactly(hash in any::<[u8; 20]>(), id in any::<[u8; 20]>()) {
        // Any binary hash and id decode back from the URL to the same bytes.
        let mut req = request(Event::Started);
        req.info_hash = InfoHash(hash);
        req.peer_id = PeerId(id);
        let url = announce_url("http://t/a", &req).unwrap();
        prop_assert!(url.is_ascii());
        prop_assert_eq!(param(&url, "info_hash").unwrap(), hash.to_vec());
        prop_assert_eq!(param(&url, "peer_id").unwrap(), id.to_vec());
    }
}
