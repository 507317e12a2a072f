//! One UDP tracker exchange (BEP 15) as a sans-IO machine: connect if needed, then announce
//! or scrape, retransmitting after 15·2ⁿ seconds and checking every transaction id.
//!
//! States: *connecting* (no valid connection id: send connect) → *requesting* (send the
//! announce or scrape with the id) → *done* (an outcome). A timeout retransmits the current
//! step with a fresh transaction id; if the connection id has aged past
//! [`CONNECTION_ID_LIFETIME`] by then, the exchange goes back to connecting. The driver loop:
//! `poll_transmit` → send; wait until `poll_timeout` or a datagram; `handle_timeout` /
//! `handle_datagram`; stop when `outcome` returns something.

use std::time::Duration;

use super::udp_proto::{
    ConnectionId, ScrapeStats, TransactionId, UdpAnnounce, UdpRequest, UdpResponse,
};
use super::{AnnounceRequest, AnnounceResponse, Event, TrackerError, PEERS_MAX};
use crate::metainfo::InfoHash;
use crate::time::Instant;

/// How long a client may use a connection id after receiving it (BEP 15: one minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);
/// Wait before the first retransmission; the n-th waits `RETRANSMIT_FIRST * 2^n`.
pub const RETRANSMIT_FIRST: Duration = Duration::from_secs(15);
/// Sends per exchange that BEP 15 allows (n = 0..=8, the last wait being 3840 s).
pub const ATTEMPTS_MAX: u32 = 9;

/// What the exchange is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpGoal {
    /// An announce.
    Announce(AnnounceRequest),
    /// A scrape of up to [`super::udp_proto::SCRAPE_HASHES_MAX`] torrents.
    Scrape(Vec<InfoHash>),
}

/// A successful exchange's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpOutcome {
    /// The announce reply, in the transport-neutral form the scheduler takes.
    Announce(AnnounceResponse),
    /// One entry per requested hash, in request order.
    Scrape(Vec<ScrapeStats>),
}

/// A connection id with the instant it was received, reusable across exchanges with one
/// tracker until [`CONNECTION_ID_LIFETIME`] has passed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CachedConnection {
    /// The id.
    pub id: ConnectionId,
    /// When it was received.
    pub received_at: Instant,
}

impl CachedConnection {
    /// True while the id may still be used at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now - self.received_at < CONNECTION_ID_LIFETIME
    }
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Step {
    Connect,
    Request,
}

/// One announce or scrape to one UDP tracker.
#[derive(Clone, Debug)]
pub struct UdpExchange {
    goal: UdpGoal,
    ipv6: bool,
    connection: Option<CachedConnection>,
    /// What was last sent, under which transaction id, when; `None` before the first send.
    sent: Option<(Step, TransactionId, Instant)>,
    /// Timeouts so far of the current step (the `n` of 15·2ⁿ).
    retransmits: u32,
    attempts_max: u32,
    need_send: bool,
    /// Datagrams sent so far, all steps together.
    sends: u32,
    rng: u64,
    outcome: Option<Result<UdpOutcome, TrackerError>>,
}

impl UdpExchange {
    /// A new exchange. `connection` is a cached id from an earlier exchange with the same
    /// tracker; `ipv6` says whether the tracker is reached over IPv6 (peer entry size);
    /// `attempts_max` (1..=[`ATTEMPTS_MAX`]) bounds sends per step; `seed` seeds the
    /// transaction ids.
    pub fn new(
        goal: UdpGoal,
        connection: Option<CachedConnection>,
        ipv6: bool,
        attempts_max: u32,
        seed: u64,
    ) -> UdpExchange {
        UdpExchange {
            goal,
            ipv6,
            connection,
            sent: None,
            retransmits: 0,
            attempts_max: attempts_max.clamp(1, ATTEMPTS_MAX),
            need_send: true,
            sends: 0,
            rng: seed | 1,
            outcome: None,
        }
    }

    /// Datagrams sent so far (connects and requests, retransmissions included).
    pub fn sends(&self) -> u32 {
        self.sends
    }

    /// The connection id in hand, to cache for the next exchange with this tracker.
    pub fn connection(&self) -> Option<CachedConnection> {
        self.connection
    }

    /// Writes the datagram to send now into `buf` (cleared first); false if nothing is due.
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> bool {
        if !self.need_send || self.outcome.is_some() {
            return false;
        }
        self.need_send = false;
        buf.clear();
        let tid = TransactionId(self.next_random() as u32);
        let conn = self.connection.filter(|c| c.is_fresh(now));
        let step = match conn {
            None => {
                self.connection = None;
                UdpRequest::Connect {
                    transaction_id: tid,
                }
                .encode(buf);
                Step::Connect
            }
            Some(c) => {
                self.request(c.id, tid).encode(buf);
                Step::Request
            }
        };
        self.sent = Some((step, tid, now));
        self.sends += 1;
        true
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() || self.need_send {
            return None;
        }
        let (_, _, at) = self.sent?;
        Some(at + self.retransmit_wait())
    }

    /// Retransmits (or gives up) once the wait for a reply has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.poll_timeout() else {
            return;
        };
        if now < deadline {
            return;
        }
        self.retransmits += 1;
        if self.retransmits >= self.attempts_max {
            self.outcome = Some(Err(TrackerError::UdpTimedOut {
                attempts: self.sends,
            }));
        } else {
            self.need_send = true;
        }
    }

    /// Feeds a datagram from the tracker. Packets with another transaction id, or too short
    /// to carry one, are refused with an error and change nothing (they may be stale
    /// retransmissions or spoofed); a malformed or refusing reply to our transaction ends the
    /// exchange with that error.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Instant) -> Result<(), TrackerError> {
        let Some((step, tid, _)) = self.sent.filter(|_| self.outcome.is_none()) else {
            return Err(TrackerError::UdpUnexpected {
                what: "a reply while nothing is awaited",
            });
        };
        if bytes.len() < 8 {
            return Err(TrackerError::Udp(
                super::udp_proto::UdpProtoError::TooShort {
                    what: "response",
                    len: bytes.len(),
                    min: 8,
                },
            ));
        }
        let got = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if got != tid.0 {
            return Err(TrackerError::UdpWrongTransaction {
                expected: tid.0,
                got,
            });
        }
        let result = UdpResponse::decode(bytes, self.ipv6)
            .map_err(TrackerError::Udp)
            .and_then(|r| self.accept(step, r, now));
        match result {
            Ok(Some(outcome)) => self.outcome = Some(Ok(outcome)),
            Ok(None) => {}
            Err(e) => self.outcome = Some(Err(e.clone())),
        }
        match &self.outcome {
            Some(Err(e)) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// The result, once the exchange is over.
    pub fn outcome(&self) -> Option<&Result<UdpOutcome, TrackerError>> {
        self.outcome.as_ref()
    }

    fn accept(
        &mut self,
        step: Step,
        r: UdpResponse,
        now: Instant,
    ) -> Result<Option<UdpOutcome>, TrackerError> {
        match (step, r, &self.goal) {
            (_, UdpResponse::Error { message, .. }, _) => {
                Err(TrackerError::Failure { reason: message })
            }
            (Step::Connect, UdpResponse::Connect { connection_id, .. }, _) => {
                self.connection = Some(CachedConnection {
                    id: connection_id,
                    received_at: now,
                });
                self.retransmits = 0;
                self.need_send = true;
                Ok(None)
            }
            (
                Step::Request,
                UdpResponse::Announce {
                    interval,
                    leechers,
                    seeders,
                    peers,
                    ..
                },
                UdpGoal::Announce(_),
            ) => announce_response(interval, leechers, seeders, peers)
                .map(|r| Some(UdpOutcome::Announce(r))),
            (Step::Request, UdpResponse::Scrape { stats, .. }, UdpGoal::Scrape(hashes)) => {
                if stats.len() != hashes.len() {
                    return Err(TrackerError::UdpScrapeCount {
                        asked: hashes.len(),
                        got: stats.len(),
                    });
                }
                Ok(Some(UdpOutcome::Scrape(stats)))
            }
            _ => Err(TrackerError::UdpUnexpected {
                what: "a reply of another kind than the request",
            }),
        }
    }

    fn request(&self, connection_id: ConnectionId, transaction_id: TransactionId) -> UdpRequest {
        match &self.goal {
            UdpGoal::Announce(a) => UdpRequest::Announce(UdpAnnounce {
                connection_id,
                transaction_id,
                info_hash: a.info_hash,
                peer_id: a.peer_id,
                downloaded: a.downloaded,
                left: a.left,
                uploaded: a.uploaded,
                event: match a.event {
                    Event::None => 0,
                    Event::Completed => 1,
                    Event::Started => 2,
                    Event::Stopped => 3,
                },
                ip: 0,
                key: a.key,
                num_want: a.numwant.map_or(-1, |n| n.min(i32::MAX as u32) as i32),
                port: a.port,
            }),
            UdpGoal::Scrape(hashes) => UdpRequest::Scrape {
                connection_id,
                transaction_id,
                info_hashes: hashes.clone(),
            },
        }
    }

    fn retransmit_wait(&self) -> Duration {
        RETRANSMIT_FIRST * (1u32 << self.retransmits.min(8))
    }

    /// xorshift64: transaction ids need to be unpredictable to an off-path spoofer only as
    /// much as the shell's seed is; the core draws no entropy itself.
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// Turns a decoded announce response into the scheduler's reply form, enforcing
/// [`PEERS_MAX`] and dropping port-0 entries.
pub fn announce_response(
    interval: u32,
    leechers: u32,
    seeders: u32,
    peers: Vec<std::net::SocketAddr>,
) -> Result<AnnounceResponse, TrackerError> {
    if peers.len() > PEERS_MAX {
        return Err(TrackerError::TooManyPeers {
            count: peers.len(),
            max: PEERS_MAX,
        });
    }
    let mut peers = peers;
    peers.retain(|p| p.port() != 0);
    Ok(AnnounceResponse {
        interval_secs: Some(interval),
        min_interval_secs: None,
        tracker_id: None,
        complete: Some(seeders),
        incomplete: Some(leechers),
        warning: None,
        peers,
    })
}
