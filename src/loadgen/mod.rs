//! The load generator behind `ringseed bench`: many cheap wire-protocol leechers.
//!
//! Each leecher connects from its own source address (127.0.0.x when the target is on
//! loopback, so per-IP limits and kernel hashing see distinct peers), downloads every piece
//! and checks every piece's SHA-1. The report gives throughput, the spread between peers,
//! and CPU seconds per GB for the seeder (given its pid) and for the load generator itself.

mod cpu;
mod driver;
mod leecher;
mod probe;

pub use cpu::{own_cpu, process_cpu};
pub use driver::PeerPlan;
pub use leecher::{BenchTorrent, LeechError, Leecher, Verify};
pub use probe::{probe_once, ProbeError, ProbeStage, ProbeTimes};

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metainfo::Metainfo;

/// Most leechers one run may start (each needs a socket and a 256 KiB receive buffer).
pub const PEERS_MAX: usize = 20_000;

/// What `ringseed bench` runs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Number of leechers.
    pub peers: usize,
    /// The seeder to download from.
    pub target: SocketAddr,
    /// Load-generator threads (leechers are spread over them).
    pub threads: usize,
    /// Block requests each leecher keeps outstanding.
    pub pipeline: usize,
    /// The seeder's process id, for its CPU time.
    pub seeder_pid: Option<u32>,
    /// Give up on a leecher after this long.
    pub timeout: Duration,
    /// How pieces are checked.
    pub verify: Verify,
}

/// How one leecher did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerResult {
    /// Index of the leecher.
    pub index: usize,
    /// Source address it connected from.
    pub source: Option<IpAddr>,
    /// Payload bytes received.
    pub bytes: u64,
    /// Pieces whose SHA-1 matched.
    pub pieces_ok: u32,
    /// Pieces whose SHA-1 did not match.
    pub pieces_bad: u32,
    /// Seconds from connect to finish (or give-up).
    pub seconds: f64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl PeerResult {
    fn failed(plan: &PeerPlan, error: String) -> PeerResult {
        PeerResult {
            index: plan.index,
            source: plan.source,
            bytes: 0,
            pieces_ok: 0,
            pieces_bad: 0,
            seconds: 0.0,
            error: Some(error),
        }
    }

    /// This leecher's download rate in MB/s (10^6 bytes).
    pub fn mb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e6
        } else {
            0.0
        }
    }
}

/// The outcome of a benchmark run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    /// Leechers started.
    pub peers: usize,
    /// Leechers that downloaded and verified every piece.
    pub peers_complete: usize,
    /// Payload bytes received by all leechers.
    pub bytes: u64,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
    /// Aggregate throughput in MB/s (10^6 bytes per second).
    pub mb_per_s: f64,
    /// Pieces that failed SHA-1 verification (must be 0).
    pub pieces_bad: u64,
    /// Slowest, median and fastest leecher in MB/s.
    pub peer_mb_per_s_min: f64,
    /// Median leecher rate.
    pub peer_mb_per_s_median: f64,
    /// Fastest leecher rate.
    pub peer_mb_per_s_max: f64,
    /// Seeder CPU seconds per GB (10^9 bytes) served, when its pid was given.
    pub seeder_cpu_s_per_gb: Option<f64>,
    /// Load generator CPU seconds per GB received.
    pub loadgen_cpu_s_per_gb: f64,
    /// How pieces were checked.
    pub verify: Verify,
    /// Per-leecher details.
    pub per_peer: Vec<PeerResult>,
}

impl BenchReport {
    /// True when every leecher finished and every piece verified.
    pub fn ok(&self) -> bool {
        self.peers_complete == self.peers && self.pieces_bad == 0
    }
}

/// The source address for leecher `i` when the target is on loopback: 127.0.0.2 onwards,
/// skipping addresses ending in .0 and .255, so every leecher is a distinct IP.
pub fn loopback_source(i: usize) -> IpAddr {
    // Usable last octets are 1..=254; count them from 127.0.0.1 and skip that one address.
    let k = i as u32 + 1;
    let (block, within) = (k / 254, k % 254 + 1);
    let base = u32::from(Ipv4Addr::new(127, 0, 0, 0));
    IpAddr::V4(Ipv4Addr::from(base + block * 256 + within))
}

/// Runs the benchmark to completion.
pub fn run(meta: &Metainfo, cfg: &BenchConfig) -> BenchReport {
    let peers = cfg.peers.clamp(1, PEERS_MAX);
    let layout = meta.info.layout();
    let torrent = Arc::new(BenchTorrent::new(
        meta.info_hash,
        layout,
        meta.info.pieces.clone(),
        cfg.verify,
    ));
    let count = torrent.layout.piece_count();
    let loopback = cfg.target.ip().is_loopback() && cfg.target.is_ipv4();
    let threads = cfg.threads.clamp(1, peers);
    let mut per_thread: Vec<Vec<PeerPlan>> = vec![Vec::new(); threads];
    for i in 0..peers {
        per_thread[i % threads].push(PeerPlan {
            index: i,
            source: loopback.then(|| loopback_source(i)),
            target: cfg.target,
            first_piece: (i as u64 * u64::from(count) / peers as u64) as u32,
        });
    }
    let seeder_cpu_before = cfg.seeder_pid.and_then(process_cpu);
    let own_before = own_cpu();
    let started = Instant::now();
    let handles: Vec<_> = per_thread
        .into_iter()
        .enumerate()
        .map(|(t, plans)| {
            let torrent = torrent.clone();
            let (pipeline, timeout) = (cfg.pipeline, cfg.timeout);
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || driver::run_thread(torrent, plans, pipeline, timeout))
                .expect("spawn load generator thread")
        })
        .collect();
    let mut per_peer: Vec<PeerResult> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("load generator thread panicked"))
        .collect();
    let seconds = started.elapsed().as_secs_f64();
    let own = own_cpu().saturating_sub(own_before);
    let seeder_cpu = match (seeder_cpu_before, cfg.seeder_pid.and_then(process_cpu)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    per_peer.sort_by_key(|p| p.index);
    let mut report = summarize(peers, per_peer, seconds, own, seeder_cpu);
    report.verify = cfg.verify;
    report
}

fn summarize(
    peers: usize,
    per_peer: Vec<PeerResult>,
    seconds: f64,
    own: Duration,
    seeder_cpu: Option<Duration>,
) -> BenchReport {
    let bytes: u64 = per_peer.iter().map(|p| p.bytes).sum();
    let gb = bytes as f64 / 1e9;
    let mut rates: Vec<f64> = per_peer.iter().map(PeerResult::mb_per_s).collect();
    rates.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        rates
            .get(((rates.len() - 1) as f64 * q).round() as usize)
            .copied()
    };
    BenchReport {
        peers,
        peers_complete: per_peer.iter().filter(|p| p.error.is_none()).count(),
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        pieces_bad: per_peer.iter().map(|p| u64::from(p.pieces_bad)).sum(),
        peer_mb_per_s_min: pick(0.0).unwrap_or(0.0),
        peer_mb_per_s_median: pick(0.5).unwrap_or(0.0),
        peer_mb_per_s_max: pick(1.0).unwrap_or(0.0),
        seeder_cpu_s_per_gb: seeder_cpu
            .filter(|_| gb > 0.0)
            .map(|c| c.as_secs_f64() / gb),
        loadgen_cpu_s_per_gb: if gb > 0.0 {
            own.as_secs_f64() / gb
        } else {
            0.0
        },
        verify: Verify::Sha1Always,
        per_peer,
    }
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "peers complete     {}/{}",
            self.peers_complete, self.peers
        )?;
        writeln!(f, "bytes received     {:.1} MB", self.bytes as f64 / 1e6)?;
        writeln!(f, "wall time          {:.2} s", self.seconds)?;
        writeln!(f, "throughput         {:.0} MB/s", self.mb_per_s)?;
        writeln!(
            f,
            "per peer MB/s      min {:.0} / median {:.0} / max {:.0}",
            self.peer_mb_per_s_min, self.peer_mb_per_s_median, self.peer_mb_per_s_max
        )?;
        let how = match self.verify {
            Verify::Sha1Always => "SHA-1 of every copy",
            Verify::Sha1Once => "SHA-1 of first copies, XXH3-128 vs them for the rest",
        };
        writeln!(f, "pieces bad         {} (checked: {how})", self.pieces_bad)?;
        match self.seeder_cpu_s_per_gb {
            Some(c) => writeln!(f, "seeder CPU         {c:.3} s/GB")?,
            None => writeln!(f, "seeder CPU         (pass --seeder-pid to measure)")?,
        }
        writeln!(
            f,
            "load generator CPU {:.3} s/GB",
            self.loadgen_cpu_s_per_gb
        )?;
        for p in self.per_peer.iter().filter(|p| p.error.is_some()) {
            writeln!(
                f,
                "peer {} ({:?}) failed: {}",
                p.index,
                p.source,
                p.error.as_deref().unwrap_or("")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_are_distinct_and_skip_broadcast_like_addresses() {
        // 600 leechers get 600 different 127.x addresses, none ending in .0 or .255.
        let addrs: std::collections::HashSet<_> = (0..600).map(loopback_source).collect();
        assert_eq!(addrs.len(), 600);
        assert_eq!(loopback_source(0), "127.0.0.2".parse::<IpAddr>().unwrap());
        assert!(addrs.iter().all(|a| match a {
            IpAddr::V4(v) => v.octets()[3] != 0 && v.octets()[3] != 255,
            IpAddr::V6(_) => false,
        }));
    }
}
