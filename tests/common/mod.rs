//! Shared fixtures for integration and interop tests: child processes that die with the test,
//! sample data sets, torrents, `ringseed`/libtorrent/aria2 runs, opentracker, and byte-exact
//! comparison of downloaded trees; [`runtime`] has the helpers of the shard-level tests.
//!
//! Everything listens on loopback only. A missing external tool is a test failure with a
//! clear message, never a silent pass.
#![allow(dead_code)]

pub mod metrics;
pub mod runtime;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The ringseed binary built for this test run.
pub fn ringseed_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringseed")
}

/// A child process killed (and reaped) when dropped, even when the test panics.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = fs::File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({cmd:?}): {e} — is it installed?"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The process's output so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for the process to exit by itself; returns its exit status.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- log of {} -----\n{}",
                self.name,
                tail(&self.log_text(), 60)
            );
        }
    }
}

/// The last `lines` lines of `text`, at most 8 KiB (progress bars redraw with `\r`).
fn tail(text: &str, lines: usize) -> String {
    let text = text.replace('\r', "\n");
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let joined = all[all.len().saturating_sub(lines)..].join("\n");
    let cut = joined.len().saturating_sub(8192);
    let start = (cut..joined.len())
        .find(|&i| joined.is_char_boundary(i))
        .unwrap_or(0);
    joined[start..].to_string()
}

/// A TCP port on 127.0.0.1 that was free a moment ago, never one this test process handed
/// out before: tests run in parallel threads, and the kernel may give a just-released port to
/// the next `bind(0)`, which once had two tests' seeders fight over one port.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind an ephemeral port");
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

/// A UDP and TCP port pair that were both free a moment ago.
pub fn free_port_udp_too() -> u16 {
    loop {
        let p = free_port();
        if std::net::UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Waits until something accepts TCP connections on `addr`.
///
/// A connection whose local address equals the target is not a listener: Linux completes a
/// connect to a loopback port nobody listens on as a simultaneous open with itself when the
/// kernel happens to pick that same port as the ephemeral source (ports from `free_port` come
/// from the ephemeral range), which once made a test talk to a tracker not yet listening.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> bool {
    wait_until(timeout, || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200))
            .is_ok_and(|s| s.local_addr().ok() != Some(addr))
    })
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes the interop data set under `root/name`: a file that is not a multiple of any piece
/// size, one that is, a zero-length file and a small file in a subdirectory.
pub fn make_release(root: &Path, name: &str, scale_bytes: usize) -> PathBuf {
    let dir = root.join(name);
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("big.bin"), pseudo_random(scale_bytes + 12_345, 1)).unwrap();
    fs::write(dir.join("sub/exact.bin"), pseudo_random(1 << 20, 2)).unwrap();
    fs::write(dir.join("empty.txt"), b"").unwrap();
    fs::write(dir.join("sub/note.txt"), b"ringseed interop\n").unwrap();
    dir
}

/// SHA-256 of a file's content.
pub fn sha256_file(path: &Path) -> [u8; 32] {
    let data = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    Sha256::digest(&data).into()
}

/// Every regular file under `dir`, relative, sorted.
pub fn list_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Copies every regular file under `from` to the same relative path under `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for rel in list_files(from) {
        let dest = to.join(&rel);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        fs::copy(from.join(&rel), dest).unwrap();
    }
}

/// True when every file of `expected` exists in `actual` with the same SHA-256.
pub fn same_files(expected: &Path, actual: &Path) -> bool {
    same_files_except_empty(expected, actual, false)
}

/// Like [`same_files`]; with `empty_may_be_missing`, zero-length files may be absent
/// (Transmission 3.00 never creates them).
pub fn same_files_except_empty(expected: &Path, actual: &Path, empty_may_be_missing: bool) -> bool {
    list_files(expected).iter().all(|rel| {
        let empty = fs::metadata(expected.join(rel))
            .map(|m| m.len() == 0)
            .unwrap_or(false);
        if empty_may_be_missing && empty && !actual.join(rel).exists() {
            return true;
        }
        let got = actual.join(rel);
        got.is_file()
            && fs::metadata(&got).map(|m| m.len()).ok()
                == fs::metadata(expected.join(rel)).map(|m| m.len()).ok()
            && sha256_file(&got) == sha256_file(&expected.join(rel))
    })
}

/// Asserts `actual` holds every file of `expected` byte for byte (SHA-256), naming the first
/// file that differs.
pub fn assert_same_files(expected: &Path, actual: &Path) {
    for rel in list_files(expected) {
        let got = actual.join(&rel);
        assert!(got.is_file(), "{} missing from the download", rel.display());
        assert_eq!(
            sha256_file(&expected.join(&rel)),
            sha256_file(&got),
            "{} differs",
            rel.display()
        );
    }
}

/// Runs `ringseed` with `args` to completion; panics with its output if it fails.
pub fn ringseed(args: &[&str]) -> String {
    let out = Command::new(ringseed_bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "ringseed {args:?} failed:\n{text}");
    text
}

/// Runs `ringseed create` on `data` with 256 KiB pieces, one `--tracker` per URL of
/// `trackers` (in order), writing the torrent to `out`.
pub fn create_torrent_at(data: &Path, out: &Path, trackers: &[&str]) {
    let (data, out) = (data.display().to_string(), out.display().to_string());
    let mut args = vec!["create", &data, "-o", &out, "--piece-size", "256KiB"];
    for url in trackers {
        args.extend(["--tracker", url]);
    }
    ringseed(&args);
}

/// Like [`create_torrent_at`], writing `dir/release.torrent`; returns its path.
pub fn create_torrent(dir: &Path, data: &Path, trackers: &[&str]) -> PathBuf {
    let torrent = dir.join("release.torrent");
    create_torrent_at(data, &torrent, trackers);
    torrent
}

/// The info-hash of `torrent` in lowercase hex, as `ringseed magnet` prints it.
pub fn info_hash_hex(torrent: &Path) -> String {
    let out = ringseed(&["magnet", &torrent.display().to_string()]);
    let start = out.find("urn:btih:").expect("a btih magnet") + "urn:btih:".len();
    out[start..start + 40].to_lowercase()
}

/// Starts `ringseed seed` for `torrent` over `data` on 127.0.0.1:`port`.
pub fn spawn_seeder(dir: &Path, torrent: &Path, data: &Path, port: u16, extra: &[&str]) -> Proc {
    spawn_seeder_on(dir, torrent, data, "127.0.0.1", port, extra)
}

/// Starts `ringseed seed` for `torrent` over `data` on `ip`:`port` (log `dir/seed-<port>.log`)
/// and waits until it listens.
pub fn spawn_seeder_on(
    dir: &Path,
    torrent: &Path,
    data: &Path,
    ip: &str,
    port: u16,
    extra: &[&str],
) -> Proc {
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("seed")
        .arg(torrent)
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg(format!("{ip}:{port}"))
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or("info".into()),
        );
    let log = dir.join(format!("seed-{port}.log"));
    let p = Proc::spawn(&format!("ringseed seed {ip}:{port}"), cmd, log);
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    assert!(
        wait_listening(addr, Duration::from_secs(20)),
        "seeder did not listen on {addr}"
    );
    p
}

/// `ringseed get <torrent> -o <out> --listen <listen> --json`; the caller adds the rest.
pub fn get_command(torrent: impl AsRef<std::ffi::OsStr>, out: &Path, listen: &str) -> Command {
    let mut cmd = Command::new(ringseed_bin());
    cmd.arg("get")
        .arg(torrent)
        .arg("-o")
        .arg(out)
        .args(["--listen", listen, "--json"]);
    cmd
}

/// Waits up to `timeout` for `p` to exit successfully; panics naming it otherwise.
pub fn expect_done(p: &mut Proc, timeout: Duration) {
    let status = p.wait_timeout(timeout);
    assert!(
        matches!(status, Some(s) if s.success()),
        "{} did not finish ({status:?})",
        p.name
    );
}

/// The libtorrent driver script (python3-libtorrent) the interop tests run.
pub const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/lt_peer.py");

/// Starts the libtorrent driver with `args`, logging to `dir/<name>.log`.
pub fn libtorrent(dir: &Path, name: &str, args: &[String]) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(LT_PEER).args(args);
    Proc::spawn(name, cmd, dir.join(format!("{name}.log")))
}

/// Starts a libtorrent seeder of `torrent` (data under `dir`) listening on `port`, with
/// `extra` driver arguments, and waits until it seeds.
pub fn libtorrent_seeder(dir: &Path, torrent: &Path, port: u16, extra: &[&str]) -> Proc {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(LT_PEER)
        .arg("--torrent")
        .arg(torrent)
        .arg("--save")
        .arg(dir)
        .args(["--listen-port", &port.to_string(), "--seed"])
        .args(extra);
    let lt = Proc::spawn("libtorrent seeder", cmd, dir.join("lt.log"));
    assert!(
        wait_until(Duration::from_secs(30), || lt
            .log_text()
            .contains("\"seeding\"")),
        "libtorrent never seeded (is python3-libtorrent installed?)"
    );
    lt
}

/// Runs aria2c as a leecher of `torrent` into `out` (no DHT, LPD or PEX; quits once done,
/// or after 120 s without progress) with `extra` options, logging to `dir/aria2.log`;
/// asserts it finishes successfully within `timeout`.
pub fn aria2_download(dir: &Path, torrent: &Path, out: &Path, extra: &[&str], timeout: Duration) {
    let mut cmd = Command::new("aria2c");
    cmd.args([
        "--seed-time=0",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--file-allocation=none",
    ])
    .args(extra)
    .args([
        "--bt-stop-timeout=120",
        &format!("--listen-port={}", free_port()),
        "-d",
    ])
    .arg(out)
    .arg(torrent);
    let mut aria = Proc::spawn("aria2c", cmd, dir.join("aria2.log"));
    let status = aria.wait_timeout(timeout);
    assert!(
        matches!(status, Some(s) if s.success()),
        "aria2c did not finish ({status:?}):\n{}",
        aria.log_text()
    );
}

/// A running opentracker on loopback in whitelist mode.
pub struct Opentracker {
    pub proc: Proc,
    pub http_port: u16,
}

impl Opentracker {
    /// Starts opentracker allowing `info_hashes` (lowercase hex). The whitelist and its
    /// folder must be readable by the unprivileged user opentracker drops to.
    pub fn start(dir: &Path, info_hashes: &[String]) -> Opentracker {
        let bin = "/usr/bin/opentracker";
        assert!(
            Path::new(bin).exists(),
            "opentracker is not installed (apt install opentracker): interop tests need it"
        );
        let wl_dir = dir.join("opentracker");
        fs::create_dir_all(&wl_dir).unwrap();
        let wl = wl_dir.join("whitelist");
        let mut f = fs::File::create(&wl).unwrap();
        for h in info_hashes {
            writeln!(f, "{h}").unwrap();
        }
        make_world_readable(&wl);
        let http_port = free_port_udp_too();
        let mut cmd = Command::new(bin);
        cmd.args(["-i", "127.0.0.1", "-p", &http_port.to_string()])
            .args(["-P", &http_port.to_string(), "-w"])
            .arg(&wl);
        let proc = Proc::spawn("opentracker", cmd, dir.join("opentracker.log"));
        let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
        assert!(
            wait_listening(addr, Duration::from_secs(10)),
            "opentracker did not start"
        );
        if let Some(first) = info_hashes.first() {
            assert!(
                wait_until(Duration::from_secs(10), || whitelist_loaded(
                    http_port, first
                )),
                "opentracker never loaded its whitelist"
            );
        }
        Opentracker { proc, http_port }
    }

    /// The HTTP announce URL.
    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.http_port)
    }

    /// Leechers the tracker knows for `info_hash_hex`, from its scrape reply (0 on error).
    pub fn leechers(&self, info_hash_hex: &str) -> u32 {
        let escaped: String = (0..40)
            .step_by(2)
            .map(|i| format!("%{}", &info_hash_hex[i..i + 2]))
            .collect();
        let request =
            format!("GET /scrape?info_hash={escaped} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        let reply = (|| -> std::io::Result<Vec<u8>> {
            let mut s = TcpStream::connect(("127.0.0.1", self.http_port))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(request.as_bytes())?;
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut out)?;
            Ok(out)
        })()
        .unwrap_or_default();
        let text = String::from_utf8_lossy(&reply);
        text.find("10:incompletei")
            .and_then(|at| {
                let rest = &text[at + 14..];
                rest[..rest.find('e')?].parse().ok()
            })
            .unwrap_or(0)
    }
}

/// chmod a+rx on `path` and every ancestor directory up to /, a+r on the file.
pub fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut p = Some(path);
    while let Some(cur) = p {
        if let Ok(meta) = fs::metadata(cur) {
            let mode = meta.permissions().mode();
            let add = if meta.is_dir() { 0o005 } else { 0o004 };
            let _ = fs::set_permissions(cur, fs::Permissions::from_mode(mode | add));
        }
        p = cur.parent();
    }
}

/// Reads a child's stdout lines until `pred` matches one (or timeout); returns the line.
pub fn read_line_matching(
    reader: &mut BufReader<impl std::io::Read>,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut line = String::new();
    while Instant::now() < deadline {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if pred(&line) {
            return Some(line);
        }
    }
    None
}

/// A fresh temporary directory for one test (removed on drop unless the test panicked, so a
/// failure leaves its logs behind).
pub struct TestDir(pub Option<tempfile::TempDir>);

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringseed-{name}-"))
            .tempdir()
            .unwrap();
        make_world_readable(dir.path());
        TestDir(Some(dir))
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!("test files kept in {}", d.keep().display());
            }
        }
    }
}

/// True once opentracker has loaded its whitelist: it answers listening before it has, and
/// announces in that window are refused as "not authorized". Probes with a `stopped`
/// announce of a made-up peer, which leaves no trace in the swarm.
pub fn whitelist_loaded(port: u16, info_hash_hex: &str) -> bool {
    use std::io::{Read, Write};
    let escaped: String = (0..40)
        .step_by(2)
        .map(|i| format!("%{}", &info_hash_hex[i..i + 2]))
        .collect();
    let request = format!(
        "GET /announce?info_hash={escaped}&peer_id=-PROBE-0000000000000&port=1&uploaded=0\
         &downloaded=0&left=0&event=stopped&compact=1 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    );
    let reply = (|| -> std::io::Result<Vec<u8>> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(request.as_bytes())?;
        let mut out = Vec::new();
        s.read_to_end(&mut out)?;
        Ok(out)
    })();
    match reply {
        Ok(body) => {
            let text = String::from_utf8_lossy(&body);
            text.contains("200") && !text.contains("failure reason")
        }
        Err(_) => false,
    }
}
