//! The tracker announcer shared by `seed` and `get`: one control thread that announces every
//! torrent to its HTTP tracker on the scheduler's timetable, with progress read from the
//! caller, and hands the peers it learns to a caller-supplied sink (the shards' mailboxes).
//!
//! Control plane, not data path: blocking HTTP (ureq) on its own thread, a few requests per
//! torrent per half hour. Only `http(s)://` trackers for now (UDP and BEP 12 tier rotation
//! come with the peer-discovery issue): the first HTTP URL in tier order is used.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::metainfo::{InfoHash, PeerId};
use crate::time::{Clock, Instant};
use crate::tracker::{
    announce_url, http::announce_blocking, AnnounceParams, AnnounceScheduler, Progress,
};

/// Time allowed for one announce round trip.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed for the `stopped` announces at shutdown (all torrents together).
pub const STOPPED_TIMEOUT: Duration = Duration::from_secs(3);
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
    /// Its tracker tiers (BEP 12 order); the first HTTP(S) URL is used.
    pub trackers: Vec<Vec<String>>,
    /// Its progress, read before every announce.
    pub progress: ProgressFn,
}

struct Tracked {
    info_hash: InfoHash,
    name: String,
    progress: ProgressFn,
    url: String,
    scheduler: AnnounceScheduler,
}

/// Starts the announcer thread; it sends `stopped` to every tracker and exits once `stop` is
/// set. Returns `None` when no torrent has an HTTP tracker.
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
            let url = t
                .trackers
                .iter()
                .flatten()
                .find(|u| u.starts_with("http://") || u.starts_with("https://"))?
                .clone();
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
                url,
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
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for t in &mut tracked {
            t.scheduler.update_progress((t.progress)(), now);
            if let Some(req) = t.scheduler.poll_announce(now) {
                announce_once(t, &req, &cfg, &mut sink, &clock, ANNOUNCE_TIMEOUT);
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
            announce_once(t, &req, &cfg, &mut sink, &clock, STOPPED_TIMEOUT);
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
    req: &crate::tracker::AnnounceRequest,
    cfg: &AnnouncerConfig,
    sink: &mut PeerSink,
    clock: &Clock,
    timeout: Duration,
) {
    let name = t.name.clone();
    let url = match announce_url(&t.url, req) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(torrent = %name, tracker = %t.url, "cannot announce: {e}");
            t.scheduler.handle_failure(clock.now());
            return;
        }
    };
    let reply = announce_blocking(&url, timeout);
    let now = clock.now();
    let body = match reply {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(torrent = %name, tracker = %t.url, "announce failed: {e}");
            t.scheduler.handle_failure(now);
            return;
        }
    };
    match t.scheduler.handle_response(&body, now) {
        Ok(resp) => {
            if let Some(w) = &resp.warning {
                tracing::warn!(torrent = %name, tracker = %t.url, "tracker warning: {w}");
            }
            tracing::info!(
                torrent = %name,
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
        Err(e) => tracing::warn!(torrent = %name, tracker = %t.url, "bad tracker reply: {e}"),
    }
}

/// True when `peer` is `own`'s host (a wildcard listen address matches loopback peers; the
/// session still refuses any other connection to ourselves by peer id).
fn same_host(own: &SocketAddr, peer: &SocketAddr) -> bool {
    (own.ip().is_unspecified() && peer.ip().is_loopback()) || own.ip() == peer.ip()
}
