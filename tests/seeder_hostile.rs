//! A running seeder facing bad data and hostile peers: torrents whose data is wrong are
//! refused by name while the good ones are served; peers that send garbage, floods or
//! nothing are disconnected (or held at no cost) while honest leechers (`ringseed bench`,
//! which verifies every piece) still download everything; several torrents share one process.
//! Loopback only; runs on whichever io backend RINGSEED_IO selects (the suite runs both).

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ringseed::metainfo::{parse_torrent, InfoHash, PeerId};
use ringseed::wire::{Handshake, Message, RawBlock, Reserved};

/// Size scale of each test release (`make_release` adds ~1 MiB): small, so each bench is a
/// second or two even on two shared cores.
const RELEASE_SCALE: usize = 4 << 20;

/// How long the seeder may take to drop a connection that broke a rule: it closes on the
/// offending message, so this is only slack for a loaded machine.
const CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// `peer::HANDSHAKE_TIMEOUT`: a connection that says nothing is closed after it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A generous bound for a 2 × 5 MiB download (seconds in practice) on a shared machine.
const BENCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Allowed growth of the seeder's resident memory across an attack. The seeder allocates its
/// buffer pools at start-up, so a healthy run grows by a few MiB (allocator high-water marks,
/// connection state, pool pages touched for the first time). The attacks below would cost far
/// more if buffered without bound (a 2 GiB length prefix, the rejects for hundreds of MiB of
/// requests), so such a leak exceeds this while allocator noise stays well inside it.
const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;

/// One torrent served by a running `ringseed seed`.
struct Seeded {
    dir: TestDir,
    torrent: PathBuf,
    info_hash: InfoHash,
    pieces: u32,
    total: u64,
    addr: SocketAddr,
    seeder: Proc,
}

fn start_seeder(name: &str) -> Seeded {
    let dir = TestDir::new(name);
    let release = make_release(dir.path(), "release", RELEASE_SCALE);
    let torrent = dir.path().join("release.torrent");
    create_torrent_at(&release, &torrent, &[]);
    let meta = parse_torrent(&fs::read(&torrent).unwrap()).unwrap();
    let port = free_port();
    let seeder = spawn_seeder(dir.path(), &torrent, dir.path(), port, &["--no-announce"]);
    Seeded {
        torrent,
        info_hash: meta.info_hash,
        pieces: meta.info.pieces.len() as u32,
        total: meta.info.total_length(),
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        seeder,
        dir,
    }
}

/// The seeder's resident memory in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("seeder status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Starts `ringseed bench` with `peers` verifying leechers against `addr`.
fn spawn_bench(dir: &Path, torrent: &Path, addr: SocketAddr, peers: usize, tag: &str) -> Proc {
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("bench")
        .arg(torrent)
        .args(["--target", &addr.to_string()])
        .args(["--peers", &peers.to_string(), "--json"])
        .args(["--timeout-secs", &BENCH_TIMEOUT.as_secs().to_string()]);
    Proc::spawn("ringseed bench", cmd, dir.join(format!("bench-{tag}.log")))
}

/// Waits for a bench run and asserts every leecher got all `total` bytes, every piece
/// verified (the bench checks each piece's SHA-1).
fn expect_bench_complete(bench: &mut Proc, peers: usize, total: u64) {
    let status = bench.wait_timeout(BENCH_TIMEOUT + Duration::from_secs(10));
    let log = bench.log_text();
    assert!(
        matches!(status, Some(s) if s.success()),
        "bench did not succeed ({status:?}):\n{log}"
    );
    let json = log
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON report:\n{log}"));
    let report: serde_json::Value = serde_json::from_str(json).expect("bench JSON");
    assert_eq!(report["peers_complete"], peers as u64, "{json}");
    assert_eq!(report["pieces_bad"], 0, "{json}");
    assert_eq!(report["bytes"], peers as u64 * total, "{json}");
}

// ----- raw peer wire, written by hand -----

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to seeder");
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn handshake(info_hash: InfoHash) -> [u8; 68] {
    Handshake {
        reserved: Reserved::OURS,
        info_hash,
        peer_id: PeerId::generate(),
    }
    .encode()
}

fn encode(messages: &[Message<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in messages {
        m.encode(&mut out);
    }
    out
}

fn request(piece: u32, offset: u32, len: u32) -> Message<'static> {
    Message::Request(RawBlock { piece, offset, len })
}

/// Writes `bytes`; a seeder that already closed (reset, broken pipe) is fine here, as that is
/// what the caller checks next.
fn send(s: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    match s.write_all(bytes) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => Ok(()),
        Err(e) => Err(format!("write failed: {e}")),
    }
}

/// Reads (and discards) until the seeder closes the connection, by `deadline`. Returns the
/// bytes it sent before closing.
fn expect_closed_by(s: &mut TcpStream, deadline: Instant, what: &str) -> Result<u64, String> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("{what}: read failed: {e}")),
        }
    }
    Err(format!(
        "{what}: seeder did not close the connection in time"
    ))
}

fn expect_closed(s: &mut TcpStream, what: &str) -> Result<u64, String> {
    expect_closed_by(s, Instant::now() + CLOSE_WITHIN, what)
}

/// Reads the seeder's handshake and messages until it unchokes us.
fn read_until_unchoke(s: &mut TcpStream) -> Result<(), String> {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let mut at = 68; // skip the handshake
    while Instant::now() < deadline {
        while buf.len() >= at + 5 {
            let len = u32::from_be_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
            if len >= 1 && buf[at + 4] == 1 {
                return Ok(());
            }
            at += 4 + len;
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("seeder closed before unchoking an interested peer".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
    }
    Err("no unchoke within the deadline".into())
}

/// An active, unchoked connection to the seeder's torrent.
fn unchoked_peer(t: &Target) -> Result<TcpStream, String> {
    let mut s = connect(t.addr);
    send(&mut s, &handshake(t.info_hash))?;
    send(&mut s, &encode(&[Message::Interested]))?;
    read_until_unchoke(&mut s)?;
    Ok(s)
}

// ----- the attack harness -----

/// What an attack needs to know about the seeder.
#[derive(Clone, Copy)]
struct Target {
    addr: SocketAddr,
    info_hash: InfoHash,
    pieces: u32,
}

/// A connection an attack round leaves open for the harness: checked to be closed by
/// `close_by` after the honest download, or (None) held open until memory was measured.
struct Held {
    stream: TcpStream,
    close_by: Option<Instant>,
}

type Round = fn(&Target) -> Result<Vec<Held>, String>;

/// Runs `round` against a fresh, warmed-up seeder, repeatedly (at most `rounds_max` times) from a thread,
/// while a 2-leecher `ringseed bench` downloads and verifies the whole torrent. Then checks
/// the seeder is alive, its memory grew by less than RSS_GROWTH_MAX_KIB, and it never panicked.
fn survives_attack(name: &str, rounds_max: usize, round: Round) {
    let s = start_seeder(name);
    let pid = s.seeder.child.id();
    // The baseline is taken once the seeder is warm: shards started (their buffer pools
    // are allocated and touched then) and one honest download served, so what is measured
    // is what the attack adds, not start-up.
    let started = wait_until(Duration::from_secs(20), || {
        s.seeder.log_text().contains("seeding 1 torrent(s)")
    });
    assert!(started, "{name}: the seeder did not start");
    let mut warm_up = spawn_bench(s.dir.path(), &s.torrent, s.addr, 2, "warm-up");
    expect_bench_complete(&mut warm_up, 2, s.total);
    let rss_before = rss_kib(pid);
    let target = Target {
        addr: s.addr,
        info_hash: s.info_hash,
        pieces: s.pieces,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let attacker = {
        let (stop, rounds) = (stop.clone(), rounds.clone());
        std::thread::spawn(move || -> Result<Vec<Held>, String> {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) && rounds.load(Ordering::Relaxed) < rounds_max {
                held.extend(round(&target)?);
                rounds.fetch_add(1, Ordering::Relaxed);
            }
            Ok(held)
        })
    };
    // The first round sets the hostile scene; the download then runs alongside later rounds.
    let engaged = wait_until(Duration::from_secs(60), || {
        rounds.load(Ordering::Relaxed) > 0 || attacker.is_finished()
    });
    assert!(engaged, "{name}: the first attack round did not finish");
    let mut bench = spawn_bench(s.dir.path(), &s.torrent, s.addr, 2, name);
    expect_bench_complete(&mut bench, 2, s.total);
    stop.store(true, Ordering::Relaxed);
    let held = attacker
        .join()
        .expect("attacker thread panicked")
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(rounds.load(Ordering::Relaxed) >= 1);
    let mut seeder = s.seeder;
    assert!(seeder.alive(), "{name}: the seeder died");
    let rss_after = rss_kib(pid);
    eprintln!("{name}: seeder RSS {rss_before} KiB before the attack, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + RSS_GROWTH_MAX_KIB,
        "{name}: seeder memory grew from {rss_before} KiB to {rss_after} KiB"
    );
    for mut h in held {
        if let Some(by) = h.close_by {
            expect_closed_by(&mut h.stream, by, name).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    assert!(seeder.alive(), "{name}: the seeder died");
    let log = seeder.log_text();
    assert!(!log.contains("panicked"), "{name}: seeder panicked:\n{log}");
}

// ----- 3. hostile peers -----

#[test]
fn oversized_length_prefix_is_disconnected_without_buffering() {
    // A message claiming 2 GiB (then 4 GiB) after a valid handshake closes that connection
    // at once; nothing is allocated for it and honest leechers finish.
    survives_attack("oversized-prefix", 50, |t| {
        for prefix in [0x7fff_ffffu32, u32::MAX] {
            let mut s = connect(t.addr);
            let mut bytes = handshake(t.info_hash).to_vec();
            bytes.extend_from_slice(&prefix.to_be_bytes());
            bytes.push(7); // `piece`
            bytes.extend_from_slice(&[0xaa; 1024]);
            send(&mut s, &bytes)?;
            expect_closed(&mut s, "oversized length prefix")?;
        }
        Ok(Vec::new())
    });
}

#[test]
fn garbage_before_the_handshake_is_disconnected() {
    // An HTTP request and random bytes instead of a BitTorrent handshake close that
    // connection, and the seeder answers nothing.
    survives_attack("garbage", 50, |t| {
        let mut s = connect(t.addr);
        let mut bytes = b"GET /announce HTTP/1.1\r\nHost: seeder\r\n\r\n".to_vec();
        bytes.extend_from_slice(&pseudo_random(64 * 1024, 9));
        send(&mut s, &bytes)?;
        let answered = expect_closed(&mut s, "garbage handshake")?;
        if answered > 0 {
            return Err(format!("seeder answered garbage with {answered} bytes"));
        }
        Ok(Vec::new())
    });
}

#[test]
fn handshake_for_an_unknown_torrent_is_disconnected_without_an_answer() {
    // A valid handshake naming a torrent we do not serve is closed, and the seeder does not
    // even send its own handshake (nothing to learn about us).
    survives_attack("unknown-hash", 50, |t| {
        let mut s = connect(t.addr);
        send(&mut s, &handshake(InfoHash([0xab; 20])))?;
        let answered = expect_closed(&mut s, "unknown info-hash")?;
        if answered > 0 {
            return Err(format!(
                "seeder answered an unknown torrent with {answered} bytes"
            ));
        }
        Ok(Vec::new())
    });
}

/// `n` distinct, valid one-byte requests.
fn distinct_requests(t: &Target, n: u32) -> Vec<u8> {
    let reqs: Vec<Message<'_>> = (0..n)
        .map(|i| request(i % t.pieces, i / t.pieces, 1))
        .collect();
    encode(&reqs)
}

#[test]
fn request_flood_while_choked_is_disconnected() {
    // Thousands of requests from a peer we never unchoked, sent without reading: the seeder
    // rejects the ones that could have crossed a choke, then closes the connection.
    survives_attack("flood-choked", 20, |t| {
        let mut s = connect(t.addr);
        send(&mut s, &handshake(t.info_hash))?;
        send(&mut s, &distinct_requests(t, 5000))?;
        expect_closed(&mut s, "request flood while choked")?;
        Ok(Vec::new())
    });
}

#[test]
fn request_flood_after_unchoke_is_disconnected() {
    // An unchoked peer that sends thousands of requests without reading overflows its
    // request queue and is closed; the blocks already queued do not keep it alive.
    survives_attack("flood-unchoked", 20, |t| {
        let mut s = unchoked_peer(t)?;
        send(&mut s, &distinct_requests(t, 5000))?;
        expect_closed(&mut s, "request flood after unchoke")?;
        Ok(Vec::new())
    });
}

#[test]
fn requests_outside_the_torrent_are_disconnected() {
    // Requests for pieces past the end, offsets past a piece and oversized blocks close the
    // connection after a few, choked or not.
    survives_attack("flood-invalid", 20, |t| {
        let bad = [
            request(t.pieces, 0, 16 * 1024),
            request(u32::MAX, 0, 16 * 1024),
            request(0, 256 * 1024, 16 * 1024),
            request(0, 0, 1 << 20),
        ];
        for unchoked in [false, true] {
            let mut s = if unchoked {
                unchoked_peer(t)?
            } else {
                let mut s = connect(t.addr);
                send(&mut s, &handshake(t.info_hash))?;
                s
            };
            let flood: Vec<Message<'_>> = bad.iter().copied().cycle().take(2000).collect();
            send(&mut s, &encode(&flood))?;
            expect_closed(&mut s, "requests outside the torrent")?;
        }
        Ok(Vec::new())
    });
}

#[test]
fn peer_that_never_reads_is_paused_not_buffered() {
    // An unchoked peer that stops reading and keeps sending request + cancel pairs (each
    // answered by a reject it never reads) is no longer read from once its unsent replies
    // pass a bound: its writes stall instead of the seeder buffering ever more rejects.
    // Four such peers stay connected through the honest download and the memory check; the
    // seeder closes them only by the idle timeout (240 s, as nothing they send is consumed),
    // which this test does not wait for.
    survives_attack("never-reads", 4, |t| {
        let mut s = unchoked_peer(t)?;
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let pairs: Vec<Message<'_>> = (0..2048u32)
            .flat_map(|i| {
                // Whole blocks of any piece but the last, which is shorter.
                let raw = RawBlock {
                    piece: i % (t.pieces - 1),
                    offset: 0,
                    len: 16 * 1024,
                };
                [Message::Request(raw), Message::Cancel(raw)]
            })
            .collect();
        let batch = encode(&pairs);
        let budget: usize = 256 << 20;
        let mut sent = 0;
        while sent < budget {
            match s.write(&batch) {
                Ok(n) => sent += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Ok(vec![Held {
                        stream: s,
                        close_by: None,
                    }]);
                }
                Err(e) => return Err(format!("never-reading peer was cut off: {e}")),
            }
        }
        Err(format!(
            "the seeder read {} MiB from a peer that reads none of its replies",
            sent >> 20
        ))
    });
}

#[test]
fn silent_connections_are_closed_by_the_handshake_timeout() {
    // Twenty connections that never send a byte do not slow honest leechers, and each is
    // closed once the 10 s handshake timeout passes (checked with a few seconds of slack).
    survives_attack("silent", 1, |t| {
        let close_by = Instant::now() + HANDSHAKE_TIMEOUT + Duration::from_secs(5);
        Ok((0..20)
            .map(|_| Held {
                stream: connect(t.addr),
                close_by: Some(close_by),
            })
            .collect())
    });
}

// ----- 2. wrong data directory, and 4. many torrents in one process -----

/// Three releases in `store/` with their torrents in `torrents/`.
fn three_torrents(dir: &Path) -> (PathBuf, PathBuf, Vec<(String, PathBuf, u64)>) {
    let store = dir.join("store");
    let torrents = dir.join("torrents");
    fs::create_dir_all(&torrents).unwrap();
    let mut out = Vec::new();
    for (i, name) in ["alpha", "beta", "gamma"].iter().enumerate() {
        let release = make_release(&store, name, (2 << 20) + i * 100_000);
        let torrent = torrents.join(format!("{name}.torrent"));
        create_torrent_at(&release, &torrent, &[]);
        let total = parse_torrent(&fs::read(&torrent).unwrap())
            .unwrap()
            .info
            .total_length();
        out.push((name.to_string(), torrent, total));
    }
    (store, torrents, out)
}

fn spawn_multi_seeder(dir: &Path, torrents: &Path, store: &Path, extra: &[&str]) -> (Proc, u16) {
    let port = free_port();
    let mut args = vec!["--no-announce"];
    args.extend_from_slice(extra);
    (spawn_seeder(dir, torrents, store, port, &args), port)
}

#[test]
fn torrents_with_missing_or_wrong_sized_files_are_refused_by_name_and_the_good_one_served() {
    // In a directory of torrents, one whose data lacks a file and one whose file has the
    // wrong size are refused with that file's path in the log; the third is served whole.
    let dir = TestDir::new("wrong-data");
    let (store, torrents, list) = three_torrents(dir.path());
    let missing = store.join("beta/sub/exact.bin");
    fs::remove_file(&missing).unwrap();
    let wrong_size = store.join("gamma/big.bin");
    fs::OpenOptions::new()
        .append(true)
        .open(&wrong_size)
        .unwrap()
        .write_all(b"extra")
        .unwrap();
    let (seeder, port) = spawn_multi_seeder(dir.path(), &torrents, &store, &[]);
    let log = seeder.log_text();
    for (torrent, file, why) in [
        ("beta", &missing, "missing"),
        ("gamma", &wrong_size, "the torrent says"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("refusing {}", torrents.join(torrent).display())))
            .unwrap_or_else(|| panic!("{torrent} not refused:\n{log}"));
        assert!(line.contains(&file.display().to_string()), "{line}");
        assert!(line.contains(why), "{line}");
    }
    assert!(
        wait_until(Duration::from_secs(10), || seeder
            .log_text()
            .contains("seeding 1 torrent(s)")),
        "{log}"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (_, alpha, total) = &list[0];
    let mut bench = spawn_bench(dir.path(), alpha, addr, 2, "alpha");
    expect_bench_complete(&mut bench, 2, *total);
    // The refused torrents are really not served: a leecher for one is turned away.
    let (_, beta, _) = &list[1];
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("bench")
        .arg(beta)
        .args(["--target", &addr.to_string(), "--peers", "1"])
        .args(["--timeout-secs", "10"]);
    let mut refused = Proc::spawn("bench beta", cmd, dir.path().join("bench-beta.log"));
    let status = refused.wait_timeout(Duration::from_secs(30));
    assert!(
        matches!(status, Some(s) if !s.success()),
        "a refused torrent was served ({status:?}):\n{}",
        refused.log_text()
    );
}

#[test]
fn seed_exits_with_a_clear_message_when_no_torrent_has_good_data() {
    // When every torrent's data is bad, seed names each bad file and exits non-zero with a
    // one-line summary instead of running with nothing to serve.
    let dir = TestDir::new("all-bad-data");
    let (store, torrents, _) = three_torrents(dir.path());
    fs::remove_file(store.join("alpha/big.bin")).unwrap();
    fs::remove_file(store.join("beta/sub/note.txt")).unwrap();
    fs::write(store.join("gamma/sub/exact.bin"), b"short").unwrap();
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("seed")
        .arg(&torrents)
        .arg("--data")
        .arg(&store)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .arg("--no-announce");
    let mut seed = Proc::spawn("ringseed seed", cmd, dir.path().join("seed.log"));
    let status = seed.wait_timeout(Duration::from_secs(30));
    let stderr = seed.log_text();
    assert!(
        matches!(status, Some(s) if !s.success()),
        "{status:?}\n{stderr}"
    );
    for file in ["alpha/big.bin", "beta/sub/note.txt", "gamma/sub/exact.bin"] {
        assert!(
            stderr.contains(&store.join(file).display().to_string()),
            "{file} not named:\n{stderr}"
        );
    }
    assert_eq!(
        stderr.lines().last(),
        Some("ringseed: no torrent could be loaded: 3 of 3 refused (reasons above)"),
        "{stderr}"
    );
}

#[test]
fn three_torrents_in_one_process_are_all_served_at_once() {
    // One seeder with two shards serves a directory of three torrents; three benches, one
    // per torrent, run at the same time and each downloads and verifies everything.
    let dir = TestDir::new("three");
    let (store, torrents, list) = three_torrents(dir.path());
    let (seeder, port) = spawn_multi_seeder(dir.path(), &torrents, &store, &["--threads", "2"]);
    assert!(wait_until(Duration::from_secs(10), || seeder
        .log_text()
        .contains("seeding 3 torrent(s)")));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut benches: Vec<(Proc, u64)> = list
        .iter()
        .map(|(name, torrent, total)| (spawn_bench(dir.path(), torrent, addr, 2, name), *total))
        .collect();
    for (bench, total) in &mut benches {
        expect_bench_complete(bench, 2, *total);
    }
}
