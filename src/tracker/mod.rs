//! Tracker client: HTTP announce and scrape URLs (BEP 3, BEP 48), replies with compact peers
//! (BEP 23, BEP 7 `peers6`), UDP tracker exchanges (BEP 15), multi-tracker tiers (BEP 12) and a
//! per-tracker announce scheduler, all sans-IO.
//!
//! The I/O is in the shells [`crate::tracker_http`] (HTTP GET) and [`crate::tracker_udp`].
//! [`AnnounceRequest`], [`AnnounceResponse`] and [`AnnounceScheduler`] know nothing of URLs or
//! transports, so one schedule serves a whole tier list whatever its schemes.

mod announce;
mod response;
mod scheduler;
mod scrape;
pub mod server;
mod tiers;
pub mod udp_client;
pub mod udp_proto;

pub use announce::{announce_url, AnnounceRequest, Event};
pub use response::{
    parse_response, AnnounceResponse, PEERS_MAX, RESPONSE_BYTES_MAX, RESPONSE_LIMITS,
    TRACKER_ID_BYTES_MAX,
};
pub use scheduler::{
    AnnounceParams, AnnounceScheduler, Progress, INTERVAL_DEFAULT, INTERVAL_MAX, INTERVAL_MIN,
    MIN_INTERVAL_FLOOR, RETRY_FIRST, RETRY_MAX,
};
pub use scrape::{parse_scrape, scrape_url};
pub use tiers::{TrackerKind, TrackerTiers, TRACKERS_MAX};

use crate::bencode::BencodeError;

/// Why an announce could not be built, sent or understood; every variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The announce URL is not `http://` or `https://`.
    #[error("announce URL {url:?} is not http:// or https://")]
    UnsupportedScheme {
        /// The URL given.
        url: String,
    },
    /// The reply is not valid bencode (or breaks [`RESPONSE_LIMITS`]).
    #[error("tracker reply is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The reply is bencode but not a dict.
    #[error("tracker reply is not a dict")]
    NotADict,
    /// The tracker answered with `failure reason`.
    #[error("tracker refused the announce: {reason}")]
    Failure {
        /// The tracker's text (lossy UTF-8).
        reason: String,
    },
    /// A field has the wrong bencode type.
    #[error("field `{field}` should be {expected}")]
    WrongType {
        /// The field as named in the reply.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// An integer field outside its range.
    #[error("field `{field}` is {value}, outside {min}..={max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value found.
        value: i64,
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// A byte-string field longer than its limit.
    #[error("field `{field}` is {len} bytes, more than the limit of {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Compact peers whose length is not a whole number of entries.
    #[error("field `{field}` is {len} bytes, not a multiple of {entry_bytes}")]
    CompactLength {
        /// `peers` or `peers6`.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Bytes per entry (6 or 18).
        entry_bytes: usize,
    },
    /// More peers than [`PEERS_MAX`].
    #[error("{count} peers in the reply, more than the limit of {max}")]
    TooManyPeers {
        /// Peers in the reply.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A dict-form peer that cannot be used.
    #[error("peer {index} of `peers`: {reason}")]
    BadPeer {
        /// Its position in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A reply arrived while the scheduler had no announce in flight (a driver bug).
    #[error("a tracker reply arrived but no announce was in flight")]
    NoAnnounceInFlight,
    /// Shell: the tracker answered with an HTTP status other than 2xx.
    #[error("tracker answered HTTP {status}")]
    HttpStatus {
        /// The status code.
        status: u16,
    },
    /// Shell: the reply body is larger than [`RESPONSE_BYTES_MAX`].
    #[error("tracker reply exceeds {max} bytes")]
    ResponseTooLarge {
        /// The limit.
        max: usize,
    },
    /// A UDP tracker datagram that is not valid BEP 15.
    #[error("bad UDP tracker packet: {0}")]
    Udp(#[from] udp_proto::UdpProtoError),
    /// No reply after every allowed (re)transmission.
    #[error("UDP tracker did not answer ({attempts} datagrams sent)")]
    UdpTimedOut {
        /// Datagrams sent.
        attempts: u32,
    },
    /// A UDP reply for another transaction (stale or spoofed); it is ignored.
    #[error("UDP reply has transaction id {got:#x}, expected {expected:#x}")]
    UdpWrongTransaction {
        /// The id we sent.
        expected: u32,
        /// The id in the reply.
        got: u32,
    },
    /// A UDP reply that does not fit what was asked.
    #[error("UDP tracker sent {what}")]
    UdpUnexpected {
        /// What arrived.
        what: &'static str,
    },
    /// A scrape reply with another number of entries than hashes asked.
    #[error("scrape asked for {asked} torrents, reply has {got}")]
    UdpScrapeCount {
        /// Hashes asked.
        asked: usize,
        /// Entries received.
        got: usize,
    },
    /// A scrape reply whose `files` entry is missing or malformed.
    #[error("scrape reply: {reason}")]
    BadScrape {
        /// What is wrong.
        reason: &'static str,
    },
    /// Shell: the request failed (DNS, connect, timeout, TLS, protocol).
    #[error("HTTP request to the tracker failed: {reason}")]
    Transport {
        /// The transport's description.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod udp_tests;
