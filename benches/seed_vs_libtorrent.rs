//! Side-by-side seeding benchmark: ringseed vs libtorrent (`high_performance_seed`) serving the
//! same torrent to 1 and 4 verifying leechers of `ringseed bench`, in the same run.
//!
//! Run: `cargo bench --bench seed_vs_libtorrent` (env: `RINGSEED_BENCH_BYTES`, default 1 GiB;
//! `RINGSEED_BENCH_REPS`, default 3; `RINGSEED_BENCH_IO`, default `uring,epoll`;
//! `RINGSEED_BENCH_LIBTORRENT=0` leaves libtorrent out).
//!
//! The cost of `seed --metrics`: an entry `uring+metrics` in `RINGSEED_BENCH_IO` runs the
//! seeder with `--metrics` while a thread scrapes `/metrics` every second; list entries more
//! than once to interleave them on a busy machine, e.g.
//! `RINGSEED_BENCH_IO=uring,uring+metrics,uring,uring+metrics RINGSEED_BENCH_LIBTORRENT=0`.
//! Needs python3-libtorrent (Debian) under /usr/bin/python3. Loopback only; stops by itself.
//! Prints a Markdown table of MB/s and seeder CPU seconds per GB (median of the reps).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

mod common;

use common::*;
use ringseed::loadgen::{self, BenchConfig, BenchReport, Verify};
use ringseed::metainfo::{parse_torrent, Metainfo};

fn ringseed_seeder(
    torrent: &Path,
    data: &Path,
    port: u16,
    io: &str,
    metrics: Option<SocketAddr>,
    log: &Path,
) -> Guard {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringseed"));
    cmd.arg("seed").arg(torrent).arg("--data").arg(data).args([
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--io",
        io,
        "--no-announce",
    ]);
    if let Some(addr) = metrics {
        cmd.args(["--metrics", &addr.to_string()]);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start ringseed seed");
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    Guard(child)
}

/// Scrapes `/metrics` every second until dropped (what a Prometheus server does, faster).
struct Scraper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Scraper {
    fn start(addr: SocketAddr) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut scrapes = 0;
            while !flag.load(Ordering::Relaxed) {
                if let Ok(mut s) = TcpStream::connect(addr) {
                    let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
                    let mut page = String::new();
                    if s.read_to_string(&mut page).is_ok() && page.contains("# EOF") {
                        scrapes += 1;
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            scrapes
        });
        Scraper {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let scrapes = t.join().unwrap_or(0);
            eprintln!("scraped /metrics {scrapes} times");
            assert!(scrapes > 0, "the metrics endpoint never answered");
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Row {
    seeder: String,
    peers: usize,
    mb_per_s: f64,
    seeder_cpu: f64,
    loadgen_cpu: f64,
}

fn measure(seeder: &str, meta: &Metainfo, target: SocketAddr, pid: u32, peers: usize) -> Row {
    let reps = env_or("RINGSEED_BENCH_REPS", 3);
    let mut reports: Vec<BenchReport> = Vec::new();
    // One uncounted warm-up run: first-touch page faults of a seeder's buffer pools and
    // the page cache are start-up costs, not serving costs.
    for rep in 0..=reps {
        let cfg = BenchConfig {
            peers,
            target,
            threads: 1,
            pipeline: 128,
            seeder_pid: Some(pid),
            timeout: Duration::from_secs(300),
            verify: Verify::Sha1Once,
        };
        let r = loadgen::run(meta, &cfg);
        assert!(r.ok(), "{seeder}: benchmark run failed:\n{r}");
        if rep > 0 {
            reports.push(r);
        }
    }
    Row {
        seeder: seeder.to_string(),
        peers,
        mb_per_s: median(reports.iter().map(|r| r.mb_per_s).collect()),
        seeder_cpu: median(
            reports
                .iter()
                .map(|r| r.seeder_cpu_s_per_gb.unwrap_or(f64::NAN))
                .collect(),
        ),
        loadgen_cpu: median(reports.iter().map(|r| r.loadgen_cpu_s_per_gb).collect()),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness-less benches to list tests.
    }
    let bytes = env_or("RINGSEED_BENCH_BYTES", 1 << 30);
    let ios = std::env::var("RINGSEED_BENCH_IO").unwrap_or_else(|_| "uring,epoll".into());
    let dir = tempfile::Builder::new()
        .prefix("ringseed-bench-")
        .tempdir()
        .unwrap();
    eprintln!("writing {} MiB of test data…", bytes >> 20);
    let data = make_data(dir.path(), bytes);
    let torrent = dir.path().join("bench.torrent");
    create_torrent(&data, &torrent);
    let meta = parse_torrent(&std::fs::read(&torrent).unwrap()).unwrap();
    eprintln!(
        "torrent: {} pieces of {} KiB",
        meta.info.pieces.len(),
        meta.info.piece_length >> 10
    );
    let mut rows = Vec::new();
    for (i, entry) in ios.split(',').enumerate() {
        let (io, metrics) = match entry.strip_suffix("+metrics") {
            Some(io) => (io, Some(SocketAddr::from(([127, 0, 0, 1], free_port())))),
            None => (entry, None),
        };
        let port = free_port();
        let log = dir.path().join(format!("seed-{i}-{io}.log"));
        let seeder = ringseed_seeder(&torrent, &data, port, io, metrics, &log);
        let _scraper = metrics.map(|addr| {
            wait_listening(addr);
            Scraper::start(addr)
        });
        let target = format!("127.0.0.1:{port}").parse().unwrap();
        for peers in [1, 4] {
            let name = match metrics {
                Some(_) => format!("ringseed ({io}, --metrics scraped 1/s)"),
                None => format!("ringseed ({io})"),
            };
            rows.push(measure(&name, &meta, target, seeder.0.id(), peers));
        }
    }
    if env_or("RINGSEED_BENCH_LIBTORRENT", 1) == 0 {
        print_table(&rows, bytes);
        return;
    }
    let port = free_port();
    let lt = libtorrent_seeder(&torrent, dir.path(), port);
    let target = format!("127.0.0.1:{port}").parse().unwrap();
    for peers in [1, 4] {
        rows.push(measure(
            "libtorrent 2.0.8 (high_performance_seed)",
            &meta,
            target,
            lt.0.id(),
            peers,
        ));
    }
    drop(lt);
    print_table(&rows, bytes);
}

fn print_table(rows: &[Row], bytes: u64) {
    let base = |peers: usize| {
        rows.iter()
            .find(|r| r.peers == peers && r.seeder.starts_with("libtorrent"))
            .map(|r| (r.mb_per_s, r.seeder_cpu))
    };
    println!(
        "\n{} MiB torrent, leechers = `ringseed bench` (first copy of each piece SHA-1, later copies XXH3-128 against it), median of {} runs\n",
        bytes >> 20,
        env_or("RINGSEED_BENCH_REPS", 3)
    );
    println!("| seeder | leechers | MB/s | seeder CPU s/GB | MB/s vs libtorrent | CPU/GB vs libtorrent | loadgen CPU s/GB |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        // Without a libtorrent row (RINGSEED_BENCH_LIBTORRENT=0) the ratios are left empty.
        let (vs_mb, vs_cpu) = match base(r.peers) {
            Some((mb, cpu)) => (
                format!("{:.2}x", r.mb_per_s / mb),
                format!("{:.2}x", r.seeder_cpu / cpu),
            ),
            None => ("—".to_string(), "—".to_string()),
        };
        println!(
            "| {} | {} | {:.0} | {:.3} | {vs_mb} | {vs_cpu} | {:.3} |",
            r.seeder, r.peers, r.mb_per_s, r.seeder_cpu, r.loadgen_cpu
        );
    }
}
