//! `ringseed dht`: run a standalone DHT node (a bootstrap router for a private swarm or a
//! test network), optionally announcing or searching info-hashes.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::dht_udp::{resolve_bootstrap, Dht, DhtConfig};
use crate::metainfo::InfoHash;

/// Arguments of `ringseed dht`.
#[derive(Debug, Args)]
pub struct DhtArgs {
    /// UDP address to listen on (IPv4).
    #[arg(long, default_value = "0.0.0.0:6881")]
    pub listen: SocketAddr,
    /// Node to bootstrap from, `host:port` (repeatable; none: this node waits to be found).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Routing table file: loaded at start, saved at exit.
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Announce this info-hash (hex) with --port (repeatable).
    #[arg(long)]
    pub announce: Vec<String>,
    /// TCP port announced with --announce.
    #[arg(long, default_value_t = 6881)]
    pub port: u16,
    /// Search this info-hash (hex) and print `peer <info-hash> <addr>` lines (repeatable).
    #[arg(long)]
    pub search: Vec<String>,
}

fn parse_hash(s: &str) -> anyhow::Result<InfoHash> {
    InfoHash::from_hex(s).ok_or_else(|| anyhow::anyhow!("`{s}` is not a 40-digit hex info-hash"))
}

/// Runs the node until SIGINT or SIGTERM, then saves its routing table.
pub fn run(args: DhtArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let announce = args
        .announce
        .iter()
        .map(|s| parse_hash(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let search = args
        .search
        .iter()
        .map(|s| parse_hash(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let cfg = DhtConfig {
        listen: args.listen,
        bootstrap: resolve_bootstrap(&args.bootstrap),
        state: args.state,
    };
    let sink = Box::new(|ih: InfoHash, peers: &[SocketAddr]| {
        let mut out = std::io::stdout().lock();
        for p in peers {
            let _ = writeln!(out, "peer {} {p}", ih.to_hex());
        }
        let _ = out.flush();
    });
    let dht = Dht::start(cfg, sink)?;
    println!("dht listening on {}", dht.local_addr());
    for ih in announce {
        dht.track(ih, Some(args.port), false);
    }
    for ih in search {
        dht.track(ih, None, true);
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    dht.shutdown();
    Ok(ExitCode::SUCCESS)
}

/// The DHT flags `seed` and `get` share.
#[derive(Debug, Clone, Args)]
pub struct DhtOpts {
    /// Also find peers on, and announce to, the DHT (BEP 5).
    #[arg(long)]
    pub dht: bool,
    /// DHT node to bootstrap from, `host:port` (repeatable; implies --dht; default: the
    /// public routers router.bittorrent.com, dht.transmissionbt.com, router.utorrent.com).
    #[arg(long = "dht-bootstrap")]
    pub dht_bootstrap: Vec<String>,
    /// UDP address of our DHT node (default: the --listen address, on UDP).
    #[arg(long)]
    pub dht_listen: Option<SocketAddr>,
    /// DHT routing table file, loaded at start and saved at exit.
    #[arg(long)]
    pub dht_state: Option<PathBuf>,
}

impl DhtOpts {
    /// The node config, or None when the DHT is off; `state` is used when --dht-state is not.
    pub fn config(&self, listen: SocketAddr, state: Option<PathBuf>) -> Option<DhtConfig> {
        if !self.dht && self.dht_bootstrap.is_empty() {
            return None;
        }
        let names: Vec<String> = if self.dht_bootstrap.is_empty() {
            crate::dht_udp::DEFAULT_BOOTSTRAP
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            self.dht_bootstrap.clone()
        };
        // The DHT is IPv4 only: an IPv6 listen address maps to 0.0.0.0 on the same port.
        let listen = match listen {
            SocketAddr::V6(a) => SocketAddr::from(([0, 0, 0, 0], a.port())),
            v4 => v4,
        };
        Some(DhtConfig {
            listen: self.dht_listen.unwrap_or(listen),
            bootstrap: resolve_bootstrap(&names),
            state: self.dht_state.clone().or(state),
        })
    }
}
