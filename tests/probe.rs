//! `ringseed probe`, the appliance's canary, against a real `ringseed seed` on loopback: it
//! fetches and verifies pieces, fails loudly on corrupt data and on a dead target, and
//! exports its results for Prometheus.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::metrics::*;
use common::*;

const PIECE: usize = 256 * 1024;

/// A 1 MiB + 1,000-byte file (5 pieces, the last one short) and its torrent in `dir`.
fn release(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let data = pseudo_random(4 * PIECE + 1_000, 7);
    fs::write(dir.join("data.bin"), &data).unwrap();
    let torrent = create_torrent(dir, &dir.join("data.bin"), &[]);
    (torrent, data)
}

/// A seeder of [`release`] on a free port: the test dir, the torrent, the port, the process.
fn seeded(name: &str) -> (TestDir, std::path::PathBuf, u16, Proc) {
    let dir = TestDir::new(name);
    let (torrent, _) = release(dir.path());
    let port = free_port();
    let data = dir.path().join("data.bin");
    let seeder = spawn_seeder(dir.path(), &torrent, &data, port, &["--no-announce"]);
    (dir, torrent, port, seeder)
}

fn probe(args: &[&str]) -> (bool, String) {
    let out = Command::new(ringseed_bin())
        .arg("probe")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn probes_fetch_and_verify_pieces_and_time_each_stage() {
    let (_dir, torrent, port, _seeder) = seeded("probe-ok");
    let target = format!("127.0.0.1:{port}");
    let t = torrent.display().to_string();
    // Random pieces, then the short last piece by number.
    let (ok, out) = probe(&[
        &t,
        "--target",
        &target,
        "--count",
        "3",
        "--interval-secs",
        "0",
        "--json",
    ]);
    assert!(ok, "{out}");
    let (ok, last) = probe(&[&t, "--target", &target, "--piece", "4", "--json"]);
    assert!(ok, "{last}");
    let results = json_lines(&format!("{out}{last}"));
    assert_eq!(results.len(), 4, "{out}{last}");
    for r in &results {
        assert_eq!(r["result"], "ok", "{r}");
        let piece = r["piece"].as_u64().unwrap();
        let expected = if piece == 4 { 1_000 } else { PIECE as u64 };
        assert_eq!(r["bytes"].as_u64(), Some(expected), "{r}");
        let first = r["first_block_s"].as_f64().unwrap();
        let whole = r["piece_s"].as_f64().unwrap();
        assert!(first > 0.0 && first <= whole && whole < 10.0, "{r}");
    }
    assert_eq!(results[3]["piece"], 4);
    // The text form says the same in one line per probe.
    let (ok, text) = probe(&[&t, "--target", &target]);
    assert!(
        ok && text.contains(": ok, piece ") && text.contains("SHA-1 ok"),
        "{text}"
    );
}

#[test]
fn probes_fail_loudly_on_corrupt_data_and_a_dead_target() {
    let dir = TestDir::new("probe-bad");
    let (torrent, mut data) = release(dir.path());
    // The seeder serves a copy with one byte of piece 2 flipped (it does not hash what it
    // serves; the probe must).
    data[2 * PIECE + 100] ^= 0x40;
    fs::create_dir(dir.path().join("corrupt")).unwrap();
    fs::write(dir.path().join("corrupt/data.bin"), &data).unwrap();
    let port = free_port();
    let _seeder = spawn_seeder(
        dir.path(),
        &torrent,
        &dir.path().join("corrupt"),
        port,
        &["--no-announce"],
    );
    let t = torrent.display().to_string();
    let target = format!("127.0.0.1:{port}");
    let (ok, out) = probe(&[&t, "--target", &target, "--piece", "2", "--json"]);
    assert!(!ok, "a corrupt piece must fail the probe:\n{out}");
    assert_eq!(json_lines(&out)[0]["result"], "hash", "{out}");
    assert!(out.contains("1 of 1 probes failed"), "{out}");
    // Other pieces of the same seeder are fine.
    let (ok, out) = probe(&[&t, "--target", &target, "--piece", "1"]);
    assert!(ok, "{out}");
    // Nobody listens: a connect failure, exit status 1.
    let dead = format!("127.0.0.1:{}", free_port());
    let (ok, out) = probe(&[&t, "--target", &dead, "--json", "--timeout-secs", "3"]);
    assert!(!ok, "{out}");
    assert_eq!(json_lines(&out)[0]["result"], "connect", "{out}");
}

#[test]
fn a_running_probe_exports_its_results_for_prometheus() {
    let (dir, torrent, port, _seeder) = seeded("probe-metrics");
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("probe")
        .arg(&torrent)
        .args(["--target", &format!("127.0.0.1:{port}")])
        .args(["--count", "0", "--interval-secs", "0.2"])
        .args(["--metrics", &metrics.to_string()]);
    let mut p = Proc::spawn("ringseed probe", cmd, dir.path().join("probe.log"));
    let samples = scrape_until(metrics, |s| {
        s.get("ringseed_probe_runs_total{result=\"ok\"}")
            .is_some_and(|&n| n >= 3.0)
    });
    let ok = metric(&samples, "ringseed_probe_runs_total{result=\"ok\"}");
    assert!(ok >= 3.0, "{samples:?}\n{}", p.log_text());
    assert!(metric(&samples, "ringseed_probe_first_block_seconds_count") >= 3.0);
    assert!(metric(&samples, "ringseed_probe_piece_seconds_sum") > 0.0);
    assert!(metric(&samples, "ringseed_probe_last_success_timestamp_seconds") > 1.7e9);
    // SIGTERM ends the loop with the results so far: all probes succeeded, exit 0.
    let pid = p.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = p
        .wait_timeout(Duration::from_secs(10))
        .expect("probe stops on SIGTERM");
    assert!(status.success(), "{}", p.log_text());
}
