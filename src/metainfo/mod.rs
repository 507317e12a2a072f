//! Torrent files (BEP 3 v1, BEP 12 announce-list), magnet URIs and the piece-to-file layout.
//!
//! Owns parsing and validation of everything a torrent file says, including file paths: a
//! path that could escape the data directory is refused here, so no later layer ever sees
//! one. Never touches the filesystem; building a torrent from files is `hash`'s job.

mod ids;
mod layout;
mod magnet;
mod parse;
mod path;

pub use ids::{to_hex, InfoHash, PeerId};
pub use layout::{BlockRef, FileSpan, Layout, PieceIndex, Spans, BLOCK_BYTES, BLOCK_BYTES_MAX};
pub use magnet::{Magnet, MagnetError, PeerHint, MAGNET_PARAMS_MAX, MAGNET_URI_BYTES_MAX};
pub use parse::{build_torrent, parse_info, parse_torrent, TorrentBuilder};
pub use path::validate_component;

use std::sync::Arc;

/// Smallest piece length we accept from a torrent file (BEP 3 says powers of two; 16 KiB is
/// the smallest any mainstream client creates).
pub const PIECE_LENGTH_MIN: u32 = 16 * 1024;
/// Largest piece length we accept: 64 MiB (libtorrent's limit is 128 MiB; we serve at most
/// 16 MiB pieces from `create`, and leave room for others' torrents).
pub const PIECE_LENGTH_MAX: u32 = 64 << 20;
/// Most files in one torrent; bounds memory of a hostile file list.
pub const FILES_MAX: usize = 1_000_000;
/// Deepest path (components) inside a torrent.
pub const PATH_COMPONENTS_MAX: usize = 64;

/// A parsed `.torrent` file.
#[derive(Clone, Debug)]
pub struct Metainfo {
    /// The info dict's content.
    pub info: Info,
    /// SHA-1 of the info dict's original bytes.
    pub info_hash: InfoHash,
    /// The info dict's original bytes (served to magnet users over BEP 9).
    pub info_bytes: Arc<[u8]>,
    /// `announce`: the primary tracker URL.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12): tiers of tracker URLs.
    pub announce_list: Vec<Vec<String>>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date`, seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

/// The content of an info dict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Info {
    /// `name`: the file name (single-file) or the top directory (multi-file). Validated as a
    /// path component.
    pub name: String,
    /// `piece length`.
    pub piece_length: u32,
    /// `pieces`: one SHA-1 per piece.
    pub pieces: Vec<[u8; 20]>,
    /// The files, in order. A single-file torrent has one entry whose path is empty.
    pub files: Vec<FileEntry>,
    /// True when the info dict had a `files` list (paths live under `name/`).
    pub multi_file: bool,
    /// `private` (BEP 27): no DHT, no PEX.
    pub private: bool,
}

/// One file of a torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Validated path components under the torrent's directory (empty for single-file).
    pub path: Vec<String>,
    /// Length in bytes.
    pub length: u64,
}

impl Info {
    /// Total length of all files.
    pub fn total_length(&self) -> u64 {
        self.files.iter().map(|f| f.length).sum()
    }

    /// The piece-to-file layout. Always valid for an `Info` produced by the parser.
    pub fn layout(&self) -> Layout {
        let lengths: Vec<u64> = self.files.iter().map(|f| f.length).collect();
        Layout::new(self.piece_length, &lengths).expect("parser validated the layout")
    }

    /// Where file `i` lives relative to the data directory: `name` for a single-file torrent,
    /// `name/a/b` for multi-file ones.
    pub fn file_path(&self, i: usize) -> std::path::PathBuf {
        let mut p = std::path::PathBuf::from(&self.name);
        for c in &self.files[i].path {
            p.push(c);
        }
        p
    }
}

impl Metainfo {
    /// Every tracker URL: the announce-list tiers if present, else `announce` (BEP 12).
    pub fn trackers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            return self.announce_list.clone();
        }
        self.announce.iter().map(|a| vec![a.clone()]).collect()
    }
}

/// Why a torrent file was refused; every variant names the field.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    /// The file is not valid bencode.
    #[error("not valid bencode: {0}")]
    Bencode(#[from] crate::bencode::BencodeError),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an invalid value.
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// The field, as named in the torrent file.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A file path that is unsafe or unusable.
    #[error("unsafe path {path:?} in `{field}`: {reason}")]
    UnsafePath {
        /// The field holding it (`name`, `files.path`, ...).
        field: &'static str,
        /// The path as found (lossy).
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
