//! Torrent-wide policy, sans-IO: the decisions that span a torrent's connections. Today the
//! seeding choker (who gets upload slots, BEP 3 choking algorithm) and the piece picker
//! (rarest first, endgame); later swarm management (which peers to keep or dial) and bans. Policy
//! reads peers' state as plain values plus `now` and returns decisions; it never holds a
//! `peer::Session` and never touches I/O, so the simulator runs it for thousands of peers.

mod choker;
mod picker;
mod picker_avail;

pub use choker::{ChokerConfig, ChokerPeer, Decision, SeedChoker, DEFAULT_UPLOAD_SLOTS};
pub use picker::{
    pipeline_depth, AllPieces, Arrival, NoPieces, Picker, PickerError, PieceState, PieceView,
    ENDGAME_MISSING_PERCENT, ENDGAME_PIECES_MIN, PIPELINE_BDP_FACTOR, PIPELINE_DEPTH_MAX,
    PIPELINE_DEPTH_MIN, PIPELINE_MARGIN_BLOCKS, RANDOM_FIRST_PIECES,
};
