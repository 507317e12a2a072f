//! Side-by-side UDP tracker benchmark: announce responses per second of `ringseed tracker`
//! vs opentracker (Debian), under the same load generator in the same run, on 1 and 2 cores.
//!
//! Run: `cargo bench --bench tracker_udp` (env: `RINGSEED_BENCH_SECS` measured seconds per
//! case, default 4; `RINGSEED_BENCH_SOCKETS`, default 256). Needs /usr/bin/opentracker and
//! taskset. Loadgen: client sockets on 127.0.0.2-127.0.0.65, each connects once (BEP 15) then
//! keeps `WINDOW` announces in flight (random torrent of 100, 4 peer ids per socket,
//! numwant 50); a socket that heard nothing for 200 ms refills its window (lost datagrams).
//! "1 core": the tracker is pinned to CPU 0 (ringseed with 1 worker) and the loadgen to CPU 1.
//! "2 cores": tracker (ringseed with 2 workers) and loadgen share CPUs 0-1.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use ringseed::metainfo::{InfoHash, PeerId};
use ringseed::tracker::udp_proto::{
    ConnectionId, TransactionId, UdpAnnounce, UdpRequest, UdpResponse,
};

/// Announces kept in flight per socket.
const WINDOW: usize = 8;
const TORRENTS: usize = 100;

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    loop {
        let p = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if UdpSocket::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn hashes() -> Vec<InfoHash> {
    (0..TORRENTS)
        .map(|i| {
            let mut h = [0u8; 20];
            h[..8].copy_from_slice(&(i as u64 * 0x9e37_79b9_7f4a_7c15).to_le_bytes());
            h[8..16].copy_from_slice(&(i as u64).to_le_bytes());
            InfoHash(h)
        })
        .collect()
}

fn pin(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) affects only the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn start_ringseed(port: u16, workers: usize, cpus: &[usize], dir: &Path) -> Guard {
    let log = std::fs::File::create(dir.join(format!("ringseed-{workers}.log"))).unwrap();
    let child = Command::new("taskset")
        .args(["-c", &cpu_list(cpus)])
        .arg(env!("CARGO_BIN_EXE_ringseed"))
        .args(["tracker", "--udp", &format!("127.0.0.1:{port}")])
        .args(["--workers", &workers.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("taskset and the ringseed binary");
    Guard(child)
}

fn start_opentracker(port: u16, cpus: &[usize], dir: &Path) -> Guard {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let whitelist = dir.join("whitelist");
    let lines: String = hashes()
        .iter()
        .map(|h| format!("{}\n", h.to_hex()))
        .collect();
    std::fs::write(&whitelist, lines).unwrap();
    std::fs::set_permissions(&whitelist, std::fs::Permissions::from_mode(0o644)).unwrap();
    let child = Command::new("taskset")
        .args(["-c", &cpu_list(cpus)])
        .arg("/usr/bin/opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .arg("-w")
        .arg(&whitelist)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("/usr/bin/opentracker (apt-get install opentracker)");
    Guard(child)
}

/// Waits until one announce of every torrent is answered with a real announce reply (the
/// tracker is up and, for opentracker, its whitelist is loaded).
fn wait_ready(target: SocketAddr) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 2048];
    'hash: for h in hashes() {
        while Instant::now() < deadline {
            let mut out = Vec::new();
            UdpRequest::Connect {
                transaction_id: TransactionId(1),
            }
            .encode(&mut out);
            let _ = sock.send_to(&out, target);
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let Ok(UdpResponse::Connect { connection_id, .. }) =
                UdpResponse::decode(&buf[..n], false)
            else {
                continue;
            };
            out.clear();
            announce(connection_id, 2, h, PeerId([1; 20])).encode(&mut out);
            let _ = sock.send_to(&out, target);
            if let Ok(n) = sock.recv(&mut buf) {
                if n >= 20 && buf[3] == 1 {
                    continue 'hash;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tracker on {target} never answered announces");
    }
}

fn announce(c: ConnectionId, tid: u32, h: InfoHash, id: PeerId) -> UdpRequest {
    UdpRequest::Announce(UdpAnnounce {
        connection_id: c,
        transaction_id: TransactionId(tid),
        info_hash: h,
        peer_id: id,
        downloaded: 0,
        left: u64::from(tid % 2) * 1000,
        uploaded: 0,
        event: 0,
        ip: 0,
        key: tid,
        num_want: 50,
        port: 1000 + (tid % 1000) as u16,
    })
}

struct Client {
    sock: mio::net::UdpSocket,
    conn: Option<ConnectionId>,
    seq: u32,
    last_heard: Instant,
}

/// One loadgen thread: `sockets` clients against `target`; counts announce replies into
/// `answered` while `measuring` is set, until `stop`.
fn loadgen_thread(
    target: SocketAddr,
    first: usize,
    sockets: usize,
    cpus: Vec<usize>,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
) {
    pin(&cpus);
    let hashes = hashes();
    let mut poll = Poll::new().unwrap();
    let mut clients: Vec<Client> = (0..sockets)
        .map(|i| {
            let n = first + i;
            let ip = format!("127.0.0.{}:0", 2 + n % 64);
            let std_sock = UdpSocket::bind(ip).unwrap();
            std_sock.set_nonblocking(true).unwrap();
            let mut sock = mio::net::UdpSocket::from_std(std_sock);
            poll.registry()
                .register(&mut sock, Token(i), Interest::READABLE)
                .unwrap();
            Client {
                sock,
                conn: None,
                seq: (n as u32) << 20,
                last_heard: Instant::now(),
            }
        })
        .collect();
    let mut out = Vec::with_capacity(128);
    let refill = |c: &mut Client, out: &mut Vec<u8>, count: usize| {
        for _ in 0..count {
            out.clear();
            c.seq = c.seq.wrapping_add(1);
            match c.conn {
                None => UdpRequest::Connect {
                    transaction_id: TransactionId(c.seq),
                }
                .encode(out),
                Some(id) => {
                    let h = hashes[(c.seq as usize * 7919) % TORRENTS];
                    let mut pid = [0u8; 20];
                    pid[..4].copy_from_slice(&(c.seq >> 20).to_le_bytes());
                    pid[4] = (c.seq % 4) as u8;
                    announce(id, c.seq, h, PeerId(pid)).encode(out)
                }
            }
            let _ = c.sock.send_to(out, target);
        }
    };
    for c in &mut clients {
        refill(c, &mut out, 1);
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = [0u8; 2048];
    let mut last_check = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let _ = poll.poll(&mut events, Some(Duration::from_millis(50)));
        let now = Instant::now();
        for ev in &events {
            let c = &mut clients[ev.token().0];
            let mut got = 0;
            while let Ok(n) = c.sock.recv(&mut buf) {
                got += 1;
                if n >= 16 && buf[3] == 0 && c.conn.is_none() {
                    c.conn = Some(ConnectionId(u64::from_be_bytes(
                        buf[8..16].try_into().unwrap(),
                    )));
                    got = WINDOW;
                } else if n >= 20 && buf[3] == 1 && measuring.load(Ordering::Relaxed) {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
            }
            if got > 0 {
                c.last_heard = now;
                refill(c, &mut out, got.min(WINDOW));
            }
        }
        if now - last_check > Duration::from_millis(100) {
            last_check = now;
            for c in &mut clients {
                if now - c.last_heard > Duration::from_millis(200) {
                    c.last_heard = now;
                    refill(c, &mut out, if c.conn.is_some() { WINDOW } else { 1 });
                }
            }
        }
    }
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

/// (announce replies per second, tracker CPU seconds per second) against `target` (process
/// `pid`) with the loadgen on `cpus`.
fn measure(target: SocketAddr, pid: u32, cpus: &[usize], secs: u64, sockets: usize) -> (f64, f64) {
    wait_ready(target);
    let threads = cpus.len();
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (m, s, a) = (measuring.clone(), stop.clone(), answered.clone());
            let cpus = cpus.to_vec();
            let per = sockets / threads;
            std::thread::spawn(move || loadgen_thread(target, t * per, per, cpus, m, s, a))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = cpu_secs(pid);
    std::thread::sleep(Duration::from_secs(secs));
    measuring.store(false, Ordering::Relaxed);
    let cpu = cpu_secs(pid) - cpu_before;
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    (
        answered.load(Ordering::Relaxed) as f64 / elapsed,
        cpu / elapsed,
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness-less benches to list tests.
    }
    let secs = env_or("RINGSEED_BENCH_SECS", 4);
    let sockets = env_or("RINGSEED_BENCH_SOCKETS", 256) as usize;
    let dir = tempfile::Builder::new()
        .prefix("ringseed-tracker-bench-")
        .tempdir_in("/tmp")
        .unwrap();
    let mut rows = Vec::new();
    for (label, tracker_cpus, loadgen_cpus, workers) in [
        ("1 core", vec![0], vec![1], 1usize),
        ("2 cores", vec![0, 1], vec![0, 1], 2),
    ] {
        let port = free_port();
        let ot = start_opentracker(port, &tracker_cpus, dir.path());
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let opentracker = measure(target, ot.0.id(), &loadgen_cpus, secs, sockets);
        drop(ot);
        let port = free_port();
        let rs = start_ringseed(port, workers, &tracker_cpus, dir.path());
        let target: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let ringseed = measure(target, rs.0.id(), &loadgen_cpus, secs, sockets);
        drop(rs);
        eprintln!("{label}: opentracker {opentracker:?}, ringseed {ringseed:?}");
        rows.push((label, workers, opentracker, ringseed));
    }
    println!(
        "\nUDP announce replies per second ({sockets} client sockets, {WINDOW} in flight each, \
         {TORRENTS} torrents, numwant 50, {secs} s per case)\n"
    );
    println!(
        "| cores | opentracker | ringseed tracker (workers) | ratio | opentracker CPU | \
         ringseed CPU | replies per CPU-second, ratio |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, workers, (ot, ot_cpu), (rs, rs_cpu)) in rows {
        println!(
            "| {label} | {ot:.0}/s | {rs:.0}/s ({workers}) | **{:.2}x** | {ot_cpu:.2} | \
             {rs_cpu:.2} | {:.0} vs {:.0}: **{:.2}x** |",
            rs / ot,
            ot / ot_cpu,
            rs / rs_cpu,
            (rs / rs_cpu) / (ot / ot_cpu)
        );
    }
}
