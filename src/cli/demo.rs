//! `ringseed demo`: the README's first command. Makes a sample release and its torrent, then
//! (1) runs a real swarm on loopback: an upload-capped `ringseed seed` and several
//! `ringseed get` peers that trade pieces, drawing how pieces spread and who uploaded what;
//! (2) serves it at line rate to the load generator's verifying leechers. Seeder and peers
//! are child processes, so each one's CPU time is its own.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::hash::{self, CreateOptions, Progress};
use crate::loadgen::{self, BenchConfig, Verify};
use crate::metainfo::Metainfo;

use super::demo_swarm;

/// Arguments of `ringseed demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the sample release.
    #[arg(long, default_value = "128MiB", value_parser = super::parse_size)]
    pub size: u64,
    /// `ringseed get` peers in the swarm, each on its own 127.0.0.x address.
    #[arg(long, default_value_t = 5)]
    pub peers: usize,
    /// The seeder's upload cap during the swarm part, per second: small enough that the
    /// peers must trade pieces among themselves to finish quickly.
    #[arg(long, default_value = "32MiB", value_parser = super::parse_size)]
    pub seeder_rate: u64,
    /// Verifying load-generator leechers for the line-rate part (0 skips it).
    #[arg(long, default_value_t = 4)]
    pub bench_peers: usize,
    /// Seeder shard threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// I/O backend for the seeder and the peers (uring, epoll, auto).
    #[arg(long, default_value = "auto")]
    pub io: String,
    /// Work in this directory (kept) instead of a temporary one (removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Stops a child process when the demo ends, however it ends.
struct ChildGuard(Child);

impl ChildGuard {
    /// SIGTERM (so it logs its totals), then SIGKILL after a grace period.
    fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.0.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo end to end.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.peers >= 1, "--peers must be at least 1");
    anyhow::ensure!(args.size >= 1 << 20, "--size must be at least 1MiB");
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("ringseed-demo-")
                .tempdir()?,
        ),
    };
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.as_ref().expect("temp dir").path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    println!("ringseed demo in {}", dir.display());

    let release = dir.join("sample-release");
    let t = Instant::now();
    write_sample_release(&release, args.size)?;
    println!(
        "1. wrote a {:.0} MiB sample release (3 files, one empty) in {:.1} s",
        args.size as f64 / (1 << 20) as f64,
        t.elapsed().as_secs_f64()
    );

    let torrent_path = dir.join("sample-release.torrent");
    let t = Instant::now();
    let (bytes, meta) = hash::create_torrent(
        &release,
        &CreateOptions::default(),
        &Progress::stderr_bar("hashing"),
    )?;
    super::write_atomically(&torrent_path, &bytes)?;
    let secs = t.elapsed().as_secs_f64();
    println!(
        "2. created {} ({} pieces of {} KiB) at {:.0} MB/s; info-hash {}",
        torrent_path.display(),
        meta.info.pieces.len(),
        meta.info.piece_length / 1024,
        meta.info.total_length() as f64 / secs / 1e6,
        meta.info_hash
    );

    let swarm_ok = run_swarm(&args, &dir, &torrent_path, &release, &meta)?;
    let bench_ok = if args.bench_peers > 0 {
        run_line_rate(&args, &dir, &torrent_path, &release, &meta)?
    } else {
        true
    };
    Ok(if swarm_ok && bench_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Part one: a capped seeder and `args.peers` `get` peers trading pieces.
fn run_swarm(
    args: &DemoArgs,
    dir: &Path,
    torrent: &Path,
    release: &Path,
    meta: &Metainfo,
) -> anyhow::Result<bool> {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")?).parse()?;
    let rate = format!("{}", args.seeder_rate);
    let log = dir.join("seeder.log");
    let mut seeder = spawn_seeder(
        torrent,
        release,
        listen,
        args,
        &log,
        &["--max-upload-rate", &rate],
    )?;
    wait_listening(listen, Duration::from_secs(20))?;
    println!(
        "3. seeding on {listen}, upload capped at {:.0} MiB/s; log in {}",
        args.seeder_rate as f64 / (1 << 20) as f64,
        log.display()
    );
    let addrs = peer_addrs(args.peers)?;
    println!(
        "4. {} `ringseed get` peers ({}) download it from the seeder and from each other; \n   \
         each bar is one peer's verified pieces:",
        args.peers,
        addrs
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let started = Instant::now();
    let mut peers = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let out = dir.join(format!("peer-{}", i + 1));
        std::fs::create_dir_all(&out)?;
        peers.push(demo_swarm::Peer::spawn(
            torrent, &out, *addr, listen, &addrs, &args.io, started,
        )?);
    }
    let pieces = meta.info.pieces.len() as u64;
    let deadline = started + Duration::from_secs(600);
    let mut failed = None;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        println!(
            "{}",
            demo_swarm::spread_row(started.elapsed().as_secs_f64(), &peers, pieces)
        );
        let mut all_done = true;
        for (i, p) in peers.iter_mut().enumerate() {
            all_done &= p.poll_done();
            if p.exited_early() {
                failed = Some(format!("peer {} exited early (see its log)", i + 1));
            }
        }
        if all_done || failed.is_some() || Instant::now() > deadline {
            break;
        }
    }
    let mut finals = Vec::new();
    for p in peers {
        let (addr, done) = (p.addr, p.done_at_s);
        finals.push((addr, done, p.stop()));
    }
    seeder.stop();
    let seeder_up = demo_swarm::seeder_uploaded_from_log(&std::fs::read_to_string(&log)?);
    println!();
    print!(
        "{}",
        demo_swarm::summary(&finals, seeder_up, meta.info.total_length())
    );
    let all_done = finals.iter().all(|(_, done, _)| done.is_some());
    match (all_done, failed) {
        (true, _) => {
            println!("every peer verified every piece (SHA-1) and wrote it to disk.\n");
            Ok(true)
        }
        (false, Some(why)) => {
            println!("the swarm FAILED: {why}\n");
            Ok(false)
        }
        (false, None) => {
            println!("the swarm FAILED: not every peer finished within 10 minutes\n");
            Ok(false)
        }
    }
}

/// Part two: an uncapped seeder and the verifying load generator, at line rate.
fn run_line_rate(
    args: &DemoArgs,
    dir: &Path,
    torrent: &Path,
    release: &Path,
    meta: &Metainfo,
) -> anyhow::Result<bool> {
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1")?).parse()?;
    let log = dir.join("seeder-line-rate.log");
    let seeder = spawn_seeder(torrent, release, listen, args, &log, &[])?;
    let pid = seeder.0.id();
    wait_listening(listen, Duration::from_secs(20))?;
    println!(
        "5. line rate: an uncapped seeder on {listen} (pid {pid}, threads {}, io {}) and {} \
         load-generator leechers, each from its own 127.0.0.x address, checking every piece…",
        if args.threads == 0 {
            "one per core".to_string()
        } else {
            args.threads.to_string()
        },
        args.io,
        args.bench_peers
    );
    let cfg = BenchConfig {
        peers: args.bench_peers,
        target: listen,
        threads: 1,
        pipeline: 128,
        seeder_pid: Some(pid),
        timeout: Duration::from_secs(600),
        verify: Verify::Sha1Once,
    };
    let report = loadgen::run(meta, &cfg);
    println!();
    print!("{report}");
    drop(seeder);
    println!();
    if report.ok() {
        println!(
            "every leecher got every piece, verified: {:.0} MB/s from one seeder process.",
            report.mb_per_s
        );
        Ok(true)
    } else {
        println!("the line-rate run FAILED: see the per-peer errors above and the seeder log");
        Ok(false)
    }
}

/// `n` peer addresses, 127.0.0.11 upwards, on one port that is free on each of them.
fn peer_addrs(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    anyhow::ensure!(n <= 200, "at most 200 peers");
    'port: for _ in 0..20 {
        let port = free_port("127.0.0.11")?;
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 11 + i as u8], port)))
            .collect();
        for a in &addrs {
            if TcpListener::bind(a).is_err() {
                continue 'port;
            }
        }
        return Ok(addrs);
    }
    anyhow::bail!("no port is free on every 127.0.0.x address")
}

/// Three files: most of the bytes, a small file that is not a multiple of any piece size,
/// and an empty one. Content is fast pseudo-random data (xorshift), not compressible.
fn write_sample_release(dir: &Path, size: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("extras"))?;
    let small = 123_457u64.min(size / 4);
    write_random(&dir.join("release.bin"), size - small, 0x5eed)?;
    write_random(&dir.join("extras/readme.bin"), small, 0xbeef)?;
    std::fs::write(dir.join("extras/empty.txt"), b"")?;
    Ok(())
}

fn write_random(path: &Path, len: u64, seed: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut x = seed | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            word.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn spawn_seeder(
    torrent: &Path,
    data: &Path,
    listen: SocketAddr,
    args: &DemoArgs,
    log: &Path,
    extra: &[&str],
) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(log)?;
    let child = Command::new(std::env::current_exe()?)
        .arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--threads", &args.threads.to_string(), "--io", &args.io])
        .arg("--no-announce")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start the seeder")?;
    Ok(ChildGuard(child))
}

fn free_port(ip: &str) -> anyhow::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

fn wait_listening(addr: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("the seeder did not start listening on {addr} (see seeder.log)")
}
