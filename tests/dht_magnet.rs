//! Trackerless magnets end to end over the DHT on loopback: a magnet with only `xt` is
//! resolved to peers through DHT nodes, its metadata fetched (BEP 9) and the download
//! verified byte for byte — between ringseed peers, and against libtorrent in both
//! directions (libtorrent bootstraps from ringseed DHT nodes and downloads from a ringseed
//! seeder; ringseed finds a libtorrent seeder). A `ringseed dht` process is the router.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

/// `magnet:?xt=urn:btih:<hex>` and nothing else.
fn bare_magnet(torrent: &Path) -> String {
    format!("magnet:?xt=urn:btih:{}", info_hash_hex(torrent))
}

/// A `ringseed dht` node on 127.0.0.1, the only bootstrap node everyone knows.
fn spawn_router(dir: &Path) -> (Proc, String) {
    let port = free_port_udp_too();
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(ringseed_bin());
    cmd.args(["dht", "--listen", &addr])
        .env("RUST_LOG", "info,ringseed::dht=debug");
    let p = Proc::spawn("ringseed dht router", cmd, dir.join("router.log"));
    assert!(
        wait_until(Duration::from_secs(10), || p
            .log_text()
            .contains("dht listening")),
        "the DHT router did not start"
    );
    (p, addr)
}

/// True once `log` shows a DHT announce that reached at least one node.
fn announced(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("DHT get_peers lookup done") && !l.contains("announced_to=0"))
}

fn spawn_dht_seeder(dir: &Path, torrent: &Path, router: &str) -> Proc {
    let port = free_port_udp_too();
    let seeder = spawn_seeder(
        dir,
        torrent,
        dir,
        port,
        &["--no-announce", "--dht-bootstrap", router],
    );
    assert!(
        wait_until(Duration::from_secs(15), || announced(&seeder.log_text())),
        "the ringseed seeder never announced on the DHT"
    );
    seeder
}

fn spawn_get(dir: &Path, magnet: &str, out: &Path, router: &str) -> Proc {
    let port = free_port_udp_too();
    let mut cmd = get_command(magnet, out, &format!("127.0.0.1:{port}"));
    cmd.args(["--max-per-ip", "8", "--dht-bootstrap", router])
        .env("RUST_LOG", "info");
    Proc::spawn("ringseed get", cmd, dir.join("get.log"))
}

#[test]
fn get_with_a_bare_magnet_downloads_from_a_ringseed_seeder_found_on_the_dht() {
    // No tracker, no peer hint: `get` asks the DHT router, finds the seeder, fetches the
    // metadata and the data, and the files match; the DHT routing table is saved.
    let dir = TestDir::new("dht-magnet-rs");
    let src = make_release(dir.path(), "release", 3 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let (_router, router) = spawn_router(dir.path());
    let seeder = spawn_dht_seeder(dir.path(), &torrent, &router);
    let out = dir.path().join("out");
    let mut get = spawn_get(dir.path(), &bare_magnet(&torrent), &out, &router);
    expect_done(&mut get, Duration::from_secs(45));
    assert_same_files(&src, &out.join("release"));
    assert!(
        out.join(".ringseed/dht.dat").is_file(),
        "DHT table not saved"
    );
    // `ringseed dht --search` (a node of its own) prints the seeder too.
    let magnet = bare_magnet(&torrent);
    let hex = magnet.rsplit(':').next().unwrap();
    let mut cmd = Command::new(ringseed_bin());
    cmd.args(["dht", "--listen", "127.0.0.1:0", "--bootstrap", &router])
        .args(["--search", hex]);
    let search = Proc::spawn("ringseed dht --search", cmd, dir.path().join("search.log"));
    let want = format!("peer {hex} 127.0.0.1:{}", seeder_port(&seeder));
    assert!(
        wait_until(Duration::from_secs(15), || search
            .log_text()
            .contains(&want)),
        "`ringseed dht --search` did not print `{want}`"
    );
}

/// The TCP port of a seeder started by `spawn_seeder` (its log is `seed-<port>.log`).
fn seeder_port(seeder: &Proc) -> u16 {
    let name = seeder.log.file_stem().unwrap().to_str().unwrap();
    name.trim_start_matches("seed-").parse().unwrap()
}

#[test]
fn libtorrent_bootstraps_from_ringseed_nodes_and_downloads_from_a_ringseed_seeder() {
    // libtorrent's only bootstrap node is a ringseed DHT node; it finds the ringseed seeder
    // by info-hash on the DHT and downloads the release from it.
    let dir = TestDir::new("dht-lt-leech");
    let src = make_release(dir.path(), "release", 3 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let (_router, router) = spawn_router(dir.path());
    let _seeder = spawn_dht_seeder(dir.path(), &torrent, &router);
    let out = dir.path().join("lt-out");
    std::fs::create_dir_all(&out).unwrap();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(LT_PEER)
        .args(["--magnet", &bare_magnet(&torrent)])
        .arg("--save")
        .arg(&out)
        .args(["--listen-port", &free_port_udp_too().to_string()])
        .args(["--plaintext", "--timeout", "45", "--dht-bootstrap", &router]);
    let mut lt = Proc::spawn("libtorrent leecher", cmd, dir.path().join("lt.log"));
    expect_done(&mut lt, Duration::from_secs(50));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn get_finds_a_libtorrent_seeder_on_the_dht() {
    // A libtorrent seeder announces through a ringseed DHT router; `get` with a bare magnet
    // finds it there and downloads from it.
    let dir = TestDir::new("dht-lt-seed");
    let src = make_release(dir.path(), "release", 3 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let (router_proc, router) = spawn_router(dir.path());
    let port = free_port_udp_too();
    let _lt = libtorrent_seeder(dir.path(), &torrent, port, &["--dht-bootstrap", &router]);
    // libtorrent announces once its DHT has bootstrapped; the router then stores it.
    assert!(
        wait_until(Duration::from_secs(30), || router_proc
            .log_text()
            .contains("announce_peer")),
        "libtorrent never announced to the ringseed router"
    );
    let out = dir.path().join("out");
    let mut get = spawn_get(dir.path(), &bare_magnet(&torrent), &out, &router);
    expect_done(&mut get, Duration::from_secs(45));
    assert_same_files(&src, &out.join("release"));
}
