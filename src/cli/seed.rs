//! `ringseed seed`: serve one or many torrents until interrupted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

use crate::runtime::IoKind;
use crate::seeder::{self, SeedOptions};
use crate::torrent::DEFAULT_UPLOAD_SLOTS;

/// Arguments of `ringseed seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// .torrent files, or directories of .torrent files.
    #[arg(required = true)]
    pub torrents: Vec<PathBuf>,
    /// The data: a directory holding each torrent's content by name, or the content itself.
    #[arg(long)]
    pub data: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// Shard threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// I/O backend: uring, epoll or auto (io_uring when the kernel allows it).
    #[arg(long, default_value = "auto", value_parser = parse_io)]
    pub io: IoKind,
    /// Upload slots per torrent (peers unchoked at once, over all shards).
    #[arg(long, default_value_t = DEFAULT_UPLOAD_SLOTS)]
    pub upload_slots: usize,
    /// Do not announce to the torrents' trackers.
    #[arg(long)]
    pub no_announce: bool,
    /// Connect to this peer at start-up (repeatable).
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Cap the upload rate over all torrents and peers (e.g. 100MiB per second); each
    /// shard thread takes an equal share.
    #[arg(long, value_parser = super::parse_size)]
    pub max_upload_rate: Option<u64>,
    /// Serve Prometheus/OpenMetrics text at http://ADDR/metrics (e.g. 127.0.0.1:9100; port 0
    /// picks a free port, logged at start-up). Counters are at most about a second old.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// DHT options.
    #[command(flatten)]
    pub dht: super::dht::DhtOpts,
}

pub(super) fn parse_io(s: &str) -> Result<IoKind, String> {
    match s {
        "uring" | "io_uring" => Ok(IoKind::Uring),
        "epoll" => Ok(IoKind::Epoll),
        "auto" => Ok(IoKind::Auto),
        other => Err(format!(
            "unknown io backend `{other}` (uring, epoll or auto)"
        )),
    }
}

/// Seeds until SIGINT or SIGTERM.
pub fn run(args: SeedArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let opts = SeedOptions {
        torrents: args.torrents,
        data: args.data,
        listen: args.listen,
        threads: args.threads,
        io: args.io,
        upload_slots: args.upload_slots,
        announce: !args.no_announce,
        peers: args.peers,
        upload_rate: args.max_upload_rate,
        dht: args.dht.config(args.listen, None),
        metrics: args.metrics,
    };
    seeder::run(opts, stop)?;
    Ok(ExitCode::SUCCESS)
}
