//! `ringseed get` against real seeders (ringseed, libtorrent, aria2, Transmission), a corrupt
//! seeder that must be banned, and the kill -9 resume loop. Every download is compared with
//! the source byte for byte (SHA-256 of every file). Loopback only; runs on the io backend
//! RINGSEED_IO selects (the suite runs it under both).

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const NO_ANNOUNCE: &[&str] = &["--no-announce"];

/// Starts `ringseed get` with JSON status lines and debug logs.
fn spawn_get(
    dir: &Path,
    name: &str,
    torrent: impl AsRef<std::ffi::OsStr>,
    out: &Path,
    extra: &[String],
) -> Proc {
    let mut cmd = get_command(torrent, out, &format!("127.0.0.1:{}", free_port()));
    cmd.args(extra)
        .env("RUST_LOG", "info,ringseed::getter=debug");
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

fn peer_args(addrs: &[String]) -> Vec<String> {
    let mut v: Vec<String> = vec!["--no-announce".into(), "--max-per-ip".into(), "8".into()];
    for a in addrs {
        v.push("--peer".into());
        v.push(a.clone());
    }
    v
}

#[test]
fn get_downloads_from_a_ringseed_seeder() {
    // The downloader and the seeder, both ours, agree byte for byte (multi-file, empty file).
    let dir = TestDir::new("get-rs");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &["--no-announce"]);
    let out = dir.path().join("out");
    let mut get = spawn_get(
        dir.path(),
        "get",
        &torrent,
        &out,
        &peer_args(&[format!("127.0.0.1:{port}")]),
    );
    expect_done(&mut get, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn get_downloads_from_a_libtorrent_seeder() {
    // libtorrent seeds; ringseed dials it and gets exact bytes.
    let dir = TestDir::new("get-lt");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _lt = libtorrent_seeder(dir.path(), &torrent, port, &[]);
    let out = dir.path().join("out");
    let mut get = spawn_get(
        dir.path(),
        "get",
        &torrent,
        &out,
        &peer_args(&[format!("127.0.0.1:{port}")]),
    );
    expect_done(&mut get, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

/// The torrent's magnet URI with no tracker and one `x.pe` peer hint.
fn magnet_for(torrent: &Path, peer: &str) -> String {
    let out = Command::new(ringseed_bin())
        .arg("magnet")
        .arg(torrent)
        .args(["--no-trackers", "--peer", peer])
        .output()
        .unwrap();
    assert!(out.status.success(), "ringseed magnet failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn get_magnet_fetches_metadata_from_a_libtorrent_seeder() {
    // Only the magnet URI (info-hash + x.pe): ringseed fetches the info dict from libtorrent
    // over BEP 9, checks it against the info-hash, downloads, and caches the .torrent so a
    // second run with no peer at all finds the finished download.
    let dir = TestDir::new("get-magnet-lt");
    let src = make_release(dir.path(), "release", 3 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let lt = libtorrent_seeder(dir.path(), &torrent, port, &[]);
    let magnet = magnet_for(&torrent, &format!("127.0.0.1:{port}"));
    let out = dir.path().join("out");
    let mut get = spawn_get(dir.path(), "get", &magnet, &out, &peer_args(&[]));
    expect_done(&mut get, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
    let cached = std::fs::read_dir(out.join(".ringseed"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "torrent"));
    assert!(cached, "the fetched metadata was not cached");
    drop(lt);
    // No peers now: the cached metadata and resume data must be enough to finish.
    let magnet_alone = magnet.split("&x.pe=").next().unwrap().to_string();
    let mut again = spawn_get(dir.path(), "again", &magnet_alone, &out, &peer_args(&[]));
    expect_done(&mut again, Duration::from_secs(30));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn get_magnet_fetches_metadata_from_a_ringseed_seeder() {
    // Same path against our own seeder's ut_metadata side, with an info dict of more than
    // one 16 KiB metadata piece (16 KiB pieces over ~14 MiB: ~900 hashes, ~18 KB).
    let dir = TestDir::new("get-magnet-rs");
    let src = make_release(dir.path(), "release", 13 << 20);
    let torrent = dir.path().join("release.torrent");
    ringseed(&[
        "create",
        &src.display().to_string(),
        "-o",
        &torrent.display().to_string(),
        "--piece-size",
        "16KiB",
    ]);
    assert!(std::fs::metadata(&torrent).unwrap().len() > 17_000);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &["--no-announce"]);
    let magnet = magnet_for(&torrent, &format!("127.0.0.1:{port}"));
    let out = dir.path().join("out");
    let mut get = spawn_get(dir.path(), "get", &magnet, &out, &peer_args(&[]));
    expect_done(&mut get, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn get_downloads_from_an_aria2_seeder() {
    // aria2c checks the data, seeds it, and ringseed dials it.
    let dir = TestDir::new("get-aria2");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--check-integrity=true",
        "--seed-ratio=0.0",
        "--seed-time=10",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        &format!("--listen-port={port}"),
        "-d",
    ])
    .arg(dir.path())
    .arg(&torrent);
    let aria = Proc::spawn("aria2c seeder", cmd, dir.path().join("aria2.log"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_listening(addr, Duration::from_secs(30)),
        "aria2c did not listen (apt install aria2)"
    );
    let out = dir.path().join("out");
    let mut get = spawn_get(
        dir.path(),
        "get",
        &torrent,
        &out,
        &peer_args(&[addr.to_string()]),
    );
    expect_done(&mut get, Duration::from_secs(120));
    drop(aria);
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn get_downloads_from_a_transmission_seeder() {
    // transmission-cli verifies the data and seeds; it accepts our incoming connection.
    let dir = TestDir::new("get-tr");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let config = dir.path().join("tr-config");
    std::fs::create_dir_all(&config).unwrap();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(dir.path())
        .args(["-p", &port.to_string(), "-M", "-U"])
        .arg(&torrent);
    let _tr = Proc::spawn("transmission-cli seeder", cmd, dir.path().join("tr.log"));
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_listening(addr, Duration::from_secs(30)),
        "transmission-cli did not listen (apt install transmission-cli)"
    );
    let out = dir.path().join("out");
    let mut get = spawn_get(
        dir.path(),
        "get",
        &torrent,
        &out,
        &peer_args(&[addr.to_string()]),
    );
    expect_done(&mut get, Duration::from_secs(150));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn corrupt_seeder_is_banned_and_the_download_completes_from_honest_ones() {
    // One seeder (127.0.0.3) serves a copy with flipped bytes in many pieces; its pieces fail,
    // smart-ban pins them on it, its IP is banned, and the honest seeder (127.0.0.2)
    // completes the download byte-exact.
    let dir = TestDir::new("get-ban");
    let src = make_release(dir.path(), "release", 5 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let bad_root = dir.path().join("bad");
    std::fs::create_dir_all(&bad_root).unwrap();
    copy_tree(&src, &bad_root.join("release"));
    let big = bad_root.join("release/big.bin");
    let mut bytes = std::fs::read(&big).unwrap();
    for i in (0..bytes.len()).step_by(256 * 1024) {
        bytes[i + 100] ^= 0xff;
    }
    std::fs::write(&big, bytes).unwrap();
    let good_port = free_port();
    let bad_port = free_port();
    let _good = spawn_seeder_on(
        dir.path(),
        &torrent,
        dir.path(),
        "127.0.0.2",
        good_port,
        NO_ANNOUNCE,
    );
    let _bad = spawn_seeder_on(
        dir.path(),
        &torrent,
        &bad_root,
        "127.0.0.3",
        bad_port,
        NO_ANNOUNCE,
    );
    let out = dir.path().join("out");
    let peers = [
        format!("127.0.0.3:{bad_port}"),
        format!("127.0.0.2:{good_port}"),
    ];
    // Slow enough that both seeders unchoke us and serve pieces.
    let mut args = peer_args(&peers);
    args.extend(["--max-download-rate".into(), "3MiB".into()]);
    let mut get = spawn_get(dir.path(), "get", &torrent, &out, &args);
    expect_done(&mut get, Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
    let log = get.log_text();
    assert!(
        log.contains("banning peer") && log.contains("127.0.0.3"),
        "no ban logged:\n{log}"
    );
    assert!(
        !log.contains("ip=127.0.0.2"),
        "the honest seeder was blamed:\n{log}"
    );
}

/// Pieces a `get` run logged as verified (its debug log: `piece verified piece=N`).
fn verified_pieces(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|l| l.contains("piece verified"))
        .filter_map(|l| {
            let at = l.find("piece=")? + 6;
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

#[test]
fn get_resumes_after_kill_9_without_losing_or_refetching_verified_pieces() {
    // 20 times: start `get` (rate-limited so it takes a while), SIGKILL it at a random
    // moment, restart. No piece reported verified before a kill is downloaded again after
    // it, and the final files are byte-exact.
    let dir = TestDir::new("get-kill9");
    let src = make_release(dir.path(), "release", 12 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let port = free_port();
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &["--no-announce"]);
    let out = dir.path().join("out");
    let mut args = peer_args(&[format!("127.0.0.1:{port}")]);
    args.extend(["--max-download-rate".into(), "1MiB".into()]);
    let mut seen: HashSet<u32> = HashSet::new();
    let mut rng = 0x2545f4914f6cdd1du64;
    let mut kills = 0;
    for round in 0..40 {
        let name = format!("get-{round}");
        let mut get = spawn_get(dir.path(), &name, &torrent, &out, &args);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let life = Duration::from_millis(100 + rng % 400);
        let finished = kills >= 20 || get.wait_timeout(life).is_some();
        if !finished {
            unsafe {
                libc::kill(get.child.id() as i32, libc::SIGKILL);
            }
            let _ = get.child.wait();
            kills += 1;
        } else {
            expect_done(&mut get, Duration::from_secs(120));
        }
        let again: Vec<u32> = verified_pieces(&get.log_text())
            .into_iter()
            .filter(|p| seen.contains(p))
            .collect();
        assert!(
            again.is_empty(),
            "round {round}: pieces {again:?} downloaded again after a kill"
        );
        seen.extend(verified_pieces(&get.log_text()));
        if finished {
            break;
        }
    }
    assert!(
        kills >= 20,
        "the download finished before 20 kills ({kills}); slow it down"
    );
    assert_same_files(&src, &out.join("release"));
}
