//! Block writes and fdatasyncs through the shard's io path, end to end on both backends: blocks
//! crossing file boundaries land in order, the write pool bounds the writes in flight, kernel
//! errors and caller mistakes reach the application as `DiskError`s, received blocks travel
//! from a connection to disk, and the `stopping` hook's writes complete before shutdown returns.

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use common::runtime::backends;
use ringseed::runtime::*;
use ringseed::time::Instant;

/// Four files laid end to end; the 1,000-byte one makes the first block cross three files.
const FILE_LENS: [usize; 4] = [5_000, 1_000, 20_000, 29_000];
const TOTAL: usize = 55_000;
const WAIT_MAX: Duration = Duration::from_secs(10);

/// Byte `i` of the logical stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(131) ^ (i >> 9)) as u8
}

/// Creates the four files empty in a fresh directory.
fn make_files() -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = (0..FILE_LENS.len())
        .map(|i| dir.path().join(format!("f{i}")))
        .collect();
    for path in &paths {
        std::fs::write(path, b"").unwrap();
    }
    (dir, paths)
}

fn open_rw(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

/// The file spans of stream bytes `offset..offset + len`.
fn spans_for(files: &[FileId], offset: usize, len: usize) -> FileSpans {
    let mut spans = FileSpans::new();
    let mut start = 0;
    for (file, &file_len) in files.iter().zip(&FILE_LENS) {
        let (lo, hi) = (offset.max(start), (offset + len).min(start + file_len));
        if lo < hi {
            let span = FileSpan {
                file: *file,
                offset: (lo - start) as u64,
                len: (hi - lo) as u32,
            };
            spans.push(span).unwrap();
        }
        start += file_len;
    }
    spans
}

/// The stream as the files hold it now.
fn read_stream(paths: &[PathBuf]) -> Vec<u8> {
    paths
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}

#[derive(Default)]
struct Report {
    written: usize,
    in_flight_max: usize,
    pool_free_min: usize,
    refusals: Vec<&'static str>,
    failures: Vec<String>,
    synced: Option<Result<(), String>>,
    events: Vec<&'static str>,
}

type Shared = Arc<Mutex<Report>>;

/// Waits until `done` holds for the report.
fn wait_until(report: &Shared, done: impl Fn(&Report) -> bool) {
    let deadline = StdInstant::now() + WAIT_MAX;
    while !done(&report.lock().unwrap()) {
        assert!(
            StdInstant::now() < deadline,
            "timed out waiting for the shard"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn label(error: &DiskError) -> &'static str {
    match error {
        DiskError::EmptySpan => "empty",
        DiskError::BlockTooLarge { .. } => "too large",
        DiskError::ForeignBuffer => "foreign",
        DiskError::UnknownFile { .. } => "unknown",
        DiskError::Write { source, .. } if source.raw_os_error() == Some(libc::EBADF) => "EBADF",
        DiskError::Write { .. } => "write",
        DiskError::WriteZero { .. } => "zero",
        DiskError::Sync { .. } => "sync",
    }
}

/// A connection that receives `W off:u32 len:u16 bytes` and `S`, and answers `A` per block
/// written and `s` once synced.
struct BlockConn {
    pool: BufferPool,
    received: VecDeque<(usize, usize, PoolBuf)>,
    sync_asked: bool,
    acks: usize,
    synced: bool,
}

impl Connection for BlockConn {
    fn handle_input(&mut self, bytes: &[u8], _now: Instant) -> Result<usize, CloseReason> {
        match bytes.first() {
            Some(b'W') if bytes.len() >= 7 => {
                let offset = u32::from_be_bytes(bytes[1..5].try_into().unwrap()) as usize;
                let len = u16::from_be_bytes(bytes[5..7].try_into().unwrap()) as usize;
                if bytes.len() < 7 + len {
                    return Ok(0);
                }
                // The one copy: out of the receive buffer into a write buffer.
                let Some(mut buf) = self.pool.alloc() else {
                    return Err(CloseReason::App("client overran the write window"));
                };
                buf.as_mut_slice()[..len].copy_from_slice(&bytes[7..7 + len]);
                self.received.push_back((offset, len, buf));
                Ok(7 + len)
            }
            Some(b'S') => {
                self.sync_asked = true;
                Ok(1)
            }
            Some(b'W') | None => Ok(0),
            Some(_) => Err(CloseReason::App("bad request")),
        }
    }

    fn write_control(&mut self, out: &mut Vec<u8>) {
        out.extend(std::iter::repeat_n(b'A', self.acks));
        self.acks = 0;
        if std::mem::take(&mut self.synced) {
            out.push(b's');
        }
    }

    fn poll_block(&mut self) -> Option<BlockSend> {
        None
    }

    fn on_sent(&mut self, _bytes: usize, _now: Instant) {}

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), CloseReason> {
        Ok(())
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    fn wants_app(&self) -> bool {
        !self.received.is_empty() || self.sync_asked
    }
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Mode {
    /// Write the whole stream at start, as fast as the pool allows, then sync.
    Stream,
    /// Try every refusal, a write to a read-only file and an empty sync.
    Errors,
    /// Write what connections receive.
    Received,
    /// Write and sync one block from the `stopping` hook.
    Stopping,
}

struct DiskApp {
    mode: Mode,
    paths: Vec<PathBuf>,
    files: Vec<FileId>,
    report: Shared,
    /// The write pool, handed to every connection (Received mode).
    pool: Option<BufferPool>,
    next_offset: usize,
    /// Who to answer when a tag completes (Received mode).
    waiting: HashMap<u64, ConnKey>,
    next_tag: u64,
}

const SYNC_TAG: IoTag = IoTag(u64::MAX);

impl DiskApp {
    /// Stream mode: submits blocks of 16 KiB while the write pool has buffers.
    fn fill(&mut self, ctx: &mut ShardCtx<'_, BlockConn>) {
        let pool = ctx.write_pool();
        while self.next_offset < TOTAL {
            let Some(mut buf) = pool.alloc() else {
                return;
            };
            let (offset, len) = (self.next_offset, (TOTAL - self.next_offset).min(16_384));
            for (i, byte) in buf.as_mut_slice()[..len].iter_mut().enumerate() {
                *byte = pattern(offset + i);
            }
            let spans = spans_for(&self.files, offset, len);
            ctx.write_block(spans, buf, IoTag(offset as u64)).unwrap();
            self.next_offset += len;
            let mut report = self.report.lock().unwrap();
            report.in_flight_max = report.in_flight_max.max(ctx.writes_in_flight());
            report.pool_free_min = report.pool_free_min.min(pool.free_count());
        }
    }

    fn start_errors(&mut self, ctx: &mut ShardCtx<'_, BlockConn>) {
        let rw = ctx.add_file(open_rw(&self.paths[0]));
        let ro = ctx.add_file(std::fs::File::open(&self.paths[1]).unwrap());
        let gone = ctx.add_file(open_rw(&self.paths[2]));
        assert!(ctx.remove_file(gone));
        let pool = ctx.write_pool();
        let span = |file, len| FileSpan {
            file,
            offset: 0,
            len,
        };
        let mut refusals = Vec::new();
        let foreign = BufferPool::new(16_384, 1).alloc().unwrap();
        let tries: Vec<(FileSpans, PoolBuf)> = vec![
            (FileSpans::single(span(rw, 10)), foreign),
            (FileSpans::new(), pool.alloc().unwrap()),
            (FileSpans::single(span(rw, 0)), pool.alloc().unwrap()),
            (FileSpans::single(span(rw, 16_385)), pool.alloc().unwrap()),
            (FileSpans::single(span(gone, 10)), pool.alloc().unwrap()),
        ];
        for (spans, buf) in tries {
            let error = ctx.write_block(spans, buf, IoTag(0)).unwrap_err();
            refusals.push(label(&error));
        }
        refusals.push(label(&ctx.sync_files(&[rw, gone], IoTag(0)).unwrap_err()));
        assert_eq!(
            pool.free_count(),
            pool.capacity(),
            "refused buffers came back"
        );
        assert_eq!(ctx.writes_in_flight() + ctx.syncs_pending(), 0);
        let ro_spans = FileSpans::single(span(ro, 10));
        ctx.write_block(ro_spans, pool.alloc().unwrap(), IoTag(1))
            .unwrap();
        let mut ok = pool.alloc().unwrap();
        ok.as_mut_slice()[..10].copy_from_slice(b"0123456789");
        ctx.write_block(FileSpans::single(span(rw, 10)), ok, IoTag(2))
            .unwrap();
        ctx.sync_files(&[], IoTag(3)).unwrap();
        self.report.lock().unwrap().refusals = refusals;
    }
}

impl ShardApp for DiskApp {
    type Conn = BlockConn;
    type Command = ();

    fn start(&mut self, ctx: &mut ShardCtx<'_, BlockConn>, _now: Instant) {
        self.report.lock().unwrap().pool_free_min = usize::MAX;
        self.pool = Some(ctx.write_pool());
        match self.mode {
            Mode::Errors => self.start_errors(ctx),
            Mode::Stream | Mode::Received | Mode::Stopping => {
                self.files = self
                    .paths
                    .iter()
                    .map(|p| ctx.add_file(open_rw(p)))
                    .collect();
                if self.mode == Mode::Stream {
                    self.fill(ctx);
                }
            }
        }
    }

    fn accept(&mut self, _peer: SocketAddr, _now: Instant) -> Option<BlockConn> {
        Some(BlockConn {
            pool: self.pool.clone().expect("pool taken in start"),
            received: VecDeque::new(),
            sync_asked: false,
            acks: 0,
            synced: false,
        })
    }

    fn conn_ready(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, BlockConn>, _now: Instant) {
        let conn = ctx.get_mut(key).expect("ready connection exists");
        let blocks: Vec<_> = conn.received.drain(..).collect();
        let sync = std::mem::take(&mut conn.sync_asked);
        for (offset, len, buf) in blocks {
            self.next_tag += 1;
            self.waiting.insert(self.next_tag, key);
            let spans = spans_for(&self.files, offset, len);
            ctx.write_block(spans, buf, IoTag(self.next_tag)).unwrap();
        }
        if sync {
            self.waiting.insert(SYNC_TAG.0, key);
            ctx.sync_files(&self.files, SYNC_TAG).unwrap();
        }
    }

    fn write_done(
        &mut self,
        tag: IoTag,
        result: Result<(), DiskError>,
        ctx: &mut ShardCtx<'_, BlockConn>,
        _now: Instant,
    ) {
        {
            let mut report = self.report.lock().unwrap();
            report.events.push("written");
            match &result {
                Ok(()) => report.written += 1,
                Err(e) => report.failures.push(label(e).to_string()),
            }
        }
        match self.mode {
            Mode::Stream => {
                self.fill(ctx);
                if self.next_offset == TOTAL && ctx.writes_in_flight() == 0 {
                    ctx.sync_files(&self.files, SYNC_TAG).unwrap();
                }
            }
            Mode::Received => {
                let key = self.waiting.remove(&tag.0).expect("tag was issued");
                result.unwrap();
                ctx.get_mut(key).expect("connection still open").acks += 1;
            }
            Mode::Stopping => ctx.sync_files(&self.files[..1], SYNC_TAG).unwrap(),
            Mode::Errors => {}
        }
    }

    fn sync_done(
        &mut self,
        tag: IoTag,
        result: Result<(), DiskError>,
        ctx: &mut ShardCtx<'_, BlockConn>,
        _now: Instant,
    ) {
        if self.mode == Mode::Received {
            let key = self.waiting.remove(&tag.0).expect("sync tag was issued");
            ctx.get_mut(key).expect("connection still open").synced = true;
        }
        let mut report = self.report.lock().unwrap();
        report.events.push("synced");
        report.synced = Some(result.map_err(|e| e.to_string()));
    }

    fn stopping(&mut self, ctx: &mut ShardCtx<'_, BlockConn>, _now: Instant) {
        if self.mode != Mode::Stopping {
            return;
        }
        self.report.lock().unwrap().events.push("stopping");
        let mut buf = ctx.write_pool().alloc().unwrap();
        buf.as_mut_slice()[..4].copy_from_slice(b"last");
        let spans = spans_for(&self.files, 0, 4);
        ctx.write_block(spans, buf, IoTag(7)).unwrap();
    }
}

/// Starts one shard in `mode` over `paths`; Received mode also listens on loopback.
fn start(io: IoKind, mode: Mode, paths: &[PathBuf], limits: ShardLimits) -> (Runtime<()>, Shared) {
    let report = Shared::default();
    let listen = match mode {
        Mode::Received => vec!["127.0.0.1:0".parse().unwrap()],
        _ => Vec::new(),
    };
    let config = RuntimeConfig {
        shards: 1,
        io,
        listen,
        pin_cores: false,
        limits,
    };
    let (paths, app_report) = (paths.to_vec(), Arc::clone(&report));
    let runtime = spawn_shards(config, move |_info: ShardInfo<()>| DiskApp {
        mode,
        paths: paths.clone(),
        files: Vec::new(),
        report: Arc::clone(&app_report),
        pool: None,
        next_offset: 0,
        waiting: HashMap::new(),
        next_tag: 0,
    })
    .expect("shard starts");
    (runtime, report)
}

fn small_pool() -> ShardLimits {
    ShardLimits {
        write_bufs: 2,
        syncs_max: 1,
        ..ShardLimits::default()
    }
}

#[test]
fn blocks_crossing_files_land_in_order_with_writes_bounded_by_the_pool() {
    // The whole stream, written as 16 KiB blocks crossing up to three files through a pool of
    // two buffers, reads back byte for byte after the sync (four files, one sync op at a time).
    for io in backends() {
        let (_dir, paths) = make_files();
        let (runtime, report) = start(io, Mode::Stream, &paths, small_pool());
        wait_until(&report, |r| r.synced.is_some());
        runtime.shutdown().unwrap();
        let report = report.lock().unwrap();
        assert_eq!(report.synced, Some(Ok(())), "{io:?}");
        assert_eq!(report.written, TOTAL.div_ceil(16_384), "{io:?}");
        assert!(report.failures.is_empty(), "{io:?}: {:?}", report.failures);
        assert!(
            report.in_flight_max <= 2,
            "{io:?}: {}",
            report.in_flight_max
        );
        assert_eq!(report.pool_free_min, 0, "{io:?}: the pool was the bound");
        let expected: Vec<u8> = (0..TOTAL).map(pattern).collect();
        assert!(read_stream(&paths) == expected, "{io:?}: stream differs");
    }
}

#[test]
fn write_errors_and_refusals_reach_the_app_as_errors() {
    // Caller mistakes are refused at once and give the buffer back; a write to a read-only
    // file completes with EBADF; the next write and an empty sync still complete normally.
    for io in backends() {
        let (_dir, paths) = make_files();
        let (runtime, report) = start(io, Mode::Errors, &paths, ShardLimits::default());
        wait_until(&report, |r| r.events.len() == 3);
        runtime.shutdown().unwrap();
        let report = report.lock().unwrap();
        assert_eq!(
            report.refusals,
            [
                "foreign",
                "empty",
                "empty",
                "too large",
                "unknown",
                "unknown"
            ],
            "{io:?}"
        );
        assert_eq!(report.failures, ["EBADF"], "{io:?}");
        assert_eq!(report.written, 1, "{io:?}");
        assert_eq!(report.synced, Some(Ok(())), "{io:?}");
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"0123456789");
        assert!(std::fs::read(&paths[1]).unwrap().is_empty(), "{io:?}");
    }
}

#[test]
fn received_blocks_go_from_connection_to_disk_and_are_acked_after_sync() {
    // A client streams blocks over TCP within a window of three; each is copied once into a
    // write buffer, written by the app, acknowledged after write_done, and the final `s`
    // comes only after the sync; the files then hold exactly what was sent.
    for io in backends() {
        let (_dir, paths) = make_files();
        let limits = ShardLimits {
            write_bufs: 3,
            ..ShardLimits::default()
        };
        let (runtime, report) = start(io, Mode::Received, &paths, limits);
        let mut client = TcpStream::connect(runtime.local_addrs()[0]).unwrap();
        client.set_read_timeout(Some(WAIT_MAX)).unwrap();
        let mut ack = [0u8; 1];
        let mut outstanding = 0;
        for offset in (0..TOTAL).step_by(9_000) {
            let len = (TOTAL - offset).min(9_000);
            let mut message = vec![b'W'];
            message.extend_from_slice(&(offset as u32).to_be_bytes());
            message.extend_from_slice(&(len as u16).to_be_bytes());
            message.extend((offset..offset + len).map(pattern));
            client.write_all(&message).unwrap();
            outstanding += 1;
            if outstanding == 3 {
                client.read_exact(&mut ack).unwrap();
                assert_eq!(&ack, b"A", "{io:?}");
                outstanding -= 1;
            }
        }
        for _ in 0..outstanding {
            client.read_exact(&mut ack).unwrap();
            assert_eq!(&ack, b"A", "{io:?}");
        }
        client.write_all(b"S").unwrap();
        client.read_exact(&mut ack).unwrap();
        assert_eq!(&ack, b"s", "{io:?}");
        let expected: Vec<u8> = (0..TOTAL).map(pattern).collect();
        assert!(read_stream(&paths) == expected, "{io:?}: stream differs");
        assert_eq!(report.lock().unwrap().written, TOTAL.div_ceil(9_000));
        drop(client);
        runtime.shutdown().unwrap();
    }
}

#[test]
fn writes_started_while_stopping_complete_before_shutdown_returns() {
    // The `stopping` hook's write and the sync it triggers are both delivered to the app
    // before `shutdown` returns, and the bytes are in the file.
    for io in backends() {
        let (_dir, paths) = make_files();
        let (runtime, report) = start(io, Mode::Stopping, &paths, small_pool());
        std::thread::sleep(Duration::from_millis(50));
        runtime.shutdown().unwrap();
        let report = report.lock().unwrap();
        assert_eq!(report.events, ["stopping", "written", "synced"], "{io:?}");
        assert_eq!(report.synced, Some(Ok(())), "{io:?}");
        assert_eq!(std::fs::read(&paths[0]).unwrap(), b"last", "{io:?}");
    }
}
