//! Torrent-wide policy, sans-IO: the decisions that span a torrent's connections: choking
//! (seeder rule and tit-for-tat, BEP 3), the piece picker (rarest first, endgame), swarm
//! management (which peers to keep or dial) and bans (smart-ban per IP). Policy
//! reads peers' state as plain values plus `now` and returns decisions; it never holds a
//! `peer::Session` and never touches I/O, so the simulator runs it for thousands of peers.

mod bans;
mod choker;
mod leech_choker;
mod picker;
mod picker_avail;
pub mod rate_limit;
mod swarm;

pub use bans::{
    Ban, BanReason, Bans, BansLimits, BansStats, Evidence, Fault, Verdict, BAD_PIECES_TO_BAN,
    BANNED_IPS_MAX, FAILED_ATTEMPTS_MAX, FAILED_BLOCKS_MAX, IN_PROGRESS_BLOCKS_MAX,
    PIECE_BLOCK_RECORDS_MAX, STRIKE_IPS_MAX,
};
pub use choker::{ChokerConfig, ChokerPeer, Decision, SeedChoker, DEFAULT_UPLOAD_SLOTS};
pub use leech_choker::{
    Choker, LeechChoker, LeechChokerConfig, LeechPeer, DEFAULT_NEWCOMER_WEIGHT,
    DEFAULT_REGULAR_SLOTS,
};
pub use picker::{
    pipeline_depth, AllPieces, Arrival, NoPieces, PickOrder, Picker, PickerError, PieceState,
    PieceView, ENDGAME_MISSING_PERCENT, ENDGAME_PIECES_MIN, PIPELINE_BDP_FACTOR,
    PIPELINE_DEPTH_MAX, PIPELINE_DEPTH_MIN, PIPELINE_MARGIN_BLOCKS, RANDOM_FIRST_PIECES,
};
pub use swarm::{ConnUsefulness, Disconnect, PeerSource, Swarm, SwarmConfig};
