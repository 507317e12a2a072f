//! Torrent-wide policy, sans-IO: the decisions that span a torrent's connections. Today the
//! seeding choker (who gets upload slots, BEP 3 choking algorithm); later the piece picker
//! (rarest first, endgame), swarm management (which peers to keep or dial) and bans. Policy
//! reads peers' state as plain values plus `now` and returns decisions; it never holds a
//! `peer::Session` and never touches I/O, so the simulator runs it for thousands of peers.

mod choker;
mod swarm;

pub use choker::{ChokerConfig, ChokerPeer, Decision, SeedChoker, DEFAULT_UPLOAD_SLOTS};
pub use swarm::{ConnUsefulness, Disconnect, PeerSource, Swarm, SwarmConfig};
