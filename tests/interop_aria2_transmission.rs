//! Interop: aria2 and Transmission (independent implementations, Debian packages) download a
//! multi-file release from a ringseed seeder found through opentracker; every file must
//! match byte for byte. Transmission never dials 127.0.0.0/8 peers, so in its test ringseed
//! connects out to the Transmission address that the tracker returns, as seeders do.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Creates the torrent with a tracker URL and starts opentracker allowing it; returns the
/// data, the torrent, the tracker and the info-hash.
fn release_with_tracker(dir: &Path, scale: usize) -> (PathBuf, PathBuf, Opentracker, String) {
    let src = make_release(dir, "release", scale);
    let probe = dir.join("probe.torrent");
    create_torrent_at(&src, &probe, &[]);
    let hash = info_hash_hex(&probe);
    let tracker_dir = dir.join("t");
    std::fs::create_dir_all(&tracker_dir).unwrap();
    let tracker = Opentracker::start(&tracker_dir, std::slice::from_ref(&hash));
    let torrent = create_torrent(dir, &src, &[&tracker.announce_url()]);
    (src, torrent, tracker, hash)
}

fn require(tool: &str, package: &str) {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
        "{tool} is not installed (apt install {package}): this interop test needs it"
    );
}

#[test]
fn aria2_downloads_release_found_through_opentracker() {
    // aria2c announces to opentracker, finds the ringseed seeder and downloads exact bytes.
    require("aria2c", "aria2");
    let dir = TestDir::new("aria2");
    let (src, torrent, _tracker, _) = release_with_tracker(dir.path(), 6 << 20);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &[]);
    let out = dir.path().join("aria2-out");
    let log_opts = ["--summary-interval=1", "--console-log-level=notice"];
    aria2_download(
        dir.path(),
        &torrent,
        &out,
        &log_opts,
        Duration::from_secs(150),
    );
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn transmission_downloads_release_when_ringseed_connects_out() {
    // Transmission announces first; ringseed's announce returns Transmission's address and
    // ringseed dials it (Transmission refuses to dial loopback peers itself).
    require("transmission-cli", "transmission-cli");
    let dir = TestDir::new("transmission");
    let (src, torrent, tracker, hash) = release_with_tracker(dir.path(), 6 << 20);
    let out = dir.path().join("tr-out");
    let config = dir.path().join("tr-config");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&config).unwrap();
    let tr_port = free_port();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(&out)
        // -M: no NAT-PMP/UPnP, which delays Transmission's first announce by seconds.
        .args(["-p", &tr_port.to_string(), "-D", "-M"])
        .arg(&torrent);
    let _tr = Proc::spawn("transmission-cli", cmd, dir.path().join("transmission.log"));
    let tr_addr = format!("127.0.0.1:{tr_port}").parse().unwrap();
    assert!(
        wait_listening(tr_addr, Duration::from_secs(20)),
        "transmission-cli did not listen"
    );
    // The seeder learns of Transmission from its first announce: wait until the tracker
    // lists Transmission as a leecher.
    assert!(
        wait_until(Duration::from_secs(60), || tracker.leechers(&hash) >= 1),
        "Transmission never announced to the tracker"
    );
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &[]);
    // Transmission 3.00 does not create zero-length files; every other file must match.
    let done = wait_until(Duration::from_secs(150), || {
        same_files_except_empty(&src, &out.join("release"), true)
    });
    assert!(
        done,
        "Transmission did not get every file byte-exact in time"
    );
    std::fs::write(out.join("release/empty.txt"), b"").unwrap();
    assert_same_files(&src, &out.join("release"));
}
