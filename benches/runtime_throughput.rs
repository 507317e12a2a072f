//! Block-serving throughput of one shard over loopback, io_uring and epoll, against a baseline
//! measured in the same run: a plain thread doing `pread` + one `write` of header+block per block
//! (the 2.8 GB/s figure in INTEROP.md).
//!
//! Run: `cargo bench --bench runtime_throughput` (`RINGSEED_BENCH_MIB` sets MiB per run, default
//! 1024). Data comes from a 64 MiB file in the page cache.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use ringseed::runtime::*;
use ringseed::time::Instant;

const FILE_BYTES: u64 = 64 << 20;
const BLOCK: u32 = BLOCK_BYTES_MAX as u32;
const MESSAGE: u64 = BLOCK as u64 + BLOCK_HEADER_BYTES as u64;

fn header(index: u64) -> [u8; BLOCK_HEADER_BYTES] {
    let mut h = [0u8; BLOCK_HEADER_BYTES];
    h[..4].copy_from_slice(&(9 + BLOCK).to_be_bytes());
    h[4] = 7;
    h[5..9].copy_from_slice(&((index * u64::from(BLOCK) / (256 << 10)) as u32).to_be_bytes());
    h[9..13].copy_from_slice(&(((index * u64::from(BLOCK)) % (256 << 10)) as u32).to_be_bytes());
    h
}

/// Streams `remaining` blocks read sequentially (wrapping) from the file after `S count`.
struct Streamer {
    file: FileId,
    next: u64,
    remaining: u64,
}

impl Connection for Streamer {
    fn handle_input(&mut self, bytes: &[u8], _now: Instant) -> Result<usize, CloseReason> {
        if bytes.len() < 9 {
            return Ok(0);
        }
        self.remaining += u64::from_be_bytes(bytes[1..9].try_into().unwrap());
        Ok(9)
    }
    fn write_control(&mut self, _out: &mut Vec<u8>) {}
    fn poll_block(&mut self) -> Option<BlockSend> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let offset = (self.next * u64::from(BLOCK)) % FILE_BYTES;
        let block = BlockSend {
            header: header(self.next),
            source: BlockSource::Files(FileSpans::single(FileSpan {
                file: self.file,
                offset,
                len: BLOCK,
            })),
            requested_at: None,
        };
        self.next += 1;
        Some(block)
    }
    fn on_sent(&mut self, _bytes: usize, _now: Instant) {}
    fn handle_timeout(&mut self, _now: Instant) -> Result<(), CloseReason> {
        Ok(())
    }
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}

struct App {
    path: Arc<PathBuf>,
    file: Option<FileId>,
}

impl ShardApp for App {
    type Conn = Streamer;
    type Command = ();
    fn start(&mut self, ctx: &mut ShardCtx<'_, Streamer>, _now: Instant) {
        self.file = Some(ctx.add_file(std::fs::File::open(&*self.path).unwrap()));
    }
    fn accept(&mut self, _peer: SocketAddr, _now: Instant) -> Option<Streamer> {
        Some(Streamer {
            file: self.file?,
            next: 0,
            remaining: 0,
        })
    }
}

/// Asks for `blocks` blocks on each of `clients` connections and reads them all; returns bytes/s.
fn drain_clients(addr: SocketAddr, clients: usize, blocks: u64) -> f64 {
    let started = StdInstant::now();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let mut req = vec![b'S'];
                req.extend_from_slice(&blocks.to_be_bytes());
                stream.write_all(&req).unwrap();
                let mut left = blocks * MESSAGE;
                let mut buf = vec![0u8; 1 << 20];
                while left > 0 {
                    let want = buf.len().min(left as usize);
                    let n = stream.read(&mut buf[..want]).unwrap();
                    assert!(n > 0, "server closed early");
                    left -= n as u64;
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (clients as u64 * blocks * MESSAGE) as f64 / started.elapsed().as_secs_f64()
}

fn run_shard(io: IoKind, path: &Arc<PathBuf>, clients: usize, blocks: u64) -> f64 {
    let config = RuntimeConfig {
        shards: 1,
        io,
        listen: vec!["127.0.0.1:0".parse().unwrap()],
        pin_cores: false,
        limits: ShardLimits::default(),
    };
    let path = Arc::clone(path);
    let runtime = spawn_shards(config, move |_| App {
        path: Arc::clone(&path),
        file: None,
    })
    .unwrap();
    let rate = drain_clients(runtime.local_addrs()[0], clients, blocks);
    runtime.shutdown().unwrap();
    rate
}

/// One thread per client: pread into a buffer, then one write of header+block.
fn run_baseline(path: &Arc<PathBuf>, clients: usize, blocks: u64) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let path = Arc::clone(path);
    let server = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..clients {
            let (mut stream, _) = listener.accept().unwrap();
            let file = std::fs::File::open(&*path).unwrap();
            workers.push(std::thread::spawn(move || {
                let mut req = [0u8; 9];
                stream.read_exact(&mut req).unwrap();
                let count = u64::from_be_bytes(req[1..9].try_into().unwrap());
                let mut msg = vec![0u8; MESSAGE as usize];
                for i in 0..count {
                    msg[..BLOCK_HEADER_BYTES].copy_from_slice(&header(i));
                    let offset = (i * u64::from(BLOCK)) % FILE_BYTES;
                    file.read_exact_at(&mut msg[BLOCK_HEADER_BYTES..], offset)
                        .unwrap();
                    stream.write_all(&msg).unwrap();
                }
            }));
        }
        workers.into_iter().for_each(|w| w.join().unwrap());
    });
    let rate = drain_clients(addr, clients, blocks);
    server.join().unwrap();
    rate
}

fn main() {
    let mib: u64 = std::env::var("RINGSEED_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    let data: Vec<u8> = (0..FILE_BYTES).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&path, data).unwrap();
    let path = Arc::new(path);
    let mut kinds = vec![IoKind::Epoll];
    if probe_uring().is_ok() {
        kinds.insert(0, IoKind::Uring);
    }
    for clients in [1usize, 4] {
        let blocks = (mib << 20) / u64::from(BLOCK) / clients as u64;
        let _warm = run_baseline(&path, clients, blocks / 8);
        let base = run_baseline(&path, clients, blocks);
        println!(
            "clients={clients} baseline pread+write, thread per client: {:7.0} MB/s",
            base / 1e6
        );
        for &io in &kinds {
            let rate = run_shard(io, &path, clients, blocks);
            println!(
                "clients={clients} 1 shard {io:?}: {:7.0} MB/s  ({:.2}x baseline)",
                rate / 1e6,
                rate / base
            );
        }
    }
}
