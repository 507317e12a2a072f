//! Swarms mixing ringseed and libtorrent peers on loopback: a mixed swarm found through
//! opentracker completes, and a libtorrent leecher gets pieces from a ringseed peer that is
//! itself still downloading (partial sharing). Every file is compared byte for byte.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn get(dir: &Path, name: &str, torrent: &Path, port: u16, extra: &[&str]) -> Proc {
    let mut cmd = get_command(torrent, &dir.join(name), &format!("127.0.0.1:{port}"));
    cmd.args(["--max-per-ip", "16"])
        .args(extra)
        .env("RUST_LOG", "info");
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

fn last_json_line(p: &Proc) -> String {
    p.log_text()
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn mixed_swarm_of_libtorrent_and_ringseed_peers_completes() {
    // 1 libtorrent seeder, 2 libtorrent leechers and 2 ringseed leechers find each other
    // through opentracker; every leecher ends with exact copies.
    let dir = TestDir::new("swarm-mixed");
    let src = make_release(dir.path(), "release", 6 << 20);
    let probe = create_torrent(dir.path(), &src, &[]);
    let tdir = dir.path().join("t");
    std::fs::create_dir_all(&tdir).unwrap();
    let tracker = Opentracker::start(&tdir, &[info_hash_hex(&probe)]);
    let torrent = create_torrent(dir.path(), &src, &[&tracker.announce_url()]);
    let t = torrent.display().to_string();
    let _seed = libtorrent(
        dir.path(),
        "lt-seed",
        &[
            "--torrent".into(),
            t.clone(),
            "--save".into(),
            dir.path().display().to_string(),
            "--seed".into(),
            "--listen-port".into(),
            free_port().to_string(),
        ],
    );
    let mut leechers = Vec::new();
    for i in 0..2 {
        let save = dir.path().join(format!("lt-{i}"));
        leechers.push((
            save.clone(),
            libtorrent(
                dir.path(),
                &format!("lt-{i}"),
                &[
                    "--torrent".into(),
                    t.clone(),
                    "--save".into(),
                    save.display().to_string(),
                    "--listen-port".into(),
                    free_port().to_string(),
                    "--timeout".into(),
                    "150".into(),
                ],
            ),
        ));
    }
    let mut ours = Vec::new();
    for i in 0..2 {
        let name = format!("rs-{i}");
        ours.push((
            dir.path().join(&name),
            get(
                dir.path(),
                &name,
                &torrent,
                free_port(),
                &["--seed-time", "20"],
            ),
        ));
    }
    for (save, p) in &mut leechers {
        let status = p.wait_timeout(Duration::from_secs(160));
        assert!(
            matches!(status, Some(s) if s.success()),
            "{} did not finish",
            p.name
        );
        assert_same_files(&src, &save.join("release"));
    }
    for (save, p) in &mut ours {
        assert!(
            wait_until(Duration::from_secs(150), || same_files(
                &src,
                &save.join("release")
            )),
            "{} did not complete: {}",
            p.name,
            last_json_line(p)
        );
    }
}

#[test]
fn libtorrent_leecher_downloads_from_a_ringseed_peer_that_is_still_downloading() {
    // A ringseed `get` (rate-limited) downloads from a ringseed seeder; a libtorrent leecher
    // that knows only that `get` receives pieces from it before the `get` has finished.
    let dir = TestDir::new("swarm-partial");
    let src = make_release(dir.path(), "release", 12 << 20);
    let torrent = create_torrent(dir.path(), &src, &[]);
    let seed_port = free_port();
    let _seeder = spawn_seeder(
        dir.path(),
        &torrent,
        dir.path(),
        seed_port,
        &["--no-announce"],
    );
    let get_port = free_port();
    let seeder_addr = format!("127.0.0.1:{seed_port}");
    let mut middle = get(
        dir.path(),
        "rs-middle",
        &torrent,
        get_port,
        // No PEX: the libtorrent leecher must not learn the seeder's address from us.
        &[
            "--no-announce",
            "--no-pex",
            "--peer",
            &seeder_addr,
            "--max-download-rate",
            "1MiB",
            "--seed-time",
            "60",
        ],
    );
    let save = dir.path().join("lt");
    let lt = libtorrent(
        dir.path(),
        "lt-leech",
        &[
            "--torrent".into(),
            torrent.display().to_string(),
            "--save".into(),
            save.display().to_string(),
            "--listen-port".into(),
            free_port().to_string(),
            "--peer".into(),
            format!("127.0.0.1:{get_port}"),
            "--timeout".into(),
            "120".into(),
            "--plaintext".into(),
        ],
    );
    // Partial sharing: libtorrent makes progress while our peer is still incomplete.
    let shared_while_downloading = wait_until(Duration::from_secs(60), || {
        let ours_incomplete = last_json_line(&middle).contains("\"complete\":false");
        let theirs = lt
            .log_text()
            .lines()
            .rev()
            .find_map(|l| {
                let at = l.find("\"progress\": ")? + 12;
                l[at..].split([',', '}']).next()?.trim().parse::<f64>().ok()
            })
            .unwrap_or(0.0);
        ours_incomplete && theirs > 0.05
    });
    assert!(
        shared_while_downloading,
        "libtorrent got nothing from the downloading peer"
    );
    let mut lt = lt;
    let status = lt.wait_timeout(Duration::from_secs(120));
    assert!(
        matches!(status, Some(s) if s.success()),
        "libtorrent did not finish"
    );
    assert_same_files(&src, &save.join("release"));
    assert!(middle.alive(), "our peer should still be seeding");
}
