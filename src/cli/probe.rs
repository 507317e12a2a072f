//! `ringseed probe`: the appliance's canary. Fetches one piece from a seeder as a client
//! would, checks its SHA-1 and times each stage; once, N times, or every interval until
//! stopped, optionally exporting the results for Prometheus (docs/CAPACITY.md §4).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rand::Rng;

use crate::loadgen::{probe_once, BenchTorrent, ProbeError, ProbeTimes, Verify};
use crate::metrics::MetricsServer;
use crate::runtime::LATENCY_BOUNDS_US;

/// Arguments of `ringseed probe`.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The .torrent file the seeder serves.
    pub torrent: PathBuf,
    /// The seeder's address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Probes to run; 0 runs until SIGINT or SIGTERM.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Seconds from one probe's start to the next one's.
    #[arg(long, default_value_t = 60.0)]
    pub interval_secs: f64,
    /// Fetch this piece every time (default: a random piece per probe, so the probe also
    /// reads cold data from the seeder's disk).
    #[arg(long)]
    pub piece: Option<u32>,
    /// Give up on a probe after this many seconds in total.
    #[arg(long, default_value_t = 10.0)]
    pub timeout_secs: f64,
    /// Block requests kept outstanding.
    #[arg(long, default_value_t = 16)]
    pub pipeline: usize,
    /// Serve the probe's results as Prometheus metrics on this address (`/metrics`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// One JSON object per probe instead of a text line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

/// The probe's Prometheus metrics.
struct ProbeMetrics {
    runs: Family<ResultLabel, Counter>,
    first_block: Histogram,
    piece: Histogram,
    last_success: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl ProbeMetrics {
    fn new() -> (ProbeMetrics, Registry) {
        // The seeder's own latency buckets (0.1 ms … 10 s, 50 ms, the SLO, among them), so
        // the inside and the outside view of "request → first byte" compare bucket by bucket.
        let buckets = || LATENCY_BOUNDS_US.iter().map(|&us| us as f64 / 1e6);
        let m = ProbeMetrics {
            runs: Family::default(),
            first_block: Histogram::new(buckets()),
            piece: Histogram::new(buckets()),
            last_success: Gauge::default(),
        };
        let mut r = Registry::with_prefix("ringseed_probe");
        r.register(
            "runs",
            "Probes run, by result: ok, or the failure (connect, timeout, closed, protocol, hash)",
            m.runs.clone(),
        );
        r.register(
            "first_block_seconds",
            "First block request sent -> first whole 16 KiB block received, successful probes",
            m.first_block.clone(),
        );
        r.register(
            "piece_seconds",
            "First block request sent -> whole piece received and SHA-1 checked",
            m.piece.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Unix time of the last successful probe (0: none yet)",
            m.last_success.clone(),
        );
        (m, r)
    }

    fn record(&self, result: &Result<ProbeTimes, ProbeError>) {
        let label = match result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.runs
            .get_or_create(&ResultLabel {
                result: label.into(),
            })
            .inc();
        if let Ok(t) = result {
            self.first_block.observe(t.first_block.as_secs_f64());
            self.piece.observe(t.piece_time.as_secs_f64());
            let unix = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            self.last_success.set(unix.as_secs_f64());
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn report_line(n: u64, target: SocketAddr, result: &Result<ProbeTimes, ProbeError>) -> String {
    match result {
        Ok(t) => {
            let rate = t.bytes as f64 / t.piece_time.as_secs_f64().max(1e-9) / 1e6;
            format!(
                "probe {n} {target}: ok, piece {} ({} B, SHA-1 ok): connect {}, handshake {}, \
                 unchoke {}, first block {}, piece {} ({rate:.1} MB/s)",
                t.piece,
                t.bytes,
                ms(t.connect),
                ms(t.handshake),
                ms(t.unchoke),
                ms(t.first_block),
                ms(t.piece_time),
            )
        }
        Err(e) => format!("probe {n} {target}: FAILED ({}): {e}", e.kind()),
    }
}

fn json_line(n: u64, target: SocketAddr, result: &Result<ProbeTimes, ProbeError>) -> String {
    let secs = |d: Duration| d.as_secs_f64();
    let v = match result {
        Ok(t) => serde_json::json!({
            "probe": n, "target": target.to_string(), "result": "ok",
            "piece": t.piece, "bytes": t.bytes,
            "connect_s": secs(t.connect), "handshake_s": secs(t.handshake),
            "unchoke_s": secs(t.unchoke), "first_block_s": secs(t.first_block),
            "piece_s": secs(t.piece_time),
        }),
        Err(e) => serde_json::json!({
            "probe": n, "target": target.to_string(), "result": e.kind(),
            "error": e.to_string(),
        }),
    };
    v.to_string()
}

/// Sleeps until `until` or until `stop` is set; false when stopped.
fn sleep_until(until: Instant, stop: &AtomicBool) -> bool {
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Runs the probes; fails (exit 1) if any probe failed.
pub fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let meta = super::load_torrent(&args.torrent)?;
    let pieces = meta.info.layout().piece_count();
    if let Some(p) = args.piece.filter(|&p| p >= pieces) {
        anyhow::bail!("--piece {p} is out of range: the torrent has {pieces} pieces");
    }
    if !(args.timeout_secs > 0.0 && args.timeout_secs.is_finite()) {
        anyhow::bail!("--timeout-secs must be a positive number of seconds");
    }
    if !(args.interval_secs >= 0.0 && args.interval_secs.is_finite()) {
        anyhow::bail!("--interval-secs must be zero or more seconds");
    }
    let torrent = Arc::new(BenchTorrent::new(
        meta.info_hash,
        meta.info.layout(),
        meta.info.pieces.clone(),
        Verify::Sha1Always,
    ));
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let (metrics, registry) = ProbeMetrics::new();
    let server = match args.metrics {
        Some(addr) => {
            let s = MetricsServer::spawn(addr, "probe-metrics", Arc::new(registry))?;
            tracing::info!("metrics at http://{}/metrics", s.local_addr());
            Some(s)
        }
        None => None,
    };
    let timeout = Duration::from_secs_f64(args.timeout_secs);
    let interval = Duration::from_secs_f64(args.interval_secs);
    let mut rng = rand::rng();
    let mut failed = 0u64;
    let mut n = 0u64;
    while args.count == 0 || n < args.count {
        n += 1;
        let started = Instant::now();
        let piece = args.piece.unwrap_or_else(|| rng.random_range(0..pieces));
        let result = probe_once(&torrent, args.target, piece, args.pipeline, timeout);
        metrics.record(&result);
        failed += u64::from(result.is_err());
        if args.json {
            println!("{}", json_line(n, args.target, &result));
        } else {
            println!("{}", report_line(n, args.target, &result));
        }
        let last = args.count != 0 && n == args.count;
        if last || !sleep_until(started + interval, &stop) {
            break;
        }
    }
    if let Some(s) = server {
        s.stop();
    }
    if failed > 0 {
        eprintln!("ringseed probe: {failed} of {n} probes failed");
        Ok(ExitCode::FAILURE)
    } else {
        Ok(ExitCode::SUCCESS)
    }
}
