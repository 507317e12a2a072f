//! The tracker announcer shared by `seed` and `get`: one control thread that announces every
//! torrent to its trackers on the scheduler's timetable, with progress read from the
//! caller, and hands the peers it learns to a caller-supplied sink (the shards' mailboxes).
//!
//! Control plane, not data path: blocking HTTP (ureq) and UDP (BEP 15) exchanges on its own
//! thread, a few requests per torrent per half hour. Each announce walks the torrent's BEP 12
//! tiers (shuffled once) until a tracker answers, and that tracker moves to the front of its
//! tier; `stopped` goes only to the tracker at the front, which is the one that knows us.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::metainfo::{InfoHash, PeerId};
use crate::time::{Clock, Instant};
use crate::tracker::udp::{exchange_blocking, UdpConnections};
use crate::tracker::udp_client::{UdpGoal, UdpOutcome};
use crate::tracker::{
    announce_url, http::announce_blocking, parse_response, AnnounceParams, AnnounceRequest,
    AnnounceResponse, AnnounceScheduler, Event, Progress, TrackerError, TrackerKind, TrackerTiers,
};

/// Time allowed for one announce round trip.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for the `stopped` announces at shutdown (all torrents together).
pub const STOPPED_TIMEOUT: Duration = Duration::from_secs(3);
/// Time allowed for one UDP announce: sends at 0 and 15 s (BEP 15's first two waits), then
/// the scheduler's own back-off takes over rather than BEP 15's hour of retransmissions.
pub const UDP_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(45);
/// Sends of one UDP step within [`UDP_ANNOUNCE_TIMEOUT`].
pub const UDP_ATTEMPTS: u32 = 2;
/// Peers asked for per announce.
pub const NUMWANT: u32 = 200;

/// What the announcer needs to know about us.
#[derive(Clone, Debug)]
pub struct AnnouncerConfig {
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port peers should connect to.
    pub port: u16,
    /// Our own listen addresses (tracker replies that name us are skipped).
    pub own_addrs: Vec<SocketAddr>,
}

/// How the announcer reads a torrent's progress (uploaded, downloaded, left).
pub type ProgressFn = Box<dyn Fn() -> Progress + Send>;
/// Where the announcer delivers the peers a tracker returned.
pub type PeerSink = Box<dyn FnMut(InfoHash, &[SocketAddr]) + Send>;

/// One torrent to announce.
pub struct Announced {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its name, for logs.
    pub name: String,
    /// Its tracker tiers (BEP 12 order); `http(s)://` and `udp://` URLs are used.
    pub trackers: Vec<Vec<String>>,
    /// Its progress, read before every announce.
    pub progress: ProgressFn,
}

struct Tracked {
    info_hash: InfoHash,
    name: String,
    progress: ProgressFn,
    tiers: TrackerTiers,
    scheduler: AnnounceScheduler,
}

/// Starts the announcer thread; it sends `stopped` to every tracker and exits once `stop` is
/// set. Returns `None` when no torrent has an HTTP or UDP tracker.
pub fn spawn(
    torrents: Vec<Announced>,
    cfg: AnnouncerConfig,
    sink: PeerSink,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let clock = Clock::new();
    let now = clock.now();
    let key: u32 = rand::random();
    let tracked: Vec<Tracked> = torrents
        .into_iter()
        .filter_map(|t| {
            let tiers = TrackerTiers::new(&t.trackers, rand::random());
            if tiers.is_empty() {
                return None;
            }
            let params = AnnounceParams {
                info_hash: t.info_hash,
                peer_id: cfg.peer_id,
                port: cfg.port,
                numwant: Some(NUMWANT),
                key,
            };
            let scheduler = AnnounceScheduler::new(params, (t.progress)(), now);
            Some(Tracked {
                info_hash: t.info_hash,
                name: t.name,
                progress: t.progress,
                tiers,
                scheduler,
            })
        })
        .collect();
    if tracked.is_empty() {
        return None;
    }
    let thread = std::thread::Builder::new()
        .name("announcer".into())
        .spawn(move || run(tracked, cfg, sink, stop, clock))
        .expect("spawn announcer thread");
    Some(thread)
}

fn run(
    mut tracked: Vec<Tracked>,
    cfg: AnnouncerConfig,
    mut sink: PeerSink,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    let mut udp = UdpConnections::default();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for t in &mut tracked {
            t.scheduler.update_progress((t.progress)(), now);
            if let Some(req) = t.scheduler.poll_announce(now) {
                announce_once(t, &req, &cfg, &mut sink, &clock, &mut udp);
            }
        }
        let next = tracked
            .iter()
            .filter_map(|t| t.scheduler.next_announce().map(|(at, _)| at))
            .min();
        sleep_until(next, &clock);
    }
    let now = clock.now();
    for t in &mut tracked {
        t.scheduler.update_progress((t.progress)(), now);
        t.scheduler.shutdown(now);
        if let Some(req) = t.scheduler.poll_announce(now) {
            announce_once(t, &req, &cfg, &mut sink, &clock, &mut udp);
        }
    }
}

fn sleep_until(next: Option<Instant>, clock: &Clock) {
    // Wake at least every 100 ms to notice `stop`.
    let now = clock.now();
    let wait = next.map_or(Duration::from_secs(1), |at| at - now);
    let wait = wait.min(Duration::from_millis(100));
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

fn announce_once(
    t: &mut Tracked,
    req: &AnnounceRequest,
    cfg: &AnnouncerConfig,
    sink: &mut PeerSink,
    clock: &Clock,
    udp: &mut UdpConnections,
) {
    let name = t.name.clone();
    let candidates: Vec<(usize, usize, String)> = t
        .tiers
        .candidates()
        .map(|(tier, i, u)| (tier, i, u.to_owned()))
        .collect();
    let mut answered = None;
    for (tier, index, url) in candidates {
        match announce_to(&url, req, udp) {
            Ok(resp) => {
                answered = Some((tier, index, url, resp));
                break;
            }
            Err(e) => tracing::warn!(torrent = %name, tracker = %url, "announce failed: {e}"),
        }
        if req.event == Event::Stopped {
            break;
        }
    }
    let now = clock.now();
    let Some((tier, index, url, resp)) = answered else {
        t.scheduler.handle_failure(now);
        return;
    };
    t.tiers.promote(tier, index);
    if let Err(e) = t.scheduler.handle_reply(&resp, now) {
        tracing::warn!(torrent = %name, tracker = %url, "{e}");
        return;
    }
    if let Some(w) = &resp.warning {
        tracing::warn!(torrent = %name, tracker = %url, "tracker warning: {w}");
    }
    tracing::info!(
        torrent = %name,
        tracker = %url,
        event = ?req.event,
        peers = resp.peers.len(),
        interval_s = resp.interval_secs,
        "announced"
    );
    let peers: Vec<SocketAddr> = resp
        .peers
        .into_iter()
        .filter(|addr| {
            !cfg.own_addrs
                .iter()
                .any(|own| own.port() == addr.port() && same_host(own, addr))
        })
        .collect();
    sink(t.info_hash, &peers);
}

/// One announce to one tracker, over its URL's transport.
fn announce_to(
    url: &str,
    req: &AnnounceRequest,
    udp: &mut UdpConnections,
) -> Result<AnnounceResponse, TrackerError> {
    let stopping = req.event == Event::Stopped;
    match TrackerKind::of(url) {
        Some(TrackerKind::Http) => {
            let timeout = if stopping {
                STOPPED_TIMEOUT
            } else {
                ANNOUNCE_TIMEOUT
            };
            let body = announce_blocking(&announce_url(url, req)?, timeout)?;
            parse_response(&body)
        }
        Some(TrackerKind::Udp) => {
            let (attempts, timeout) = if stopping {
                (1, STOPPED_TIMEOUT)
            } else {
                (UDP_ATTEMPTS, UDP_ANNOUNCE_TIMEOUT)
            };
            let goal = UdpGoal::Announce(req.clone());
            match exchange_blocking(url, goal, udp, attempts, timeout)? {
                UdpOutcome::Announce(resp) => Ok(resp),
                UdpOutcome::Scrape(_) => Err(TrackerError::UdpUnexpected {
                    what: "a scrape reply to an announce",
                }),
            }
        }
        None => Err(TrackerError::UnsupportedScheme {
            url: url.to_owned(),
        }),
    }
}

/// True when `peer` is `own`'s host (a wildcard listen address matches loopback peers; the
/// session still refuses any other connection to ourselves by peer id).
fn same_host(own: &SocketAddr, peer: &SocketAddr) -> bool {
    (own.ip().is_unspecified() && peer.ip().is_loopback()) || own.ip() == peer.ip()
}
