//! `ringseed demo` runs its swarm to the end with peers trading pieces, and the upload caps
//! (`seed --max-upload-rate`, `get --max-upload-rate`) hold a download to their rate.
//! Loopback only; the io backend follows RINGSEED_IO.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn get(dir: &Path, name: &str, torrent: &Path, ip: &str, extra: &[&str]) -> Proc {
    let mut cmd = get_command(torrent, &dir.join(name), &format!("{ip}:{}", free_port()));
    cmd.args(["--no-announce"])
        .args(extra)
        .env("RUST_LOG", "info");
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

fn finished_ok(p: &mut Proc, timeout: Duration) -> bool {
    matches!(p.wait_timeout(timeout), Some(s) if s.success())
}

#[test]
fn demo_swarm_completes_and_peers_upload_to_each_other() {
    // A small demo: 3 `get` peers and a seeder capped at 2 MiB/s. Without trading, three
    // copies of 8 MiB would take the seeder 12 s; the peers must serve much of it.
    let dir = TestDir::new("demo");
    let work = dir.path().join("demo");
    let out = Command::new(ringseed_bin())
        .args([
            "demo",
            "--size",
            "8MiB",
            "--peers",
            "3",
            "--seeder-rate",
            "2MiB",
        ])
        .args(["--bench-peers", "1", "--dir", work.to_str().unwrap()])
        .output()
        .expect("run the demo");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "demo failed:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains("came from other peers"))
        .unwrap_or_else(|| panic!("no sharing summary:\n{text}"));
    let percent: u32 = line
        .split(';')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unreadable summary line: {line}"));
    assert!(percent >= 20, "peers served only {percent} %:\n{text}");
    assert!(text.contains("every leecher got every piece"), "{text}");
    let release = work.join("sample-release");
    for i in 1..=3 {
        assert_same_files(&release, &work.join(format!("peer-{i}/sample-release")));
    }
}

#[test]
fn seeder_upload_cap_holds_a_download_to_its_rate() {
    // 6 MiB from a seeder capped at 2 MiB/s (one shard) cannot take less than ~2.7 s
    // (3 s minus a quarter-second burst).
    let dir = TestDir::new("seed-cap");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _seeder = spawn_seeder(
        dir.path(),
        &torrent,
        dir.path(),
        port,
        &[
            "--no-announce",
            "--threads",
            "1",
            "--max-upload-rate",
            "2MiB",
        ],
    );
    let started = Instant::now();
    let mut g = get(
        dir.path(),
        "get",
        &torrent,
        "127.0.0.2",
        &["--peer", &format!("127.0.0.1:{port}")],
    );
    assert!(finished_ok(&mut g, Duration::from_secs(60)), "get failed");
    let took = started.elapsed();
    assert_same_files(&src, &dir.path().join("get/release"));
    assert!(
        took >= Duration::from_millis(2_500),
        "capped download took only {took:?}"
    );
}

#[test]
fn get_upload_cap_holds_a_peer_to_its_rate() {
    // A finished `get` seeding with --max-upload-rate 2MiB serves a second `get` no faster.
    let dir = TestDir::new("get-cap");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    // The first peer starts with the complete data: it checks it and seeds.
    copy_tree(&src, &dir.path().join("first/release"));
    let first_port = free_port();
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(dir.path().join("first"))
        .args(["--listen", &format!("127.0.0.3:{first_port}"), "--json"])
        .args(["--no-announce", "--seed", "--max-upload-rate", "2MiB"]);
    let first = Proc::spawn("first", cmd, dir.path().join("first.log"));
    let addr = format!("127.0.0.3:{first_port}").parse().unwrap();
    assert!(
        wait_listening(addr, Duration::from_secs(30)),
        "first peer not listening"
    );
    assert!(
        wait_until(Duration::from_secs(30), || first
            .log_text()
            .contains("\"complete\":true")),
        "first peer never found its data complete"
    );
    let started = Instant::now();
    let mut second = get(
        dir.path(),
        "second",
        &torrent,
        "127.0.0.4",
        &["--peer", &addr.to_string()],
    );
    assert!(
        finished_ok(&mut second, Duration::from_secs(60)),
        "get failed"
    );
    let took = started.elapsed();
    assert_same_files(&src, &dir.path().join("second/release"));
    assert!(
        took >= Duration::from_millis(2_500),
        "capped download took only {took:?}"
    );
}
