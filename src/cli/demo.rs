//! `ringseed demo`: the README's first command. Makes a sample release, builds its torrent,
//! starts a seeder (a child `ringseed seed` process, so its CPU time is its own), lets the
//! load generator's verifying leechers download it over loopback, and prints what happened.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::hash::{self, CreateOptions, Progress};
use crate::loadgen::{self, BenchConfig, Verify};

/// Arguments of `ringseed demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the sample release.
    #[arg(long, default_value = "256MiB", value_parser = super::parse_size)]
    pub size: u64,
    /// Leechers that download it, each from its own 127.0.0.x address.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Seeder shard threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// I/O backend for the seeder (uring, epoll, auto).
    #[arg(long, default_value = "auto")]
    pub io: String,
    /// Work in this directory (kept) instead of a temporary one (removed).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Kills the seeder when the demo ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the demo end to end.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
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

    let port = free_port()?;
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let seeder = spawn_seeder(&torrent_path, &release, listen, &args, &dir)?;
    let pid = seeder.0.id();
    wait_listening(listen, Duration::from_secs(20))?;
    println!(
        "3. seeding on {listen} (pid {pid}, threads {}, io {}); log in {}",
        if args.threads == 0 {
            "one per core".to_string()
        } else {
            args.threads.to_string()
        },
        args.io,
        dir.join("seeder.log").display()
    );

    println!(
        "4. {} leechers download the release, each from its own 127.0.0.x address, \
         checking every piece's SHA-1…",
        args.peers
    );
    let cfg = BenchConfig {
        peers: args.peers,
        target: listen,
        threads: 1,
        pipeline: 128,
        seeder_pid: Some(pid),
        timeout: Duration::from_secs(600),
        verify: Verify::Sha1Once,
    };
    let report = loadgen::run(&meta, &cfg);
    println!();
    print!("{report}");
    drop(seeder);
    println!();
    if report.ok() {
        println!(
            "every leecher got every piece, verified: {:.0} MB/s from one seeder process.",
            report.mb_per_s
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("the demo FAILED: see the per-peer errors above and the seeder log");
        Ok(ExitCode::FAILURE)
    }
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
    dir: &Path,
) -> anyhow::Result<ChildGuard> {
    let log = std::fs::File::create(dir.join("seeder.log"))?;
    let child = Command::new(std::env::current_exe()?)
        .arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(listen.to_string())
        .args(["--threads", &args.threads.to_string(), "--io", &args.io])
        .arg("--no-announce")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start the seeder")?;
    Ok(ChildGuard(child))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
