//! The seeder's per-shard application: accepts peers, registers the torrents' files with the
//! shard, runs one seeding choker per torrent over this shard's peers, and connects out to
//! peers the tracker announcer hands over.
//!
//! Slots are split between shards (each shard chokes its own peers with `slots / shards`):
//! no shared state on the data path, at the cost of slots being balanced only as well as
//! `SO_REUSEPORT` balances connections.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{SeedConn, ShardTorrent, ShardTorrents};
use super::metrics::{SeedMetrics, PUBLISH_INTERVAL};
use super::registry::Registry;
use crate::metainfo::InfoHash;
use crate::peer::LocalConfig;
use crate::runtime::{CloseReason, ConnKey, ShardApp, ShardCtx};
use crate::time::Instant;
use crate::torrent::rate_limit::{SharedBucket, TokenBucket};
use crate::torrent::{ChokerConfig, ChokerPeer, Decision, SeedChoker};

/// How often the shard re-runs the chokers: free slots are refilled within this long of a
/// peer becoming interested; regular rechokes still happen every 10 s.
pub const CHOKE_TICK: Duration = Duration::from_millis(200);

/// Outbound connections one shard keeps open or opening per torrent; tracker replies
/// beyond it are ignored until some close.
pub const OUTBOUND_PER_TORRENT_MAX: usize = 200;

/// Messages to a shard from outside (the tracker announcer).
#[derive(Debug, Clone)]
pub enum SeedCommand {
    /// Connect to this peer for this torrent (a leecher the tracker told us about).
    Connect {
        /// The torrent.
        info_hash: InfoHash,
        /// The peer's address.
        addr: SocketAddr,
    },
}

/// Settings every shard's app shares.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Our identity on the wire.
    pub local: LocalConfig,
    /// Upload slots of each torrent over the whole process.
    pub upload_slots: usize,
    /// Number of shards (for splitting slots).
    pub shards: usize,
    /// Peers to dial at start-up, with their torrent.
    pub initial_peers: Vec<(InfoHash, SocketAddr)>,
    /// Our listen IP when it is a specific one: outbound connections come from it.
    pub source_ip: Option<std::net::IpAddr>,
    /// Upload cap over the whole process, bytes per second (each shard takes its share).
    pub upload_rate: Option<u64>,
    /// Where the shard publishes its counters for `/metrics`, if exported.
    pub metrics: Option<Arc<SeedMetrics>>,
}

/// The shard which dials `addr`: the same peer always goes to the same shard, so one shard
/// sees every attempt and can skip duplicates.
pub fn shard_for(addr: &SocketAddr, shards: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    addr.hash(&mut h);
    (h.finish() % shards.max(1) as u64) as usize
}

/// One shard's seeding application.
pub struct SeedApp {
    shard: usize,
    registry: Arc<Registry>,
    cfg: AppConfig,
    torrents: ShardTorrents,
    chokers: HashMap<InfoHash, SeedChoker<ConnKey>>,
    outbound: HashMap<ConnKey, (InfoHash, SocketAddr)>,
    dialled: HashSet<(InfoHash, SocketAddr)>,
    scratch_peers: HashMap<InfoHash, Vec<ChokerPeer<ConnKey>>>,
    decisions: Vec<(ConnKey, Decision)>,
    upload_bucket: Option<SharedBucket>,
    /// When the shard next copies its counters to `cfg.metrics`.
    next_publish: Instant,
}

impl SeedApp {
    /// The app for shard `shard`.
    pub fn new(shard: usize, registry: Arc<Registry>, cfg: AppConfig) -> SeedApp {
        let upload_bucket = cfg.upload_rate.map(|total| {
            let share = total / cfg.shards.max(1) as u64;
            // A quarter second of burst, and at least one block.
            let burst = share / 4 + u64::from(crate::metainfo::BLOCK_BYTES);
            Rc::new(std::cell::RefCell::new(TokenBucket::new(share, burst)))
        });
        SeedApp {
            upload_bucket,
            shard,
            registry,
            cfg,
            torrents: Rc::new(HashMap::new()),
            chokers: HashMap::new(),
            outbound: HashMap::new(),
            dialled: HashSet::new(),
            scratch_peers: HashMap::new(),
            decisions: Vec::new(),
            next_publish: Instant::ZERO,
        }
    }

    /// Publishes this shard's counters at most once per [`PUBLISH_INTERVAL`] (a copy of a
    /// few hundred bytes under a lock that is never waited for).
    fn publish_metrics(&mut self, ctx: &ShardCtx<'_, SeedConn>, now: Instant) {
        let Some(metrics) = &self.cfg.metrics else {
            return;
        };
        if now < self.next_publish {
            return;
        }
        if metrics.publish(self.shard, ctx.stats(), ctx.connection_count()) {
            self.next_publish = now + PUBLISH_INTERVAL;
        }
    }

    fn connect(&mut self, ctx: &mut ShardCtx<'_, SeedConn>, info_hash: InfoHash, addr: SocketAddr) {
        if self.dialled.contains(&(info_hash, addr)) {
            return;
        }
        let open = self
            .outbound
            .values()
            .filter(|(h, _)| *h == info_hash)
            .count();
        if open >= OUTBOUND_PER_TORRENT_MAX {
            return;
        }
        let Some(torrent) = self.torrents.get(&info_hash).cloned() else {
            return;
        };
        let now = ctx.now();
        let conn = SeedConn::outbound(
            self.torrents.clone(),
            torrent,
            self.cfg.local,
            self.upload_bucket.clone(),
            now,
        );
        let source = self
            .cfg
            .source_ip
            .filter(|ip| ip.is_ipv4() == addr.is_ipv4());
        match ctx.connect(addr, source, conn) {
            Ok(key) => {
                tracing::debug!(%addr, torrent = %info_hash, "connecting out");
                self.outbound.insert(key, (info_hash, addr));
                self.dialled.insert((info_hash, addr));
            }
            Err(_) => tracing::debug!(%addr, "shard full; not connecting"),
        }
    }

    fn choke(&mut self, ctx: &mut ShardCtx<'_, SeedConn>, now: Instant) {
        for peers in self.scratch_peers.values_mut() {
            peers.clear();
        }
        let mut useless = Vec::new();
        for key in ctx.keys().collect::<Vec<_>>() {
            // Read-only: `get_mut` would make the shard poll every connection for output.
            let Some(conn) = ctx.get(key) else {
                continue;
            };
            let Some(t) = conn.torrent() else { continue };
            let info_hash = t.served.meta.info_hash;
            let s = conn.session();
            if s.is_active() && s.peer_is_seed() {
                // Two seeds have nothing to trade.
                useless.push(key);
                continue;
            }
            let peer = ChokerPeer {
                key,
                interested: s.peer_interested(),
                choked: s.am_choking(),
                upload_rate: s.upload_rate(now),
            };
            self.scratch_peers.entry(info_hash).or_default().push(peer);
        }
        for key in useless {
            ctx.close(key, "peer is a seed too");
        }
        let slots = self
            .cfg
            .upload_slots
            .div_ceil(self.cfg.shards.max(1))
            .max(1);
        for (info_hash, peers) in &self.scratch_peers {
            let choker = self.chokers.entry(*info_hash).or_insert_with(|| {
                let cfg = ChokerConfig {
                    upload_slots: slots,
                    ..ChokerConfig::default()
                };
                SeedChoker::new(cfg, rand::random())
            });
            self.decisions.clear();
            choker.tick(now, peers, &mut self.decisions);
            for &(key, decision) in &self.decisions {
                if let Some(conn) = ctx.get_mut(key) {
                    conn.set_choked(decision == Decision::Choke, now);
                }
            }
        }
        for t in &self.registry.torrents {
            let peers = self.scratch_peers.get(&t.meta.info_hash);
            let n = peers.map_or(0, Vec::len);
            let interested = peers.map_or(0, |p| p.iter().filter(|p| p.interested).count());
            t.set_peers(self.shard, n, interested);
        }
    }
}

impl ShardApp for SeedApp {
    type Conn = SeedConn;
    type Command = SeedCommand;

    fn start(&mut self, ctx: &mut ShardCtx<'_, SeedConn>, _now: Instant) {
        let mut map = HashMap::new();
        for t in &self.registry.torrents {
            let mut files = Vec::with_capacity(t.storage.file_count());
            for i in 0..t.storage.file_count() {
                let id = match t.storage.clone_file(i) {
                    Ok(Some(file)) => Some(ctx.add_file(file)),
                    Ok(None) => None,
                    Err(e) => {
                        // The descriptor table is full; serving this torrent would fail.
                        tracing::error!(torrent = t.name(), "cannot duplicate file handle: {e}");
                        None
                    }
                };
                files.push(id);
            }
            let shard_torrent = ShardTorrent {
                served: t.clone(),
                files: files.into(),
            };
            map.insert(t.meta.info_hash, shard_torrent);
        }
        self.torrents = Rc::new(map);
        let shards = self.cfg.shards;
        let mine: Vec<_> = self
            .cfg
            .initial_peers
            .iter()
            .filter(|(_, a)| shard_for(a, shards) == self.shard)
            .copied()
            .collect();
        for (info_hash, addr) in mine {
            self.connect(ctx, info_hash, addr);
        }
    }

    fn accept(&mut self, _peer: SocketAddr, now: Instant) -> Option<SeedConn> {
        Some(SeedConn::inbound(
            self.torrents.clone(),
            self.cfg.local,
            self.upload_bucket.clone(),
            now,
        ))
    }

    fn tick(&mut self, ctx: &mut ShardCtx<'_, SeedConn>, now: Instant) {
        self.choke(ctx, now);
        self.publish_metrics(ctx, now);
    }

    fn tick_interval(&self) -> Duration {
        CHOKE_TICK
    }

    fn command(&mut self, cmd: SeedCommand, ctx: &mut ShardCtx<'_, SeedConn>, _now: Instant) {
        match cmd {
            SeedCommand::Connect { info_hash, addr } => self.connect(ctx, info_hash, addr),
        }
    }

    fn closed(&mut self, key: ConnKey, conn: SeedConn, reason: &CloseReason, _now: Instant) {
        let out = self.outbound.remove(&key);
        if let Some(entry) = out {
            // Allow the tracker's next reply to make us try again.
            self.dialled.remove(&entry);
        }
        let who = conn
            .session()
            .client_name()
            .map(str::to_owned)
            .unwrap_or_default();
        match reason {
            CloseReason::Protocol(_) | CloseReason::InputTooLarge { .. } => {
                tracing::info!(conn = %key, client = %who, "closed: {reason}")
            }
            _ => tracing::debug!(conn = %key, client = %who, "closed: {reason}"),
        }
    }
}
