//! Magnet URIs (BEP 9): `magnet:?xt=urn:btih:…&dn=…&tr=…&x.pe=…`, parsed and emitted.
//!
//! Parsing is bounded ([`MAGNET_URI_BYTES_MAX`], [`MAGNET_PARAMS_MAX`]), percent-decoding is
//! strict (a broken `%` escape is an error, `+` is a space as in form encoding) and unknown
//! parameters are ignored. Emitting escapes everything but RFC 3986 unreserved characters, so
//! `parse(emit(m)) == m`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{InfoHash, Metainfo};

/// Longest magnet URI we parse. Real ones are a few hundred bytes; 32 KiB leaves room for a
/// hundred long tracker URLs while bounding the work a pasted blob can cause.
pub const MAGNET_URI_BYTES_MAX: usize = 32 * 1024;
/// Most `&`-separated parameters in one URI (known or not); bounds the tracker and peer lists.
pub const MAGNET_PARAMS_MAX: usize = 256;

/// Characters escaped when emitting: everything except RFC 3986 unreserved characters.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A parsed magnet link: enough to find peers and fetch the info dict from them (BEP 9).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    /// `xt=urn:btih:`: the torrent's v1 info-hash.
    pub info_hash: InfoHash,
    /// `dn`: a display name until the metadata arrives (never used as a path).
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to try directly, in order, without duplicates.
    pub peers: Vec<PeerHint>,
}

/// A peer address from `x.pe`: `host:port`, `a.b.c.d:port` or `[v6]:port`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PeerHint {
    /// An IP literal and port.
    Addr(SocketAddr),
    /// A DNS name and port; the shell resolves it.
    Host {
        /// The host name (letters, digits, `-` and `.`).
        name: String,
        /// The port, never 0.
        port: u16,
    },
}

/// Why a magnet URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MagnetError {
    /// The URI is longer than [`MAGNET_URI_BYTES_MAX`].
    #[error("magnet URI of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Length of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More parameters than [`MAGNET_PARAMS_MAX`].
    #[error("magnet URI has {count} parameters, more than the limit of {max}")]
    TooManyParams {
        /// Parameters found.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The input does not start with `magnet:?`.
    #[error("not a magnet URI (expected `magnet:?`, found {start:?})")]
    NotMagnet {
        /// The first few characters of the input.
        start: String,
    },
    /// A `%` not followed by two hex digits.
    #[error("broken percent escape in `{param}` at byte {at} of its value")]
    BadEscape {
        /// The parameter.
        param: &'static str,
        /// Offset of the `%` inside the raw value.
        at: usize,
    },
    /// A value that decodes to bytes that are not UTF-8.
    #[error("`{param}` is not valid UTF-8 once decoded")]
    NotUtf8 {
        /// The parameter.
        param: &'static str,
    },
    /// No `xt=urn:btih:` parameter.
    #[error("no `xt=urn:btih:` info-hash in the magnet URI")]
    MissingInfoHash,
    /// An `xt=urn:btih:` value that is neither 40 hex digits nor 32 base32 characters.
    #[error("invalid info-hash {value:?}: {reason}")]
    BadInfoHash {
        /// The decoded value after `urn:btih:`.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Two `xt=urn:btih:` parameters with different hashes.
    #[error("two different info-hashes: {first} and {second}")]
    ConflictingInfoHashes {
        /// The first hash found.
        first: InfoHash,
        /// The one that disagrees.
        second: InfoHash,
    },
    /// A `tr` value that is not a URL.
    #[error("invalid tracker URL {value:?}: {reason}")]
    BadTracker {
        /// The decoded value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `x.pe` value that is not `host:port`.
    #[error("invalid peer address {value:?}: {reason}")]
    BadPeer {
        /// The decoded value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl Magnet {
    /// A magnet link with the info-hash only.
    pub fn new(info_hash: InfoHash) -> Magnet {
        Magnet {
            info_hash,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
        }
    }

    /// The magnet link for a torrent file: its info-hash, name and trackers (all tiers, in
    /// order, duplicates dropped). Trackers that would push the URI past
    /// [`MAGNET_URI_BYTES_MAX`] or [`MAGNET_PARAMS_MAX`] are left out, so the result always
    /// parses back.
    pub fn from_metainfo(meta: &Metainfo) -> Magnet {
        let mut m = Magnet::new(meta.info_hash);
        m.display_name = Some(meta.info.name.clone());
        let mut len = m.to_string().len();
        for url in meta.trackers().into_iter().flatten() {
            if m.trackers.contains(&url) || validate_tracker(&url).is_err() {
                continue;
            }
            let added = "&tr=".len() + utf8_percent_encode(&url, ESCAPED).to_string().len();
            // Params: xt, dn, then the trackers.
            if len + added > MAGNET_URI_BYTES_MAX || m.trackers.len() + 2 >= MAGNET_PARAMS_MAX {
                continue;
            }
            len += added;
            m.trackers.push(url);
        }
        m
    }

    /// Parses a magnet URI; see the module doc for the rules.
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAGNET_URI_BYTES_MAX {
            return Err(MagnetError::TooLong {
                len: uri.len(),
                max: MAGNET_URI_BYTES_MAX,
            });
        }
        let query = strip_scheme(uri)?;
        let count = query.split('&').filter(|s| !s.is_empty()).count();
        if count > MAGNET_PARAMS_MAX {
            return Err(MagnetError::TooManyParams {
                count,
                max: MAGNET_PARAMS_MAX,
            });
        }
        let mut info_hash: Option<InfoHash> = None;
        let mut m = Magnet::new(InfoHash::default());
        for pair in query.split('&').filter(|s| !s.is_empty()) {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            // A key we cannot decode is not one of ours: ignored like any unknown key.
            let Ok(key) = decode_text(raw_key, "key") else {
                continue;
            };
            match param_kind(&key) {
                Some(Param::Xt) => {
                    let Some(hash) = parse_xt(&decode_text(raw_value, "xt")?)? else {
                        continue;
                    };
                    match info_hash {
                        Some(first) if first != hash => {
                            return Err(MagnetError::ConflictingInfoHashes {
                                first,
                                second: hash,
                            })
                        }
                        _ => info_hash = Some(hash),
                    }
                }
                Some(Param::Dn) => {
                    let name = decode_text(raw_value, "dn")?;
                    m.display_name = (!name.is_empty()).then_some(name);
                }
                Some(Param::Tr) => {
                    let url = decode_text(raw_value, "tr")?;
                    validate_tracker(&url)?;
                    if !m.trackers.contains(&url) {
                        m.trackers.push(url);
                    }
                }
                Some(Param::Pe) => {
                    let peer = decode_text(raw_value, "x.pe")?.parse::<PeerHint>()?;
                    if !m.peers.contains(&peer) {
                        m.peers.push(peer);
                    }
                }
                None => {}
            }
        }
        m.info_hash = info_hash.ok_or(MagnetError::MissingInfoHash)?;
        Ok(m)
    }
}

impl FromStr for Magnet {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<Magnet, MagnetError> {
        Magnet::parse(s)
    }
}

impl fmt::Display for Magnet {
    /// The canonical URI: `xt` (lowercase hex), then `dn`, `tr`… and `x.pe`… escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?;
        if let Some(name) = self.display_name.as_deref().filter(|n| !n.is_empty()) {
            write!(f, "&dn={}", utf8_percent_encode(name, ESCAPED))?;
        }
        for url in &self.trackers {
            write!(f, "&tr={}", utf8_percent_encode(url, ESCAPED))?;
        }
        for peer in &self.peers {
            // `host:port` is written as is: a hint holds only letters, digits, `.-:[]`, and
            // libtorrent 2.0 does not percent-decode `x.pe` (`%3A` made it drop the hint).
            write!(f, "&x.pe={peer}")?;
        }
        Ok(())
    }
}

impl fmt::Display for PeerHint {
    /// `1.2.3.4:80`, `[::1]:80` or `host:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerHint::Addr(a) => write!(f, "{}:{}", BracketedIp(a), a.port()),
            PeerHint::Host { name, port } => write!(f, "{name}:{port}"),
        }
    }
}

/// The IP of a socket address, IPv6 in brackets, without scope or flow info.
struct BracketedIp<'a>(&'a SocketAddr);

impl fmt::Display for BracketedIp<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            SocketAddr::V4(a) => write!(f, "{}", a.ip()),
            SocketAddr::V6(a) => write!(f, "[{}]", a.ip()),
        }
    }
}

impl FromStr for PeerHint {
    type Err = MagnetError;
    fn from_str(s: &str) -> Result<PeerHint, MagnetError> {
        let bad = |reason| MagnetError::BadPeer {
            value: s.to_owned(),
            reason,
        };
        if let Ok(addr) = s.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err(bad("port 0"));
            }
            // Scope ids and flow labels mean nothing to another host; drop them so the hint
            // prints and compares as the plain `[ip]:port` it is.
            return Ok(PeerHint::Addr(SocketAddr::new(addr.ip(), addr.port())));
        }
        let (name, port) = s.rsplit_once(':').ok_or_else(|| bad("no `:port`"))?;
        let port: u16 = port.parse().map_err(|_| bad("port is not 1-65535"))?;
        if port == 0 {
            return Err(bad("port 0"));
        }
        if name.starts_with('[') || name.contains(':') {
            return Err(bad("invalid IPv6 literal"));
        }
        validate_host_name(name).map_err(bad)?;
        Ok(PeerHint::Host {
            name: name.to_owned(),
            port,
        })
    }
}

/// RFC 1123 host names: dot-separated labels of letters, digits and inner `-`, at most 253
/// bytes, and a last label that is not all digits (that would be a mistyped IPv4 address).
fn validate_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 253 {
        return Err("host name empty or longer than 253 bytes");
    }
    let name = name.strip_suffix('.').unwrap_or(name);
    for label in name.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err("host name label is empty, too long or has invalid characters");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("host name label starts or ends with `-`");
        }
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("not an IPv4 address and not a host name");
    }
    Ok(())
}

/// A tracker URL needs a scheme (`http://`, `udp://`…) and no control characters.
fn validate_tracker(url: &str) -> Result<(), MagnetError> {
    let bad = |reason| MagnetError::BadTracker {
        value: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no `scheme://`"))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return Err(bad("invalid scheme"));
    }
    if rest.is_empty() {
        return Err(bad("no host"));
    }
    if url.chars().any(char::is_control) {
        return Err(bad("control character"));
    }
    Ok(())
}

/// The query after `magnet:?` (scheme matched case-insensitively, RFC 3986 §3.1).
fn strip_scheme(uri: &str) -> Result<&str, MagnetError> {
    const PREFIX: &str = "magnet:?";
    match uri.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => Ok(&uri[PREFIX.len()..]),
        _ => Err(MagnetError::NotMagnet {
            start: uri.chars().take(16).collect(),
        }),
    }
}

enum Param {
    Xt,
    Dn,
    Tr,
    Pe,
}

/// Known parameters, also in the numbered form some generators use (`tr.1`, `xt.2`).
fn param_kind(key: &str) -> Option<Param> {
    let (base, index) = match key.split_once('.') {
        Some((b, i)) if !i.is_empty() && i.bytes().all(|c| c.is_ascii_digit()) => (b, true),
        _ => (key, false),
    };
    match base {
        "xt" => Some(Param::Xt),
        "dn" => Some(Param::Dn),
        "tr" => Some(Param::Tr),
        "x.pe" if !index => Some(Param::Pe),
        _ => None,
    }
}

/// The info-hash of an `xt` value, or `None` for other URN kinds (`btmh`, `ed2k`…).
fn parse_xt(value: &str) -> Result<Option<InfoHash>, MagnetError> {
    const URN: &str = "urn:btih:";
    let hash = match value.get(..URN.len()) {
        Some(p) if p.eq_ignore_ascii_case(URN) => &value[URN.len()..],
        _ => return Ok(None),
    };
    let bad = |reason| MagnetError::BadInfoHash {
        value: hash.to_owned(),
        reason,
    };
    match hash.len() {
        40 => InfoHash::from_hex(hash)
            .map(Some)
            .ok_or_else(|| bad("40 characters but not all hex digits")),
        32 => base32_decode(hash)
            .map(|b| Some(InfoHash(b)))
            .ok_or_else(|| bad("32 characters but not all base32 (A-Z, 2-7)")),
        _ => Err(bad("expected 40 hex digits or 32 base32 characters")),
    }
}

/// RFC 4648 base32 (either case) of exactly 20 bytes: 32 characters, no padding.
fn base32_decode(s: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let mut acc: u64 = 0;
    let mut bits = 0;
    let mut n = 0;
    for c in s.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == 20).then_some(out)
}

/// Percent-decodes a query component (`+` is a space) and checks it is UTF-8.
fn decode_text(raw: &str, param: &'static str) -> Result<String, MagnetError> {
    let bytes = percent_decode_strict(raw).map_err(|at| MagnetError::BadEscape { param, at })?;
    String::from_utf8(bytes).map_err(|_| MagnetError::NotUtf8 { param })
}

/// Strict percent-decoding: a `%` must be followed by two hex digits; returns the offset of
/// the first broken escape otherwise. `+` decodes to a space, as browsers and most magnet
/// generators write spaces in `dn`.
fn percent_decode_strict(raw: &str) -> Result<Vec<u8>, usize> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(i)?;
                let hi = (hex[0] as char).to_digit(16).ok_or(i)?;
                let lo = (hex[1] as char).to_digit(16).ok_or(i)?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "magnet_tests.rs"]
mod tests;
