//! `ringseed get`: the downloading peer. One torrent per process, on one shard (per-torrent
//! state lives on one owner shard; one shard moves >3 GB/s), with hash workers, a resume
//! writer and the tracker announcer as control-plane threads. See `docs/design/get.md`.
//!
//! Shell code: wires `storage` (files, resume), `runtime` (the shard), `announcer` and the
//! per-shard [`app::GetApp`], which drives the sans-IO policy in `torrent` and `peer`.

pub mod app;
pub mod conn;
pub mod display;
pub mod hasher;
pub mod magnet;
pub mod stats;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

use anyhow::Context;

pub use app::{GetApp, SeedPolicy};
pub use stats::GetStats;

use crate::announcer::{self, Announced, AnnouncerConfig};
use crate::hash::Progress as HashProgress;
use crate::metainfo::{Metainfo, PeerId, PieceIndex};
use crate::peer::{LocalConfig, PieceSet, TorrentShared};
use crate::runtime::{spawn_shards, IoKind, RuntimeConfig, ShardLimits};
use crate::storage::resume::{recheck, ResumeData};
use crate::storage::{DownloadStorage, Preallocate};
use crate::torrent::{Picker, Swarm, SwarmConfig};
use crate::tracker::Progress;
use crate::wire::Bitfield;

/// How often the resume file is rewritten while pieces keep arriving.
pub const RESUME_INTERVAL: Duration = Duration::from_secs(3);
/// Write buffers of the download shard: 16 MiB of blocks received but not yet in the page
/// cache; request pipelines are capped by the free ones.
pub const WRITE_BUFS: usize = 1024;

/// Messages to the download shard.
#[derive(Debug)]
pub enum GetCommand {
    /// A hash worker's verdict; a good piece is already durable.
    Hashed {
        /// The piece.
        piece: PieceIndex,
        /// SHA-1 matched and the data is on stable storage.
        good: bool,
    },
    /// Peers from a tracker.
    AddPeers(Vec<SocketAddr>),
}

/// What `start` hands the shard: the torrent, our pieces, files, identity.
pub struct SharedSetup {
    /// The torrent.
    pub torrent: Arc<TorrentShared>,
    /// Pieces we have at start.
    pub have: PieceSet,
    /// One read-write handle per file (`None`: zero-length).
    pub files: Vec<Option<std::fs::File>>,
    /// Our identity on the wire.
    pub local: LocalConfig,
}

/// What `ringseed get` was asked to do.
#[derive(Clone, Debug)]
pub struct GetOptions {
    /// The torrent.
    pub meta: Metainfo,
    /// Where the files go (`<out>/<name>`), and the resume data (`<out>/.ringseed/`).
    pub out_dir: PathBuf,
    /// Listen address (peers may connect to us; we serve verified pieces).
    pub listen: SocketAddr,
    /// I/O backend.
    pub io: IoKind,
    /// When to stop seeding after completion.
    pub seed: SeedPolicy,
    /// Connection limits and timings.
    pub swarm: SwarmConfig,
    /// Peers to dial at start.
    pub peers: Vec<SocketAddr>,
    /// Announce to the torrent's HTTP tracker.
    pub announce: bool,
    /// Hash worker threads.
    pub hash_threads: usize,
    /// Status output: JSON lines instead of a progress bar.
    pub json: bool,
    /// Download rate cap in bytes per second.
    pub rate_limit: Option<u64>,
    /// Upload cap, bytes per second.
    pub upload_limit: Option<u64>,
    /// Send PEX messages (BEP 11) to peers.
    pub pex: bool,
    /// Also find peers on (and announce to) the DHT with this node config.
    pub dht: Option<crate::dht_udp::DhtConfig>,
}

/// Where the resume data of `meta` lives under `out_dir`.
pub fn resume_path(out_dir: &Path, meta: &Metainfo) -> PathBuf {
    out_dir
        .join(".ringseed")
        .join(format!("{}.resume", meta.info_hash.to_hex()))
}

/// The verified pieces to start from: trusted resume data, or a recheck of what is on disk.
fn starting_pieces(
    meta: &Metainfo,
    storage: &DownloadStorage,
    out_dir: &Path,
    threads: usize,
) -> anyhow::Result<Bitfield> {
    let layout = meta.info.layout();
    let path = resume_path(out_dir, meta);
    let untrusted = match ResumeData::load(&path) {
        Ok(Some(resume)) => match resume.validate(meta.info_hash, &layout, storage.found()) {
            Ok(bits) => {
                tracing::info!(pieces = bits.count(), "resume data trusted");
                return Ok(bits.clone());
            }
            Err(why) => format!("resume data not trusted ({why:?})"),
        },
        Ok(None) => String::new(),
        Err(e) => format!("resume data unreadable ({e})"),
    };
    let existing = storage
        .found()
        .iter()
        .any(|f| f.is_some_and(|f| f.size > 0));
    if !existing {
        return Ok(Bitfield::empty(layout.piece_count()));
    }
    tracing::info!("{untrusted}; rechecking the data on disk");
    let bits = recheck(
        &meta.info,
        out_dir,
        threads,
        &HashProgress::stderr_bar("rechecking"),
    )?;
    tracing::info!(pieces = bits.count(), "recheck done");
    Ok(bits)
}

fn save_resume(
    meta: &Metainfo,
    storage: &DownloadStorage,
    path: &Path,
    have: Bitfield,
) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    ResumeData::capture(meta.info_hash, have, storage)?.save(path)?;
    Ok(())
}

/// Downloads (and then seeds per the policy) until finished or `stop` is set.
pub fn run(opts: GetOptions, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<GetStats>> {
    let meta = &opts.meta;
    let layout = meta.info.layout();
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("cannot create {}", opts.out_dir.display()))?;
    let storage = Arc::new(DownloadStorage::prepare(
        &meta.info,
        &opts.out_dir,
        Preallocate::Sparse,
    )?);
    let have = starting_pieces(meta, &storage, &opts.out_dir, opts.hash_threads)?;
    let resume = resume_path(&opts.out_dir, meta);
    save_resume(meta, &storage, &resume, have.clone())?;
    let left: u64 = layout
        .pieces()
        .filter(|p| !have.get(*p))
        .map(|p| u64::from(layout.piece_len(p)))
        .sum();
    let stats = Arc::new(GetStats::new(&have, left));
    let peer_id = PeerId::generate();
    let files = |s: &DownloadStorage| -> anyhow::Result<Vec<Option<std::fs::File>>> {
        (0..s.file_count())
            .map(|i| {
                if s.layout().file_length(i) == 0 {
                    Ok(None)
                } else {
                    Ok(Some(s.clone_file(i)?))
                }
            })
            .collect()
    };
    let have_set = if have.is_full() {
        PieceSet::All
    } else if have.count() == 0 {
        PieceSet::Empty
    } else {
        PieceSet::Partial(have.clone())
    };
    let setup = SharedSetup {
        torrent: Arc::new(TorrentShared::from_metainfo(meta)),
        have: have_set,
        files: files(&storage)?,
        local: LocalConfig {
            peer_id,
            listen_port: Some(opts.listen.port()),
        },
    };
    let hasher_files = files(&storage)?;
    let picker = Picker::new(&layout, have, rand::random());
    let mut swarm = Swarm::new(opts.swarm);
    swarm.set_own_addrs([opts.listen]);
    let parts = Mutex::new(Some((setup, picker, hasher_files, swarm)));
    let (stats2, policy, hashes) = (stats.clone(), opts.seed, meta.info.pieces.clone());
    let (peers, threads, layout2) = (opts.peers.clone(), opts.hash_threads.max(1), layout.clone());
    let (rate_limit, upload_limit, pex) = (opts.rate_limit, opts.upload_limit, opts.pex);
    let rt_cfg = RuntimeConfig {
        shards: 1,
        io: opts.io,
        listen: vec![opts.listen],
        limits: ShardLimits {
            write_bufs: WRITE_BUFS,
            ..ShardLimits::default()
        },
        ..RuntimeConfig::default()
    };
    let mut runtime = spawn_shards(rt_cfg, move |info| {
        let (setup, picker, hasher_files, swarm) =
            parts.lock().expect("setup").take().expect("one shard");
        let mailboxes = info.mailboxes.clone();
        let verdicts = Arc::new(move |piece, good| {
            let _ = mailboxes.send(0, GetCommand::Hashed { piece, good });
        });
        let hasher = hasher::Hasher::spawn(
            layout2.clone(),
            hashes.clone(),
            hasher_files,
            threads,
            verdicts,
        );
        let mut app = GetApp::new(
            setup,
            picker,
            hasher,
            swarm,
            stats2.clone(),
            policy,
            peers.clone(),
        );
        app.set_rate_limit(rate_limit);
        app.set_upload_limit(upload_limit);
        app.set_pex(pex);
        app
    })?;
    let local = runtime.local_addrs().to_vec();
    tracing::info!(
        "downloading {} ({} pieces, {} missing) into {}; listening on {} ({:?})",
        meta.info.name,
        layout.piece_count(),
        layout.piece_count() - stats.pieces_have.load(Ordering::Relaxed),
        opts.out_dir.display(),
        local
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        runtime.io_kind()
    );
    let announcer = if opts.announce || opts.dht.is_some() {
        let s = stats.clone();
        let short = stats.clone();
        let torrents = vec![Announced {
            info_hash: meta.info_hash,
            name: meta.info.name.clone(),
            trackers: if opts.announce {
                meta.trackers()
            } else {
                Vec::new()
            },
            progress: Box::new(move || Progress {
                uploaded: s.uploaded(),
                downloaded: s.downloaded.load(Ordering::Relaxed),
                left: s.left.load(Ordering::Relaxed),
            }),
            wants_peers: Some(Box::new(move || short.wants_peers.load(Ordering::Relaxed))),
        }];
        let mailboxes = runtime.mailboxes();
        let sink = Box::new(move |_, peers: &[SocketAddr]| {
            let _ = mailboxes.send(0, GetCommand::AddPeers(peers.to_vec()));
        });
        let cfg = AnnouncerConfig {
            peer_id,
            port: local.first().map_or(opts.listen.port(), SocketAddr::port),
            own_addrs: local.clone(),
            dht: opts.dht.clone(),
            counts: Default::default(),
        };
        announcer::spawn(torrents, cfg, sink, stop.clone())
    } else {
        None
    };
    let mut display = display::Display::new(opts.json, layout.piece_count(), layout.total_length());
    let result = watch(&mut runtime, &stats, &stop, &mut display, |have| {
        save_resume(meta, &storage, &resume, have)
    });
    stop.store(true, Ordering::Relaxed);
    if let Some(a) = announcer {
        let _ = a.join();
    }
    let shutdown = runtime.shutdown();
    display.finish(&stats);
    if let Some(have) = stats.have_snapshot() {
        storage.sync_all()?;
        save_resume(meta, &storage, &resume, have)?;
    }
    result?;
    shutdown?;
    Ok(stats)
}

fn watch(
    runtime: &mut crate::runtime::Runtime<GetCommand>,
    stats: &GetStats,
    stop: &AtomicBool,
    display: &mut display::Display,
    mut save: impl FnMut(Bitfield) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut saved_version = stats.version.load(Ordering::Acquire);
    let mut last_save = WallInstant::now();
    let mut last_show = WallInstant::now();
    while !stop.load(Ordering::Relaxed) && !stats.finished.load(Ordering::Relaxed) {
        runtime.check()?;
        std::thread::sleep(Duration::from_millis(100));
        let version = stats.version.load(Ordering::Acquire);
        if version != saved_version && last_save.elapsed() >= RESUME_INTERVAL {
            if let Some(have) = stats.have_snapshot() {
                save(have)?;
            }
            saved_version = version;
            last_save = WallInstant::now();
        }
        if last_show.elapsed() >= Duration::from_secs(1) {
            display.show(stats);
            last_show = WallInstant::now();
        }
    }
    Ok(())
}
