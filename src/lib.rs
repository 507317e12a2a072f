//! ringseed: a BitTorrent engine whose headline is a thread-per-core io_uring seeder.
//!
//! The crate is layered as `../shared/design/ARCHITECTURE.md` describes: a sans-IO core
//! (formats, wire, peer, policy, discovery, storage requests) that never touches a socket, file,
//! thread or clock, and shells (runtime, cli, loadgen) that execute what the core asks for.
#![warn(missing_docs)]

pub mod announcer;
pub mod bencode;
pub mod cli;
pub mod dht;
pub mod dht_udp;
pub mod getter;
pub mod hash;
pub mod loadgen;
pub mod metainfo;
pub mod metrics;
pub mod peer;
pub mod runtime;
pub mod seeder;
pub mod sim;
pub mod storage;
pub mod time;
pub mod torrent;
pub mod tracker;
pub mod tracker_http;
pub mod tracker_udp;
pub mod wire;
