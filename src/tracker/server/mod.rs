//! The built-in tracker's sans-IO core (`ringseed tracker`): the swarm store, the UDP
//! (BEP 15) and HTTP (BEP 3/23/7/48) front ends that turn requests into store calls and
//! replies, the info-hash allow/deny lists and per-IP rate limits.
//!
//! Nothing here opens a socket, reads a file or a clock; `src/cli/tracker*.rs` does.
//! Memory is bounded by [`ServerLimits`]: at most `swarms_max` swarms and `peers_total_max`
//! peers (about 150 bytes each with their index), `peers_per_swarm_max` in any one swarm.

mod guard;
pub mod http;
mod swarm;
pub mod udp;

pub use guard::{AccessList, RateLimiter, RATE_IPS_MAX};
pub use swarm::{AnnounceAnswer, PeerAnnounce, SwarmStore};

use std::time::Duration;

/// Peers handed out when the client does not say (`numwant` absent or -1).
pub const NUMWANT_DEFAULT: usize = 50;
/// Most peers handed out per announce, whatever the client asks.
pub const NUMWANT_MAX: usize = 200;
/// Largest UDP reply we build: peers are cut so a reply fits one 1500-byte Ethernet frame
/// (1452 bytes of UDP payload over IPv6): 238 IPv4 peers or 79 IPv6 peers.
pub const UDP_REPLY_BYTES_MAX: usize = 1452;

/// The bounds and timings of a tracker; every field is a flag of `ringseed tracker`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most swarms (info-hashes) held; announces for new ones are refused past it.
    pub swarms_max: usize,
    /// Most peers in one swarm (IPv4 and IPv6 together).
    pub peers_per_swarm_max: usize,
    /// Most peers in all swarms together.
    pub peers_total_max: usize,
    /// The `interval` told to clients.
    pub interval: Duration,
}

impl ServerLimits {
    /// How long a peer stays without announcing: one missed interval plus half an interval
    /// of slack for clients that announce late.
    pub fn peer_ttl(&self) -> Duration {
        self.interval + self.interval / 2
    }
}

impl Default for ServerLimits {
    /// 100k swarms, 1M peers in all (about 150 MB), 50k per swarm, 30-minute interval.
    fn default() -> Self {
        ServerLimits {
            swarms_max: 100_000,
            peers_per_swarm_max: 50_000,
            peers_total_max: 1_000_000,
            interval: Duration::from_secs(1800),
        }
    }
}

/// Why the tracker refuses a request; the text goes back to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The store holds `swarms_max` swarms already.
    #[error("tracker is full: {max} torrents tracked")]
    SwarmsFull {
        /// The limit.
        max: usize,
    },
    /// The swarm (or the whole store) holds its most peers.
    #[error("swarm is full ({max} peers at most)")]
    SwarmFull {
        /// The per-swarm limit.
        max: usize,
    },
    /// The info-hash is not on the allow-list, or is on the deny-list.
    #[error("torrent not allowed on this tracker")]
    NotAllowed,
    /// The source IP sends faster than its rate limit.
    #[error("rate limited")]
    RateLimited,
    /// A required query parameter is missing.
    #[error("missing `{0}`")]
    MissingParam(&'static str),
    /// A query parameter with a bad value.
    #[error("bad `{field}`: {reason}")]
    BadParam {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The query is longer than the front end accepts.
    #[error("query too long ({len} bytes, at most {max})")]
    QueryTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

#[cfg(test)]
mod tests;
