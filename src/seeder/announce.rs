//! The seeder's tracker announcer: one control thread that announces every torrent to its
//! HTTP tracker on the scheduler's timetable and hands the peers it learns to the shards.
//!
//! Control plane, not data path: blocking HTTP (ureq) on its own thread, a few requests per
//! torrent per half hour. Only `http(s)://` trackers for now (UDP and BEP 12 tier rotation
//! come with the peer-discovery issue): the first HTTP URL in tier order is used.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::app::{shard_for, SeedCommand};
use super::registry::{Registry, ServedTorrent};
use crate::metainfo::PeerId;
use crate::runtime::Mailboxes;
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
    /// Number of shards (peers are spread over them by address).
    pub shards: usize,
}

struct Tracked {
    torrent: Arc<ServedTorrent>,
    url: String,
    scheduler: AnnounceScheduler,
}

/// Starts the announcer thread; it sends `stopped` to every tracker and exits once `stop` is
/// set. Returns `None` when no torrent has an HTTP tracker.
pub fn spawn(
    registry: Arc<Registry>,
    cfg: AnnouncerConfig,
    mailboxes: Mailboxes<SeedCommand>,
    stop: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    let clock = Clock::new();
    let now = clock.now();
    let key: u32 = rand::random();
    let tracked: Vec<Tracked> = registry
        .torrents
        .iter()
        .filter_map(|t| {
            let url = t
                .meta
                .trackers()
                .into_iter()
                .flatten()
                .find(|u| u.starts_with("http://") || u.starts_with("https://"))?;
            let params = AnnounceParams {
                info_hash: t.meta.info_hash,
                peer_id: cfg.peer_id,
                port: cfg.port,
                numwant: Some(NUMWANT),
                key,
            };
            let scheduler = AnnounceScheduler::new(params, progress(t), now);
            Some(Tracked {
                torrent: t.clone(),
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
        .spawn(move || run(tracked, cfg, mailboxes, stop, clock))
        .expect("spawn announcer thread");
    Some(thread)
}

fn progress(t: &ServedTorrent) -> Progress {
    Progress {
        uploaded: t.uploaded.load(Ordering::Relaxed),
        downloaded: 0,
        left: 0,
    }
}

fn run(
    mut tracked: Vec<Tracked>,
    cfg: AnnouncerConfig,
    mailboxes: Mailboxes<SeedCommand>,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    while !stop.load(Ordering::Relaxed) {
        let now = clock.now();
        for t in &mut tracked {
            t.scheduler.update_progress(progress(&t.torrent), now);
            if let Some(req) = t.scheduler.poll_announce(now) {
                announce_once(t, &req, &cfg, &mailboxes, &clock, ANNOUNCE_TIMEOUT);
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
        t.scheduler.update_progress(progress(&t.torrent), now);
        t.scheduler.shutdown(now);
        if let Some(req) = t.scheduler.poll_announce(now) {
            announce_once(t, &req, &cfg, &mailboxes, &clock, STOPPED_TIMEOUT);
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
    mailboxes: &Mailboxes<SeedCommand>,
    clock: &Clock,
    timeout: Duration,
) {
    let name = t.torrent.name().to_owned();
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
            for addr in resp.peers {
                if cfg
                    .own_addrs
                    .iter()
                    .any(|own| own.port() == addr.port() && same_host(own, &addr))
                {
                    continue;
                }
                let cmd = SeedCommand::Connect {
                    info_hash: t.torrent.meta.info_hash,
                    addr,
                };
                if let Err(e) = mailboxes.send(shard_for(&addr, cfg.shards), cmd) {
                    tracing::debug!("peer {addr} not handed to a shard: {e}");
                }
            }
        }
        Err(e) => tracing::warn!(torrent = %name, tracker = %t.url, "bad tracker reply: {e}"),
    }
}

/// True when `peer` is `own`'s host (a wildcard listen address matches loopback peers; the
/// session still refuses any other connection to ourselves by peer id).
fn same_host(own: &SocketAddr, peer: &SocketAddr) -> bool {
    (own.ip().is_unspecified() && peer.ip().is_loopback()) || own.ip() == peer.ip()
}
