//! `ringseed tracker`: a UDP (BEP 15) and HTTP (BEP 3/48) BitTorrent tracker.
//!
//! SHELL CODE. Thread-per-core like the seeder: `--workers` shard threads, each with its own
//! `SO_REUSEPORT` UDP socket and the swarms whose info-hash maps to it; a shard that receives
//! an announce for another shard's swarm forwards it over that shard's bounded mailbox. The
//! HTTP side (announce, scrape, `/metrics`) is one `tiny_http` thread routing to the shards.
//! The main thread reloads the allow/deny files when they change and stops on SIGINT/SIGTERM.

mod http;
mod metrics;
mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::time::Clock;
use crate::tracker::server::udp::UdpFront;
use crate::tracker::server::{AccessList, RateLimiter, ServerLimits};
use metrics::{LocalCounts, Metrics};
use worker::{Shard, ShardHandle, ShardMsg, MAILBOX_MAX};

/// Arguments of `ringseed tracker`.
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// HTTP address for /announce, /scrape and /metrics.
    #[arg(long)]
    pub http: Option<SocketAddr>,
    /// UDP address (BEP 15).
    #[arg(long)]
    pub udp: Option<SocketAddr>,
    /// Shard threads, each with its own UDP socket (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Seconds between announces told to clients; a peer is dropped after 1.5 intervals.
    #[arg(long, default_value_t = 1800)]
    pub interval: u64,
    /// Most torrents tracked (all shards together).
    #[arg(long, default_value_t = 100_000)]
    pub max_swarms: usize,
    /// Most peers in one torrent's swarm.
    #[arg(long, default_value_t = 50_000)]
    pub max_peers_per_swarm: usize,
    /// Most peers in all swarms together (about 150 bytes each).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_peers: usize,
    /// Only these info-hashes (40 hex digits a line); the file is reloaded when it changes.
    #[arg(long)]
    pub allow_list: Option<PathBuf>,
    /// Never these info-hashes (same format); reloaded when it changes.
    #[arg(long)]
    pub deny_list: Option<PathBuf>,
    /// UDP requests per second per source IP and shard (0: no limit); bursts of 4x.
    #[arg(long, default_value_t = 0)]
    pub rate_limit: u32,
}

/// Runs the tracker until SIGINT or SIGTERM.
pub fn run(args: TrackerArgs) -> anyhow::Result<ExitCode> {
    if args.http.is_none() && args.udp.is_none() {
        anyhow::bail!("give --http ADDR, --udp ADDR or both");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let workers = match args.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let access = Arc::new(load_access(&args)?);
    let limits = ServerLimits {
        swarms_max: args.max_swarms.div_ceil(workers),
        peers_per_swarm_max: args.max_peers_per_swarm,
        peers_total_max: args.max_peers.div_ceil(workers),
        interval: Duration::from_secs(args.interval.max(1)),
    };
    let metrics = Arc::new(Metrics::new());
    let clock = Clock::new();
    let front = UdpFront::new(rand::random());
    let mut polls = Vec::new();
    let mut handles = Vec::new();
    let mut rxs = Vec::new();
    for _ in 0..workers {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), worker::WAKER)?);
        let (tx, rx) = sync_channel(MAILBOX_MAX);
        handles.push(ShardHandle { tx, waker });
        polls.push(poll);
        rxs.push(rx);
    }
    let mut threads = Vec::new();
    for (index, (poll, rx)) in polls.into_iter().zip(rxs).enumerate() {
        let socket = match args.udp {
            Some(addr) => Some(udp_socket(addr)?),
            None => None,
        };
        let shard = Shard {
            index,
            peers: handles.clone(),
            rx,
            poll,
            socket,
            front: front.clone(),
            limits,
            rate: RateLimiter::new(args.rate_limit, args.rate_limit.saturating_mul(4)),
            access: access.clone(),
            clock,
            counts: LocalCounts {
                shared: Some(metrics.clone()),
                ..LocalCounts::default()
            },
        };
        threads.push(
            std::thread::Builder::new()
                .name(format!("tracker-{index}"))
                .spawn(move || shard.run())?,
        );
    }
    let http = match args.http {
        Some(addr) => Some(http::spawn(addr, handles.clone(), metrics.clone())?),
        None => None,
    };
    tracing::info!(
        udp = ?args.udp,
        http = ?args.http,
        workers,
        "tracker running"
    );
    let mut stamps = file_stamps(&args);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(200));
        if threads.iter().any(|t| t.is_finished()) {
            anyhow::bail!("a tracker shard thread died");
        }
        let now = file_stamps(&args);
        if now != stamps {
            stamps = now;
            match load_access(&args) {
                Ok(acc) => {
                    tracing::info!("access lists reloaded");
                    let acc = Arc::new(acc);
                    for h in &handles {
                        // Blocking send: a reload must not be lost to a full mailbox.
                        let _ = h.tx.send(ShardMsg::Access(acc.clone()));
                        let _ = h.waker.wake();
                    }
                }
                Err(e) => tracing::warn!("access list not reloaded: {e:#}"),
            }
        }
    }
    for h in &handles {
        let _ = h.tx.send(ShardMsg::Stop);
        let _ = h.waker.wake();
    }
    if let Some(server) = http {
        server.stop();
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(ExitCode::SUCCESS)
}

/// A non-blocking UDP socket bound to `addr` with `SO_REUSEPORT`, so every shard binds its own.
fn udp_socket(addr: SocketAddr) -> anyhow::Result<mio::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    // Room for bursts: a full queue drops datagrams before we see them.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(mio::net::UdpSocket::from_std(socket.into()))
}

fn read_list(path: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    path.as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()
}

fn load_access(args: &TrackerArgs) -> anyhow::Result<AccessList> {
    let allow = read_list(&args.allow_list)?;
    let deny = read_list(&args.deny_list)?;
    let (acc, bad) = AccessList::parse(allow.as_deref(), deny.as_deref());
    if !bad.is_empty() {
        tracing::warn!(lines = ?bad, "access list lines that are not 40 hex digits were skipped");
    }
    Ok(acc)
}

fn stamp(p: &Option<PathBuf>) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p.as_deref().unwrap_or(Path::new(""))).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn file_stamps(args: &TrackerArgs) -> [Option<(SystemTime, u64)>; 2] {
    [stamp(&args.allow_list), stamp(&args.deny_list)]
}
