//! The contract between a shard and the protocol it drives: [`Connection`] (one peer, sans-IO)
//! and [`ShardApp`] (the shard-wide policy: accepting, connecting out, periodic work, what to do
//! with received blocks and finished disk writes).
//!
//! Owns the types that cross that line (blocks to serve, file spans, close reasons, keys). It must
//! not know BitTorrent: the runtime moves bytes and blocks, the implementor decides what they mean.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::time::Instant;

use super::buffers::{BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES};
use super::disk::{DiskError, IoTag};
use super::shard::ShardCtx;

/// Most file spans one block may cover. A 16 KiB block crosses a file boundary only when files
/// are smaller than a block; 16 spans covers torrents of 1 KiB files.
pub const BLOCK_SPANS_MAX: usize = 16;

/// Identifies a connection within its shard. The generation makes a stale key (kept by the app
/// after the connection closed and its slot was reused) miss instead of hitting a stranger.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnKey {
    /// The key packed into 64 bits (for logs and maps).
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Rebuilds a key from [`ConnKey::as_u64`].
    pub fn from_u64(raw: u64) -> ConnKey {
        ConnKey {
            index: raw as u32,
            generation: (raw >> 32) as u32,
        }
    }
}

impl fmt::Display for ConnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}.{}", self.index, self.generation)
    }
}

/// A file registered with a shard through [`ShardCtx::add_file`]; blocks name files by id so the
/// shard owns the descriptors and can hand them to io_uring as fixed files later.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct FileId(pub(crate) u32);

/// A contiguous byte range of one file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Which file.
    pub file: FileId,
    /// Byte offset in the file.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
}

/// Spans stored inline; a block crosses at most one file boundary unless files are tiny, so
/// more than this spills to the heap (rare) and the common case allocates nothing.
const BLOCK_SPANS_INLINE: usize = 3;

/// The file spans of one block, in order; allocation-free up to 3 spans.
#[derive(Clone, Debug)]
pub struct FileSpans {
    len: usize,
    inline: [FileSpan; BLOCK_SPANS_INLINE],
    /// All spans, once there are more than fit inline.
    spill: Vec<FileSpan>,
}

impl FileSpans {
    /// No spans yet.
    pub fn new() -> FileSpans {
        let empty = FileSpan {
            file: FileId(u32::MAX),
            offset: 0,
            len: 0,
        };
        FileSpans {
            len: 0,
            inline: [empty; BLOCK_SPANS_INLINE],
            spill: Vec::new(),
        }
    }

    /// One span.
    pub fn single(span: FileSpan) -> FileSpans {
        let mut spans = FileSpans::new();
        spans.push(span).expect("one span always fits");
        spans
    }

    /// Appends a span; fails past [`BLOCK_SPANS_MAX`].
    pub fn push(&mut self, span: FileSpan) -> Result<(), CloseReason> {
        if self.len == BLOCK_SPANS_MAX {
            return Err(CloseReason::BadBlock(
                "more than BLOCK_SPANS_MAX file spans",
            ));
        }
        if self.len < BLOCK_SPANS_INLINE {
            self.inline[self.len] = span;
        } else {
            if self.spill.is_empty() {
                self.spill.extend_from_slice(&self.inline);
            }
            self.spill.push(span);
        }
        self.len += 1;
        Ok(())
    }

    /// The spans pushed so far.
    pub fn as_slice(&self) -> &[FileSpan] {
        if self.len > BLOCK_SPANS_INLINE {
            &self.spill
        } else {
            &self.inline[..self.len]
        }
    }

    /// Sum of the span lengths.
    pub fn total_len(&self) -> usize {
        self.as_slice().iter().map(|s| s.len as usize).sum()
    }
}

impl Default for FileSpans {
    fn default() -> Self {
        FileSpans::new()
    }
}

/// Where a block's payload comes from.
#[derive(Clone, Debug)]
pub enum BlockSource {
    /// Read from these file spans into a pooled buffer, then send.
    Files(FileSpans),
    /// Already in memory (a piece cache hit); sent without a disk read or copy.
    Memory(bytes::Bytes),
}

/// A block message the connection wants sent: a header followed by the payload.
#[derive(Clone, Debug)]
pub struct BlockSend {
    /// The message header (for BitTorrent: length, id 7, piece index, offset).
    pub header: [u8; BLOCK_HEADER_BYTES],
    /// The payload, at most [`BLOCK_BYTES_MAX`] bytes.
    pub source: BlockSource,
    /// When the peer asked for the block (the `now` of the input that held the request), if
    /// known: the shard records the time from it until the payload is handed to a send in
    /// [`ShardStats::block_latency`](super::ShardStats).
    pub requested_at: Option<Instant>,
}

impl BlockSend {
    /// Payload length in bytes.
    pub fn payload_len(&self) -> usize {
        match &self.source {
            BlockSource::Files(spans) => spans.total_len(),
            BlockSource::Memory(bytes) => bytes.len(),
        }
    }

    /// Checks the bounds the shard relies on (non-empty, at most one block long).
    pub(crate) fn validate(&self) -> Result<usize, CloseReason> {
        let len = self.payload_len();
        if len == 0 || len > BLOCK_BYTES_MAX {
            return Err(CloseReason::BadBlock(
                "block payload empty or over BLOCK_BYTES_MAX",
            ));
        }
        Ok(len)
    }
}

/// Labels of [`CloseReason::kind_index`], in index order (metric label values).
pub const CLOSE_KINDS: [&str; 9] = [
    "peer_closed",
    "io",
    "connect_failed",
    "file_read",
    "protocol",
    "bad_block",
    "input_too_large",
    "app",
    "shutdown",
];

/// Why a connection closed. Logged by the shard and handed to [`ShardApp::closed`].
#[derive(Debug, thiserror::Error)]
pub enum CloseReason {
    /// The remote side closed its end (receive returned 0).
    #[error("peer closed the connection")]
    PeerClosed,
    /// A socket operation failed.
    #[error("socket error: {0}")]
    Io(std::io::Error),
    /// An outbound connection could not be established.
    #[error("connect failed: {0}")]
    ConnectFailed(std::io::Error),
    /// Reading a block from disk failed or hit end of file.
    #[error("file read failed: {0}")]
    FileRead(std::io::Error),
    /// The protocol rejected the peer (bad message, timeout, ban...).
    #[error("protocol: {0}")]
    Protocol(Box<dyn std::error::Error + Send + Sync>),
    /// The connection returned a block that breaks a runtime bound.
    #[error("invalid block: {0}")]
    BadBlock(&'static str),
    /// The peer sent more unconsumed input than the shard buffers per connection.
    #[error("{buffered} unconsumed input bytes, limit {max}")]
    InputTooLarge {
        /// Bytes buffered.
        buffered: usize,
        /// The limit.
        max: usize,
    },
    /// The application asked for the close.
    #[error("closed by application: {0}")]
    App(&'static str),
    /// The shard is stopping.
    #[error("shard shutting down")]
    Shutdown,
}

impl CloseReason {
    /// Which variant this is, as an index into [`CLOSE_KINDS`] (for per-reason counters).
    pub fn kind_index(&self) -> usize {
        match self {
            CloseReason::PeerClosed => 0,
            CloseReason::Io(_) => 1,
            CloseReason::ConnectFailed(_) => 2,
            CloseReason::FileRead(_) => 3,
            CloseReason::Protocol(_) => 4,
            CloseReason::BadBlock(_) => 5,
            CloseReason::InputTooLarge { .. } => 6,
            CloseReason::App(_) => 7,
            CloseReason::Shutdown => 8,
        }
    }

    /// The variant's label in [`CLOSE_KINDS`].
    pub fn kind(&self) -> &'static str {
        CLOSE_KINDS[self.kind_index()]
    }
}

/// One peer connection as the shard sees it: a sans-IO state machine fed bytes and time.
///
/// Methods come in three kinds (the shape of quinn-proto's `Connection`):
/// - inputs, `handle_*` and `on_*`: [`handle_input`](Self::handle_input) with received bytes,
///   [`on_sent`](Self::on_sent) when bytes left the socket, [`handle_timeout`](Self::handle_timeout)
///   when the instant from [`poll_timeout`](Self::poll_timeout) has passed;
/// - outputs, polled by the shard after every input: [`write_control`](Self::write_control),
///   then [`poll_block`](Self::poll_block), repeated while there is room, then `poll_timeout`;
/// - no getters are needed by the shard.
///
/// The output is one ordered byte stream: control bytes written by `write_control`, then the
/// header and payload of each block returned by `poll_block`, in call order. A block whose disk
/// read is still pending holds back everything queued after it.
///
/// Backpressure: the shard calls `poll_block` only while the connection's unsent bytes are below
/// [`ShardLimits::out_bytes_max`](super::ShardLimits) and a block buffer is free, so a connection
/// should keep requested blocks in its own bounded queue and hand them out one per call.
/// `write_control` is not bounded by the shard: keep control output small (it is for handshakes,
/// have/choke/unchoke messages, keep-alives).
///
/// Any `Err(CloseReason)` closes the connection; the shard logs the reason (debug level) and
/// gives the connection back through [`ShardApp::closed`]. A connection never sees a socket, a
/// file or a clock: `now` is passed in.
///
/// What the shard guarantees, per connection, all on one thread:
/// - after each receive, `handle_input` is called again and again while it consumes something
///   and bytes remain, so an implementation may parse one message per call;
/// - after any input, timeout, send completion or touch through [`ShardCtx::get_mut`], the
///   shard polls: `write_control`, then `poll_block` while there is room (then `write_control`
///   again after each block), then `poll_timeout`;
/// - blocks are sent in `poll_block` order with their headers; at most one send is in flight.
///
/// A minimal implementation that echoes input back as control bytes:
/// ```
/// use ringseed::runtime::{BlockSend, CloseReason, Connection};
/// use ringseed::time::Instant;
///
/// #[derive(Default)]
/// struct Echo { pending: Vec<u8> }
///
/// impl Connection for Echo {
///     fn handle_input(&mut self, bytes: &[u8], _now: Instant) -> Result<usize, CloseReason> {
///         self.pending.extend_from_slice(bytes);
///         Ok(bytes.len())
///     }
///     fn write_control(&mut self, out: &mut Vec<u8>) {
///         out.append(&mut self.pending);
///     }
///     fn poll_block(&mut self) -> Option<BlockSend> { None }
///     fn on_sent(&mut self, _bytes: usize, _now: Instant) {}
///     fn handle_timeout(&mut self, _now: Instant) -> Result<(), CloseReason> { Ok(()) }
///     fn poll_timeout(&self) -> Option<Instant> { None }
/// }
/// ```
pub trait Connection {
    /// Feeds received bytes; returns how many were consumed. Unconsumed bytes stay buffered (up
    /// to [`ShardLimits::input_bytes_max`](super::ShardLimits)) and are offered again, followed
    /// by new data; return 0 when the rest is an incomplete message.
    fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<usize, CloseReason>;

    /// Appends control bytes to send. They go out in order, before any block polled afterwards.
    fn write_control(&mut self, out: &mut Vec<u8>);

    /// The next block to serve, if the connection has one ready.
    fn poll_block(&mut self) -> Option<BlockSend>;

    /// `bytes` of this connection's output stream (control, headers and payload) were accepted
    /// by the kernel.
    fn on_sent(&mut self, bytes: usize, now: Instant);

    /// Called once `now` has reached the instant last returned by `poll_timeout`.
    fn handle_timeout(&mut self, now: Instant) -> Result<(), CloseReason>;

    /// When the connection next wants `handle_timeout`, if ever.
    fn poll_timeout(&self) -> Option<Instant>;

    /// An outbound connection finished its TCP handshake (inbound ones start connected).
    fn on_connected(&mut self, _now: Instant) {}

    /// True when the connection holds something only the application can act on, typically
    /// received blocks to write to disk. Asked after every input, timeout, send completion and
    /// connect; when true the shard calls [`ShardApp::conn_ready`] (once per loop iteration,
    /// before polling output), which takes the work out through
    /// [`ShardCtx::get_mut`](super::ShardCtx::get_mut).
    ///
    /// Received blocks: `handle_input` borrows the shard's receive buffer, so a block must be
    /// copied out before `handle_input` returns. Copy it into a buffer of
    /// [`ShardCtx::write_pool`](super::ShardCtx::write_pool) (a handle the application gives
    /// the connection when it builds it): that copy is the only one, as the write goes from
    /// that buffer straight to the file. Reading a block straight off the socket into a pool
    /// buffer would save it, but needs the runtime to know the protocol's framing and forbids
    /// receiving a block together with the messages around it; a 16 KiB memcpy is small next
    /// to the write itself. Keep at most as many blocks requested as write buffers are free
    /// ([`BufferPool::free_count`](super::BufferPool::free_count)): an empty pool is the
    /// application's backpressure signal.
    fn wants_app(&self) -> bool {
        false
    }
}

/// Shard-wide hooks: which connections to accept, periodic work over many connections, commands
/// from other threads, and notice of closes. One instance lives on each shard thread; it is built
/// there, so it need not be `Send`.
pub trait ShardApp: 'static {
    /// The per-connection protocol state.
    type Conn: Connection;
    /// Messages other threads send to this shard with [`Runtime::send`](super::Runtime::send).
    type Command: Send + 'static;

    /// Called once before the loop starts (register files, connect out to known peers).
    fn start(&mut self, _ctx: &mut ShardCtx<'_, Self::Conn>, _now: Instant) {}

    /// A peer connected in; return its connection, or `None` to refuse (the socket is closed).
    fn accept(&mut self, peer: SocketAddr, now: Instant) -> Option<Self::Conn>;

    /// Periodic work every [`tick_interval`](Self::tick_interval) (choking, announces). Any
    /// connection touched through `ctx` is polled for output afterwards.
    fn tick(&mut self, _ctx: &mut ShardCtx<'_, Self::Conn>, _now: Instant) {}

    /// How often `tick` runs.
    fn tick_interval(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// A message from another thread.
    fn command(&mut self, _cmd: Self::Command, _ctx: &mut ShardCtx<'_, Self::Conn>, _now: Instant) {
    }

    /// A connection closed (or an outbound connect failed); its state is handed back.
    fn closed(&mut self, _key: ConnKey, _conn: Self::Conn, _reason: &CloseReason, _now: Instant) {}

    /// Connection `key` said [`Connection::wants_app`] after its latest event: take what it
    /// holds (e.g. received blocks, then [`ShardCtx::write_block`]) through `ctx.get_mut(key)`.
    fn conn_ready(&mut self, _key: ConnKey, _ctx: &mut ShardCtx<'_, Self::Conn>, _now: Instant) {}

    /// A block write accepted by [`ShardCtx::write_block`] finished: every byte is in the page
    /// cache (not yet durable: see [`ShardCtx::sync_files`]), or the write failed. Called
    /// exactly once per accepted write, also while the shard stops.
    fn write_done(
        &mut self,
        _tag: IoTag,
        _result: Result<(), DiskError>,
        _ctx: &mut ShardCtx<'_, Self::Conn>,
        _now: Instant,
    ) {
    }

    /// A [`ShardCtx::sync_files`] request finished: the data of every file named is on stable
    /// storage, or the first failure. Called exactly once per accepted request.
    fn sync_done(
        &mut self,
        _tag: IoTag,
        _result: Result<(), DiskError>,
        _ctx: &mut ShardCtx<'_, Self::Conn>,
        _now: Instant,
    ) {
    }

    /// The shard is stopping: last chance to start writes and syncs (e.g. sync the files
    /// written since the last resume save). Connections are closed right after; the shard then
    /// waits a bounded time for every write and sync in flight and delivers their completions.
    fn stopping(&mut self, _ctx: &mut ShardCtx<'_, Self::Conn>, _now: Instant) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_spill_past_inline_capacity_and_stop_at_the_bound() {
        // Up to BLOCK_SPANS_MAX spans are kept in order; one more is refused.
        let mut spans = FileSpans::new();
        for i in 0..BLOCK_SPANS_MAX {
            let span = FileSpan {
                file: FileId(i as u32),
                offset: i as u64,
                len: 10,
            };
            spans.push(span).unwrap();
        }
        assert_eq!(spans.as_slice().len(), BLOCK_SPANS_MAX);
        assert!(spans
            .as_slice()
            .iter()
            .enumerate()
            .all(|(i, s)| s.file == FileId(i as u32)));
        assert_eq!(spans.total_len(), 10 * BLOCK_SPANS_MAX);
        let extra = FileSpan {
            file: FileId(0),
            offset: 0,
            len: 1,
        };
        assert!(spans.push(extra).is_err());
    }
}
