//! The tracker's HTTP front end: `/announce` and `/scrape` query strings (BEP 3, BEP 48)
//! parsed into store calls, and bencoded replies — compact (BEP 23, `peers6` per BEP 7) or
//! the original list of dicts. The shell hands over the raw query and the source IP.

use std::net::{IpAddr, SocketAddr};

use percent_encoding::percent_decode;

use super::{AccessList, AnnounceAnswer, PeerAnnounce, ServerError};
use super::{NUMWANT_DEFAULT, NUMWANT_MAX};
use crate::bencode::Encoder;
use crate::metainfo::{InfoHash, PeerId};
use crate::tracker::udp_proto::{encode_peer, ScrapeStats, SCRAPE_HASHES_MAX};
use crate::tracker::Event;

/// Longest query string accepted (a scrape of [`SCRAPE_HASHES_MAX`] fully escaped hashes is
/// about 5.5 KB).
pub const QUERY_BYTES_MAX: usize = 8 * 1024;

/// A parsed announce: the store's input and how to encode the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpAnnounce {
    /// What the store gets.
    pub announce: PeerAnnounce,
    /// `compact=1` (the default when absent, as most trackers do).
    pub compact: bool,
    /// `no_peer_id=1`: leave ids out of dict-form peers.
    pub no_peer_id: bool,
}

fn params(query: &str) -> Result<Vec<(&str, Vec<u8>)>, ServerError> {
    if query.len() > QUERY_BYTES_MAX {
        return Err(ServerError::QueryTooLong {
            len: query.len(),
            max: QUERY_BYTES_MAX,
        });
    }
    Ok(query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k, percent_decode(v.as_bytes()).collect())
        })
        .collect())
}

fn twenty(field: &'static str, v: &[u8]) -> Result<[u8; 20], ServerError> {
    v.try_into().map_err(|_| ServerError::BadParam {
        field,
        reason: "not 20 bytes",
    })
}

fn number(field: &'static str, v: &[u8]) -> Result<i64, ServerError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ServerError::BadParam {
            field,
            reason: "not an integer",
        })
}

/// Parses an announce query from `src` (the connection's IP; an `ip` parameter is ignored so
/// nobody can announce someone else).
pub fn parse_announce(query: &str, src: IpAddr) -> Result<HttpAnnounce, ServerError> {
    let (mut hash, mut id, mut port, mut left) = (None, None, None, None);
    let (mut event, mut numwant, mut compact, mut no_peer_id) =
        (Event::None, NUMWANT_DEFAULT, true, false);
    for (k, v) in params(query)? {
        match k {
            "info_hash" => hash = Some(twenty("info_hash", &v)?),
            "peer_id" => id = Some(twenty("peer_id", &v)?),
            "port" => {
                port =
                    Some(
                        u16::try_from(number("port", &v)?).map_err(|_| ServerError::BadParam {
                            field: "port",
                            reason: "not 0-65535",
                        })?,
                    )
            }
            "left" => left = Some(number("left", &v)?.max(0) as u64),
            "event" => {
                event = match &v[..] {
                    b"started" => Event::Started,
                    b"completed" => Event::Completed,
                    b"stopped" => Event::Stopped,
                    _ => Event::None,
                }
            }
            "numwant" => {
                let n = number("numwant", &v)?;
                numwant = if n < 0 {
                    NUMWANT_DEFAULT
                } else {
                    (n as usize).min(NUMWANT_MAX)
                };
            }
            "compact" => compact = v != b"0",
            "no_peer_id" => no_peer_id = v == b"1",
            _ => {}
        }
    }
    Ok(HttpAnnounce {
        announce: PeerAnnounce {
            info_hash: InfoHash(hash.ok_or(ServerError::MissingParam("info_hash"))?),
            peer_id: PeerId(id.ok_or(ServerError::MissingParam("peer_id"))?),
            addr: SocketAddr::new(
                src.to_canonical(),
                port.ok_or(ServerError::MissingParam("port"))?,
            ),
            left: left.ok_or(ServerError::MissingParam("left"))?,
            event,
            numwant,
        },
        compact,
        no_peer_id,
    })
}

/// Parses a scrape query: every `info_hash` (at most [`SCRAPE_HASHES_MAX`]).
pub fn parse_scrape(query: &str) -> Result<Vec<InfoHash>, ServerError> {
    let mut out = Vec::new();
    for (k, v) in params(query)? {
        if k == "info_hash" {
            if out.len() == SCRAPE_HASHES_MAX {
                return Err(ServerError::BadParam {
                    field: "info_hash",
                    reason: "more than 74 hashes",
                });
            }
            out.push(InfoHash(twenty("info_hash", &v)?));
        }
    }
    Ok(out)
}

/// Checks an announce against the access list.
pub fn admit(a: &HttpAnnounce, access: &AccessList) -> Result<(), ServerError> {
    if access.allows(&a.announce.info_hash) {
        Ok(())
    } else {
        Err(ServerError::NotAllowed)
    }
}

/// The bencoded reply to an announce.
pub fn announce_reply(
    req: &HttpAnnounce,
    answer: &Result<AnnounceAnswer, ServerError>,
    interval_secs: u32,
) -> Vec<u8> {
    let a = match answer {
        Ok(a) => a,
        Err(e) => return failure(e),
    };
    let mut out = Vec::with_capacity(64 + a.peers.len() * 18);
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.key("complete");
    e.int(a.seeders.into());
    e.key("incomplete");
    e.int(a.leechers.into());
    e.key("interval");
    e.int(interval_secs.into());
    e.key("min interval");
    e.int((interval_secs / 2).into());
    let v6 = req.announce.addr.is_ipv6();
    if req.compact {
        let mut packed = Vec::with_capacity(a.peers.len() * 18);
        for (_, p) in &a.peers {
            encode_peer(p, &mut packed);
        }
        let mut e = Encoder::new(&mut out);
        e.key("peers");
        e.bytes(if v6 { b"" } else { &packed });
        if v6 {
            e.key("peers6");
            e.bytes(&packed);
        }
    } else {
        let mut e = Encoder::new(&mut out);
        e.key("peers");
        e.begin_list();
        for (id, p) in &a.peers {
            e.begin_dict();
            e.key("ip");
            e.bytes(p.ip().to_string().as_bytes());
            if !req.no_peer_id {
                e.key("peer id");
                e.bytes(&id.0);
            }
            e.key("port");
            e.int(p.port().into());
            e.end();
        }
        e.end();
    }
    Encoder::new(&mut out).end();
    out
}

/// The bencoded reply to a scrape.
pub fn scrape_reply(stats: &[(InfoHash, ScrapeStats)]) -> Vec<u8> {
    let mut sorted: Vec<&(InfoHash, ScrapeStats)> = stats.iter().collect();
    sorted.sort_by_key(|(h, _)| *h);
    sorted.dedup_by_key(|(h, _)| *h);
    let mut out = Vec::with_capacity(16 + sorted.len() * 80);
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.key("files");
    e.begin_dict();
    for (h, s) in sorted {
        e.bytes(&h.0);
        e.begin_dict();
        e.key("complete");
        e.int(s.seeders.into());
        e.key("downloaded");
        e.int(s.completed.into());
        e.key("incomplete");
        e.int(s.leechers.into());
        e.end();
    }
    e.end();
    e.end();
    out
}

/// A bencoded `failure reason` reply.
pub fn failure(e: &ServerError) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = Encoder::new(&mut out);
    enc.begin_dict();
    enc.key("failure reason");
    enc.bytes(e.to_string().as_bytes());
    enc.end();
    out
}
