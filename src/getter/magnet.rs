//! Magnet links: before a download can start, fetch the info dict from peers (BEP 9), check
//! its SHA-1 against the link's info-hash, and keep it as a `.torrent` next to the resume data
//! so a restart does not fetch it again.
//!
//! A short first phase on its own shard: peers come from the link's `x.pe` hints, its
//! trackers and PEX; sessions request metadata pieces as the shared [`MetadataAssembler`]
//! hands them out, and peers proven to send corrupt pieces are closed. The download then
//! starts as for a `.torrent` (peers are dialled again).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::conn::{GetConn, Shared};
use crate::announcer::{self, Announced, AnnouncerConfig};
use crate::metainfo::{parse_torrent, Magnet, Metainfo, PeerHint, PeerId};
use crate::peer::{
    Event, LocalConfig, MetadataAssembler, MetadataProgress, PieceSet, TorrentShared,
};
use crate::runtime::{
    spawn_shards, CloseReason, ConnKey, IoKind, RuntimeConfig, ShardApp, ShardCtx,
};
use crate::time::Instant;
use crate::torrent::{PeerSource, Swarm, SwarmConfig};
use crate::tracker::Progress;

/// Where a fetched info dict is kept, as a `.torrent`, under the output directory.
pub fn cached_torrent_path(out_dir: &Path, magnet: &Magnet) -> PathBuf {
    out_dir
        .join(".ringseed")
        .join(format!("{}.torrent", magnet.info_hash.to_hex()))
}

/// Messages to the metadata shard.
#[derive(Debug)]
pub enum MetaCommand {
    /// Peers from a tracker.
    AddPeers(Vec<SocketAddr>),
}

struct MetaApp {
    shared: Option<Rc<Shared>>,
    torrent: Arc<TorrentShared>,
    local: LocalConfig,
    assembler: MetadataAssembler<ConnKey>,
    swarm: Swarm,
    hints: Vec<SocketAddr>,
    result: Arc<Mutex<Option<Arc<[u8]>>>>,
    addrs: HashMap<ConnKey, SocketAddr>,
}

impl MetaApp {
    fn request_more(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let Some(c) = ctx.get_mut(key) else { return };
        let Some(size) = c.session.peer_metadata_size() else {
            return;
        };
        while c.session.metadata_request_slots() > 0 {
            let Some(piece) = self.assembler.next_request(key, size, now) else {
                break;
            };
            if c.session.request_metadata(piece, now).is_err() {
                self.assembler
                    .on_dropped(key, piece, crate::peer::DropReason::Rejected);
                break;
            }
        }
    }

    fn dial(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        for addr in self.swarm.take_superseded() {
            let keys: Vec<ConnKey> = self
                .addrs
                .iter()
                .filter(|(_, a)| **a == addr)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                ctx.close(k, "superseded by the peer's own connection to us");
            }
        }
        while let Some(addr) = self.swarm.poll_connect(now) {
            let conn = GetConn::outbound(shared.clone(), addr, now);
            match ctx.connect(addr, self.swarm.source_ip_for(addr), conn) {
                Ok(key) => {
                    self.swarm.on_connecting(addr, now);
                    self.swarm.on_connected(addr, now);
                    self.addrs.insert(key, addr);
                }
                Err(_) => break,
            }
        }
    }
}

impl ShardApp for MetaApp {
    type Conn = GetConn;
    type Command = MetaCommand;

    fn start(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        self.shared = Some(Rc::new(Shared {
            torrent: std::cell::RefCell::new(self.torrent.clone()),
            have: std::cell::RefCell::new(PieceSet::Empty),
            files: std::cell::RefCell::new(Vec::new()),
            pool: ctx.write_pool(),
            local: self.local,
            upload_bucket: None,
        }));
        let hints = std::mem::take(&mut self.hints);
        self.swarm.add_peers(hints, PeerSource::Hint, now);
        self.dial(ctx, now);
    }

    fn accept(&mut self, peer: SocketAddr, now: Instant) -> Option<GetConn> {
        let shared = self.shared.clone()?;
        self.swarm
            .accept_incoming(peer, now)
            .then(|| GetConn::inbound(shared, peer, now))
    }

    fn conn_ready(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let Some(c) = ctx.get_mut(key) else { return };
        let events = std::mem::take(&mut c.events);
        let pieces = std::mem::take(&mut c.metadata);
        c.blocks.clear();
        c.lost.clear();
        for e in events {
            match e {
                Event::MetadataRequestDropped { piece, reason } => {
                    self.assembler.on_dropped(key, piece, reason)
                }
                Event::Pex(msg) => {
                    let addrs = msg.added.iter().map(|p| p.addr);
                    self.swarm.add_peers(addrs, PeerSource::Pex, now);
                }
                _ => {}
            }
        }
        for (piece, total, data) in pieces {
            match self.assembler.on_piece(key, piece, total, &data) {
                MetadataProgress::Complete { info, bad_peers } => {
                    tracing::info!(bytes = info.len(), "metadata received and verified");
                    *self.result.lock().expect("result") = Some(info);
                    close_all(ctx, &bad_peers, "sent corrupt metadata");
                }
                MetadataProgress::Corrupt { bad_peers } => {
                    tracing::warn!("assembled metadata does not match the info-hash; retrying");
                    close_all(ctx, &bad_peers, "sent corrupt metadata");
                }
                MetadataProgress::BadPeer(k) => ctx.close(k, "lied about the metadata"),
                MetadataProgress::Incomplete | MetadataProgress::Ignored => {}
            }
        }
        self.request_more(key, ctx, now);
    }

    fn tick(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        self.dial(ctx, now);
        let keys: Vec<ConnKey> = ctx.keys().collect();
        for k in keys {
            self.request_more(k, ctx, now);
        }
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn command(&mut self, cmd: MetaCommand, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        match cmd {
            MetaCommand::AddPeers(addrs) => {
                self.swarm.add_peers(addrs, PeerSource::Tracker, now);
                self.dial(ctx, now);
            }
        }
    }

    fn closed(&mut self, key: ConnKey, conn: GetConn, reason: &CloseReason, now: Instant) {
        self.assembler.peer_gone(key);
        self.addrs.remove(&key);
        self.swarm
            .on_disconnected(conn.addr, crate::torrent::Disconnect::Normal, now);
        tracing::debug!(peer = %conn.addr, "closed: {reason}");
    }
}

fn close_all(ctx: &mut ShardCtx<'_, GetConn>, keys: &[ConnKey], why: &'static str) {
    for &k in keys {
        ctx.close(k, why);
    }
}

/// Everything fetching metadata needs.
pub struct MetaOptions {
    /// Listen address (peers may connect to us meanwhile).
    pub listen: SocketAddr,
    /// I/O backend.
    pub io: IoKind,
    /// Connection limits.
    pub swarm: SwarmConfig,
    /// Extra peers to dial.
    pub peers: Vec<SocketAddr>,
    /// Announce to the link's trackers.
    pub announce: bool,
    /// Also find peers on the DHT with this node config.
    pub dht: Option<crate::dht_udp::DhtConfig>,
}

/// Fetches and verifies the info dict of `magnet` (or reads the copy a previous run kept),
/// returning the torrent to download.
pub fn metainfo_for(
    magnet: &Magnet,
    out_dir: &Path,
    opts: MetaOptions,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Metainfo> {
    let cached = cached_torrent_path(out_dir, magnet);
    if let Ok(bytes) = std::fs::read(&cached) {
        if let Ok(meta) = parse_torrent(&bytes) {
            if meta.info_hash == magnet.info_hash {
                tracing::info!("using metadata fetched earlier ({})", cached.display());
                return Ok(meta);
            }
        }
    }
    let info = fetch(magnet, opts, stop)?;
    let bytes = torrent_file(&info, &magnet.trackers);
    let meta = parse_torrent(&bytes).context("the fetched info dict is not a valid torrent")?;
    anyhow::ensure!(meta.info_hash == magnet.info_hash, "metadata hash mismatch");
    std::fs::create_dir_all(cached.parent().expect("has a parent"))?;
    crate::cli::write_atomically(&cached, &bytes)?;
    Ok(meta)
}

/// A `.torrent` around verified info bytes (kept as they are, so the info-hash holds).
fn torrent_file(info: &[u8], trackers: &[String]) -> Vec<u8> {
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        out.extend_from_slice(format!("8:announce{}:{first}", first.len()).as_bytes());
    }
    out.extend_from_slice(b"4:info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

fn fetch(magnet: &Magnet, opts: MetaOptions, stop: &Arc<AtomicBool>) -> anyhow::Result<Arc<[u8]>> {
    let peer_id = PeerId::generate();
    let result = Arc::new(Mutex::new(None));
    let mut hints: Vec<SocketAddr> = magnet
        .peers
        .iter()
        .filter_map(|p| match p {
            PeerHint::Addr(a) => Some(*a),
            PeerHint::Host { .. } => None,
        })
        .collect();
    hints.extend(&opts.peers);
    let info_hash = magnet.info_hash;
    let parts = Mutex::new(Some((hints, opts.swarm)));
    let (result2, listen) = (result.clone(), opts.listen);
    let rt_cfg = RuntimeConfig {
        shards: 1,
        io: opts.io,
        listen: vec![opts.listen],
        ..RuntimeConfig::default()
    };
    let mut runtime = spawn_shards(rt_cfg, move |_info| {
        let (hints, swarm_cfg) = parts.lock().expect("parts").take().expect("one shard");
        let mut swarm = Swarm::new(swarm_cfg);
        swarm.set_own_addrs([listen]);
        MetaApp {
            shared: None,
            torrent: Arc::new(TorrentShared::magnet(info_hash)),
            local: LocalConfig {
                peer_id,
                listen_port: Some(listen.port()),
            },
            assembler: MetadataAssembler::new(info_hash),
            swarm,
            hints,
            result: result2.clone(),
            addrs: HashMap::new(),
        }
    })?;
    tracing::info!(%info_hash, "fetching metadata from peers (BEP 9)");
    let local_stop = Arc::new(AtomicBool::new(false));
    let trackers = if opts.announce {
        magnet.trackers.clone()
    } else {
        Vec::new()
    };
    let announcer = if !trackers.is_empty() || opts.dht.is_some() {
        let mailboxes = runtime.mailboxes();
        let sink = Box::new(move |_, peers: &[SocketAddr]| {
            let _ = mailboxes.send(0, MetaCommand::AddPeers(peers.to_vec()));
        });
        let torrents = vec![Announced {
            info_hash,
            name: magnet
                .display_name
                .clone()
                .unwrap_or_else(|| info_hash.to_hex()),
            trackers: vec![trackers],
            // Size unknown until the metadata arrives: announce as a leecher.
            progress: Box::new(|| Progress {
                uploaded: 0,
                downloaded: 0,
                left: 1,
            }),
            // Metadata comes from whoever answers first; no early re-announce.
            wants_peers: None,
        }];
        let cfg = AnnouncerConfig {
            peer_id,
            port: runtime
                .local_addrs()
                .first()
                .map_or(listen.port(), SocketAddr::port),
            own_addrs: runtime.local_addrs().to_vec(),
            dht: opts.dht.clone(),
            counts: Default::default(),
        };
        announcer::spawn(torrents, cfg, sink, local_stop.clone())
    } else {
        None
    };
    let outcome = loop {
        if let Some(info) = result.lock().expect("result").clone() {
            break Ok(info);
        }
        if stop.load(Ordering::Relaxed) {
            break Err(anyhow::anyhow!("interrupted before the metadata arrived"));
        }
        if let Err(e) = runtime.check() {
            break Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    local_stop.store(true, Ordering::Relaxed);
    if let Some(a) = announcer {
        let _ = a.join();
    }
    runtime.shutdown()?;
    outcome
}
