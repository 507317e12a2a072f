//! The tracker's UDP front end (BEP 15): stateless connection ids, request checks, and reply
//! encoding. A worker calls [`UdpFront::handle`] per datagram; connect requests are answered
//! at once, announces and scrapes come back as work for the shard owning the info-hash.

use std::net::{IpAddr, SocketAddr};

use super::{AccessList, AnnounceAnswer, PeerAnnounce, RateLimiter, ServerError};
use super::{NUMWANT_DEFAULT, NUMWANT_MAX, UDP_REPLY_BYTES_MAX};
use crate::metainfo::InfoHash;
use crate::time::Instant;
use crate::tracker::udp_proto::{
    encode_peer, ConnectionId, ScrapeStats, TransactionId, UdpRequest, UdpResponse,
    ANNOUNCE_RESPONSE_HEADER_BYTES,
};
use crate::tracker::Event;

/// Seconds per connection-id epoch; an id is accepted in its epoch and the next, so it lives
/// 1-2 minutes (BEP 15 asks servers to accept an id for two minutes).
pub const CONNECTION_EPOCH_SECS: u64 = 60;

/// What the worker must do with a datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpAction {
    /// A reply was written into `out`: send it to the source.
    Reply,
    /// An announce for the shard owning its info-hash.
    Announce(TransactionId, PeerAnnounce),
    /// A scrape (answered by one shard per hash; a worker may answer it from all shards).
    Scrape(TransactionId, Vec<InfoHash>),
    /// Nothing to send: garbage, a bad connection id, or a rate-limited source.
    Drop(&'static str),
}

/// Stateless per-worker front: all workers share `secret`, so any may check any id.
#[derive(Clone, Debug)]
pub struct UdpFront {
    secret: u64,
}

impl UdpFront {
    /// A front whose connection ids are keyed with `secret` (random, chosen at start-up).
    pub fn new(secret: u64) -> UdpFront {
        UdpFront { secret }
    }

    /// The connection id for `src`'s IP in the epoch of `now`.
    pub fn connection_id(&self, src: SocketAddr, now: Instant) -> ConnectionId {
        self.id_for(src, now.as_nanos() / 1_000_000_000 / CONNECTION_EPOCH_SECS)
    }

    fn id_for(&self, src: SocketAddr, epoch: u64) -> ConnectionId {
        // Bound to the IP, not the port: clients may open a socket per request (ours does),
        // and opentracker accepts that too.
        let mut key = [0u8; 16 + 8];
        match src.ip().to_canonical() {
            IpAddr::V4(ip) => key[..4].copy_from_slice(&ip.octets()),
            IpAddr::V6(ip) => key[..16].copy_from_slice(&ip.octets()),
        }
        key[16..].copy_from_slice(&epoch.to_be_bytes());
        ConnectionId(xxhash_rust::xxh3::xxh3_64_with_seed(&key, self.secret))
    }

    fn id_valid(&self, id: ConnectionId, src: SocketAddr, now: Instant) -> bool {
        let epoch = now.as_nanos() / 1_000_000_000 / CONNECTION_EPOCH_SECS;
        id == self.id_for(src, epoch) || (epoch > 0 && id == self.id_for(src, epoch - 1))
    }

    /// Handles one datagram from `src`; replies (connect, errors) go into `out` (cleared).
    pub fn handle(
        &self,
        bytes: &[u8],
        src: SocketAddr,
        now: Instant,
        access: &AccessList,
        rate: &mut RateLimiter,
        out: &mut Vec<u8>,
    ) -> UdpAction {
        out.clear();
        let Ok(req) = UdpRequest::decode(bytes) else {
            return UdpAction::Drop("malformed");
        };
        if !rate.check(src.ip().to_canonical(), now) {
            return UdpAction::Drop("rate limited");
        }
        match req {
            UdpRequest::Connect { transaction_id } => {
                UdpResponse::Connect {
                    transaction_id,
                    connection_id: self.connection_id(src, now),
                }
                .encode(out);
                UdpAction::Reply
            }
            UdpRequest::Announce(a) => {
                if !self.id_valid(a.connection_id, src, now) {
                    return UdpAction::Drop("bad connection id");
                }
                if !access.allows(&a.info_hash) {
                    write_error(a.transaction_id, &ServerError::NotAllowed, out);
                    return UdpAction::Reply;
                }
                let addr = SocketAddr::new(src.ip().to_canonical(), a.port);
                let numwant = if a.num_want < 0 {
                    NUMWANT_DEFAULT
                } else {
                    (a.num_want as usize).min(NUMWANT_MAX)
                };
                let event = match a.event {
                    1 => Event::Completed,
                    2 => Event::Started,
                    3 => Event::Stopped,
                    _ => Event::None,
                };
                let entry = if addr.is_ipv6() { 18 } else { 6 };
                let fit = (UDP_REPLY_BYTES_MAX - ANNOUNCE_RESPONSE_HEADER_BYTES) / entry;
                UdpAction::Announce(
                    a.transaction_id,
                    PeerAnnounce {
                        info_hash: a.info_hash,
                        peer_id: a.peer_id,
                        addr,
                        left: a.left,
                        event,
                        numwant: numwant.min(fit),
                    },
                )
            }
            UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                if !self.id_valid(connection_id, src, now) {
                    return UdpAction::Drop("bad connection id");
                }
                UdpAction::Scrape(transaction_id, info_hashes)
            }
        }
    }
}

/// Writes an announce reply (or the refusal in `answer`) into `out` (cleared).
pub fn write_announce_reply(
    tid: TransactionId,
    answer: &Result<AnnounceAnswer, ServerError>,
    interval_secs: u32,
    out: &mut Vec<u8>,
) {
    out.clear();
    let a = match answer {
        Ok(a) => a,
        Err(e) => return write_error(tid, e, out),
    };
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(&tid.0.to_be_bytes());
    for n in [interval_secs, a.leechers, a.seeders] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    for (_, p) in &a.peers {
        encode_peer(p, out);
    }
    debug_assert!(out.len() <= UDP_REPLY_BYTES_MAX);
}

/// Writes a scrape reply into `out` (cleared).
pub fn write_scrape_reply(tid: TransactionId, stats: Vec<ScrapeStats>, out: &mut Vec<u8>) {
    out.clear();
    UdpResponse::Scrape {
        transaction_id: tid,
        stats,
    }
    .encode(out);
}

/// Writes an error reply carrying `e`'s text into `out` (cleared).
pub fn write_error(tid: TransactionId, e: &ServerError, out: &mut Vec<u8>) {
    out.clear();
    UdpResponse::Error {
        transaction_id: tid,
        message: e.to_string(),
    }
    .encode(out);
}
