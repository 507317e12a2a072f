//! `ringseed get`: download a torrent (resuming after a crash), then seed per the policy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::getter::magnet::MetaOptions;
use crate::getter::{self, GetOptions, SeedPolicy};
use crate::metainfo::{Magnet, PeerHint};
use crate::runtime::IoKind;
use crate::torrent::SwarmConfig;

/// Arguments of `ringseed get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The .torrent file, or a magnet URI (`magnet:?xt=urn:btih:…`).
    pub source: String,
    /// Output directory (files go to `<out>/<name>`; resume data to `<out>/.ringseed/`).
    #[arg(short, long, default_value = ".")]
    pub output: PathBuf,
    /// Address to listen on for peers.
    #[arg(long, default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// I/O backend: uring, epoll or auto.
    #[arg(long, default_value = "auto", value_parser = super::seed::parse_io)]
    pub io: IoKind,
    /// After completion, seed until uploaded/size reaches this ratio.
    #[arg(long)]
    pub seed_ratio: Option<f64>,
    /// After completion, seed this many seconds.
    #[arg(long)]
    pub seed_time: Option<u64>,
    /// After completion, seed until interrupted.
    #[arg(long)]
    pub seed: bool,
    /// Dial this peer at start (repeatable).
    #[arg(long = "peer")]
    pub peers: Vec<SocketAddr>,
    /// Keep at least this many connections (dial candidates below it).
    #[arg(long, default_value_t = 20)]
    pub conns_min: usize,
    /// Never more than this many connections.
    #[arg(long, default_value_t = 50)]
    pub conns_max: usize,
    /// Connections per remote IP (raise it for swarms on one host, e.g. 127.0.0.1).
    #[arg(long, default_value_t = 1)]
    pub max_per_ip: usize,
    /// Do not announce to the torrent's tracker.
    #[arg(long)]
    pub no_announce: bool,
    /// Hash worker threads.
    #[arg(long, default_value_t = 1)]
    pub hash_threads: usize,
    /// Print JSON status lines instead of a progress bar.
    #[arg(long)]
    pub json: bool,
    /// Do not tell peers about other peers (BEP 11 PEX); received PEX is still used.
    #[arg(long)]
    pub no_pex: bool,
    /// Cap the download rate (e.g. 10MiB per second).
    #[arg(long, value_parser = super::parse_size)]
    pub max_download_rate: Option<u64>,
    /// Cap the upload rate over all peers (e.g. 5MiB per second).
    #[arg(long, value_parser = super::parse_size)]
    pub max_upload_rate: Option<u64>,
    /// DHT options (with none given, the routing table is kept in `<out>/.ringseed/dht.dat`).
    #[command(flatten)]
    pub dht: super::dht::DhtOpts,
}

/// Downloads; exit 0 when complete and the seeding policy is met (or interrupted after
/// completion), 1 when interrupted before.
pub fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let swarm = SwarmConfig {
        conns_min: args.conns_min,
        conns_max: args.conns_max.max(args.conns_min),
        per_ip_max: args.max_per_ip.max(1),
        ..SwarmConfig::default()
    };
    let mut peers = args.peers.clone();
    let dht_state = args.output.join(".ringseed").join("dht.dat");
    let dht = args.dht.config(args.listen, Some(dht_state));
    let meta = if args.source.starts_with("magnet:") {
        let magnet = Magnet::parse(&args.source)?;
        peers.extend(magnet.peers.iter().filter_map(|p| match p {
            PeerHint::Addr(a) => Some(*a),
            PeerHint::Host { .. } => None,
        }));
        let opts = MetaOptions {
            listen: args.listen,
            io: args.io,
            swarm,
            peers: peers.clone(),
            announce: !args.no_announce,
            dht: dht.clone(),
        };
        getter::magnet::metainfo_for(&magnet, &args.output, opts, &stop)?
    } else {
        super::load_torrent(std::path::Path::new(&args.source))?
    };
    let opts = GetOptions {
        meta,
        out_dir: args.output,
        listen: args.listen,
        io: args.io,
        seed: SeedPolicy {
            ratio: args.seed_ratio,
            time: args.seed_time.map(Duration::from_secs),
            forever: args.seed,
        },
        swarm,
        peers,
        announce: !args.no_announce,
        hash_threads: args.hash_threads,
        json: args.json,
        rate_limit: args.max_download_rate,
        upload_limit: args.max_upload_rate,
        pex: !args.no_pex,
        dht,
    };
    let stats = getter::run(opts, stop)?;
    Ok(if stats.complete.load(Ordering::Relaxed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
