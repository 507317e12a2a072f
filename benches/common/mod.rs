//! Helpers shared by the side-by-side benchmarks: child-process guards, ports, test data,
//! and a libtorrent seeder driven by tests/clients/lt_peer.py.
#![allow(dead_code)] // each bench uses a subset

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const LT_PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/lt_peer.py");

/// Kills the child when dropped.
pub struct Guard(pub Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}");
}

pub fn make_data(dir: &Path, bytes: u64) -> PathBuf {
    let data = dir.join("bench-release");
    std::fs::create_dir_all(&data).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(data.join("data.bin")).unwrap());
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for w in chunk.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    f.flush().unwrap();
    data
}

pub fn libtorrent_seeder(torrent: &Path, data_parent: &Path, port: u16) -> Guard {
    let mut child = Command::new("/usr/bin/python3")
        .arg(LT_PEER)
        .arg("--torrent")
        .arg(torrent)
        .arg("--save")
        .arg(data_parent)
        .args([
            "--listen-port",
            &port.to_string(),
            "--seed",
            "--high-performance",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the libtorrent seeder (apt install python3-libtorrent)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // libtorrent checks the data first (no seed_mode: it would hash on first request).
    let seeding = lines.any(|l| l.map(|l| l.contains("\"seeding\"")).unwrap_or(false));
    assert!(seeding, "libtorrent never reached the seeding state");
    std::thread::spawn(move || for _ in lines {});
    wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
    Guard(child)
}

/// `ringseed create DATA -o TORRENT` with the default piece size.
pub fn create_torrent(data: &Path, torrent: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_ringseed"))
        .arg("create")
        .arg(data)
        .arg("-o")
        .arg(torrent)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ringseed create failed");
}
