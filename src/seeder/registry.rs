//! The torrents a seeder process serves: parsed metainfo, checked data files, counters.
//!
//! Built once at start-up and shared read-only by every shard (`Arc`); the only mutable parts
//! are relaxed atomic counters for reporting and tracker announces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metainfo::{InfoHash, Metainfo};
use crate::peer::TorrentShared;
use crate::storage::{Storage, SymlinkPolicy};

/// Upper bound on shards that report per-shard counters (more cores than this share slots).
pub const SHARDS_MAX: usize = 256;

/// One torrent being seeded.
#[derive(Debug)]
pub struct ServedTorrent {
    /// The parsed torrent file.
    pub meta: Metainfo,
    /// What the peer sessions need (layout, info dict); we have every piece.
    pub seed: Arc<TorrentShared>,
    /// The open, size-checked data files.
    pub storage: Storage,
    /// Where the torrent file came from (for logs).
    pub source: PathBuf,
    /// Bytes sent to peers (payload and protocol), all shards.
    pub uploaded: AtomicU64,
    /// Connected peers per shard, refreshed on every shard tick.
    peers_by_shard: Vec<AtomicUsize>,
    /// Of those, the ones interested in our data (wanting a slot), per shard.
    interested_by_shard: Vec<AtomicUsize>,
}

impl ServedTorrent {
    /// Records this shard's peer count and how many of them are interested.
    pub fn set_peers(&self, shard: usize, peers: usize, interested: usize) {
        if let Some(slot) = self.peers_by_shard.get(shard) {
            slot.store(peers, Ordering::Relaxed);
        }
        if let Some(slot) = self.interested_by_shard.get(shard) {
            slot.store(interested, Ordering::Relaxed);
        }
    }

    /// Interested peers over all shards.
    pub fn interested(&self) -> usize {
        self.interested_by_shard
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum()
    }

    /// Connected peers over all shards.
    pub fn peers(&self) -> usize {
        self.peers_by_shard
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .sum()
    }

    /// The torrent's display name.
    pub fn name(&self) -> &str {
        &self.meta.info.name
    }
}

/// Every torrent of the process, by info-hash.
#[derive(Debug, Default)]
pub struct Registry {
    /// The torrents, in load order.
    pub torrents: Vec<Arc<ServedTorrent>>,
    by_hash: HashMap<InfoHash, usize>,
}

impl Registry {
    /// Adds a torrent; `false` if one with the same info-hash is already there.
    pub fn insert(&mut self, t: ServedTorrent) -> bool {
        if self.by_hash.contains_key(&t.meta.info_hash) {
            return false;
        }
        self.by_hash.insert(t.meta.info_hash, self.torrents.len());
        self.torrents.push(Arc::new(t));
        true
    }

    /// The torrent with this info-hash.
    pub fn get(&self, info_hash: &InfoHash) -> Option<&Arc<ServedTorrent>> {
        self.by_hash.get(info_hash).map(|&i| &self.torrents[i])
    }

    /// Number of torrents.
    pub fn len(&self) -> usize {
        self.torrents.len()
    }

    /// True when no torrent loaded.
    pub fn is_empty(&self) -> bool {
        self.torrents.is_empty()
    }
}

/// Where a torrent's content lives: `DATA/<name>` if that exists (DATA is a store holding
/// many releases), else DATA itself if its last component is the torrent's name (DATA is the
/// release, as `ringseed create DIR` then `seed --data DIR` gives). Returns the directory
/// that contains `<name>`.
pub fn resolve_data_dir(meta: &Metainfo, data: &Path) -> anyhow::Result<PathBuf> {
    let name = &meta.info.name;
    if data.join(name).exists() {
        return Ok(data.to_path_buf());
    }
    if data.file_name().is_some_and(|n| n == name.as_str()) && data.exists() {
        let parent = data.parent().filter(|p| !p.as_os_str().is_empty());
        return Ok(parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf));
    }
    anyhow::bail!(
        "no data for torrent `{name}`: neither {} nor {} holds it",
        data.join(name).display(),
        data.display()
    )
}

/// Opens and checks one torrent's data (existence and exact sizes; pieces are trusted, as
/// `verify` checks them on demand).
pub fn load_served(meta: Metainfo, source: &Path, data: &Path) -> anyhow::Result<ServedTorrent> {
    let dir = resolve_data_dir(&meta, data)?;
    let storage = Storage::open(&meta.info, &dir, SymlinkPolicy::Follow)?;
    let seed = Arc::new(TorrentShared::from_metainfo(&meta));
    Ok(ServedTorrent {
        meta,
        seed,
        storage,
        source: source.to_path_buf(),
        uploaded: AtomicU64::new(0),
        peers_by_shard: (0..SHARDS_MAX).map(|_| AtomicUsize::new(0)).collect(),
        interested_by_shard: (0..SHARDS_MAX).map(|_| AtomicUsize::new(0)).collect(),
    })
}
