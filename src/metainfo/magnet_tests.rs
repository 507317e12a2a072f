//! Tests of magnet URI parsing and emitting.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::metainfo::{build_torrent, FileEntry, Info, TorrentBuilder};

const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

fn hash() -> InfoHash {
    InfoHash::from_hex(HEX).unwrap()
}

#[test]
fn full_magnet_parses_every_known_parameter() {
    // xt, dn (with `+` and `%20` spaces), repeated tr and x.pe of each address kind are read.
    let uri = format!(
        "magnet:?xt=urn:btih:{HEX}&dn=My+Release%20v2&tr=http%3A%2F%2Ft.example%2Fannounce\
         &tr=udp://u.example:1337&x.pe=10.0.0.1:6881&x.pe=%5B2001:db8::1%5D:51413\
         &x.pe=peer.example.org:7000&so=0-3&xl=12345"
    );
    let m = Magnet::parse(&uri).unwrap();
    assert_eq!(m.info_hash, hash());
    assert_eq!(m.display_name.as_deref(), Some("My Release v2"));
    assert_eq!(
        m.trackers,
        ["http://t.example/announce", "udp://u.example:1337"]
    );
    let v6 = SocketAddr::new(IpAddr::V6("2001:db8::1".parse().unwrap()), 51413);
    assert_eq!(
        m.peers,
        [
            PeerHint::Addr(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                6881
            )),
            PeerHint::Addr(v6),
            PeerHint::Host {
                name: "peer.example.org".into(),
                port: 7000
            },
        ]
    );
}

#[test]
fn base32_and_uppercase_hex_give_the_same_hash() {
    // The 32-character base32 form and uppercase hex decode to the same 20 bytes.
    let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
    let from_b32 = Magnet::parse(&format!("magnet:?xt=urn:btih:{b32}")).unwrap();
    let from_lower_b32 = Magnet::parse(&format!("magnet:?xt=urn:btih:{}", b32.to_lowercase()));
    let upper = format!("MAGNET:?xt=URN:BTIH:{}", HEX.to_uppercase());
    assert_eq!(from_b32.info_hash, hash());
    assert_eq!(from_lower_b32.unwrap().info_hash, hash());
    assert_eq!(Magnet::parse(&upper).unwrap().info_hash, hash());
}

#[test]
fn emitted_uri_is_canonical_and_escaped() {
    // Display writes lowercase hex and escapes reserved characters in names and URLs; peer
    // hints stay literal because libtorrent does not decode them.
    let mut m = Magnet::new(hash());
    m.display_name = Some("a b&c=d".into());
    m.trackers.push("http://t/a?x=1&y=2".into());
    m.peers.push(PeerHint::Addr("[::1]:6881".parse().unwrap()));
    let s = m.to_string();
    assert_eq!(
        s,
        format!(
            "magnet:?xt=urn:btih:{HEX}&dn=a%20b%26c%3Dd&tr=http%3A%2F%2Ft%2Fa%3Fx%3D1%26y%3D2\
             &x.pe=[::1]:6881"
        )
    );
    assert_eq!(Magnet::parse(&s).unwrap(), m);
}

#[test]
fn unknown_and_numbered_parameters_are_handled() {
    // Unknown keys and other URN kinds are skipped; `tr.1` counts as a tracker.
    let uri = format!(
        "magnet:?xt=urn:btmh:1220abcd&xt=urn:btih:{HEX}&&tr.1=http://a/&foo=%zz-not-checked&%zz=1\
         &ws=http://w/&tr=http://a/"
    );
    let m = Magnet::parse(&uri).unwrap();
    assert_eq!(m.trackers, ["http://a/"]);
    assert!(m.display_name.is_none() && m.peers.is_empty());
}

/// A predicate on the error a case must produce.
type Check = fn(&MagnetError) -> bool;

#[test]
fn malformed_magnets_give_errors_naming_the_problem() {
    // Each kind of broken input maps to its own error variant.
    let cases: Vec<(String, Check)> = vec![
        ("http://x".into(), |e| {
            matches!(e, MagnetError::NotMagnet { .. })
        }),
        ("magnet:?dn=x".into(), |e| {
            *e == MagnetError::MissingInfoHash
        }),
        ("magnet:?xt=urn:btih:1234".into(), |e| {
            matches!(e, MagnetError::BadInfoHash { .. })
        }),
        (format!("magnet:?xt=urn:btih:{}", "g".repeat(40)), |e| {
            matches!(e, MagnetError::BadInfoHash { .. })
        }),
        (format!("magnet:?xt=urn:btih:{}", "1".repeat(32)), |e| {
            matches!(e, MagnetError::BadInfoHash { .. })
        }),
        (
            format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40)),
            |e| matches!(e, MagnetError::ConflictingInfoHashes { .. }),
        ),
        (format!("magnet:?xt=urn:btih:{HEX}&dn=%4"), |e| {
            *e == MagnetError::BadEscape { param: "dn", at: 0 }
        }),
        (format!("magnet:?xt=urn:btih:{HEX}&dn=%ff"), |e| {
            *e == MagnetError::NotUtf8 { param: "dn" }
        }),
        (format!("magnet:?xt=urn:btih:{HEX}&tr=nourl"), |e| {
            matches!(e, MagnetError::BadTracker { .. })
        }),
        (format!("magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:0"), |e| {
            matches!(
                e,
                MagnetError::BadPeer {
                    reason: "port 0",
                    ..
                }
            )
        }),
        (format!("magnet:?xt=urn:btih:{HEX}&x.pe=::1:80"), |e| {
            matches!(e, MagnetError::BadPeer { .. })
        }),
        (
            format!("magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.400:80"),
            |e| matches!(e, MagnetError::BadPeer { .. }),
        ),
        (format!("magnet:?xt=urn:btih:{HEX}&x.pe=host"), |e| {
            matches!(e, MagnetError::BadPeer { .. })
        }),
    ];
    for (uri, check) in cases {
        let err = Magnet::parse(&uri).unwrap_err();
        assert!(check(&err), "{uri}: {err:?}");
    }
}

#[test]
fn oversized_magnets_are_refused_before_parsing() {
    // The byte and parameter limits hold with clear errors.
    let long = format!(
        "magnet:?xt=urn:btih:{HEX}&dn={}",
        "a".repeat(MAGNET_URI_BYTES_MAX)
    );
    assert!(matches!(
        Magnet::parse(&long),
        Err(MagnetError::TooLong {
            max: MAGNET_URI_BYTES_MAX,
            ..
        })
    ));
    let many = format!(
        "magnet:?xt=urn:btih:{HEX}{}",
        "&a=1".repeat(MAGNET_PARAMS_MAX)
    );
    assert!(matches!(
        Magnet::parse(&many),
        Err(MagnetError::TooManyParams { count, .. }) if count == MAGNET_PARAMS_MAX + 1
    ));
}

fn sample_meta(trackers: Vec<Vec<String>>) -> crate::metainfo::Metainfo {
    let info = Info {
        name: "release 1.0".into(),
        piece_length: 16_384,
        pieces: vec![[1; 20]],
        files: vec![FileEntry {
            path: vec![],
            length: 100,
        }],
        multi_file: false,
        private: false,
    };
    let extra = TorrentBuilder {
        trackers,
        ..TorrentBuilder::default()
    };
    build_torrent(&info, &extra).unwrap().1
}

#[test]
fn magnet_from_torrent_carries_hash_name_and_trackers() {
    // `ringseed magnet` output names the torrent, its info-hash and every tier's trackers once.
    let meta = sample_meta(vec![
        vec!["http://a/announce".into(), "udp://b:1".into()],
        vec!["http://a/announce".into(), "http://c/announce".into()],
    ]);
    let m = Magnet::from_metainfo(&meta);
    assert_eq!(m.info_hash, meta.info_hash);
    assert_eq!(m.display_name.as_deref(), Some("release 1.0"));
    assert_eq!(
        m.trackers,
        ["http://a/announce", "udp://b:1", "http://c/announce"]
    );
    assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
}

#[test]
fn magnet_from_torrent_with_huge_tracker_list_stays_parseable() {
    // Trackers beyond the parameter limit are left out so the emitted URI still parses.
    let tiers = (0..400)
        .map(|i| vec![format!("http://tracker{i}.example/announce")])
        .collect();
    let m = Magnet::from_metainfo(&sample_meta(tiers));
    assert_eq!(m.trackers.len(), MAGNET_PARAMS_MAX - 2);
    assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
}

fn peer_strategy() -> impl Strategy<Value = PeerHint> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..).prop_map(|(ip, port)| PeerHint::Addr(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(ip)),
            port
        ))),
        (any::<[u8; 16]>(), 1u16..).prop_map(|(ip, port)| PeerHint::Addr(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(ip)),
            port
        ))),
        ("[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z]{2,6}){0,3}", 1u16..)
            .prop_map(|(name, port)| PeerHint::Host { name, port }),
    ]
}

fn magnet_strategy() -> impl Strategy<Value = Magnet> {
    (
        any::<[u8; 20]>(),
        proptest::option::of(".{1,40}"),
        proptest::collection::vec("(http|https|udp)://[^\\p{Cc}]{1,40}", 0..8),
        proptest::collection::vec(peer_strategy(), 0..8),
    )
        .prop_map(|(hash, display_name, mut trackers, mut peers)| {
            dedup(&mut trackers);
            dedup(&mut peers);
            Magnet {
                info_hash: InfoHash(hash),
                display_name,
                trackers,
                peers,
            }
        })
}

fn dedup<T: PartialEq + Clone>(items: &mut Vec<T>) {
    let mut seen: Vec<T> = Vec::new();
    items.retain(|x| {
        let fresh = !seen.contains(x);
        seen.push(x.clone());
        fresh
    });
}

proptest! {
    #[test]
    fn emitted_magnets_parse_back_identically(m in magnet_strategy()) {
        // parse(emit(m)) == m for any hash, name, tracker and peer list within the limits.
        prop_assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
    }

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,300}") {
        // Any string, with or without the magnet prefix, gives a value or an error.
        let _ = Magnet::parse(&s);
        let _ = Magnet::parse(&format!("magnet:?{s}"));
        let _ = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&{s}"));
    }

    #[test]
    fn mutated_magnets_never_panic(
        m in magnet_strategy(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)
    ) {
        // Byte flips in a valid URI (kept as valid UTF-8 via lossy conversion) never panic.
        let mut bytes = m.to_string().into_bytes();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let _ = Magnet::parse(&String::from_utf8_lossy(&bytes));
    }
}
