//! The UDP tracker protocol's datagrams (BEP 15): requests and responses, both directions,
//! encoded into caller-owned buffers and decoded under hard limits.
//!
//! Shared by the client ([`super::udp_client`]) and the built-in tracker. No I/O. Peers in an
//! announce response are 6-byte IPv4 entries or 18-byte IPv6 entries; which one depends on
//! the address family the datagram travelled over, so the decoder is told.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::metainfo::{InfoHash, PeerId};

/// The magic `protocol_id` of a connect request.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info-hashes in one scrape: BEP 15 says 74 fit in a typical MTU; we accept no more.
pub const SCRAPE_HASHES_MAX: usize = 74;
/// Longest error message we keep from an error response.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 1024;
/// Largest datagram either side reads: an IPv6 announce reply with 2000 peers (36 KB) fits,
/// and nothing larger is a tracker packet.
pub const DATAGRAM_BYTES_MAX: usize = 64 * 1024;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;
/// Bytes of a connect request.
pub const CONNECT_REQUEST_BYTES: usize = 16;
/// Bytes of an announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_BYTES: usize = 98;
/// Bytes before the peers of an announce response.
pub const ANNOUNCE_RESPONSE_HEADER_BYTES: usize = 20;

/// A 64-bit connection id handed out by the tracker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnectionId(pub u64);

/// A 32-bit transaction id chosen by the client and echoed by the tracker.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionId(pub u32);

/// The announce fields of a UDP request (BEP 15 layout, `event` as its number).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpAnnounce {
    /// Connection id from a connect response.
    pub connection_id: ConnectionId,
    /// Transaction id.
    pub transaction_id: TransactionId,
    /// The torrent.
    pub info_hash: InfoHash,
    /// The announcing peer.
    pub peer_id: PeerId,
    /// Bytes downloaded.
    pub downloaded: u64,
    /// Bytes left.
    pub left: u64,
    /// Bytes uploaded.
    pub uploaded: u64,
    /// 0 none, 1 completed, 2 started, 3 stopped.
    pub event: u32,
    /// Requested IPv4 address (0 = the sender's); trackers may ignore it.
    pub ip: u32,
    /// Client key.
    pub key: u32,
    /// Peers wanted; -1 for the tracker's default.
    pub num_want: i32,
    /// The peer's listen port.
    pub port: u16,
}

/// A client-to-tracker datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    /// Ask for a connection id.
    Connect {
        /// Transaction id.
        transaction_id: TransactionId,
    },
    /// Announce.
    Announce(UdpAnnounce),
    /// Scrape up to [`SCRAPE_HASHES_MAX`] torrents.
    Scrape {
        /// Connection id.
        connection_id: ConnectionId,
        /// Transaction id.
        transaction_id: TransactionId,
        /// The torrents.
        info_hashes: Vec<InfoHash>,
    },
}

/// Swarm counts of one torrent in a scrape response.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    /// Seeders.
    pub seeders: u32,
    /// Completed downloads.
    pub completed: u32,
    /// Leechers.
    pub leechers: u32,
}

/// A tracker-to-client datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpResponse {
    /// The connection id to use.
    Connect {
        /// Transaction id echoed.
        transaction_id: TransactionId,
        /// The connection id.
        connection_id: ConnectionId,
    },
    /// Announce reply.
    Announce {
        /// Transaction id echoed.
        transaction_id: TransactionId,
        /// Seconds until the next announce.
        interval: u32,
        /// Leechers in the swarm.
        leechers: u32,
        /// Seeders in the swarm.
        seeders: u32,
        /// Peers, all IPv4 or all IPv6.
        peers: Vec<SocketAddr>,
    },
    /// Scrape reply, one entry per requested hash in request order.
    Scrape {
        /// Transaction id echoed.
        transaction_id: TransactionId,
        /// Counts.
        stats: Vec<ScrapeStats>,
    },
    /// The tracker refused the request.
    Error {
        /// Transaction id echoed.
        transaction_id: TransactionId,
        /// Its text (lossy UTF-8, at most [`ERROR_MESSAGE_BYTES_MAX`] bytes kept).
        message: String,
    },
}

impl UdpResponse {
    /// The transaction id the response echoes.
    pub fn transaction_id(&self) -> TransactionId {
        match self {
            UdpResponse::Connect { transaction_id, .. }
            | UdpResponse::Announce { transaction_id, .. }
            | UdpResponse::Scrape { transaction_id, .. }
            | UdpResponse::Error { transaction_id, .. } => *transaction_id,
        }
    }
}

/// Why a datagram is not a valid BEP 15 packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UdpProtoError {
    /// Shorter than the fixed part of its action.
    #[error("{what} is {len} bytes, shorter than the {min} it needs")]
    TooShort {
        /// The packet kind.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Larger than [`DATAGRAM_BYTES_MAX`].
    #[error("datagram of {len} bytes exceeds {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An action number we do not know (or not valid in this direction).
    #[error("unknown action {0}")]
    UnknownAction(u32),
    /// A connect request without the magic protocol id.
    #[error("connect request has protocol id {0:#x}, not 0x41727101980")]
    BadProtocolId(u64),
    /// A scrape with no hashes or more than [`SCRAPE_HASHES_MAX`], or a ragged length.
    #[error("scrape carries {len} bytes of hashes: not 1-{max} whole 20-byte hashes")]
    BadScrapeLength {
        /// Bytes after the header.
        len: usize,
        /// Most hashes accepted.
        max: usize,
    },
    /// Peers (or scrape entries) whose length is not a whole number of entries.
    #[error("{what} is {len} bytes, not a multiple of {entry_bytes}")]
    RaggedEntries {
        /// The section.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Bytes per entry.
        entry_bytes: usize,
    },
}

type Result<T> = std::result::Result<T, UdpProtoError>;

fn check_len(what: &'static str, b: &[u8], min: usize) -> Result<()> {
    if b.len() > DATAGRAM_BYTES_MAX {
        return Err(UdpProtoError::TooLong {
            len: b.len(),
            max: DATAGRAM_BYTES_MAX,
        });
    }
    if b.len() < min {
        return Err(UdpProtoError::TooShort {
            what,
            len: b.len(),
            min,
        });
    }
    Ok(())
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn hash_at(b: &[u8], at: usize) -> [u8; 20] {
    b[at..at + 20].try_into().expect("20 bytes")
}

impl UdpRequest {
    /// Appends this request's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            UdpRequest::Connect { transaction_id } => {
                out.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                out.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                out.extend_from_slice(&transaction_id.0.to_be_bytes());
            }
            UdpRequest::Announce(a) => {
                out.extend_from_slice(&a.connection_id.0.to_be_bytes());
                out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                out.extend_from_slice(&a.transaction_id.0.to_be_bytes());
                out.extend_from_slice(&a.info_hash.0);
                out.extend_from_slice(&a.peer_id.0);
                out.extend_from_slice(&a.downloaded.to_be_bytes());
                out.extend_from_slice(&a.left.to_be_bytes());
                out.extend_from_slice(&a.uploaded.to_be_bytes());
                out.extend_from_slice(&a.event.to_be_bytes());
                out.extend_from_slice(&a.ip.to_be_bytes());
                out.extend_from_slice(&a.key.to_be_bytes());
                out.extend_from_slice(&a.num_want.to_be_bytes());
                out.extend_from_slice(&a.port.to_be_bytes());
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                out.extend_from_slice(&connection_id.0.to_be_bytes());
                out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                out.extend_from_slice(&transaction_id.0.to_be_bytes());
                for h in info_hashes.iter().take(SCRAPE_HASHES_MAX) {
                    out.extend_from_slice(&h.0);
                }
            }
        }
    }

    /// Decodes a request as the tracker receives it. Bytes after an announce's fixed part
    /// (BEP 41 options) are ignored.
    pub fn decode(b: &[u8]) -> Result<UdpRequest> {
        check_len("request", b, 16)?;
        let action = u32_at(b, 8);
        let transaction_id = TransactionId(u32_at(b, 12));
        let connection_id = ConnectionId(u64_at(b, 0));
        match action {
            ACTION_CONNECT if connection_id.0 != PROTOCOL_ID => {
                Err(UdpProtoError::BadProtocolId(connection_id.0))
            }
            ACTION_CONNECT => Ok(UdpRequest::Connect { transaction_id }),
            ACTION_ANNOUNCE => {
                check_len("announce request", b, ANNOUNCE_REQUEST_BYTES)?;
                Ok(UdpRequest::Announce(UdpAnnounce {
                    connection_id,
                    transaction_id,
                    info_hash: InfoHash(hash_at(b, 16)),
                    peer_id: PeerId(hash_at(b, 36)),
                    downloaded: u64_at(b, 56),
                    left: u64_at(b, 64),
                    uploaded: u64_at(b, 72),
                    event: u32_at(b, 80),
                    ip: u32_at(b, 84),
                    key: u32_at(b, 88),
                    num_want: u32_at(b, 92) as i32,
                    port: u16::from_be_bytes([b[96], b[97]]),
                }))
            }
            ACTION_SCRAPE => {
                let rest = &b[16..];
                if rest.is_empty()
                    || !rest.len().is_multiple_of(20)
                    || rest.len() / 20 > SCRAPE_HASHES_MAX
                {
                    return Err(UdpProtoError::BadScrapeLength {
                        len: rest.len(),
                        max: SCRAPE_HASHES_MAX,
                    });
                }
                Ok(UdpRequest::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes: rest
                        .chunks_exact(20)
                        .map(|c| InfoHash(c.try_into().expect("20 bytes")))
                        .collect(),
                })
            }
            other => Err(UdpProtoError::UnknownAction(other)),
        }
    }
}

impl UdpResponse {
    /// Appends this response's bytes to `out`. Announce peers must all be of one family;
    /// entries of the other family are skipped (the shell sorts them by the socket's family).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = |out: &mut Vec<u8>, action: u32, tid: TransactionId| {
            out.extend_from_slice(&action.to_be_bytes());
            out.extend_from_slice(&tid.0.to_be_bytes());
        };
        match self {
            UdpResponse::Connect {
                transaction_id,
                connection_id,
            } => {
                head(out, ACTION_CONNECT, *transaction_id);
                out.extend_from_slice(&connection_id.0.to_be_bytes());
            }
            UdpResponse::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                head(out, ACTION_ANNOUNCE, *transaction_id);
                for n in [interval, leechers, seeders] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                let v6 = peers.first().is_some_and(SocketAddr::is_ipv6);
                for p in peers.iter().filter(|p| p.is_ipv6() == v6) {
                    encode_peer(p, out);
                }
            }
            UdpResponse::Scrape {
                transaction_id,
                stats,
            } => {
                head(out, ACTION_SCRAPE, *transaction_id);
                for s in stats {
                    for n in [s.seeders, s.completed, s.leechers] {
                        out.extend_from_slice(&n.to_be_bytes());
                    }
                }
            }
            UdpResponse::Error {
                transaction_id,
                message,
            } => {
                head(out, ACTION_ERROR, *transaction_id);
                let m = message.as_bytes();
                out.extend_from_slice(&m[..m.len().min(ERROR_MESSAGE_BYTES_MAX)]);
            }
        }
    }

    /// Decodes a response as the client receives it; `ipv6` says whether it came over IPv6
    /// (its announce peers are then 18-byte entries).
    pub fn decode(b: &[u8], ipv6: bool) -> Result<UdpResponse> {
        check_len("response", b, 8)?;
        let transaction_id = TransactionId(u32_at(b, 4));
        match u32_at(b, 0) {
            ACTION_CONNECT => {
                check_len("connect response", b, 16)?;
                Ok(UdpResponse::Connect {
                    transaction_id,
                    connection_id: ConnectionId(u64_at(b, 8)),
                })
            }
            ACTION_ANNOUNCE => {
                check_len("announce response", b, ANNOUNCE_RESPONSE_HEADER_BYTES)?;
                let rest = &b[ANNOUNCE_RESPONSE_HEADER_BYTES..];
                let entry_bytes = if ipv6 { 18 } else { 6 };
                if !rest.len().is_multiple_of(entry_bytes) {
                    return Err(UdpProtoError::RaggedEntries {
                        what: "announce peers",
                        len: rest.len(),
                        entry_bytes,
                    });
                }
                Ok(UdpResponse::Announce {
                    transaction_id,
                    interval: u32_at(b, 8),
                    leechers: u32_at(b, 12),
                    seeders: u32_at(b, 16),
                    peers: rest.chunks_exact(entry_bytes).map(decode_peer).collect(),
                })
            }
            ACTION_SCRAPE => {
                let rest = &b[8..];
                if !rest.len().is_multiple_of(12) {
                    return Err(UdpProtoError::RaggedEntries {
                        what: "scrape entries",
                        len: rest.len(),
                        entry_bytes: 12,
                    });
                }
                let stats = rest
                    .chunks_exact(12)
                    .map(|c| ScrapeStats {
                        seeders: u32_at(c, 0),
                        completed: u32_at(c, 4),
                        leechers: u32_at(c, 8),
                    })
                    .collect();
                Ok(UdpResponse::Scrape {
                    transaction_id,
                    stats,
                })
            }
            ACTION_ERROR => {
                let m = &b[8..];
                let m = &m[..m.len().min(ERROR_MESSAGE_BYTES_MAX)];
                Ok(UdpResponse::Error {
                    transaction_id,
                    message: String::from_utf8_lossy(m).into_owned(),
                })
            }
            other => Err(UdpProtoError::UnknownAction(other)),
        }
    }
}

/// Appends the 6- or 18-byte compact form of `p`.
pub fn encode_peer(p: &SocketAddr, out: &mut Vec<u8>) {
    match p.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&p.port().to_be_bytes());
}

fn decode_peer(c: &[u8]) -> SocketAddr {
    let port = u16::from_be_bytes([c[c.len() - 2], c[c.len() - 1]]);
    let ip = if c.len() == 6 {
        IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3]))
    } else {
        let octets: [u8; 16] = c[..16].try_into().expect("18-byte entry");
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    SocketAddr::new(ip, port)
}
