//! Interop: libtorrent (Debian python3-libtorrent, an independent implementation) downloads a
//! multi-file release from a ringseed seeder and every file matches byte for byte.
//! Runs on whichever io backend RINGSEED_IO selects; the suite runs it under both.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

fn libtorrent_client(dir: &Path, args: &[String]) -> Proc {
    assert!(
        Command::new("/usr/bin/python3")
            .args(["-c", "import libtorrent"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false),
        "python3-libtorrent is not installed (apt install python3-libtorrent)"
    );
    libtorrent(dir, "libtorrent", args)
}

fn expect_download(client: &mut Proc, timeout: Duration) {
    let status = client.wait_timeout(timeout);
    assert!(
        matches!(status, Some(s) if s.success()),
        "libtorrent did not finish ({status:?}):\n{}",
        client.log_text()
    );
}

#[test]
fn libtorrent_downloads_release_found_through_opentracker() {
    // A libtorrent leecher finds the ringseed seeder through opentracker and gets exact bytes.
    let dir = TestDir::new("lt-tracker");
    let src = make_release(dir.path(), "release", 6 << 20);
    let tracker_dir = dir.path().join("t");
    std::fs::create_dir_all(&tracker_dir).unwrap();
    // The torrent needs the tracker URL, and the tracker needs the info-hash: create once to
    // learn the hash with a placeholder port, then start the tracker and create for real.
    let port = free_port();
    let probe = create_torrent(dir.path(), &src, &[]);
    let tracker = Opentracker::start(&tracker_dir, &[info_hash_hex(&probe)]);
    let torrent = create_torrent(dir.path(), &src, &[&tracker.announce_url()]);
    assert_eq!(
        info_hash_hex(&torrent),
        info_hash_hex(&probe),
        "tracker URL is outside info"
    );
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &[]);
    let out = dir.path().join("lt-out");
    let mut lt = libtorrent_client(
        dir.path(),
        &[
            "--torrent".into(),
            torrent.display().to_string(),
            "--save".into(),
            out.display().to_string(),
        ],
    );
    expect_download(&mut lt, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn libtorrent_downloads_release_from_direct_peer_address() {
    // Without any tracker, libtorrent dials the seeder directly and gets exact bytes.
    let dir = TestDir::new("lt-direct");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &[]);
    let out = dir.path().join("lt-out");
    let mut lt = libtorrent_client(
        dir.path(),
        &[
            "--torrent".into(),
            torrent.display().to_string(),
            "--save".into(),
            out.display().to_string(),
            "--peer".into(),
            format!("127.0.0.1:{port}"),
        ],
    );
    expect_download(&mut lt, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn libtorrent_fetches_metadata_from_magnet_then_data() {
    // A magnet link with only the info-hash and an x.pe peer hint: libtorrent fetches the
    // info dict from ringseed over BEP 9, checks it against the hash, then downloads.
    let dir = TestDir::new("lt-magnet");
    let src = make_release(dir.path(), "release", 3 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &[]);
    let magnet = ringseed(&[
        "magnet",
        torrent.to_str().unwrap(),
        "--peer",
        &format!("127.0.0.1:{port}"),
    ]);
    let magnet = magnet.trim();
    assert!(magnet.contains("x.pe=127.0.0.1"), "{magnet}");
    let out = dir.path().join("lt-out");
    let mut lt = libtorrent_client(
        dir.path(),
        &[
            "--magnet".into(),
            magnet.to_string(),
            "--save".into(),
            out.display().to_string(),
        ],
    );
    expect_download(&mut lt, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}
