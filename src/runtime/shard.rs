//! The shard loop: one thread, one backend, one application; completions in, sends out.
//!
//! Owns the loop order (commands, tick, timers, application events, output, wait, completions),
//! accepting, the application context [`ShardCtx`] and the shard's limits and counters. The data-plane work per
//! completion lives in `core.rs`.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::buffers::{BufferPool, PoolBuf, BLOCK_BYTES_MAX};
use super::core::{Core, Phase};
use super::disk::{DiskError, DiskEvent, IoTag};
use super::io::{Completion, Token};
use super::latency::LatencyHistogram;
use super::listener::{self, Listener};
use super::mailbox::Inbox;
use super::protocol::{CloseReason, ConnKey, FileId, FileSpans, ShardApp, CLOSE_KINDS};
use crate::time::{Clock, Instant};

/// Longest the loop sleeps without checking the stop flag, so shutdown takes at most this long
/// even if a wake-up write were lost.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Commands handled per loop iteration; the rest wait, so a flood cannot stall the data plane.
const COMMANDS_PER_ITERATION: usize = 64;

/// How long shutdown waits for connections' in-flight ops before giving up on them.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// How long shutdown waits for disk writes and syncs in flight. Longer than for sockets: an
/// fdatasync of many dirty pages on a slow disk takes seconds, and letting it finish is what
/// lets the application save resume data that covers those pieces.
const SHUTDOWN_DISK_DRAIN: Duration = Duration::from_secs(30);

/// Per-shard bounds. Every one caps memory: together they bound a shard's footprint at about
/// `recv_bufs * 32 KiB + (block_bufs + write_bufs) * 16 KiB + conns_max * (out_bytes_max +
/// input_bytes_max)` in the worst case (output queues mostly point into the block pool, so far less in practice).
#[derive(Copy, Clone, Debug)]
pub struct ShardLimits {
    /// Connections open or opening at once; accepts past it are closed at once.
    pub conns_max: usize,
    /// Receive buffers (32 KiB each). Receives wait when all are in use.
    pub recv_bufs: usize,
    /// Block buffers (16 KiB each) for disk reads. Block polling waits when all are in use.
    pub block_bufs: usize,
    /// Write buffers (16 KiB each, [`ShardCtx::write_pool`]): received blocks waiting for or
    /// being written. Also the bound on writes in flight, since each holds one.
    pub write_bufs: usize,
    /// fdatasync ops in flight at once; more files in [`ShardCtx::sync_files`] wait their turn.
    pub syncs_max: usize,
    /// Unsent output bytes per connection past which `poll_block` is not called: the
    /// backpressure that keeps a slow peer from holding more than this.
    pub out_bytes_max: usize,
    /// Unconsumed input bytes per connection; more closes the connection.
    pub input_bytes_max: usize,
}

impl Default for ShardLimits {
    fn default() -> Self {
        ShardLimits {
            conns_max: 16 * 1024,
            recv_bufs: 512,
            block_bufs: 2048,
            // 4 MiB: a 1 Gbit/s download writes ~8,000 blocks a second, each in the page cache
            // within microseconds, so this is mostly room for blocks the application holds.
            write_bufs: 256,
            // Enough to sync every file of a piece that spans many small files in one go.
            syncs_max: 64,
            // 16 blocks: enough to keep a 1 Gbit/s, 2 ms-RTT peer busy; memory is 256 KiB x peers
            // only if every peer stalls, and then it is capped by `block_bufs` anyway.
            out_bytes_max: 16 * (BLOCK_BYTES_MAX + 13),
            // A whole block message plus a large bitfield (BEP 3) with room to spare.
            input_bytes_max: 128 * 1024,
        }
    }
}

impl ShardLimits {
    /// Op table size that can never be exceeded: per connection one receive, one send and one
    /// connect; one read per block buffer; one write per write buffer; `syncs_max` syncs;
    /// listeners and the wake-up read.
    pub(crate) fn ops_max(&self, listeners: usize) -> usize {
        3 * self.conns_max + self.block_bufs + self.write_bufs + self.syncs_max + listeners + 8
    }
}

/// Counters of one shard (read through [`ShardCtx::stats`]).
#[derive(Clone, Debug, Default)]
pub struct ShardStats {
    /// Inbound connections accepted by the application.
    pub accepted: u64,
    /// Outbound connections established.
    pub connected: u64,
    /// Connections closed (any reason).
    pub closed: u64,
    /// Connections refused because the shard was at `conns_max`.
    pub refused_full: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Bytes sent (control, headers and blocks).
    pub bytes_sent: u64,
    /// Send completions.
    pub sends: u64,
    /// Blocks read from disk.
    pub blocks_read: u64,
    /// Times a block waited because the block pool was empty.
    pub block_buf_waits: u64,
    /// Blocks written to disk (every span).
    pub blocks_written: u64,
    /// Bytes written to disk.
    pub bytes_written: u64,
    /// Block writes that failed.
    pub write_errors: u64,
    /// fdatasync ops completed (one per file per request).
    pub syncs: u64,
    /// Largest unsent output any connection had.
    pub unsent_bytes_high: usize,
    /// Bytes sent that were block payload (`bytes_sent` minus control bytes and headers).
    pub payload_bytes_sent: u64,
    /// Connections closed, by [`CloseReason::kind_index`] (labels in [`CLOSE_KINDS`]).
    pub closed_by_kind: [u64; CLOSE_KINDS.len()],
    /// Time from a block's request (its [`BlockSend::requested_at`](super::BlockSend)) to
    /// its payload being handed to a socket send (the header went at or before that point);
    /// blocks without a request instant are not counted.
    pub block_latency: LatencyHistogram,
}

impl ShardStats {
    pub(crate) fn note_unsent(&mut self, unsent: usize) {
        self.unsent_bytes_high = self.unsent_bytes_high.max(unsent);
    }
}

/// What the application may do to a shard from its hooks: reach connections by key, connect
/// out, close, register files, write and sync blocks, read counters.
///
/// Writing a received block, durably (the order a downloader needs before announcing a piece):
/// 1. the connection copies the block into a buffer of [`write_pool`](Self::write_pool) and
///    says [`wants_app`](super::Connection::wants_app);
/// 2. in [`ShardApp::conn_ready`] the application takes the buffer and calls
///    [`write_block`](Self::write_block) with the block's file spans;
/// 3. [`ShardApp::write_done`] reports it in the page cache; once every block of a piece is
///    written (and the piece verified), [`sync_files`](Self::sync_files) on its files;
/// 4. [`ShardApp::sync_done`] reports the piece durable: now announce it and record it for
///    resume.
pub struct ShardCtx<'a, C> {
    pub(crate) core: &'a mut Core<C>,
}

impl<C: super::Connection> ShardCtx<'_, C> {
    /// This shard's index (0-based).
    pub fn shard_index(&self) -> usize {
        self.core.shard_index
    }

    /// The current instant of the shard loop.
    pub fn now(&self) -> Instant {
        self.core.now
    }

    /// A connection for reading.
    pub fn get(&self, key: ConnKey) -> Option<&C> {
        self.core.slot(key).map(|s| &s.conn)
    }

    /// A connection for changing; the shard polls it for output afterwards.
    pub fn get_mut(&mut self, key: ConnKey) -> Option<&mut C> {
        self.core.mark_dirty(key);
        self.core.slot_mut(key).map(|s| &mut s.conn)
    }

    /// Keys of all connections (including ones still connecting or closing).
    pub fn keys(&self) -> impl Iterator<Item = ConnKey> + '_ {
        self.core.slots.iter().map(|(index, slot)| ConnKey {
            index: index as u32,
            generation: slot.generation,
        })
    }

    /// Calls `f` on every open connection; all of them are polled for output afterwards.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(ConnKey, &mut C)) {
        let keys: Vec<ConnKey> = self.keys().collect();
        for key in keys {
            if let Some(slot) = self.core.slot_mut(key) {
                if matches!(slot.phase, Phase::Open) {
                    f(key, &mut slot.conn);
                    self.core.mark_dirty(key);
                }
            }
        }
    }

    /// The remote address of a connection.
    pub fn peer_addr(&self, key: ConnKey) -> Option<SocketAddr> {
        self.core.slot(key).map(|s| s.peer)
    }

    /// Connections on this shard.
    pub fn connection_count(&self) -> usize {
        self.core.slots.len()
    }

    /// Connects out to `peer`, from `local_ip` if given (e.g. 127.0.0.5). The connection gets
    /// [`on_connected`](super::Connection::on_connected) on success; a failure reaches
    /// [`ShardApp::closed`] with [`CloseReason::ConnectFailed`]. Returns the connection back if
    /// the shard is full.
    pub fn connect(
        &mut self,
        peer: SocketAddr,
        local_ip: Option<IpAddr>,
        conn: C,
    ) -> Result<ConnKey, C> {
        let socket = listener::outbound_socket(peer, local_ip);
        let (fd, phase) = match socket {
            Ok(fd) => (Some(fd), Phase::Connecting),
            Err(e) => (None, Phase::Closing(CloseReason::ConnectFailed(e))),
        };
        let has_fd = fd.is_some();
        let key = self.core.insert(conn, fd, peer, phase)?;
        if has_fd {
            self.core.start_connect(key, peer);
        } else {
            // Inserted already closing (no socket): hand it back through `closed` now.
            self.core.close_now_if_idle(key);
        }
        Ok(key)
    }

    /// Closes a connection; [`ShardApp::closed`] follows with `CloseReason::App(reason)`.
    pub fn close(&mut self, key: ConnKey, reason: &'static str) {
        if self.core.slot(key).is_some() {
            self.core
                .close(key.index as usize, CloseReason::App(reason));
        }
    }

    /// Registers a file that blocks can name by the returned id. The shard keeps it open.
    pub fn add_file(&mut self, file: File) -> FileId {
        self.core.files.add(file)
    }

    /// Closes a file once no read of it is in flight; blocks naming it afterwards close their
    /// connection. Its id may be reused by a later `add_file`. False if `id` was not open.
    pub fn remove_file(&mut self, id: FileId) -> bool {
        self.core.files.remove(id)
    }

    /// Files open on this shard (removed ones still being read included).
    pub fn open_files(&self) -> usize {
        self.core.files.open_count()
    }

    /// The pool write buffers come from: [`write_block`](Self::write_block) takes only its
    /// buffers. A cheap handle (shared, single-threaded): give one to each connection that
    /// receives blocks. Its [`free_count`](BufferPool::free_count) is the backpressure measure.
    pub fn write_pool(&self) -> BufferPool {
        self.core.disk.pool().clone()
    }

    /// Writes `buf[..spans.total_len()]` to `spans` in order (a block may cross files; files
    /// must have been opened writable). `Ok` means exactly one [`ShardApp::write_done`] with
    /// `tag` follows; an `Err` is a caller bug (empty or oversized spans, a buffer not from
    /// [`write_pool`](Self::write_pool), an unknown file) and nothing was written. The buffer
    /// returns to the pool when the write finishes. Writes in flight are bounded by the pool.
    pub fn write_block(
        &mut self,
        spans: FileSpans,
        buf: PoolBuf,
        tag: IoTag,
    ) -> Result<(), DiskError> {
        let (disk, io) = self.core.disk_io();
        disk.write_block(io, spans, buf, tag)
    }

    /// Makes the data of `files` durable (fdatasync each; at most
    /// [`ShardLimits::syncs_max`] in flight, the rest queued). Covers every write whose
    /// [`ShardApp::write_done`] was delivered before this call; writes still in flight may or
    /// may not be included. `Ok` means exactly one [`ShardApp::sync_done`] with `tag` follows
    /// (an empty list completes at once); `Err` only for an unknown file, and nothing started.
    pub fn sync_files(&mut self, files: &[FileId], tag: IoTag) -> Result<(), DiskError> {
        let (disk, io) = self.core.disk_io();
        disk.sync_files(io, files, tag)
    }

    /// Block writes accepted and not yet reported by `write_done`.
    pub fn writes_in_flight(&self) -> usize {
        self.core.disk.writes_in_flight()
    }

    /// `sync_files` requests accepted and not yet reported by `sync_done`.
    pub fn syncs_pending(&self) -> usize {
        self.core.disk.syncs_pending()
    }

    /// This shard's counters.
    pub fn stats(&self) -> &ShardStats {
        &self.core.stats
    }

    /// Unsent output bytes of a connection (the backpressure measure).
    pub fn unsent_bytes(&self, key: ConnKey) -> usize {
        self.core.unsent_bytes(key)
    }

    /// Blocks of a connection queued but not yet read from disk.
    pub fn pending_blocks(&self, key: ConnKey) -> usize {
        self.core.pending_blocks(key)
    }

    /// Addresses this shard listens on.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.core
            .listeners
            .iter()
            .map(Listener::local_addr)
            .collect()
    }
}

/// Everything a shard thread needs besides its application.
pub(crate) struct ShardParts<Cmd> {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) inbox: Inbox<Cmd>,
    pub(crate) clock: Clock,
}

/// One shard: the application plus its core, run by [`Shard::run`] on its own thread.
pub(crate) struct Shard<A: ShardApp> {
    app: A,
    core: Core<A::Conn>,
    parts: ShardParts<A::Command>,
    next_tick: Instant,
    completions: Vec<Completion>,
}

impl<A: ShardApp> Shard<A> {
    /// Registers listeners and the wake-up eventfd with the backend.
    pub(crate) fn new(
        app: A,
        mut core: Core<A::Conn>,
        parts: ShardParts<A::Command>,
    ) -> std::io::Result<Shard<A>> {
        let fds: Vec<_> = core.listeners.iter().map(Listener::raw_fd).collect();
        for (i, fd) in fds.into_iter().enumerate() {
            core.backend
                .listen(Token(i as u64), fd)
                .map_err(std::io::Error::other)?;
        }
        core.backend
            .watch_wakeup(parts.inbox.wake.as_raw_fd())
            .map_err(std::io::Error::other)?;
        Ok(Shard {
            app,
            core,
            parts,
            next_tick: Instant::ZERO,
            completions: Vec::with_capacity(1024),
        })
    }

    /// Runs until the stop flag is set; returns an error only if the backend fails.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        self.core.now = self.parts.clock.now();
        let now = self.core.now;
        self.app.start(
            &mut ShardCtx {
                core: &mut self.core,
            },
            now,
        );
        self.next_tick = self.core.now + self.app.tick_interval();
        while !self.parts.stop.load(Ordering::Acquire) {
            self.core.now = self.parts.clock.now();
            self.run_commands();
            if self.core.now >= self.next_tick {
                let now = self.core.now;
                self.app.tick(
                    &mut ShardCtx {
                        core: &mut self.core,
                    },
                    now,
                );
                self.next_tick = self.core.now + self.app.tick_interval();
            }
            self.core.fire_timers();
            self.core.serve_buf_waiters();
            self.deliver_app_events();
            self.core.pump_dirty();
            self.deliver_closed();
            let timeout = self.wait_timeout();
            self.core.backend.wait(&mut self.completions, timeout)?;
            self.core.now = self.parts.clock.now();
            self.handle_completions();
        }
        self.shutdown();
        Ok(())
    }

    fn wait_timeout(&self) -> Duration {
        if !self.core.app_ready.is_empty() || !self.core.disk.events.is_empty() {
            return Duration::ZERO; // queued by the application's own hooks: deliver them now
        }
        let now = self.core.now;
        let mut until = self.next_tick;
        if let Some(deadline) = self.core.next_deadline() {
            until = until.min(deadline);
        }
        (until - now).min(HEARTBEAT)
    }

    fn run_commands(&mut self) {
        for _ in 0..COMMANDS_PER_ITERATION {
            let Ok(cmd) = self.parts.inbox.rx.try_recv() else {
                return;
            };
            let now = self.core.now;
            self.app.command(
                cmd,
                &mut ShardCtx {
                    core: &mut self.core,
                },
                now,
            );
        }
    }

    fn handle_completions(&mut self) {
        let mut completions = std::mem::take(&mut self.completions);
        for completion in completions.drain(..) {
            match completion {
                Completion::Accepted { result: Ok(fd), .. } => self.accept(fd),
                Completion::Accepted {
                    result: Err(e),
                    token,
                } => {
                    tracing::warn!(
                        shard = self.core.shard_index,
                        listener = token.0,
                        "accept failed: {e}"
                    );
                }
                Completion::Woken => {}
                other => self.core.complete(other),
            }
        }
        self.completions = completions;
    }

    fn accept(&mut self, fd: OwnedFd) {
        let peer = match listener::prepare_accepted(&fd) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::debug!(
                    shard = self.core.shard_index,
                    "accepted socket unusable: {e}"
                );
                return;
            }
        };
        if self.core.slots.len() >= self.core.limits.conns_max {
            self.core.stats.refused_full += 1;
            return;
        }
        let Some(conn) = self.app.accept(peer, self.core.now) else {
            return;
        };
        // Cannot fail: the slab has room (checked above) and nothing ran in between.
        if let Ok(key) = self.core.insert(conn, Some(fd), peer, Phase::Open) {
            self.core.stats.accepted += 1;
            self.core.open(key);
        }
    }

    /// Hands connections that want the application to `conn_ready`, then finished writes and
    /// syncs to `write_done`/`sync_done`. Work the hooks queue (e.g. an empty `sync_files`) waits
    /// for the next iteration, which then does not sleep.
    fn deliver_app_events(&mut self) {
        let now = self.core.now;
        for key in self.core.take_app_ready() {
            if self
                .core
                .slot(key)
                .is_some_and(|s| matches!(s.phase, Phase::Open))
            {
                let ctx = &mut ShardCtx {
                    core: &mut self.core,
                };
                self.app.conn_ready(key, ctx, now);
            }
        }
        self.deliver_disk_events();
    }

    fn deliver_disk_events(&mut self) {
        let now = self.core.now;
        for event in std::mem::take(&mut self.core.disk.events) {
            let ctx = &mut ShardCtx {
                core: &mut self.core,
            };
            match event {
                DiskEvent::Written { tag, result } => self.app.write_done(tag, result, ctx, now),
                DiskEvent::Synced { tag, result } => self.app.sync_done(tag, result, ctx, now),
            }
        }
    }

    fn deliver_closed(&mut self) {
        let now = self.core.now;
        for (key, conn, reason) in self.core.closed.drain(..) {
            self.app.closed(key, conn, &reason, now);
        }
    }

    /// Lets the application start its last writes, closes every connection and waits (bounded)
    /// for connection ops and disk ops to finish, delivering disk completions to the application.
    fn shutdown(&mut self) {
        self.core.now = self.parts.clock.now();
        let now = self.core.now;
        self.app.stopping(
            &mut ShardCtx {
                core: &mut self.core,
            },
            now,
        );
        let indices: Vec<usize> = self.core.slots.iter().map(|(i, _)| i).collect();
        for index in indices {
            self.core.close(index, CloseReason::Shutdown);
        }
        let start = self.parts.clock.now();
        let (deadline, disk_deadline) = (start + SHUTDOWN_DRAIN, start + SHUTDOWN_DISK_DRAIN);
        loop {
            self.core.now = self.parts.clock.now();
            self.deliver_disk_events();
            let conns_left = !self.core.slots.is_empty() && self.core.now < deadline;
            let disk = &self.core.disk;
            let disk_left =
                disk.writes_in_flight() + disk.syncs_pending() > 0 && self.core.now < disk_deadline;
            if !conns_left && !disk_left {
                break;
            }
            if let Err(e) = self.core.backend.wait(&mut self.completions, HEARTBEAT) {
                tracing::warn!(
                    shard = self.core.shard_index,
                    "wait failed during shutdown: {e}"
                );
                break;
            }
            self.handle_completions();
        }
        self.deliver_closed();
        if !self.core.slots.is_empty() {
            tracing::warn!(
                shard = self.core.shard_index,
                "{} connections still had ops in flight at shutdown",
                self.core.slots.len()
            );
        }
        let disk = &self.core.disk;
        if disk.writes_in_flight() + disk.syncs_pending() > 0 {
            tracing::warn!(
                shard = self.core.shard_index,
                "{} block writes and {} syncs unfinished at shutdown",
                disk.writes_in_flight(),
                disk.syncs_pending()
            );
        }
    }
}
