//! Side-by-side download benchmark, same run, loopback:
//! 1. one downloader fetches the torrent from a libtorrent seeder (`high_performance_seed`):
//!    `ringseed get` vs a libtorrent leecher (default settings, uTP off);
//! 2. a 6-peer swarm — one seeder and five leechers that also trade with each other — all
//!    ringseed (`seed` + 5 × `get`) vs all libtorrent.
//!
//! Reports wall time until every leecher is complete and CPU seconds per GB downloaded
//! (the downloaders' own CPU, from wait4; in the swarm also the seeder's). ringseed makes
//! each piece durable (fdatasync) before announcing it; libtorrent does not sync at all.
//!
//! Run: `cargo bench --bench get_vs_libtorrent` (env: `RINGSEED_BENCH_BYTES`, default
//! 1 GiB; `RINGSEED_BENCH_REPS`, default 2; `RINGSEED_BENCH_SWARM=0` skips part 2;
//! `RINGSEED_BENCH_DIR=/dev/shm` puts data and downloads on tmpfs, where fdatasync is free,
//! to compare the engines without the disk).
//! Needs python3-libtorrent under /usr/bin/python3. Stops by itself.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// CPU seconds a still-running process has used (utime + stime from /proc).
fn proc_cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // After the command name: state is field 3; utime and stime are fields 14 and 15.
    let ticks = f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// Waits for `child` to exit (polling, so a timeout applies) and returns its CPU seconds.
fn wait_cpu(child: &mut Child, deadline: Instant) -> Result<f64, String> {
    let pid = child.id() as libc::pid_t;
    loop {
        let mut status = 0;
        // SAFETY: wait4 on our own child with valid out-pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                return Err(format!("pid {pid} failed (status {status:#x})"));
            }
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            return Ok(tv(usage.ru_utime) + tv(usage.ru_stime));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("pid {pid} timed out"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ringseed_get(torrent: &Path, out: &Path, listen: SocketAddr, peers: &[SocketAddr]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ringseed"));
    cmd.arg("get")
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--listen", &listen.to_string(), "--json", "--no-announce"])
        .args(["--max-per-ip", "8"]);
    for p in peers.iter().filter(|p| **p != listen) {
        cmd.args(["--peer", &p.to_string()]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ringseed get")
}

fn lt_leecher(torrent: &Path, out: &Path, port: u16, peers: &[SocketAddr]) -> Child {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(LT_PEER)
        .arg("--torrent")
        .arg(torrent)
        .arg("--save")
        .arg(out)
        .args(["--listen-port", &port.to_string(), "--timeout", "600"]);
    for p in peers.iter().filter(|p| p.port() != port) {
        cmd.args(["--peer", &p.to_string()]);
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the libtorrent leecher (apt install python3-libtorrent)")
}

#[derive(Clone, Copy)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
}

fn median_run(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.wall_s.total_cmp(&b.wall_s));
    runs[runs.len() / 2]
}

/// Part 1, one repetition of each side.
fn single(torrent: &Path, dir: &Path, seeder: SocketAddr, ringseed: bool) -> Run {
    let out = dir.join("single-out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let mut child = if ringseed {
        let listen = format!("127.0.0.2:{}", free_port()).parse().unwrap();
        ringseed_get(torrent, &out, listen, &[seeder])
    } else {
        lt_leecher(torrent, &out, free_port(), &[seeder])
    };
    let cpu_s = wait_cpu(&mut child, deadline).expect("download");
    Run {
        wall_s: started.elapsed().as_secs_f64(),
        cpu_s,
    }
}

/// Part 2: a seeder and five leechers of one implementation.
fn swarm(torrent: &Path, data: &Path, dir: &Path, ringseed: bool) -> Run {
    let root = dir.join("swarm");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let seed_port = free_port();
    let seeder_addr: SocketAddr = format!("127.0.0.1:{seed_port}").parse().unwrap();
    let seeder = if ringseed {
        let child = Command::new(env!("CARGO_BIN_EXE_ringseed"))
            .arg("seed")
            .arg(torrent)
            .arg("--data")
            .arg(data)
            .args(["--listen", &seeder_addr.to_string(), "--no-announce"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ringseed seed");
        wait_listening(seeder_addr);
        Guard(child)
    } else {
        libtorrent_seeder(torrent, data.parent().unwrap(), seed_port)
    };
    let seeder_cpu_before = proc_cpu_s(seeder.0.id());
    let leechers: Vec<SocketAddr> = (0..5u8)
        .map(|i| {
            let ip = if ringseed {
                [127, 0, 0, 11 + i]
            } else {
                [127, 0, 0, 1]
            };
            SocketAddr::from((ip, free_port()))
        })
        .collect();
    let mut peers = leechers.clone();
    peers.push(seeder_addr);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(900);
    let mut children: Vec<Child> = leechers
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let out = root.join(format!("peer-{i}"));
            std::fs::create_dir_all(&out).unwrap();
            if ringseed {
                ringseed_get(torrent, &out, *addr, &peers)
            } else {
                lt_leecher(torrent, &out, addr.port(), &peers)
            }
        })
        .collect();
    let mut cpu_s = 0.0;
    for c in &mut children {
        cpu_s += wait_cpu(c, deadline).expect("swarm leecher");
    }
    let wall_s = started.elapsed().as_secs_f64();
    cpu_s += proc_cpu_s(seeder.0.id()) - seeder_cpu_before;
    drop(seeder);
    let _ = std::fs::remove_dir_all(&root);
    Run { wall_s, cpu_s }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness-less benches to list tests.
    }
    let bytes = env_or("RINGSEED_BENCH_BYTES", 1 << 30);
    let reps = env_or("RINGSEED_BENCH_REPS", 2).max(1);
    let mut builder = tempfile::Builder::new();
    builder.prefix("ringseed-getbench-");
    let dir = match std::env::var("RINGSEED_BENCH_DIR") {
        Ok(parent) => builder.tempdir_in(parent),
        Err(_) => builder.tempdir(),
    }
    .unwrap();
    eprintln!("writing {} MiB of test data…", bytes >> 20);
    let data = make_data(dir.path(), bytes);
    let torrent: PathBuf = dir.path().join("bench.torrent");
    create_torrent(&data, &torrent);
    let gb = bytes as f64 / 1e9;

    let port = free_port();
    let lt = libtorrent_seeder(&torrent, dir.path(), port);
    let seeder: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ours.push(single(&torrent, dir.path(), seeder, true));
        theirs.push(single(&torrent, dir.path(), seeder, false));
    }
    drop(lt);
    let (o, t) = (median_run(ours), median_run(theirs));
    println!(
        "\n{} MiB torrent from a libtorrent 2.0.8 seeder (high_performance_seed), median of {reps}\n",
        bytes >> 20
    );
    println!(
        "| downloader | seconds | MB/s | CPU s/GB | time vs libtorrent | CPU/GB vs libtorrent |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, r) in [("ringseed get", o), ("libtorrent 2.0.8 leecher", t)] {
        println!(
            "| {name} | {:.2} | {:.0} | {:.3} | {:.2}x | {:.2}x |",
            r.wall_s,
            bytes as f64 / r.wall_s / 1e6,
            r.cpu_s / gb,
            r.wall_s / t.wall_s,
            r.cpu_s / t.cpu_s
        );
    }

    if env_or("RINGSEED_BENCH_SWARM", 1) == 0 {
        return;
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        ours.push(swarm(&torrent, &data, dir.path(), true));
        theirs.push(swarm(&torrent, &data, dir.path(), false));
    }
    let (o, t) = (median_run(ours), median_run(theirs));
    println!(
        "\n6-peer swarm (1 seeder + 5 leechers trading), {} MiB each, median of {reps}\n",
        bytes >> 20
    );
    println!("| swarm | seconds until all complete | CPU s per GB downloaded | time vs libtorrent | CPU/GB vs libtorrent |");
    println!("|---|---|---|---|---|");
    for (name, r) in [
        ("ringseed (seed + 5 get)", o),
        ("libtorrent 2.0.8 (6 sessions)", t),
    ] {
        println!(
            "| {name} | {:.2} | {:.3} | {:.2}x | {:.2}x |",
            r.wall_s,
            r.cpu_s / (5.0 * gb),
            r.wall_s / t.wall_s,
            r.cpu_s / t.cpu_s
        );
    }
}
