//! Announce replies (BEP 3): interval, counts and peers in compact (BEP 23), dict and `peers6`
//! (BEP 7) form, decoded under hard limits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::TrackerError;
use crate::bencode::{decode, Dict, Limits, Value};

/// Largest reply body we read. [`PEERS_MAX`] dict-form peers take about 150 KB, compact ones
/// 12-36 KB; anything bigger is not a tracker reply we want.
pub const RESPONSE_BYTES_MAX: usize = 256 * 1024;
/// Most peers (IPv4 and IPv6 together) in one reply. Clients ask for 50-200 and trackers cap
/// `numwant` at a few hundred; ten times that still bounds memory per announce.
pub const PEERS_MAX: usize = 2000;
/// Longest `tracker id` we keep and echo back in every later announce.
pub const TRACKER_ID_BYTES_MAX: usize = 256;
/// Bencode limits for replies: a reply is a dict of a list of small dicts at most (depth 3);
/// a dict-form peer is 4 values; the longest string is `peers6` at 18 bytes a peer.
pub const RESPONSE_LIMITS: Limits = Limits {
    depth_max: 8,
    string_bytes_max: 64 * 1024,
    total_bytes_max: RESPONSE_BYTES_MAX,
    values_max: 5 * PEERS_MAX + 64,
};

const COMPACT_V4_BYTES: usize = 6;
const COMPACT_V6_BYTES: usize = 18;

/// A successful announce reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// `interval`: seconds the tracker wants between regular announces (unclamped).
    pub interval_secs: Option<u32>,
    /// `min interval`: seconds the tracker wants at least between any two announces.
    pub min_interval_secs: Option<u32>,
    /// `tracker id`, to echo back in later announces.
    pub tracker_id: Option<Vec<u8>>,
    /// `complete`: seeders in the swarm.
    pub complete: Option<u32>,
    /// `incomplete`: leechers in the swarm.
    pub incomplete: Option<u32>,
    /// `warning message` (lossy UTF-8).
    pub warning: Option<String>,
    /// Peers from `peers` (compact or dict form) then `peers6`, in reply order. Entries with
    /// port 0 and dict-form entries naming a DNS host (which the core cannot resolve) are
    /// left out.
    pub peers: Vec<SocketAddr>,
}

type Result<T> = std::result::Result<T, TrackerError>;

/// Parses an announce reply body; a `failure reason` becomes [`TrackerError::Failure`].
pub fn parse_response(body: &[u8]) -> Result<AnnounceResponse> {
    let root = decode(body, RESPONSE_LIMITS)?;
    let d = root.as_dict().ok_or(TrackerError::NotADict)?;
    if let Some(v) = d.get(b"failure reason") {
        let reason = bytes(v, "failure reason")?;
        return Err(TrackerError::Failure {
            reason: String::from_utf8_lossy(reason).into_owned(),
        });
    }
    let tracker_id = match d.get(b"tracker id") {
        Some(v) => Some(bounded_bytes(v, "tracker id", TRACKER_ID_BYTES_MAX)?.to_vec()),
        None => None,
    };
    let warning = match d.get(b"warning message") {
        Some(v) => Some(String::from_utf8_lossy(bytes(v, "warning message")?).into_owned()),
        None => None,
    };
    Ok(AnnounceResponse {
        interval_secs: opt_u32(d, "interval")?,
        min_interval_secs: opt_u32(d, "min interval")?,
        tracker_id,
        complete: opt_u32(d, "complete")?,
        incomplete: opt_u32(d, "incomplete")?,
        warning,
        peers: peers(d)?,
    })
}

fn bytes<'a>(v: &Value<'a>, field: &'static str) -> Result<&'a [u8]> {
    v.as_bytes().ok_or(TrackerError::WrongType {
        field,
        expected: "a byte string",
    })
}

fn bounded_bytes<'a>(v: &Value<'a>, field: &'static str, max: usize) -> Result<&'a [u8]> {
    let b = bytes(v, field)?;
    if b.len() > max {
        return Err(TrackerError::TooLong {
            field,
            len: b.len(),
            max,
        });
    }
    Ok(b)
}

fn opt_u32(d: &Dict<'_>, field: &'static str) -> Result<Option<u32>> {
    let Some(v) = d.get(field.as_bytes()) else {
        return Ok(None);
    };
    let n = v.as_int().ok_or(TrackerError::WrongType {
        field,
        expected: "an integer",
    })?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| TrackerError::OutOfRange {
            field,
            value: n,
            min: 0,
            max: i64::from(u32::MAX),
        })
}

/// Counts peers before building any list, so a hostile reply costs no memory past the limit.
fn peers(d: &Dict<'_>) -> Result<Vec<SocketAddr>> {
    let v4 = d.get(b"peers");
    let v6 = match d.get(b"peers6") {
        Some(v) => Some(compact_bytes(v, "peers6", COMPACT_V6_BYTES)?),
        None => None,
    };
    let v4_count = match v4 {
        None => 0,
        Some(v @ Value::Bytes(_)) => {
            compact_bytes(v, "peers", COMPACT_V4_BYTES)?.len() / COMPACT_V4_BYTES
        }
        Some(Value::List(items, _)) => items.len(),
        Some(_) => {
            return Err(TrackerError::WrongType {
                field: "peers",
                expected: "a byte string (compact) or a list of dicts",
            })
        }
    };
    let count = v4_count + v6.map_or(0, |b| b.len() / COMPACT_V6_BYTES);
    if count > PEERS_MAX {
        return Err(TrackerError::TooManyPeers {
            count,
            max: PEERS_MAX,
        });
    }
    let mut out = Vec::with_capacity(count);
    match v4 {
        Some(Value::Bytes(b)) => out.extend(b.chunks_exact(COMPACT_V4_BYTES).map(compact_v4)),
        Some(Value::List(items, _)) => {
            for (index, item) in items.iter().enumerate() {
                out.extend(dict_peer(item, index)?);
            }
        }
        _ => {}
    }
    if let Some(b) = v6 {
        out.extend(b.chunks_exact(COMPACT_V6_BYTES).map(compact_v6));
    }
    out.retain(|a| a.port() != 0);
    Ok(out)
}

fn compact_bytes<'a>(v: &Value<'a>, field: &'static str, entry_bytes: usize) -> Result<&'a [u8]> {
    let b = bytes(v, field)?;
    if b.len() % entry_bytes != 0 {
        return Err(TrackerError::CompactLength {
            field,
            len: b.len(),
            entry_bytes,
        });
    }
    Ok(b)
}

fn compact_v4(c: &[u8]) -> SocketAddr {
    let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
    SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([c[4], c[5]]))
}

fn compact_v6(c: &[u8]) -> SocketAddr {
    let octets: [u8; 16] = c[..16].try_into().expect("18-byte chunk");
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::from(octets)),
        u16::from_be_bytes([c[16], c[17]]),
    )
}

/// One `{ip, port, peer id}` entry; `None` for a DNS name, which the shell would have to
/// resolve and no tracker we know of sends.
fn dict_peer(item: &Value<'_>, index: usize) -> Result<Option<SocketAddr>> {
    let bad = |reason| TrackerError::BadPeer { index, reason };
    let d = item.as_dict().ok_or_else(|| bad("not a dict"))?;
    let ip = d
        .get(b"ip")
        .ok_or_else(|| bad("no `ip`"))?
        .as_str()
        .ok_or_else(|| bad("`ip` is not a UTF-8 string"))?;
    let port = d
        .get(b"port")
        .ok_or_else(|| bad("no `port`"))?
        .as_int()
        .ok_or_else(|| bad("`port` is not an integer"))?;
    let port = u16::try_from(port).map_err(|_| bad("`port` is not 0-65535"))?;
    match ip.parse::<IpAddr>() {
        Ok(ip) => Ok(Some(SocketAddr::new(ip, port))),
        Err(_) if is_host_name(ip) => Ok(None),
        Err(_) => Err(bad("`ip` is neither an IP address nor a host name")),
    }
}

/// Letters, digits, `-` and `.`, with a last label that is not all digits (that would be a
/// broken IPv4 address, which is an error rather than a name to skip).
fn is_host_name(s: &str) -> bool {
    let last = s.rsplit('.').next().unwrap_or("");
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !last.bytes().all(|b| b.is_ascii_digit())
}
