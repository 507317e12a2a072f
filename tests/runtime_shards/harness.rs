//! The harness of `tests/runtime_shards.rs`: a tiny file server run by real shards, its
//! fixture files, and client-side helpers that send requests and check the replies.
//!
//! Requests: `R off len` answers with a 13-byte header and `len` bytes read from two files
//! laid end to end, `M off len` the same bytes built in memory (no disk read), `E n bytes`
//! echoes as control bytes, `Q` closes; replies go out in request order.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use ringseed::runtime::*;
use ringseed::time::Instant;

/// Length of each of the two fixture files.
pub const FILE_BYTES: usize = 100_000;
/// Read and write timeout of the client sockets.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Byte `i` of the logical two-file space.
pub fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 7)) as u8
}

/// What the shards report to the test (counters, close reasons, stats, notes).
#[derive(Default)]
pub struct Shared {
    pub blocks_polled: AtomicUsize,
    pub closed: AtomicUsize,
    pub unsent_high: AtomicUsize,
    pub out_bytes_max: AtomicUsize,
    /// The shards' `ShardStats` as of their last tick: latency samples, payload bytes sent,
    /// closes by kind (summed over shards by the last writer of each shard's entry).
    pub stats: Mutex<Vec<Option<ShardStats>>>,
    pub reasons: Mutex<Vec<String>>,
    pub notes: Mutex<Vec<usize>>,
}

/// The two fixture files, removed on drop.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub paths: Arc<Vec<PathBuf>>,
}

/// Writes the two fixture files filled with [`pattern`].
pub fn fixture() -> Fixture {
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

/// A reply a connection owes, in request order.
pub enum Reply {
    Echo(Vec<u8>),
    Block { offset: u32, len: u32 },
    Memory { offset: u32, len: u32 },
}

/// One server-side connection of the tiny file server.
pub struct ServerConn {
    pub files: [FileId; 2],
    pub replies: VecDeque<Reply>,
    /// The `now` of the input that held each block request, in `replies`' block order.
    pub asked_at: VecDeque<Instant>,
    pub shared: Arc<Shared>,
    pub idle_deadline: Option<Instant>,
    pub ticks: u32,
    pub ticks_seen: u32,
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

/// The per-shard application: registers the files, accepts and serves connections.
pub struct ServerApp {
    pub paths: Arc<Vec<PathBuf>>,
    pub files: Option<[FileId; 2]>,
    pub shared: Arc<Shared>,
    pub idle: Option<Duration>,
    /// Tick touches every connection, which then writes `T 0` (a choker-like broadcast).
    pub tick_broadcast: bool,
    pub mailboxes: Mailboxes<Cmd>,
}

/// Commands the test sends to a shard.
pub enum Cmd {
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

/// Running shards and what they share with the test.
pub struct Server {
    pub runtime: Runtime<Cmd>,
    pub shared: Arc<Shared>,
    pub _fixture: Fixture,
}

/// Starts `shards` shards on `io` listening on an ephemeral 127.0.0.1 port.
pub fn start_server(
    io: IoKind,
    shards: usize,
    limits: ShardLimits,
    idle: Option<Duration>,
) -> Server {
    start_server_on(io, shards, limits, idle, "127.0.0.1:0", false)
}

/// Like [`start_server`] on `addr`; `tick_broadcast` makes every tick touch all connections.
pub fn start_server_on(
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

/// A client socket to `addr` with [`IO_TIMEOUT`] on reads and writes.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

/// Sends `R offset len`.
pub fn request(stream: &mut TcpStream, offset: u32, len: u32) {
    send_request(stream, b'R', offset, len);
}

/// Asks for `len` bytes at `offset`, handed to the runtime as bytes in memory (a piece-cache
/// hit) instead of file spans.
pub fn request_memory(stream: &mut TcpStream, offset: u32, len: u32) {
    send_request(stream, b'M', offset, len);
}

fn send_request(stream: &mut TcpStream, kind: u8, offset: u32, len: u32) {
    let mut msg = vec![kind];
    msg.extend_from_slice(&offset.to_be_bytes());
    msg.extend_from_slice(&len.to_be_bytes());
    stream.write_all(&msg).unwrap();
}

/// Reads one block reply and checks header and bytes against the file pattern.
pub fn expect_block(stream: &mut TcpStream, offset: u32, len: u32) {
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

/// Reads one echo reply and checks it carries `bytes`.
pub fn expect_echo(stream: &mut TcpStream, bytes: &[u8]) {
    let mut got = vec![0u8; 2 + bytes.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got[0], b'e');
    assert_eq!(&got[2..], bytes);
}

/// Polls `done` every 5 ms; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = StdInstant::now() + timeout;
    while !done() {
        assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
