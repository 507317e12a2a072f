//! What every connection of one torrent shares, read-only, behind an `Arc`.

use std::sync::Arc;

use crate::bencode::{decode, Limits};
use crate::metainfo::{parse_info, InfoHash, Layout, Metainfo, MetainfoError};
use crate::wire::{METADATA_BYTES_MAX, METADATA_PIECE_BYTES};

/// A torrent as its peer sessions see it: its identity and, once known, its geometry, the
/// info dict to serve over BEP 9 and the BEP 27 private flag. Built once, shared by `Arc`,
/// never mutated: a magnet torrent whose metadata arrives gets a new `TorrentShared`, handed
/// to each session with [`Session::set_metadata`](super::Session::set_metadata).
///
/// Which pieces we have is not here: it changes as we download, so each session keeps its
/// own [`PieceSet`](super::PieceSet), given at attach and updated by
/// [`Session::have`](super::Session::have).
#[derive(Debug)]
pub struct TorrentShared {
    info_hash: InfoHash,
    metadata: Option<Metadata>,
}

#[derive(Debug)]
struct Metadata {
    layout: Layout,
    info_bytes: Arc<[u8]>,
    private: bool,
}

impl TorrentShared {
    /// A torrent whose info dict we know.
    ///
    /// # Panics
    /// If the info dict is larger than BEP 9 lets us serve: the parser never produces one.
    pub fn new(
        info_hash: InfoHash,
        layout: Layout,
        info_bytes: Arc<[u8]>,
        private: bool,
    ) -> TorrentShared {
        assert!(
            info_bytes.len() <= METADATA_BYTES_MAX,
            "info dict too large for BEP 9"
        );
        TorrentShared {
            info_hash,
            metadata: Some(Metadata {
                layout,
                info_bytes,
                private,
            }),
        }
    }

    /// The torrent a parsed `.torrent` file describes.
    pub fn from_metainfo(metainfo: &Metainfo) -> TorrentShared {
        TorrentShared::new(
            metainfo.info_hash,
            metainfo.info.layout(),
            Arc::clone(&metainfo.info_bytes),
            metainfo.info.private,
        )
    }

    /// The torrent an info dict fetched over BEP 9 describes. The caller has checked its
    /// SHA-1 against `info_hash` (the [`MetadataAssembler`](super::MetadataAssembler) does).
    pub fn from_info_bytes(
        info_hash: InfoHash,
        info_bytes: Arc<[u8]>,
    ) -> Result<TorrentShared, MetainfoError> {
        let value = decode(&info_bytes, Limits::TORRENT_FILE)?;
        let dict = value.as_dict().ok_or_else(|| MetainfoError::Invalid {
            field: "info",
            reason: "metadata is not a bencoded dict".into(),
        })?;
        let info = parse_info(dict)?;
        Ok(TorrentShared::new(
            info_hash,
            info.layout(),
            Arc::clone(&info_bytes),
            info.private,
        ))
    }

    /// A magnet link's torrent: only the info-hash is known.
    pub fn magnet(info_hash: InfoHash) -> TorrentShared {
        TorrentShared {
            info_hash,
            metadata: None,
        }
    }

    /// SHA-1 of the info dict.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// True once the info dict is known.
    pub fn has_metadata(&self) -> bool {
        self.metadata.is_some()
    }

    /// Piece geometry, once the metadata is known.
    pub fn layout(&self) -> Option<&Layout> {
        self.metadata.as_ref().map(|m| &m.layout)
    }

    /// The info dict's bytes, served to magnet-link peers (BEP 9), once known.
    pub fn info_bytes(&self) -> Option<&[u8]> {
        self.metadata.as_ref().map(|m| &m.info_bytes[..])
    }

    /// Number of 16 KiB metadata pieces of the info dict (0 while unknown).
    pub fn metadata_pieces(&self) -> u32 {
        self.info_bytes()
            .map_or(0, |b| b.len().div_ceil(METADATA_PIECE_BYTES) as u32)
    }

    /// BEP 27 private flag: no PEX (and no DHT). False while the metadata is unknown: a
    /// magnet link implies a torrent found without a private tracker's say-so.
    pub fn is_private(&self) -> bool {
        self.metadata.as_ref().is_some_and(|m| m.private)
    }
}
