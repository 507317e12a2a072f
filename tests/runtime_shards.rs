//! Shards driven end to end over loopback with real client sockets, on both backends.
//!
//! The protocol under test is a tiny file server: `R off len` answers with a 13-byte header and
//! `len` bytes read from two files laid end to end (so blocks may span both), `E n bytes` echoes
//! as control bytes, in request order. Every test stops by itself within bounded time.

mod common;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use common::runtime::backends;
use ringseed::runtime::*;
use ringseed::time::Instant;

const FILE_BYTES: usize = 100_000;
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Byte `i` of the logical two-file space.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 7)) as u8
}

#[derive(Default)]
struct Shared {
    blocks_polled: AtomicUsize,
    closed: AtomicUsize,
    unsent_high: AtomicUsize,
    out_bytes_max: AtomicUsize,
    /// The shards' `ShardStats` as of their last tick: latency samples, payload bytes sent,
    /// closes by kind (summed over shards by the last writer of each shard's entry).
    stats: Mutex<Vec<Option<ShardStats>>>,
    reasons: Mutex<Vec<String>>,
    notes: Mutex<Vec<usize>>,
}

struct Fixture {
    _dir: tempfile::TempDir,
    paths: Arc<Vec<PathBuf>>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for f in 0..2 {
        let path = dir.path().join(format!("part{f}"));
        let bytes: Vec<u8> = (0..FILE_BYTES)
            .map(|i| pattern(f * FILE_BYTES + i))
            .collect();
        std::fs::write(&path, bytes).unwrap();
        paths.push(path);
    }
    Fixture {
        _dir: dir,
        paths: Arc::new(paths),
    }
}

enum Reply {
    Echo(Vec<u8>),
    Block { offset: u32, len: u32 },
    Memory { offset: u32, len: u32 },
}

struct ServerConn {
    files: [FileId; 2],
    replies: VecDeque<Reply>,
    /// The `now` of the input that held each block request, in `replies`' block order.
    asked_at: VecDeque<Instant>,
    shared: Arc<Shared>,
    idle_deadline: Option<Instant>,
    ticks: u32,
    ticks_seen: u32,
}

impl Connection for ServerConn {
    fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<usize, CloseReason> {
        match bytes.first() {
            None => Ok(0),
            Some(b'R') if bytes.len() >= 9 => {
                let offset = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
                let len = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
                if offset as usize + len as usize > 2 * FILE_BYTES {
                    return Err(CloseReason::Protocol("request past end".into()));
                }
                self.replies.push_back(Reply::Block { offset, len });
                self.asked_at.push_back(now);
                Ok(9)
            }
            Some(b'M') if bytes.len() >= 9 => {
                let offset = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
                let len = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
                self.replies.push_back(Reply::Memory { offset, len });
                self.asked_at.push_back(now);
                Ok(9)
            }
            Some(b'E') if bytes.len() >= 2 && bytes.len() >= 2 + bytes[1] as usize => {
                let n = bytes[1] as usize;
                self.replies
                    .push_back(Reply::Echo(bytes[2..2 + n].to_vec()));
                Ok(2 + n)
            }
            Some(b'Q') => Err(CloseReason::Protocol("client asked to quit".into())),
            Some(b'R' | b'E' | b'M') => Ok(0), // incomplete
            Some(other) => Err(CloseReason::Protocol(
                format!("bad request byte {other}").into(),
            )),
        }
    }

    fn write_control(&mut self, out: &mut Vec<u8>) {
        if self.ticks_seen != self.ticks {
            self.ticks_seen = self.ticks;
            out.extend_from_slice(b"T\x00");
        }
        while let Some(Reply::Echo(_)) = self.replies.front() {
            let Some(Reply::Echo(bytes)) = self.replies.pop_front() else {
                unreachable!()
            };
            out.push(b'e');
            out.push(bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
    }

    fn poll_block(&mut self) -> Option<BlockSend> {
        let (offset, len, memory) = match self.replies.front() {
            Some(Reply::Block { offset, len }) => (*offset, *len, false),
            Some(Reply::Memory { offset, len }) => (*offset, *len, true),
            _ => return None,
        };
        self.replies.pop_front();
        let requested_at = self.asked_at.pop_front();
        self.shared.blocks_polled.fetch_add(1, Ordering::Relaxed);
        let mut header = [0u8; BLOCK_HEADER_BYTES];
        header[..4].copy_from_slice(&(9 + len).to_be_bytes());
        header[4] = 7;
        header[5..9].copy_from_slice(&offset.to_be_bytes());
        header[9..13].copy_from_slice(&len.to_be_bytes());
        if memory {
            let bytes: Vec<u8> = (offset as usize..(offset + len) as usize)
                .map(pattern)
                .collect();
            return Some(BlockSend {
                header,
                requested_at,
                source: BlockSource::Memory(bytes.into()),
            });
        }
        let mut spans = FileSpans::new();
        let (start, end) = (offset as usize, offset as usize + len as usize);
        for (f, file) in self.files.iter().enumerate() {
            let (lo, hi) = (f * FILE_BYTES, (f + 1) * FILE_BYTES);
            let (s, e) = (start.max(lo), end.min(hi));
            if s < e {
                let span = FileSpan {
                    file: *file,
                    offset: (s - lo) as u64,
                    len: (e - s) as u32,
                };
                spans.push(span).unwrap();
            }
        }
        Some(BlockSend {
            header,
            requested_at,
            source: BlockSource::Files(spans),
        })
    }

    fn on_sent(&mut self, _bytes: usize, _now: Instant) {}

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), CloseReason> {
        Err(CloseReason::Protocol("idle timeout".into()))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.idle_deadline
    }
}

struct ServerApp {
    paths: Arc<Vec<PathBuf>>,
    files: Option<[FileId; 2]>,
    shared: Arc<Shared>,
    idle: Option<Duration>,
    /// Tick touches every connection, which then writes `T 0` (a choker-like broadcast).
    tick_broadcast: bool,
    mailboxes: Mailboxes<Cmd>,
}

enum Cmd {
    Panic,
    Connect(SocketAddr, Option<IpAddr>),
    /// Forward a `Note` to shard `.0` through the mailboxes.
    Forward(usize),
    /// Record which shard handled this.
    Note,
    /// Remove both files; records how many stay open.
    RemoveFiles,
}

impl ShardApp for ServerApp {
    type Conn = ServerConn;
    type Command = Cmd;

    fn start(&mut self, ctx: &mut ShardCtx<'_, ServerConn>, _now: Instant) {
        let a = ctx.add_file(std::fs::File::open(&self.paths[0]).unwrap());
        let b = ctx.add_file(std::fs::File::open(&self.paths[1]).unwrap());
        self.files = Some([a, b]);
    }

    fn accept(&mut self, _peer: SocketAddr, now: Instant) -> Option<ServerConn> {
        Some(self.conn(now))
    }

    fn tick(&mut self, ctx: &mut ShardCtx<'_, ServerConn>, _now: Instant) {
        self.shared
            .unsent_high
            .fetch_max(ctx.stats().unsent_bytes_high, Ordering::Relaxed);
        let mut all = self.shared.stats.lock().unwrap();
        let index = ctx.shard_index();
        if all.len() <= index {
            all.resize(index + 1, None);
        }
        all[index] = Some(ctx.stats().clone());
        if self.tick_broadcast {
            ctx.for_each_mut(|_, conn| conn.ticks += 1);
        }
    }

    fn tick_interval(&self) -> Duration {
        Duration::from_millis(20)
    }

    fn command(&mut self, cmd: Cmd, ctx: &mut ShardCtx<'_, ServerConn>, now: Instant) {
        match cmd {
            Cmd::Panic => panic!("boom requested by test"),
            Cmd::Forward(to) => self.mailboxes.send(to, Cmd::Note).unwrap(),
            Cmd::Note => self.shared.notes.lock().unwrap().push(ctx.shard_index()),
            Cmd::RemoveFiles => {
                for id in self.files.expect("files") {
                    assert!(ctx.remove_file(id));
                }
                self.shared.notes.lock().unwrap().push(ctx.open_files());
            }
            Cmd::Connect(addr, local) => {
                let mut conn = self.conn(now);
                conn.replies
                    .push_back(Reply::Echo(b"hello from shard".to_vec()));
                ctx.connect(addr, local, conn)
                    .ok()
                    .expect("room for a connection");
            }
        }
    }

    fn closed(&mut self, _key: ConnKey, _conn: ServerConn, reason: &CloseReason, _now: Instant) {
        self.shared.reasons.lock().unwrap().push(reason.to_string());
        self.shared.closed.fetch_add(1, Ordering::SeqCst);
    }
}

impl ServerApp {
    fn conn(&self, now: Instant) -> ServerConn {
        ServerConn {
            files: self.files.expect("files registered in start"),
            replies: VecDeque::new(),
            asked_at: VecDeque::new(),
            shared: Arc::clone(&self.shared),
            idle_deadline: self.idle.map(|d| now + d),
            ticks: 0,
            ticks_seen: 0,
        }
    }
}

struct Server {
    runtime: Runtime<Cmd>,
    shared: Arc<Shared>,
    _fixture: Fixture,
}

fn start_server(io: IoKind, shards: usize, limits: ShardLimits, idle: Option<Duration>) -> Server {
    start_server_on(io, shards, limits, idle, "127.0.0.1:0", false)
}

fn start_server_on(
    io: IoKind,
    shards: usize,
    limits: ShardLimits,
    idle: Option<Duration>,
    addr: &str,
    tick_broadcast: bool,
) -> Server {
    let fixture = fixture();
    let shared = Arc::new(Shared::default());
    shared
        .out_bytes_max
        .store(limits.out_bytes_max, Ordering::Relaxed);
    let config = RuntimeConfig {
        shards,
        io,
        listen: vec![addr.parse().unwrap()],
        pin_cores: false,
        limits,
    };
    let (paths, app_shared) = (Arc::clone(&fixture.paths), Arc::clone(&shared));
    let runtime = spawn_shards(config, move |info: ShardInfo<Cmd>| ServerApp {
        paths: Arc::clone(&paths),
        files: None,
        shared: Arc::clone(&app_shared),
        idle,
        tick_broadcast,
        mailboxes: info.mailboxes,
    })
    .expect("shards start");
    Server {
        runtime,
        shared,
        _fixture: fixture,
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn request(stream: &mut TcpStream, offset: u32, len: u32) {
    let mut msg = vec![b'R'];
    msg.extend_from_slice(&offset.to_be_bytes());
    msg.extend_from_slice(&len.to_be_bytes());
    stream.write_all(&msg).unwrap();
}

/// Reads one block reply and checks header and bytes against the file pattern.
fn expect_block(stream: &mut TcpStream, offset: u32, len: u32) {
    let mut header = [0u8; 13];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[4], 7, "block id");
    assert_eq!(
        u32::from_be_bytes(header[0..4].try_into().unwrap()),
        9 + len
    );
    assert_eq!(u32::from_be_bytes(header[5..9].try_into().unwrap()), offset);
    let mut payload = vec![0u8; len as usize];
    stream.read_exact(&mut payload).unwrap();
    let expected: Vec<u8> = (offset as usize..(offset + len) as usize)
        .map(pattern)
        .collect();
    assert!(payload == expected, "payload of block at {offset} differs");
}

fn expect_echo(stream: &mut TcpStream, bytes: &[u8]) {
    let mut got = vec![0u8; 2 + bytes.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got[0], b'e');
    assert_eq!(&got[2..], bytes);
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = StdInstant::now() + timeout;
    while !done() {
        assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blocks_and_control_bytes_arrive_in_request_order() {
    // Echoes (control bytes) and file blocks, one spanning both files, come back exactly in the
    // order they were requested, even with many requests in one packet.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        let mut burst = Vec::new();
        burst.extend_from_slice(b"E\x03abc");
        client.write_all(&burst).unwrap();
        request(&mut client, 0, 16384);
        client.write_all(b"E\x02xy").unwrap();
        request(&mut client, (FILE_BYTES - 5000) as u32, 16384); // spans both files
        request(&mut client, 12345, 1);
        expect_echo(&mut client, b"abc");
        expect_block(&mut client, 0, 16384);
        expect_echo(&mut client, b"xy");
        expect_block(&mut client, (FILE_BYTES - 5000) as u32, 16384);
        expect_block(&mut client, 12345, 1);
        // A request split across two writes is buffered until complete.
        client.write_all(b"R\x00\x00").unwrap();
        client.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        client
            .write_all(&[0x10, 0x00, 0x00, 0x00, 0x00, 0x20])
            .unwrap();
        expect_block(&mut client, 4096, 32);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn many_concurrent_connections_from_many_source_ips_are_served() {
    // 300 clients spread over 30 loopback source addresses and 2 shards all get their blocks.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        // RINGSEED_TEST_CONNS raises the count for a manual scale check (ulimit -n permitting).
        let conns: usize = std::env::var("RINGSEED_TEST_CONNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let mut clients: Vec<TcpStream> = (0..conns)
            .map(|i| {
                let source: SocketAddr = format!("127.0.0.{}:0", 10 + i % 30).parse().unwrap();
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .unwrap();
                socket.bind(&socket2::SockAddr::from(source)).unwrap();
                socket.connect(&addr.into()).unwrap();
                let stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream
            })
            .collect();
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..3 {
                request(client, (i * 101 + k * 16384) as u32 % 150_000, 16384);
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..3 {
                expect_block(client, (i * 101 + k * 16384) as u32 % 150_000, 16384);
            }
        }
        drop(clients);
        wait_until("all closes", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == conns
        });
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn peer_disconnecting_mid_send_closes_only_that_connection() {
    // A client that asks for 32 MiB and hangs up after 100 KiB is closed with a logged reason;
    // the shard keeps serving others.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        let mut quitter = connect(addr);
        for k in 0..2048u32 {
            request(&mut quitter, (k * 97) % 150_000, 16384);
        }
        let mut sink = vec![0u8; 100 * 1024];
        quitter.read_exact(&mut sink).unwrap();
        drop(quitter);
        wait_until("the quitter's close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(
            reason.contains("socket error") || reason.contains("peer closed"),
            "{reason}"
        );
        let mut other = connect(addr);
        request(&mut other, 777, 16384);
        expect_block(&mut other, 777, 16384);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn slow_reader_is_held_back_by_bounded_send_queue() {
    // A client that requests 2000 blocks and reads nothing stops receiving polls once socket
    // buffers and the per-connection queue are full; the queue never exceeds its bound; when the
    // client starts reading, everything arrives.
    for io in backends() {
        let limits = ShardLimits::default();
        let server = start_server(io, 1, limits, None);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket
            .connect(&server.runtime.local_addrs()[0].into())
            .unwrap();
        let mut client: TcpStream = socket.into();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        const BLOCKS: u32 = 2000;
        let mut requests = Vec::new();
        for k in 0..BLOCKS {
            requests.extend_from_slice(b"R");
            requests.extend_from_slice(&((k * 16384) % 180_000).to_be_bytes());
            requests.extend_from_slice(&16384u32.to_be_bytes());
        }
        client.write_all(&requests).unwrap();
        // Polling must come to rest while nobody reads: sample until two readings 300 ms apart
        // agree (bounded, so a runaway server fails the test instead of hanging it).
        let polled = || server.shared.blocks_polled.load(Ordering::SeqCst);
        let mut last = usize::MAX;
        let deadline = StdInstant::now() + IO_TIMEOUT;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = polled();
            if now == last && now > 0 {
                break;
            }
            assert!(
                StdInstant::now() < deadline,
                "polling never stopped ({now} blocks)"
            );
            last = now;
        }
        assert!(
            last < BLOCKS as usize / 2,
            "{last} blocks polled for a stalled reader"
        );
        let high = server.shared.unsent_high.load(Ordering::SeqCst);
        assert!(
            high > 0 && high <= limits.out_bytes_max,
            "unsent high-water {high}"
        );
        for k in 0..BLOCKS {
            expect_block(&mut client, (k * 16384) % 180_000, 16384);
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn outbound_connect_uses_the_chosen_source_ip() {
    // A shard connects out from 127.0.0.7; the remote sees that address and the greeting, and
    // the shard gets the reply. A refused connect reaches `closed` as a connect failure.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let remote = TcpListener::bind("127.0.0.1:0").unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        server
            .runtime
            .send(0, Cmd::Connect(remote.local_addr().unwrap(), Some(source)))
            .unwrap();
        let (mut stream, peer) = remote.accept().unwrap();
        assert_eq!(peer.ip(), source);
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        expect_echo(&mut stream, b"hello from shard");
        request(&mut stream, 100, 10); // the shard-side connection also serves blocks
        expect_block(&mut stream, 100, 10);

        let refused = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = refused.local_addr().unwrap();
        drop(refused);
        server
            .runtime
            .send(0, Cmd::Connect(dead_addr, None))
            .unwrap();
        wait_until("connect failure", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(reason.starts_with("connect failed"), "{reason}");
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn idle_connection_is_closed_by_its_timer() {
    // A connection whose poll_timeout passes gets handle_timeout and is closed; the client sees EOF.
    for io in backends() {
        let server = start_server(
            io,
            1,
            ShardLimits::default(),
            Some(Duration::from_millis(150)),
        );
        let mut client = connect(server.runtime.local_addrs()[0]);
        let started = StdInstant::now();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(3));
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        assert!(server.shared.reasons.lock().unwrap()[0].contains("idle timeout"));
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn protocol_error_closes_the_connection_with_its_reason() {
    // A request the protocol rejects closes that connection and logs the protocol's reason.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        client.write_all(b"Q").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        assert!(server.shared.reasons.lock().unwrap()[0].contains("client asked to quit"));
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn block_pool_exhaustion_waits_instead_of_failing() {
    // With only 2 block buffers per shard, 8 clients asking for 40 blocks each still get every
    // block: reads wait for buffers instead of failing or allocating more.
    for io in backends() {
        let limits = ShardLimits {
            block_bufs: 2,
            recv_bufs: 4,
            ..ShardLimits::default()
        };
        let server = start_server(io, 1, limits, None);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..40u32 {
                request(client, (i as u32 * 1000 + k * 4000) % 180_000, 16384);
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..40u32 {
                expect_block(client, (i as u32 * 1000 + k * 4000) % 180_000, 16384);
            }
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn ipv6_loopback_listener_serves() {
    // Listeners take IPv6 addresses too (skipped where ::1 is not configured).
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback; skipping");
        return;
    }
    for io in backends() {
        let server = start_server_on(io, 1, ShardLimits::default(), None, "[::1]:0", false);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 5, 500);
        expect_block(&mut client, 5, 500);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shutdown_is_bounded_with_busy_connections() {
    // Shutdown with clients mid-transfer returns within a few heartbeats and closes them all.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
        for client in &mut clients {
            for k in 0..500u32 {
                request(client, (k * 333) % 150_000, 16384);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let started = StdInstant::now();
        let shared = Arc::clone(&server.shared);
        server.runtime.shutdown().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert_eq!(shared.closed.load(Ordering::SeqCst), 10);
    }
}

#[test]
fn supervisor_reports_a_dead_shard_with_context() {
    // A shard that panics is noticed through its join handle and reported with the message.
    for io in backends() {
        let mut server = start_server(io, 2, ShardLimits::default(), None);
        server.runtime.send(1, Cmd::Panic).unwrap();
        let stop = AtomicBool::new(false);
        let err = server.runtime.supervise(&stop).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("shard 1") && text.contains("boom requested by test"),
            "{text}"
        );
        // The other shard still serves.
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 0, 100);
        let got = std::thread::spawn(move || {
            let mut header = [0u8; 13];
            client.read_exact(&mut header).map(|_| header[4])
        });
        // With SO_REUSEPORT the dead shard's socket may still get the connection; accept either.
        let _ = got.join();
        let _ = server.runtime.shutdown();
    }
}

#[test]
fn forced_backends_report_their_kind() {
    // An explicit choice is honoured; Auto resolves to a concrete backend.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let kind = server.runtime.io_kind();
        assert_ne!(kind, IoKind::Auto);
        if io != IoKind::Auto {
            assert_eq!(kind, io);
        }
        match std::env::var(IO_ENV_VAR).as_deref() {
            Ok("uring") => assert_eq!(kind, IoKind::Uring),
            Ok("epoll") => assert_eq!(kind, IoKind::Epoll),
            _ => {}
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn memory_blocks_are_sent_without_disk_reads() {
    // A block handed over as bytes in memory (a piece-cache hit) arrives like a file block.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        let mut msg = vec![b'M'];
        msg.extend_from_slice(&3000u32.to_be_bytes());
        msg.extend_from_slice(&16384u32.to_be_bytes());
        client.write_all(&msg).unwrap();
        request(&mut client, 50, 70);
        expect_block(&mut client, 3000, 16384);
        expect_block(&mut client, 50, 70);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn tick_touching_all_connections_makes_them_send() {
    // A periodic tick that changes every connection (as the choker does) gets their output
    // flushed without any input from the peers.
    for io in backends() {
        let server = start_server_on(io, 1, ShardLimits::default(), None, "127.0.0.1:0", true);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
        for client in &mut clients {
            for _ in 0..3 {
                let mut got = [0u8; 2];
                client.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"T\x00");
            }
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shards_message_each_other_through_mailboxes() {
    // A command sent to shard 0 is forwarded to shard 1 and handled there, without locks.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        server.runtime.send(0, Cmd::Forward(1)).unwrap();
        server.runtime.mailboxes().send(1, Cmd::Forward(0)).unwrap();
        wait_until("notes", IO_TIMEOUT, || {
            server.shared.notes.lock().unwrap().len() == 2
        });
        let mut notes = server.shared.notes.lock().unwrap().clone();
        notes.sort();
        assert_eq!(notes, vec![0, 1]);
        assert!(server.runtime.send(5, Cmd::Note).is_err());
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn blocks_of_a_removed_file_close_the_connection() {
    // After the app removes a file, a block naming it closes that connection with a reason
    // instead of reading a closed (or reused) descriptor.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 0, 100);
        expect_block(&mut client, 0, 100);
        server.runtime.send(0, Cmd::RemoveFiles).unwrap();
        wait_until("removal", IO_TIMEOUT, || {
            server.shared.notes.lock().unwrap().len() == 1
        });
        assert_eq!(
            server.shared.notes.lock().unwrap()[0],
            0,
            "files still open"
        );
        request(&mut client, 0, 100);
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(reason.contains("removed file"), "{reason}");
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shard_stats_time_each_block_from_request_to_send_and_count_payload() {
    // Every block that carries its request instant gets one latency sample (file and memory
    // blocks alike), payload bytes exclude headers and control bytes, and a peer's close is
    // counted under its kind.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        let mut msg = vec![b'M'];
        msg.extend_from_slice(&3000u32.to_be_bytes());
        msg.extend_from_slice(&16384u32.to_be_bytes());
        client.write_all(&msg).unwrap();
        request(&mut client, 50, 70);
        request(&mut client, 70_000, 16384);
        client.write_all(b"E\x02hi").unwrap();
        expect_block(&mut client, 3000, 16384);
        expect_block(&mut client, 50, 70);
        expect_block(&mut client, 70_000, 16384);
        expect_echo(&mut client, b"hi");
        drop(client);
        let shard = |s: &Shared| s.stats.lock().unwrap().first().cloned().flatten();
        wait_until("the stats after the close", Duration::from_secs(10), || {
            shard(&server.shared).is_some_and(|s| s.closed >= 1)
        });
        let stats = shard(&server.shared).unwrap();
        assert_eq!(stats.block_latency.count(), 3, "{io:?}");
        assert!(stats.block_latency.sum_secs() < 5.0);
        assert_eq!(stats.payload_bytes_sent, 16384 + 70 + 16384);
        assert_eq!(stats.bytes_sent, stats.payload_bytes_sent + 3 * 13 + 4);
        let peer_closed = ringseed::runtime::CLOSE_KINDS
            .iter()
            .position(|k| *k == "peer_closed")
            .unwrap();
        assert_eq!(stats.closed_by_kind[peer_closed], 1);
        server.runtime.shutdown().unwrap();
    }
}
