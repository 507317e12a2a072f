//! What a DHT node stores and guards for others (BEP 5): announced peers per info-hash
//! (bounded, expiring), the `announce_peer` write tokens (rotating secret), and the
//! per-source-IP rate limit on incoming queries.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use sha1::{Digest, Sha1};

use crate::time::Instant;

use super::NodeId;

/// An announced peer is forgotten this long after its last announce.
pub const PEER_TTL: Duration = Duration::from_secs(15 * 60);
/// Info-hashes we store peers for; announces for more are refused until some expire.
pub const TORRENTS_MAX: usize = 2048;
/// Peers kept per info-hash; past it the oldest announce is replaced.
pub const PEERS_PER_TORRENT_MAX: usize = 256;
/// Peers returned in one `get_peers` reply (fits one datagram with room for the rest).
pub const PEERS_PER_REPLY_MAX: usize = 50;
/// The token secret changes this often; tokens of the current and previous secret are valid.
pub const TOKEN_ROTATE: Duration = Duration::from_secs(5 * 60);
/// Bytes of a token we hand out.
pub const TOKEN_BYTES: usize = 8;
/// Queries one source IP may send per second on average …
pub const QUERIES_PER_IP_PER_SEC: u32 = 50;
/// … and in one burst.
pub const QUERIES_PER_IP_BURST: u32 = 200;
/// Source IPs the limiter tracks; past it, idle ones are forgotten (and when none is idle,
/// new IPs are refused until one is).
pub const LIMITER_IPS_MAX: usize = 8192;

/// Announced peers per info-hash.
#[derive(Debug, Default)]
pub struct PeerStore {
    torrents: HashMap<NodeId, Vec<(SocketAddrV4, Instant)>>,
}

impl PeerStore {
    /// Records that `peer` has `info_hash`; false when the store is full of other torrents.
    pub fn announce(&mut self, info_hash: NodeId, peer: SocketAddrV4, now: Instant) -> bool {
        if !self.torrents.contains_key(&info_hash) && self.torrents.len() >= TORRENTS_MAX {
            self.expire(now);
            if self.torrents.len() >= TORRENTS_MAX {
                return false;
            }
        }
        let peers = self.torrents.entry(info_hash).or_default();
        if let Some(p) = peers.iter_mut().find(|(a, _)| *a == peer) {
            p.1 = now;
        } else if peers.len() < PEERS_PER_TORRENT_MAX {
            peers.push((peer, now));
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|(_, at)| *at) {
            *oldest = (peer, now);
        }
        true
    }

    /// Up to [`PEERS_PER_REPLY_MAX`] live peers of `info_hash`, most recent first.
    pub fn peers(&self, info_hash: &NodeId, now: Instant) -> Vec<SocketAddrV4> {
        let Some(peers) = self.torrents.get(info_hash) else {
            return Vec::new();
        };
        let mut live: Vec<&(SocketAddrV4, Instant)> = peers
            .iter()
            .filter(|(_, at)| now - *at < PEER_TTL)
            .collect();
        live.sort_by_key(|(_, at)| std::cmp::Reverse(*at));
        live.into_iter()
            .take(PEERS_PER_REPLY_MAX)
            .map(|(a, _)| *a)
            .collect()
    }

    /// Drops peers older than [`PEER_TTL`] and torrents left without peers.
    pub fn expire(&mut self, now: Instant) {
        self.torrents.retain(|_, peers| {
            peers.retain(|(_, at)| now - *at < PEER_TTL);
            !peers.is_empty()
        });
    }

    /// Info-hashes with stored peers.
    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Stored peers over all torrents.
    pub fn peer_count(&self) -> usize {
        self.torrents.values().map(Vec::len).sum()
    }
}

/// Write tokens: a hash of the asker's IP and a secret that rotates every [`TOKEN_ROTATE`].
#[derive(Debug)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated: Instant,
}

impl Tokens {
    /// Tokens from a random `secret` (the shell or test supplies randomness).
    pub fn new(secret: [u8; 16], now: Instant) -> Tokens {
        Tokens {
            current: secret,
            previous: secret,
            rotated: now,
        }
    }

    /// Rotates when due; `fresh` is the next secret.
    pub fn maybe_rotate(&mut self, now: Instant, fresh: impl FnOnce() -> [u8; 16]) {
        if now - self.rotated >= TOKEN_ROTATE {
            self.previous = self.current;
            self.current = fresh();
            self.rotated = now;
        }
    }

    /// When the next rotation is due.
    pub fn next_rotation(&self) -> Instant {
        self.rotated + TOKEN_ROTATE
    }

    /// The token for `ip` under the current secret.
    pub fn token_for(&self, ip: Ipv4Addr) -> [u8; TOKEN_BYTES] {
        token(&self.current, ip)
    }

    /// True when `tok` was handed to `ip` under the current or the previous secret.
    pub fn is_valid(&self, ip: Ipv4Addr, tok: &[u8]) -> bool {
        tok == token(&self.current, ip) || tok == token(&self.previous, ip)
    }
}

fn token(secret: &[u8; 16], ip: Ipv4Addr) -> [u8; TOKEN_BYTES] {
    let mut h = Sha1::new();
    h.update(secret);
    h.update(ip.octets());
    let digest = h.finalize();
    digest[..TOKEN_BYTES].try_into().expect("8 bytes")
}

/// A token bucket per source IP for incoming queries.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: HashMap<Ipv4Addr, (f64, Instant)>,
}

impl RateLimiter {
    /// True when a query from `ip` is within its budget (and spends one unit of it).
    pub fn allow(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= LIMITER_IPS_MAX {
            self.forget_idle(now);
            if self.buckets.len() >= LIMITER_IPS_MAX {
                return false;
            }
        }
        let burst = f64::from(QUERIES_PER_IP_BURST);
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        let refill = (now - *at).as_secs_f64() * f64::from(QUERIES_PER_IP_PER_SEC);
        *tokens = (*tokens + refill).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets IPs whose bucket has refilled completely (they cost nothing to recreate).
    pub fn forget_idle(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(
            f64::from(QUERIES_PER_IP_BURST) / f64::from(QUERIES_PER_IP_PER_SEC),
        );
        self.buckets.retain(|_, (_, at)| now - *at < full_after);
    }

    /// Source IPs tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u32) -> SocketAddrV4 {
        SocketAddrV4::new(n.into(), 6881)
    }

    #[test]
    fn tokens_stay_valid_for_one_rotation_then_expire() {
        // A token works under the current and the previous secret, not after two rotations,
        // and only for the IP it was given to.
        let t0 = Instant::ZERO;
        let ip = Ipv4Addr::new(127, 0, 0, 5);
        let mut tokens = Tokens::new([1; 16], t0);
        let tok = tokens.token_for(ip);
        assert!(tokens.is_valid(ip, &tok));
        assert!(!tokens.is_valid(Ipv4Addr::new(127, 0, 0, 6), &tok));
        tokens.maybe_rotate(t0 + TOKEN_ROTATE, || [2; 16]);
        assert!(tokens.is_valid(ip, &tok));
        tokens.maybe_rotate(t0 + TOKEN_ROTATE * 2, || [3; 16]);
        assert!(!tokens.is_valid(ip, &tok));
    }

    #[test]
    fn peer_store_is_bounded_and_expires() {
        // Peers per torrent and torrents are capped; peers vanish 15 minutes after announcing.
        let t0 = Instant::ZERO;
        let mut store = PeerStore::default();
        let ih = NodeId([9; 20]);
        for n in 0..(PEERS_PER_TORRENT_MAX as u32 + 50) {
            assert!(store.announce(ih, peer(n), t0 + Duration::from_millis(u64::from(n))));
        }
        assert_eq!(store.peer_count(), PEERS_PER_TORRENT_MAX);
        assert_eq!(store.peers(&ih, t0).len(), PEERS_PER_REPLY_MAX);
        for n in 0..TORRENTS_MAX as u32 {
            let mut id = [0u8; 20];
            id[..4].copy_from_slice(&n.to_be_bytes());
            store.announce(NodeId(id), peer(1), t0);
        }
        assert!(store.torrent_count() <= TORRENTS_MAX);
        assert!(!store.announce(NodeId([0xee; 20]), peer(1), t0));
        let later = t0 + PEER_TTL + Duration::from_secs(1);
        assert!(store.peers(&ih, later).is_empty());
        assert!(store.announce(NodeId([0xee; 20]), peer(1), later));
        assert_eq!(store.torrent_count(), 1);
    }

    #[test]
    fn rate_limit_is_per_source_ip() {
        // One IP flooding is cut off after its burst; another IP is unaffected; it recovers.
        let t0 = Instant::ZERO;
        let mut lim = RateLimiter::default();
        let a = Ipv4Addr::new(127, 0, 0, 1);
        let b = Ipv4Addr::new(127, 0, 0, 2);
        let allowed = (0..1000).filter(|_| lim.allow(a, t0)).count();
        assert_eq!(allowed, QUERIES_PER_IP_BURST as usize);
        assert!(lim.allow(b, t0));
        assert!(lim.allow(a, t0 + Duration::from_secs(1)));
    }
}
