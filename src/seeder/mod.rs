//! The seeder appliance: many torrents served by thread-per-core shards, a seeding choker
//! per torrent, and tracker announces so standard clients find us.
//!
//! Shell code: it wires the registry of checked torrents, the runtime's shards, the
//! per-shard [`app::SeedApp`] and the [`crate::announcer`] thread together. Decisions stay in the
//! sans-IO core (`peer::Session`, `torrent::SeedChoker`, `tracker::AnnounceScheduler`).

pub mod app;
pub mod conn;
pub mod metrics;
pub mod registry;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as WallInstant};

use anyhow::Context;

pub use app::{AppConfig, SeedApp, SeedCommand};
pub use registry::{load_served, resolve_data_dir, Registry, ServedTorrent};

use crate::announcer::{self, AnnounceCounts, Announced, AnnouncerConfig};
use crate::metainfo::{parse_torrent, PeerId};
use crate::peer::LocalConfig;
use crate::runtime::{spawn_shards, IoKind, RuntimeConfig};
use crate::tracker::Progress;

/// How often the seeder logs a status line.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What `ringseed seed` was asked to do.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// .torrent files, or directories whose .torrent files are all served.
    pub torrents: Vec<PathBuf>,
    /// Where the data lives: a store holding `<name>` of each torrent, or the release itself.
    pub data: PathBuf,
    /// Address to listen on (every shard listens on it with SO_REUSEPORT).
    pub listen: SocketAddr,
    /// Shard threads (0: one per core).
    pub threads: usize,
    /// I/O backend.
    pub io: IoKind,
    /// Upload slots per torrent over the whole process.
    pub upload_slots: usize,
    /// Announce to the torrents' HTTP trackers.
    pub announce: bool,
    /// Peers to connect to at start-up (for every torrent).
    pub peers: Vec<SocketAddr>,
    /// Upload cap over the whole process, bytes per second.
    pub upload_rate: Option<u64>,
    /// Also announce every torrent on the DHT with this node config.
    pub dht: Option<crate::dht_udp::DhtConfig>,
    /// Serve Prometheus/OpenMetrics text at `http://ADDR/metrics`.
    pub metrics: Option<SocketAddr>,
}

/// Loads every torrent named in `opts`; a torrent whose file or data is bad is refused with
/// a logged reason naming the file, and the others still load. When none loads, the error
/// says why: the one reason itself when a single torrent was named, else a count (each
/// reason was logged), so the user always gets a one-line answer.
pub fn load_registry(opts: &SeedOptions) -> anyhow::Result<Registry> {
    let mut files = Vec::new();
    for p in &opts.torrents {
        if p.is_dir() {
            let found = crate::cli::torrents_in(p)?;
            if found.is_empty() {
                tracing::warn!("no .torrent file in {}", p.display());
            }
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    if files.is_empty() {
        anyhow::bail!("no .torrent file to seed in the paths given");
    }
    let mut registry = Registry::default();
    let mut refused = 0;
    for path in &files {
        match load_one(path, &opts.data) {
            Ok(t) => {
                let name = t.name().to_owned();
                let hash = t.meta.info_hash;
                if registry.insert(t) {
                    tracing::info!(torrent = %name, info_hash = %hash, "loaded {}", path.display());
                } else {
                    tracing::warn!("{} is a duplicate of a loaded torrent", path.display());
                }
            }
            // With a single torrent the error below is the whole answer: do not say it twice.
            Err(e) if files.len() == 1 => {
                return Err(e.context(format!("refusing {}", path.display())));
            }
            Err(e) => {
                refused += 1;
                let reason = crate::cli::error_line(&e);
                tracing::error!("refusing {}: {reason}", path.display());
            }
        }
    }
    if registry.is_empty() {
        anyhow::bail!(
            "no torrent could be loaded: {refused} of {} refused (reasons above)",
            files.len()
        );
    }
    Ok(registry)
}

fn load_one(path: &Path, data: &Path) -> anyhow::Result<ServedTorrent> {
    let bytes = crate::cli::read_torrent_file(path)?;
    let meta = parse_torrent(&bytes).context("not a valid torrent")?;
    load_served(meta, path, data)
}

/// Seeds until `stop` is set (or a shard dies), then announces `stopped` and returns.
pub fn run(opts: SeedOptions, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let registry = Arc::new(load_registry(&opts)?);
    let peer_id = PeerId::generate();
    let shards = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    let initial_peers = registry
        .torrents
        .iter()
        .flat_map(|t| opts.peers.iter().map(move |a| (t.meta.info_hash, *a)))
        .collect();
    let announce_counts = Arc::new(AnnounceCounts::default());
    let metrics = opts.metrics.map(|_| {
        Arc::new(metrics::SeedMetrics::new(
            shards,
            registry.clone(),
            announce_counts.clone(),
        ))
    });
    let app_cfg = AppConfig {
        metrics: metrics.clone(),
        local: LocalConfig {
            peer_id,
            listen_port: Some(opts.listen.port()),
        },
        upload_slots: opts.upload_slots,
        shards,
        initial_peers,
        upload_rate: opts.upload_rate,
        source_ip: Some(opts.listen.ip()).filter(|ip| !ip.is_unspecified()),
    };
    let rt_cfg = RuntimeConfig {
        shards,
        io: opts.io,
        listen: vec![opts.listen],
        ..RuntimeConfig::default()
    };
    let reg = registry.clone();
    let mut runtime = spawn_shards(rt_cfg, move |info| {
        SeedApp::new(info.index, reg.clone(), app_cfg.clone())
    })?;
    let local = runtime.local_addrs().to_vec();
    let port = local.first().map_or(opts.listen.port(), SocketAddr::port);
    tracing::info!(
        "seeding {} torrent(s) on {} with {} shard(s) ({:?})",
        registry.len(),
        local
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        runtime.shard_count(),
        runtime.io_kind()
    );
    let metrics_server = match (opts.metrics, &metrics) {
        (Some(addr), Some(m)) => {
            let server = crate::metrics::MetricsServer::spawn(
                addr,
                "seed-metrics",
                Arc::new(m.prometheus_registry()),
            )?;
            tracing::info!("metrics at http://{}/metrics", server.local_addr());
            Some(server)
        }
        _ => None,
    };
    let announcer = (opts.announce || opts.dht.is_some())
        .then(|| {
            let cfg = AnnouncerConfig {
                peer_id,
                port,
                own_addrs: local.clone(),
                dht: opts.dht.clone(),
                counts: announce_counts.clone(),
            };
            let torrents = registry
                .torrents
                .iter()
                .map(|t| {
                    let t2 = t.clone();
                    let t3 = t.clone();
                    let slots = opts.upload_slots;
                    Announced {
                        info_hash: t.meta.info_hash,
                        name: t.name().to_owned(),
                        trackers: if opts.announce {
                            t.meta.trackers()
                        } else {
                            Vec::new()
                        },
                        progress: Box::new(move || Progress {
                            uploaded: t2.uploaded.load(Ordering::Relaxed),
                            downloaded: 0,
                            left: 0,
                        }),
                        // Idle upload slots: ask the tracker for more leechers as soon as its
                        // `min interval` allows (the simulator's origin-seeder shows why).
                        wants_peers: Some(Box::new(move || t3.interested() < slots)),
                    }
                })
                .collect();
            let mailboxes = runtime.mailboxes();
            let sink = Box::new(move |info_hash, peers: &[SocketAddr]| {
                for &addr in peers {
                    let cmd = SeedCommand::Connect { info_hash, addr };
                    if let Err(e) = mailboxes.send(app::shard_for(&addr, shards), cmd) {
                        tracing::debug!("peer {addr} not handed to a shard: {e}");
                    }
                }
            });
            announcer::spawn(torrents, cfg, sink, stop.clone())
        })
        .flatten();
    let result = supervise(&mut runtime, &registry, &stop);
    stop.store(true, Ordering::Relaxed);
    if let Some(a) = announcer {
        let _ = a.join();
    }
    runtime.shutdown()?;
    if let Some(server) = metrics_server {
        server.stop();
    }
    report_totals(&registry);
    result
}

fn supervise(
    runtime: &mut crate::runtime::Runtime<SeedCommand>,
    registry: &Registry,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let started = WallInstant::now();
    let mut last_status = WallInstant::now();
    let mut last_uploaded = total_uploaded(registry);
    while !stop.load(Ordering::Relaxed) {
        runtime.check()?;
        std::thread::sleep(Duration::from_millis(100));
        if last_status.elapsed() >= STATUS_INTERVAL {
            let up = total_uploaded(registry);
            let rate = (up - last_uploaded) as f64 / last_status.elapsed().as_secs_f64();
            let peers: usize = registry.torrents.iter().map(|t| t.peers()).sum();
            tracing::info!(
                "status: {peers} peers, uploaded {:.1} MB, {:.1} MB/s, up {:.0} s",
                up as f64 / 1e6,
                rate / 1e6,
                started.elapsed().as_secs_f64()
            );
            last_status = WallInstant::now();
            last_uploaded = up;
        }
    }
    Ok(())
}

fn total_uploaded(registry: &Registry) -> u64 {
    registry
        .torrents
        .iter()
        .map(|t| t.uploaded.load(Ordering::Relaxed))
        .sum()
}

fn report_totals(registry: &Registry) {
    for t in &registry.torrents {
        tracing::info!(
            torrent = t.name(),
            "uploaded {:.1} MB in total",
            t.uploaded.load(Ordering::Relaxed) as f64 / 1e6
        );
    }
}
