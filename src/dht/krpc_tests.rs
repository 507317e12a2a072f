//! KRPC codec: known datagrams from BEP 5, hostile input and round-trip properties.

use std::net::{Ipv4Addr, SocketAddrV4};

use proptest::prelude::*;

use super::krpc::*;
use super::{NodeId, NodeInfo};

fn id(b: u8) -> NodeId {
    NodeId([b; 20])
}

#[test]
fn bep5_ping_example_decodes() {
    // The ping query and response from BEP 5 decode to what the spec says they mean.
    let q = Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe").unwrap();
    assert_eq!(q.tid, b"aa");
    assert_eq!(
        q.body,
        Body::Query {
            id: NodeId(*b"abcdefghij0123456789"),
            query: Query::Ping,
            read_only: false
        }
    );
    let r = Message::decode(b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re").unwrap();
    assert_eq!(
        r.body,
        Body::Response(Response {
            id: NodeId(*b"mnopqrstuvwxyz123456"),
            ..Response::default()
        })
    );
}

#[test]
fn bep5_announce_and_error_examples_decode() {
    // announce_peer with implied_port and the generic error example decode field by field.
    let q = Message::decode(
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
    )
    .unwrap();
    match q.body {
        Body::Query {
            query:
                Query::AnnouncePeer {
                    port,
                    implied_port,
                    token,
                    ..
                },
            ..
        } => {
            assert_eq!((port, implied_port), (6881, true));
            assert_eq!(token, b"aoeusnth");
        }
        other => panic!("{other:?}"),
    }
    let e = Message::decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee").unwrap();
    assert_eq!(
        e.body,
        Body::Error {
            code: 201,
            text: "A Generic Error Ocurred".into()
        }
    );
}

#[test]
fn malformed_datagrams_get_named_errors() {
    // Each broken field is refused with an error naming it, not a panic or a default value.
    let cases: &[(&[u8], &str)] = &[
        (b"le", "not a dict"),
        (b"d1:y1:qe", "missing `t`"),
        (b"d1:t2:aa1:y1:xe", "unknown message type"),
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", "bad `id`: not 20 bytes"),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes5:abcdee1:t2:aa1:y1:re",
            "bad `nodes`",
        ),
        (
            b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl3:abcee1:t2:aa1:y1:re",
            "bad `values`",
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            "bad `port`",
        ),
    ];
    for (bytes, want) in cases {
        let err = Message::decode(bytes).unwrap_err().to_string();
        assert!(
            err.contains(want),
            "{} -> {err}",
            String::from_utf8_lossy(bytes)
        );
    }
    let huge = vec![b'a'; KRPC_BYTES_MAX + 1];
    assert!(matches!(
        Message::decode(&huge),
        Err(KrpcError::Bencode(
            crate::bencode::BencodeError::TooLarge { .. }
        ))
    ));
}

#[test]
fn unknown_methods_and_ipv6_peers_are_tolerated() {
    // A newer method parses as Unknown (to answer 204) and 18-byte peers are skipped.
    let q =
        Message::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q9:sample_xx1:t2:aa1:y1:qe").unwrap();
    assert!(matches!(
        q.body,
        Body::Query {
            query: Query::Unknown { .. },
            ..
        }
    ));
    let r = Message::decode(
        b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl6:\x7f\x00\x00\x01\x1a\xe118:0123456789abcdefghee1:t2:aa1:y1:re",
    )
    .unwrap();
    match r.body {
        Body::Response(r) => {
            assert_eq!(r.values, vec![SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6881)]);
        }
        other => panic!("{other:?}"),
    }
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 20]>().prop_map(NodeId)
}

fn arb_addr() -> impl Strategy<Value = SocketAddrV4> {
    (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
}

fn arb_query() -> impl Strategy<Value = Query> {
    prop_oneof![
        Just(Query::Ping),
        arb_id().prop_map(|target| Query::FindNode { target }),
        arb_id().prop_map(|info_hash| Query::GetPeers { info_hash }),
        (
            arb_id(),
            any::<u16>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..TOKEN_BYTES_MAX)
        )
            .prop_map(
                |(info_hash, port, implied_port, token)| Query::AnnouncePeer {
                    info_hash,
                    port,
                    implied_port,
                    token
                }
            ),
        "[a-z_]{1,32}"
            .prop_filter("not a known method", |m| !matches!(
                m.as_str(),
                "ping" | "find_node" | "get_peers" | "announce_peer"
            ))
            .prop_map(|m| Query::Unknown {
                method: m.into_bytes()
            }),
    ]
}

fn arb_body() -> impl Strategy<Value = Body> {
    let node = (arb_id(), arb_addr()).prop_map(|(id, addr)| NodeInfo { id, addr });
    prop_oneof![
        (arb_id(), arb_query(), any::<bool>()).prop_map(|(id, query, read_only)| Body::Query {
            id,
            query,
            read_only
        }),
        (
            arb_id(),
            proptest::collection::vec(node, 0..=8),
            proptest::collection::vec(arb_addr(), 0..20),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
        )
            .prop_map(|(id, nodes, values, token)| Body::Response(Response {
                id,
                nodes,
                values,
                token
            })),
        (201i64..=204, "[ -~]{0,100}").prop_map(|(code, text)| Body::Error { code, text }),
    ]
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(
        tid in proptest::collection::vec(any::<u8>(), 0..=TID_BYTES_MAX),
        body in arb_body(),
    ) {
        // Every message we can send decodes back to itself.
        let msg = Message { tid, body };
        let bytes = msg.to_bytes();
        prop_assert!(bytes.len() <= KRPC_BYTES_MAX);
        prop_assert_eq!(Message::decode(&bytes).unwrap(), msg);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        // Garbage gets an error or a bounded message, never a panic.
        if let Ok(m) = Message::decode(&bytes) {
            if let Body::Response(r) = m.body {
                prop_assert!(r.nodes.len() <= NODES_MAX && r.values.len() <= VALUES_MAX);
            }
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        body in arb_body(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        // Near-valid datagrams (a few bytes changed) are the likeliest hostile input.
        let mut bytes = Message { tid: b"ab".to_vec(), body }.to_bytes();
        for (at, b) in flips {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let _ = Message::decode(&bytes);
    }
}

#[test]
fn node_id_prefix_helpers_agree() {
    // random_with_prefix gives ids sharing exactly the asked prefix; distance orders by XOR.
    let own = id(0x5a);
    for bits in [0, 1, 7, 8, 9, 100, 159] {
        let other = own.random_with_prefix(bits, [0xff; 20]);
        assert_eq!(own.common_prefix_bits(&other), bits);
        let other = own.random_with_prefix(bits, [0x00; 20]);
        assert_eq!(own.common_prefix_bits(&other), bits);
    }
    assert_eq!(own.common_prefix_bits(&own), 160);
    assert!(own.distance(&id(0x5b)) < own.distance(&id(0x4a)));
}
