//! What every connection of one torrent shares, read-only, behind an `Arc`.

use std::sync::Arc;

use crate::metainfo::{InfoHash, Layout, Metainfo, PieceIndex};
use crate::wire::{Bitfield, METADATA_BYTES_MAX, METADATA_PIECE_BYTES};

/// A torrent as its peer sessions see it: identity, geometry, the info dict to serve over
/// BEP 9 and the pieces we have verified. Built once, shared by `Arc`, never mutated.
#[derive(Debug)]
pub struct SeedTorrent {
    info_hash: InfoHash,
    layout: Layout,
    info_bytes: Arc<[u8]>,
    have: Bitfield,
}

impl SeedTorrent {
    /// A torrent of which we have the pieces in `have`.
    ///
    /// # Panics
    /// If `have` is not sized to the layout's piece count, or the info dict is larger than
    /// BEP 9 lets us serve: both are programming errors, not network input.
    pub fn new(
        info_hash: InfoHash,
        layout: Layout,
        info_bytes: Arc<[u8]>,
        have: Bitfield,
    ) -> SeedTorrent {
        assert_eq!(
            have.len(),
            layout.piece_count(),
            "bitfield sized for another torrent"
        );
        assert!(
            info_bytes.len() <= METADATA_BYTES_MAX,
            "info dict too large for BEP 9"
        );
        SeedTorrent {
            info_hash,
            layout,
            info_bytes,
            have,
        }
    }

    /// A torrent we seed completely (every piece verified).
    pub fn complete(metainfo: &Metainfo) -> SeedTorrent {
        let layout = metainfo.info.layout();
        let have = Bitfield::full(layout.piece_count());
        SeedTorrent::new(
            metainfo.info_hash,
            layout,
            Arc::clone(&metainfo.info_bytes),
            have,
        )
    }

    /// SHA-1 of the info dict.
    pub fn info_hash(&self) -> InfoHash {
        self.info_hash
    }

    /// Piece geometry, used to validate requests.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The info dict's bytes, served to magnet-link peers (BEP 9).
    pub fn info_bytes(&self) -> &[u8] {
        &self.info_bytes
    }

    /// Number of 16 KiB metadata pieces of the info dict.
    pub fn metadata_pieces(&self) -> u32 {
        self.info_bytes.len().div_ceil(METADATA_PIECE_BYTES) as u32
    }

    /// The pieces we have.
    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    /// True when we have `piece`.
    pub fn has(&self, piece: PieceIndex) -> bool {
        self.have.get(piece)
    }

    /// True when we have every piece.
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }
}
