//! KRPC (BEP 5): the bencoded query / response / error datagrams the DHT speaks over UDP.
//!
//! Decoding goes through our bencode decoder with limits sized for one UDP datagram
//! ([`KRPC_LIMITS`]) and then checks every field the node relies on (20-byte ids, whole
//! 26-byte compact node records, 6-byte compact peers, bounded counts). Unknown keys are
//! ignored, as BEP 5 asks, so newer clients' extras (`v`, `ip`, `want`, `ro`) pass through.

use std::net::{Ipv4Addr, SocketAddrV4};

use crate::bencode::{decode, BencodeError, Dict, Encoder, Limits, Value};

use super::{NodeId, NodeInfo};

/// Largest datagram we decode or send; real KRPC packets stay under one Ethernet MTU.
pub const KRPC_BYTES_MAX: usize = 1500;
/// Longest transaction id we accept (we send 2 bytes; libtorrent sends 2-4).
pub const TID_BYTES_MAX: usize = 16;
/// Longest `announce_peer` token we accept (we send 8 bytes; others send 4-20).
pub const TOKEN_BYTES_MAX: usize = 64;
/// Compact node records in one reply (one `nodes` string; we send at most [`super::K`]).
pub const NODES_MAX: usize = 16;
/// Compact peers in one `get_peers` reply (`values`); a 1500-byte datagram fits ~180.
pub const VALUES_MAX: usize = 200;
/// Longest error message text we keep.
pub const ERROR_TEXT_BYTES_MAX: usize = 256;
/// Longest unknown method name we keep (for the "method unknown" error reply).
pub const METHOD_BYTES_MAX: usize = 32;

/// Bencode limits for one KRPC datagram.
pub const KRPC_LIMITS: Limits = Limits {
    depth_max: 4,
    string_bytes_max: KRPC_BYTES_MAX as u64,
    total_bytes_max: KRPC_BYTES_MAX,
    values_max: 512,
};

/// KRPC error codes (BEP 5).
pub mod error_code {
    /// Generic error.
    pub const GENERIC: i64 = 201;
    /// Server error.
    pub const SERVER: i64 = 202;
    /// Malformed packet, invalid arguments or bad token.
    pub const PROTOCOL: i64 = 203;
    /// Method unknown.
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// Why a datagram is not a KRPC message we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    /// Not valid bencode (or past a limit).
    #[error("not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The top level is not a dict.
    #[error("the message is not a dict")]
    NotADict,
    /// A required key is missing.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A key has the wrong type or size.
    #[error("bad `{field}`: {why}")]
    Bad {
        /// The key.
        field: &'static str,
        /// What is wrong with it.
        why: &'static str,
    },
    /// `y` is not `q`, `r` or `e`.
    #[error("unknown message type")]
    UnknownType,
}

/// One KRPC datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Transaction id, echoed by the responder.
    pub tid: Vec<u8>,
    /// What it says.
    pub body: Body,
}

/// The three kinds of KRPC message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A query from node `id`.
    Query {
        /// The querying node's id.
        id: NodeId,
        /// The method and its arguments.
        query: Query,
        /// BEP 43 read-only node: do not add it to the routing table.
        read_only: bool,
    },
    /// A response from node `id` (its shape depends on the query; all fields optional).
    Response(Response),
    /// An error reply.
    Error {
        /// One of [`error_code`].
        code: i64,
        /// Human-readable text (cut to [`ERROR_TEXT_BYTES_MAX`]).
        text: String,
    },
}

/// A query method with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// `ping`
    Ping,
    /// `find_node`
    FindNode {
        /// The id looked for.
        target: NodeId,
    },
    /// `get_peers`
    GetPeers {
        /// The torrent.
        info_hash: NodeId,
    },
    /// `announce_peer`
    AnnouncePeer {
        /// The torrent.
        info_hash: NodeId,
        /// The announcing peer's TCP port.
        port: u16,
        /// Use the datagram's source port instead of `port`.
        implied_port: bool,
        /// The token from an earlier `get_peers` reply.
        token: Vec<u8>,
    },
    /// A method we do not implement (answered with error 204).
    Unknown {
        /// Its name.
        method: Vec<u8>,
    },
}

/// The fields of a response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    /// The responder's id.
    pub id: NodeId,
    /// Closer nodes (`find_node`, `get_peers`).
    pub nodes: Vec<NodeInfo>,
    /// Peers for the torrent (`get_peers`).
    pub values: Vec<SocketAddrV4>,
    /// Write token for `announce_peer` (`get_peers`).
    pub token: Option<Vec<u8>>,
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(bytes: &[u8]) -> Result<Message, KrpcError> {
        let value = decode(bytes, KRPC_LIMITS)?;
        let dict = value.as_dict().ok_or(KrpcError::NotADict)?;
        let tid = bytes_field(dict, b"t", "t")?;
        if tid.len() > TID_BYTES_MAX {
            return Err(bad("t", "longer than 16 bytes"));
        }
        let body = match bytes_field(dict, b"y", "y")? {
            b"q" => decode_query(dict)?,
            b"r" => {
                let r = dict.get(b"r").ok_or(KrpcError::Missing("r"))?;
                Body::Response(decode_response(r.as_dict().ok_or(bad("r", "not a dict"))?)?)
            }
            b"e" => decode_error(dict)?,
            _ => return Err(KrpcError::UnknownType),
        };
        Ok(Message {
            tid: tid.to_vec(),
            body,
        })
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(out);
        e.begin_dict();
        match &self.body {
            Body::Query {
                id,
                query,
                read_only,
            } => {
                e.key("a");
                encode_args(&mut e, id, query);
                e.key("q");
                e.bytes(method_name(query));
                if *read_only {
                    e.key("ro");
                    e.int(1);
                }
                e.key("t");
                e.bytes(&self.tid);
                e.key("y");
                e.key("q");
            }
            Body::Response(r) => {
                e.key("r");
                encode_response(&mut e, r);
                e.key("t");
                e.bytes(&self.tid);
                e.key("y");
                e.key("r");
            }
            Body::Error { code, text } => {
                e.key("e");
                e.begin_list();
                e.int(*code);
                e.bytes(text.as_bytes());
                e.end();
                e.key("t");
                e.bytes(&self.tid);
                e.key("y");
                e.key("e");
            }
        }
        e.end();
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        self.encode_into(&mut out);
        out
    }
}

fn bad(field: &'static str, why: &'static str) -> KrpcError {
    KrpcError::Bad { field, why }
}

fn bytes_field<'a>(dict: &Dict<'a>, key: &[u8], name: &'static str) -> Result<&'a [u8], KrpcError> {
    dict.get(key)
        .ok_or(KrpcError::Missing(name))?
        .as_bytes()
        .ok_or(bad(name, "not a byte string"))
}

fn id_field(dict: &Dict<'_>, key: &[u8], name: &'static str) -> Result<NodeId, KrpcError> {
    let b = bytes_field(dict, key, name)?;
    let id: [u8; 20] = b.try_into().map_err(|_| bad(name, "not 20 bytes"))?;
    Ok(NodeId(id))
}

fn method_name(q: &Query) -> &[u8] {
    match q {
        Query::Ping => b"ping",
        Query::FindNode { .. } => b"find_node",
        Query::GetPeers { .. } => b"get_peers",
        Query::AnnouncePeer { .. } => b"announce_peer",
        Query::Unknown { method } => method,
    }
}

fn decode_query(dict: &Dict<'_>) -> Result<Body, KrpcError> {
    let method = bytes_field(dict, b"q", "q")?;
    let args = dict
        .get(b"a")
        .ok_or(KrpcError::Missing("a"))?
        .as_dict()
        .ok_or(bad("a", "not a dict"))?;
    let id = id_field(args, b"id", "id")?;
    let query = match method {
        b"ping" => Query::Ping,
        b"find_node" => Query::FindNode {
            target: id_field(args, b"target", "target")?,
        },
        b"get_peers" => Query::GetPeers {
            info_hash: id_field(args, b"info_hash", "info_hash")?,
        },
        b"announce_peer" => {
            let port = args
                .get(b"port")
                .and_then(Value::as_int)
                .ok_or(KrpcError::Missing("port"))?;
            let port = u16::try_from(port).map_err(|_| bad("port", "not a port number"))?;
            let implied_port = args.get(b"implied_port").and_then(Value::as_int) == Some(1);
            let token = bytes_field(args, b"token", "token")?;
            if token.len() > TOKEN_BYTES_MAX {
                return Err(bad("token", "longer than 64 bytes"));
            }
            Query::AnnouncePeer {
                info_hash: id_field(args, b"info_hash", "info_hash")?,
                port,
                implied_port,
                token: token.to_vec(),
            }
        }
        other => Query::Unknown {
            method: other[..other.len().min(METHOD_BYTES_MAX)].to_vec(),
        },
    };
    let read_only = dict.get(b"ro").and_then(Value::as_int) == Some(1);
    Ok(Body::Query {
        id,
        query,
        read_only,
    })
}

fn decode_response(r: &Dict<'_>) -> Result<Response, KrpcError> {
    let id = id_field(r, b"id", "id")?;
    let nodes = match r.get(b"nodes") {
        None => Vec::new(),
        Some(v) => decode_nodes(v.as_bytes().ok_or(bad("nodes", "not a byte string"))?)?,
    };
    let values = match r.get(b"values") {
        None => Vec::new(),
        Some(v) => decode_values(v.as_list().ok_or(bad("values", "not a list"))?)?,
    };
    let token = match r.get(b"token") {
        None => None,
        Some(v) => {
            let t = v.as_bytes().ok_or(bad("token", "not a byte string"))?;
            if t.len() > TOKEN_BYTES_MAX {
                return Err(bad("token", "longer than 64 bytes"));
            }
            Some(t.to_vec())
        }
    };
    Ok(Response {
        id,
        nodes,
        values,
        token,
    })
}

/// Compact node info: 20-byte id, 4-byte IPv4, 2-byte port, back to back.
pub fn decode_nodes(b: &[u8]) -> Result<Vec<NodeInfo>, KrpcError> {
    if !b.len().is_multiple_of(26) {
        return Err(bad("nodes", "not a whole number of 26-byte records"));
    }
    if b.len() / 26 > NODES_MAX {
        return Err(bad("nodes", "more than 16 records"));
    }
    Ok(b.chunks_exact(26)
        .map(|c| NodeInfo {
            id: NodeId(c[..20].try_into().expect("20 bytes")),
            addr: decode_addr(&c[20..]),
        })
        .collect())
}

fn decode_addr(c: &[u8]) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::new(c[0], c[1], c[2], c[3]),
        u16::from_be_bytes([c[4], c[5]]),
    )
}

fn decode_values(list: &[Value<'_>]) -> Result<Vec<SocketAddrV4>, KrpcError> {
    if list.len() > VALUES_MAX {
        return Err(bad("values", "more than 200 peers"));
    }
    // 18-byte IPv6 peers (BEP 32) are skipped rather than refused.
    let mut out = Vec::with_capacity(list.len());
    for v in list {
        let b = v
            .as_bytes()
            .ok_or(bad("values", "a peer is not a byte string"))?;
        if b.len() == 6 {
            out.push(decode_addr(b));
        } else if b.len() != 18 {
            return Err(bad("values", "a peer is not 6 bytes"));
        }
    }
    Ok(out)
}

fn decode_error(dict: &Dict<'_>) -> Result<Body, KrpcError> {
    let list = dict
        .get(b"e")
        .ok_or(KrpcError::Missing("e"))?
        .as_list()
        .ok_or(bad("e", "not a list"))?;
    let code = list
        .first()
        .and_then(Value::as_int)
        .ok_or(bad("e", "no error code"))?;
    let text = list.get(1).and_then(Value::as_bytes).unwrap_or_default();
    let text = &text[..text.len().min(ERROR_TEXT_BYTES_MAX)];
    Ok(Body::Error {
        code,
        text: String::from_utf8_lossy(text).into_owned(),
    })
}

fn encode_args(e: &mut Encoder<'_>, id: &NodeId, q: &Query) {
    e.begin_dict();
    e.key("id");
    e.bytes(&id.0);
    match q {
        Query::Ping | Query::Unknown { .. } => {}
        Query::FindNode { target } => {
            e.key("target");
            e.bytes(&target.0);
        }
        Query::GetPeers { info_hash } => {
            e.key("info_hash");
            e.bytes(&info_hash.0);
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
        } => {
            if *implied_port {
                e.key("implied_port");
                e.int(1);
            }
            e.key("info_hash");
            e.bytes(&info_hash.0);
            e.key("port");
            e.int(i64::from(*port));
            e.key("token");
            e.bytes(token);
        }
    }
    e.end();
}

fn encode_response(e: &mut Encoder<'_>, r: &Response) {
    e.begin_dict();
    e.key("id");
    e.bytes(&r.id.0);
    if !r.nodes.is_empty() {
        let mut compact = Vec::with_capacity(r.nodes.len() * 26);
        for n in &r.nodes {
            compact.extend_from_slice(&n.id.0);
            push_addr(&mut compact, &n.addr);
        }
        e.key("nodes");
        e.bytes(&compact);
    }
    if let Some(t) = &r.token {
        e.key("token");
        e.bytes(t);
    }
    if !r.values.is_empty() {
        e.key("values");
        e.begin_list();
        for v in &r.values {
            let mut b = Vec::with_capacity(6);
            push_addr(&mut b, v);
            e.bytes(&b);
        }
        e.end();
    }
    e.end();
}

/// Appends the 6-byte compact form of `addr`.
pub fn push_addr(out: &mut Vec<u8>, addr: &SocketAddrV4) {
    out.extend_from_slice(&addr.ip().octets());
    out.extend_from_slice(&addr.port().to_be_bytes());
}
