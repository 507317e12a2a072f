//! The tracker announcer shared by `seed` and `get`: one control thread that announces every
//! torrent to its trackers on the scheduler's timetable, with progress read from the
//! caller, and hands the peers it learns to a caller-supplied sink (the shards' mailboxes).
//!
//! Control plane, not data path: blocking HTTP (ureq) and UDP (BEP 15) exchanges on its own
//! thread, a few requests per torrent per half hour. Each announce walks the torrent's BEP 12
//! tiers (shuffled once) until a tracker answers, and that tracker moves to the front of its
//! tier; `stopped` goes only to the tracker at the front, which is the one that knows us.
//! With [`AnnouncerConfig::dht`] set, the same thread also runs a DHT node ([`crate::dht`])
//! that announces every torrent and hands the peers it finds to the same sink.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::dht_udp::{Dht, DhtConfig};
use crate::metainfo::{InfoHash, PeerId};
use crate::time::{Clock, Instant};
use crate::tracker::udp_client::{UdpGoal, UdpOutcome};
use crate::tracker::{
    announce_url, parse_response, AnnounceParams, AnnounceRequest, AnnounceResponse,
    AnnounceScheduler, Event, Progress, TrackerError, TrackerKind, TrackerTiers,
};
use crate::tracker_http::announce_blocking;
use crate::tracker_udp::{exchange_blocking, UdpConnections};

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
    /// Also announce and search every torrent on the DHT (BEP 5) with this node config.
    pub dht: Option<DhtConfig>,
    /// Where the announcer counts its announces (read by the metrics endpoint).
    pub counts: Arc<AnnounceCounts>,
}

/// Tracker announces and their failures, over all torrents (relaxed atomics: a few
/// announces per torrent per half hour, read by whoever exports them).
#[derive(Debug, Default)]
pub struct AnnounceCounts {
    /// Announces sent, one per tracker tried (an announce that walks a tier counts each).
    pub attempts: AtomicU64,
    /// Of those, the ones that failed: no or bad answer, or the tracker's failure reason.
    pub errors: AtomicU64,
}

/// How the announcer reads a torrent's progress (uploaded, downloaded, left).
pub type ProgressFn = Box<dyn Fn() -> Progress + Send>;
/// Whether a torrent is short of peers now (polled by the announcer on every wake-up).
pub type WantsPeersFn = Box<dyn Fn() -> bool + Send>;
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
    /// When this says yes, the next regular announce is brought forward to the tracker's
    /// `min interval` after the last one (a downloader out of candidates, a seeder with idle
    /// upload slots). `None`: announce on the interval only.
    pub wants_peers: Option<WantsPeersFn>,
}

/// A progress function read by both the tracker schedule and the DHT (one thread; the
/// mutex only makes the box shareable).
type SharedProgress = Arc<Mutex<ProgressFn>>;

fn read(progress: &SharedProgress) -> Progress {
    (progress.lock().expect("progress"))()
}

struct Tracked {
    info_hash: InfoHash,
    name: String,
    progress: SharedProgress,
    tiers: TrackerTiers,
    scheduler: AnnounceScheduler,
    wants_peers: Option<WantsPeersFn>,
}

/// A torrent on the DHT: announced with our port, searched eagerly while incomplete.
struct DhtTorrent {
    info_hash: InfoHash,
    progress: SharedProgress,
    seeking: Option<bool>,
}

/// Starts the announcer thread; it sends `stopped` to every tracker and exits once `stop` is
/// set. Returns `None` when no torrent has an HTTP or UDP tracker and the DHT is off.
pub fn spawn(
    torrents: Vec<Announced>,
    cfg: AnnouncerConfig,
    sink: PeerSink,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let clock = Clock::new();
    let now = clock.now();
    let key: u32 = rand::random();
    let sink = Arc::new(Mutex::new(sink));
    let torrents: Vec<(Announced, SharedProgress)> = torrents
        .into_iter()
        .map(|t| {
            let Announced {
                info_hash,
                name,
                trackers,
                progress,
                wants_peers,
            } = t;
            let shared = Arc::new(Mutex::new(progress));
            let nothing: ProgressFn = Box::new(Progress::default);
            let t = Announced {
                info_hash,
                name,
                trackers,
                progress: nothing,
                wants_peers,
            };
            (t, shared)
        })
        .collect();
    let dht = cfg
        .dht
        .clone()
        .and_then(|d| start_dht(d, &cfg, sink.clone()));
    let dht_torrents: Vec<DhtTorrent> = match dht {
        Some(_) => torrents
            .iter()
            .map(|(t, p)| DhtTorrent {
                info_hash: t.info_hash,
                progress: p.clone(),
                seeking: None,
            })
            .collect(),
        None => Vec::new(),
    };
    let tracked: Vec<Tracked> = torrents
        .into_iter()
        .filter_map(|(t, progress)| {
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
            let scheduler = AnnounceScheduler::new(params, read(&progress), now);
            Some(Tracked {
                info_hash: t.info_hash,
                name: t.name,
                progress,
                tiers,
                scheduler,
                wants_peers: t.wants_peers,
            })
        })
        .collect();
    if tracked.is_empty() && dht.is_none() {
        return None;
    }
    let dht = dht.map(|d| (d, dht_torrents));
    let thread = std::thread::Builder::new()
        .name("announcer".into())
        .spawn(move || run(tracked, dht, cfg, sink, stop, clock))
        .expect("spawn announcer thread");
    Some(thread)
}

/// Starts the DHT node whose peers go to `sink` (minus our own addresses); a node that
/// cannot start is logged and left out (trackers still work).
fn start_dht(dht_cfg: DhtConfig, cfg: &AnnouncerConfig, sink: Arc<Mutex<PeerSink>>) -> Option<Dht> {
    let own = cfg.own_addrs.clone();
    let dht_sink = Box::new(move |ih: InfoHash, peers: &[SocketAddr]| {
        let peers: Vec<SocketAddr> = peers.iter().copied().filter(|a| !is_own(&own, a)).collect();
        if !peers.is_empty() {
            (sink.lock().expect("peer sink"))(ih, &peers);
        }
    });
    match Dht::start(dht_cfg, dht_sink) {
        Ok(d) => Some(d),
        Err(e) => {
            tracing::error!("DHT not started: {e:#}");
            None
        }
    }
}

/// Tells the DHT about each torrent, again whenever it turns from incomplete to complete.
fn update_dht(dht: &mut (Dht, Vec<DhtTorrent>), port: u16) {
    let (node, torrents) = dht;
    for t in torrents {
        let seeking = read(&t.progress).left > 0;
        if t.seeking != Some(seeking) {
            t.seeking = Some(seeking);
            node.track(t.info_hash, Some(port), seeking);
        }
    }
}

fn run(
    mut tracked: Vec<Tracked>,
    mut dht: Option<(Dht, Vec<DhtTorrent>)>,
    cfg: AnnouncerConfig,
    sink: Arc<Mutex<PeerSink>>,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    let mut udp = UdpConnections::default();
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        if let Some(d) = &mut dht {
            update_dht(d, cfg.port);
        }
        for t in &mut tracked {
            t.scheduler.update_progress(read(&t.progress), now);
            if t.wants_peers.as_ref().is_some_and(|w| w()) {
                t.scheduler.announce_soon(now);
            }
            if let Some(req) = t.scheduler.poll_announce(now) {
                announce_once(t, &req, &cfg, &sink, &clock, &mut udp);
            }
        }
        let next = tracked
            .iter()
            .filter_map(|t| t.scheduler.next_announce().map(|(at, _)| at))
            .min();
        sleep_until(next, &clock);
    }
    if let Some((node, _)) = dht {
        node.shutdown();
    }
    let now = clock.now();
    for t in &mut tracked {
        t.scheduler.update_progress(read(&t.progress), now);
        t.scheduler.shutdown(now);
        if let Some(req) = t.scheduler.poll_announce(now) {
            announce_once(t, &req, &cfg, &sink, &clock, &mut udp);
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
    sink: &Mutex<PeerSink>,
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
        cfg.counts.attempts.fetch_add(1, Ordering::Relaxed);
        match announce_to(&url, req, udp) {
            Ok(resp) => {
                answered = Some((tier, index, url, resp));
                break;
            }
            Err(e) => {
                cfg.counts.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(torrent = %name, tracker = %url, "announce failed: {e}");
            }
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
        cfg.counts.errors.fetch_add(1, Ordering::Relaxed);
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
        .filter(|addr| !is_own(&cfg.own_addrs, addr))
        .collect();
    (sink.lock().expect("peer sink"))(t.info_hash, &peers);
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

/// True when `addr` is one of our own listen addresses.
fn is_own(own_addrs: &[SocketAddr], addr: &SocketAddr) -> bool {
    own_addrs
        .iter()
        .any(|own| own.port() == addr.port() && same_host(own, addr))
}

/// True when `peer` is `own`'s host (a wildcard listen address matches loopback peers; the
/// session still refuses any other connection to ourselves by peer id).
fn same_host(own: &SocketAddr, peer: &SocketAddr) -> bool {
    (own.ip().is_unspecified() && peer.ip().is_loopback()) || own.ip() == peer.ip()
}
