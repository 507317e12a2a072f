//! `ringseed magnet`: print a torrent's magnet URI, optionally with peer hints (`x.pe`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::metainfo::{Magnet, PeerHint};

/// Arguments of `ringseed magnet`.
#[derive(Debug, Args)]
pub struct MagnetArgs {
    /// The .torrent file.
    pub torrent: PathBuf,
    /// Add a peer address hint (`x.pe`), e.g. the seeder's `127.0.0.1:6881`. Repeatable.
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Leave the trackers out of the URI.
    #[arg(long)]
    pub no_trackers: bool,
}

/// Prints the magnet URI on stdout.
pub fn run(args: MagnetArgs) -> anyhow::Result<ExitCode> {
    let meta = super::load_torrent(&args.torrent)?;
    let mut magnet = Magnet::from_metainfo(&meta);
    if args.no_trackers {
        magnet.trackers.clear();
    }
    magnet
        .peers
        .extend(args.peers.into_iter().map(PeerHint::Addr));
    println!("{magnet}");
    Ok(ExitCode::SUCCESS)
}
