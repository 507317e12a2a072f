//! `ringseed get` against misbehaving peers (tests/clients/hostile_peer.py): one that claims
//! every piece and never answers a request, and one that lies in its bitfield (has only the
//! even pieces and passes over requests for the others). Each time an honest, upload-capped
//! seeder is in the swarm too; the download must complete byte-exact well before the 60 s
//! request timeout would have rescued it. (The corrupt-data peer is in get_download.rs.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const HOSTILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hostile_peer.py");
const PIECE: usize = 256 * 1024;

/// A single-file release of `len` bytes and its torrent; returns (file, torrent, hex hash).
fn single_file(dir: &Path, len: usize) -> (PathBuf, PathBuf, String) {
    let data = dir.join("release.bin");
    std::fs::write(&data, pseudo_random(len, 7)).unwrap();
    let torrent = create_torrent(dir, &data, &[]);
    let hash = info_hash_hex(&torrent);
    (data, torrent, hash)
}

fn hostile(dir: &Path, mode: &str, data: &Path, hash: &str, len: usize, addr: &str) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(HOSTILE)
        .args(["--mode", mode, "--info-hash", hash, "--listen", addr])
        .arg("--data")
        .arg(data)
        .args(["--piece-length", &PIECE.to_string()])
        .args(["--pieces", &len.div_ceil(PIECE).to_string()]);
    let p = Proc::spawn(
        &format!("{mode} peer"),
        cmd,
        dir.join(format!("{mode}.log")),
    );
    assert!(
        wait_listening(addr.parse().unwrap(), Duration::from_secs(20)),
        "the hostile peer did not start (python3 missing?)"
    );
    p
}

/// `requests R served S` from the hostile peer's latest report line.
fn hostile_counts(p: &Proc) -> (u64, u64) {
    let log = p.log_text();
    let line = log
        .lines()
        .rev()
        .find(|l| l.starts_with("requests "))
        .unwrap_or("requests 0 served 0")
        .to_string();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[1].parse().unwrap(), words[3].parse().unwrap())
}

fn honest_seeder(dir: &Path, torrent: &Path, data: &Path, addr: &str, rate: &str) -> Proc {
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .args(["--listen", addr, "--no-announce", "--threads", "1"])
        .args(["--max-upload-rate", rate]);
    let p = Proc::spawn("honest seeder", cmd, dir.join("honest.log"));
    assert!(wait_listening(
        addr.parse().unwrap(),
        Duration::from_secs(20)
    ));
    p
}

/// Runs `get` (hostile peer listed first) and returns how long it took.
fn download(dir: &Path, torrent: &Path, peers: &[&str]) -> Duration {
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("get")
        .arg(torrent)
        .arg("-o")
        .arg(dir.join("out"))
        .args(["--listen", &format!("127.0.0.4:{}", free_port()), "--json"])
        .args(["--no-announce"])
        .env("RUST_LOG", "info,ringseed::getter=debug");
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let started = Instant::now();
    let mut get = Proc::spawn("get", cmd, dir.join("get.log"));
    let status = get.wait_timeout(Duration::from_secs(50));
    assert!(
        matches!(status, Some(s) if s.success()),
        "get did not finish in 50 s ({status:?}): stalled by the hostile peer?"
    );
    started.elapsed()
}

#[test]
fn a_peer_that_never_answers_requests_does_not_stall_the_download() {
    // The silent peer takes requests and sends nothing; the honest seeder (3 MiB/s) must
    // still deliver everything, the stuck blocks re-requested from it by endgame.
    let dir = TestDir::new("adv-silent");
    let len = 6 << 20;
    let (data, torrent, hash) = single_file(dir.path(), len);
    let silent_addr = format!("127.0.0.3:{}", free_port());
    let honest_addr = format!("127.0.0.2:{}", free_port());
    let silent = hostile(dir.path(), "silent", &data, &hash, len, &silent_addr);
    let _honest = honest_seeder(dir.path(), &torrent, &data, &honest_addr, "3MiB");
    let took = download(dir.path(), &torrent, &[&silent_addr, &honest_addr]);
    let got = std::fs::read(dir.path().join("out/release.bin")).unwrap();
    assert!(got == std::fs::read(&data).unwrap(), "download differs");
    std::thread::sleep(Duration::from_millis(1_100));
    let (requests, served) = hostile_counts(&silent);
    assert!(
        requests > 0,
        "the silent peer was never asked: the test proves nothing"
    );
    assert_eq!(served, 0);
    eprintln!("took {took:?}, hostile peer: {requests} requests, {served} served");
    assert!(took < Duration::from_secs(40), "took {took:?}");
}

#[test]
fn a_peer_that_lies_in_its_bitfield_is_used_for_what_it_has() {
    // The liar claims all pieces but has only the even ones. Requests it passes over while
    // answering later ones are dropped as skipped and go to the honest seeder (2 MiB/s);
    // if its whole first pipeline lands on a piece it lacks it answers nothing at all, and
    // endgame takes those blocks from the honest seeder. Either way no 60 s timeout is
    // waited for. (How many blocks it served depends on that first random piece.)
    let dir = TestDir::new("adv-liar");
    let len = 6 << 20;
    let (data, torrent, hash) = single_file(dir.path(), len);
    let liar_addr = format!("127.0.0.3:{}", free_port());
    let honest_addr = format!("127.0.0.2:{}", free_port());
    let liar = hostile(dir.path(), "liar", &data, &hash, len, &liar_addr);
    let _honest = honest_seeder(dir.path(), &torrent, &data, &honest_addr, "2MiB");
    let took = download(dir.path(), &torrent, &[&liar_addr, &honest_addr]);
    let got = std::fs::read(dir.path().join("out/release.bin")).unwrap();
    assert!(got == std::fs::read(&data).unwrap(), "download differs");
    std::thread::sleep(Duration::from_millis(1_100));
    let (requests, served) = hostile_counts(&liar);
    assert!(
        requests > served,
        "the liar was never asked for a piece it lacks: the test proves nothing"
    );
    eprintln!("took {took:?}, hostile peer: {requests} requests, {served} served");
    assert!(took < Duration::from_secs(40), "took {took:?}");
}
