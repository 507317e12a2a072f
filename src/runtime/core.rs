//! The data plane of one shard: the connection slab and what happens on each completion.
//!
//! Owns connection slots (socket, protocol state, input carry-over, output queue, in-flight op
//! counts, timer), the backend, the block buffer pool, the file table and the disk write side. It
//! feeds completions to connections and turns their output into batched sends and file reads. It
//! never calls the application ([`ShardApp`](super::ShardApp)); closes, connections that want the
//! application and finished writes are queued for the shard loop to deliver.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use slab::Slab;

use super::buffers::{BufferPool, PoolBuf, BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, RECV_BUF_BYTES};
use super::disk::{Disk, DiskIo};
use super::files::FileTable;
use super::io::{Backend, Completion, FileRead, Payload, RecvBuf, SendBatch, Token};
use super::listener::Listener;
use super::outq::{OutQueue, VecPool};
use super::protocol::{BlockSource, CloseReason, ConnKey, Connection};
use super::shard::{ShardLimits, ShardStats};
use super::timers::Timers;
use crate::time::Instant;

/// Send batches kept for reuse; one is in flight per sending connection, the rest are freed.
const BATCHES_POOLED_MAX: usize = 1024;

/// Where a connection is in its life.
pub(crate) enum Phase {
    /// Outbound TCP handshake in flight.
    Connecting,
    /// Data flows.
    Open,
    /// Ops are being cancelled; the slot is freed when none is left in flight.
    Closing(CloseReason),
}

/// One connection and everything the shard keeps for it.
pub(crate) struct Slot<C> {
    pub(crate) generation: u32,
    pub(crate) conn: C,
    pub(crate) fd: Option<OwnedFd>,
    pub(crate) peer: SocketAddr,
    pub(crate) phase: Phase,
    out: OutQueue,
    /// Received bytes the connection has not consumed yet (an incomplete message).
    input: Vec<u8>,
    recv_busy: bool,
    /// Receiving waits for the peer to take our output (see `recv_unless_backlogged`).
    recv_paused: bool,
    send_busy: bool,
    connect_busy: bool,
    reads_busy: u32,
    /// Instant of this connection's live entry in the timer heap.
    armed: Option<Instant>,
    dirty: bool,
    waiting_buf: bool,
    /// In `Core::app_ready`, so not queued twice.
    app_queued: bool,
}

impl<C> Slot<C> {
    fn idle(&self) -> bool {
        !self.recv_busy && !self.send_busy && !self.connect_busy && self.reads_busy == 0
    }
}

/// Token of connection `index`, with `seq` naming a block read.
fn token(index: usize, seq: u32) -> Token {
    Token(index as u64 | (u64::from(seq) << 32))
}

fn untoken(token: Token) -> (usize, u32) {
    (
        (token.0 & u64::from(u32::MAX)) as usize,
        (token.0 >> 32) as u32,
    )
}

/// The shard's connections and I/O, without the application.
pub(crate) struct Core<C> {
    pub(crate) shard_index: usize,
    pub(crate) backend: Box<dyn Backend>,
    block_pool: BufferPool,
    pub(crate) slots: Slab<Slot<C>>,
    next_generation: u32,
    timers: Timers,
    dirty: Vec<ConnKey>,
    /// Connections that polled a block while the block pool was empty, oldest first.
    buf_waiters: VecDeque<ConnKey>,
    /// Finished connections for the shard loop to hand to `ShardApp::closed`.
    pub(crate) closed: Vec<(ConnKey, C, CloseReason)>,
    /// Connections whose `wants_app` said yes, for the shard loop to hand to `conn_ready`.
    pub(crate) app_ready: Vec<ConnKey>,
    pub(crate) files: FileTable,
    pub(crate) disk: Disk,
    vecs: VecPool,
    /// Boxed on purpose: a batch in flight must not move (the kernel holds its iovec address).
    #[allow(clippy::vec_box)]
    batches: Vec<Box<SendBatch>>,
    pub(crate) limits: ShardLimits,
    pub(crate) now: Instant,
    pub(crate) stats: ShardStats,
    pub(crate) listeners: Vec<Listener>,
}

impl<C: Connection> Core<C> {
    pub(crate) fn new(
        shard_index: usize,
        backend: Box<dyn Backend>,
        limits: ShardLimits,
        listeners: Vec<Listener>,
    ) -> Core<C> {
        let block_pool = backend.block_pool().clone();
        let disk = Disk::new(backend.write_pool().clone(), limits.syncs_max);
        Core {
            shard_index,
            backend,
            block_pool,
            slots: Slab::with_capacity(limits.conns_max),
            next_generation: 0,
            timers: Timers::default(),
            dirty: Vec::new(),
            buf_waiters: VecDeque::new(),
            closed: Vec::new(),
            app_ready: Vec::new(),
            files: FileTable::default(),
            disk,
            vecs: VecPool::default(),
            batches: Vec::new(),
            limits,
            now: Instant::ZERO,
            stats: ShardStats::default(),
            listeners,
        }
    }

    /// The slot of `key`, if the connection still exists.
    pub(crate) fn slot_mut(&mut self, key: ConnKey) -> Option<&mut Slot<C>> {
        self.slots
            .get_mut(key.index as usize)
            .filter(|s| s.generation == key.generation)
    }

    /// The slot of `key`, if the connection still exists.
    pub(crate) fn slot(&self, key: ConnKey) -> Option<&Slot<C>> {
        self.slots
            .get(key.index as usize)
            .filter(|s| s.generation == key.generation)
    }

    fn key_of(&self, index: usize) -> ConnKey {
        ConnKey {
            index: index as u32,
            generation: self.slots[index].generation,
        }
    }

    /// Adds a connection; hands it back when the shard is at `conns_max`.
    pub(crate) fn insert(
        &mut self,
        conn: C,
        fd: Option<OwnedFd>,
        peer: SocketAddr,
        phase: Phase,
    ) -> Result<ConnKey, C> {
        if self.slots.len() >= self.limits.conns_max {
            self.stats.refused_full += 1;
            return Err(conn);
        }
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let index = self.slots.insert(Slot {
            generation,
            conn,
            fd,
            peer,
            phase,
            out: OutQueue::default(),
            input: Vec::new(),
            recv_busy: false,
            recv_paused: false,
            send_busy: false,
            connect_busy: false,
            reads_busy: 0,
            armed: None,
            dirty: false,
            waiting_buf: false,
            app_queued: false,
        });
        Ok(ConnKey {
            index: index as u32,
            generation,
        })
    }

    /// The disk side and the parts of the core it works with, borrowed apart.
    pub(crate) fn disk_io(&mut self) -> (&mut Disk, DiskIo<'_>) {
        let io = DiskIo {
            backend: &mut *self.backend,
            files: &mut self.files,
            stats: &mut self.stats,
        };
        (&mut self.disk, io)
    }

    /// Queues connection `index` for `ShardApp::conn_ready` if it wants the application.
    fn note_app(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.app_queued || !matches!(slot.phase, Phase::Open) || !slot.conn.wants_app() {
            return;
        }
        slot.app_queued = true;
        let key = self.key_of(index);
        self.app_ready.push(key);
    }

    /// Takes the queue of connections waiting for `conn_ready`, clearing their marks.
    pub(crate) fn take_app_ready(&mut self) -> Vec<ConnKey> {
        let keys = std::mem::take(&mut self.app_ready);
        for key in &keys {
            if let Some(slot) = self.slot_mut(*key) {
                slot.app_queued = false;
            }
        }
        keys
    }

    /// Queues `key` to be polled for output at the end of this loop iteration.
    pub(crate) fn mark_dirty(&mut self, key: ConnKey) {
        if let Some(slot) = self.slot_mut(key) {
            if !slot.dirty {
                slot.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    /// Starts the first receive of an accepted connection.
    pub(crate) fn open(&mut self, key: ConnKey) {
        self.start_recv(key.index as usize);
        self.mark_dirty(key);
    }

    /// Starts an outbound connect for a slot inserted in `Phase::Connecting`.
    pub(crate) fn start_connect(&mut self, key: ConnKey, addr: SocketAddr) {
        let index = key.index as usize;
        let slot = &mut self.slots[index];
        let fd = slot
            .fd
            .as_ref()
            .expect("connecting slot has a socket")
            .as_raw_fd();
        slot.connect_busy = true;
        if let Err(e) = self.backend.connect(token(index, 0), fd, addr) {
            self.slots[index].connect_busy = false;
            self.close(
                index,
                CloseReason::ConnectFailed(io::Error::other(e.to_string())),
            );
        }
        self.mark_dirty(key);
    }

    fn start_recv(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.recv_busy || !matches!(slot.phase, Phase::Open) {
            return;
        }
        let fd = slot
            .fd
            .as_ref()
            .expect("open slot has a socket")
            .as_raw_fd();
        slot.recv_busy = true;
        if let Err(e) = self.backend.recv(token(index, 0), fd) {
            self.slots[index].recv_busy = false;
            self.close(index, CloseReason::Io(io::Error::other(e.to_string())));
        }
    }

    /// Starts closing connection `index`: cancels its ops; the slot goes once they completed.
    pub(crate) fn close(&mut self, index: usize, reason: CloseReason) {
        let slot = &mut self.slots[index];
        if matches!(slot.phase, Phase::Closing(_)) {
            return;
        }
        slot.phase = Phase::Closing(reason);
        if let Some(fd) = &slot.fd {
            if !slot.idle() {
                self.backend.cancel_fd(fd.as_raw_fd());
            }
        }
        self.maybe_finalize(index);
    }

    /// Frees a slot that is closing and has no op in flight.
    pub(crate) fn close_now_if_idle(&mut self, key: ConnKey) {
        if self.slot(key).is_some() {
            self.maybe_finalize(key.index as usize);
        }
    }

    fn maybe_finalize(&mut self, index: usize) {
        // Already gone when an earlier step of the same completion finalized it.
        let Some(slot) = self.slots.get(index) else {
            return;
        };
        if !matches!(slot.phase, Phase::Closing(_)) || !slot.idle() {
            return;
        }
        let key = self.key_of(index);
        let mut slot = self.slots.remove(index);
        slot.out.clear(&mut self.vecs);
        if let Some(fd) = slot.fd.take() {
            self.backend.close(fd);
        }
        let Phase::Closing(reason) = slot.phase else {
            unreachable!()
        };
        tracing::debug!(shard = self.shard_index, conn = %key, peer = %slot.peer, "closed: {reason}");
        self.stats.closed += 1;
        self.stats.closed_by_kind[reason.kind_index()] += 1;
        self.closed.push((key, slot.conn, reason));
    }

    /// Handles one completion other than an accept (the shard loop handles those).
    pub(crate) fn complete(&mut self, completion: Completion) {
        match completion {
            Completion::Connected { token, result } => self.on_connected(untoken(token).0, result),
            Completion::Received { token, result } => self.on_received(untoken(token).0, result),
            Completion::Sent {
                token,
                batch,
                result,
            } => self.on_sent(untoken(token).0, batch, result),
            Completion::FileRead { token, buf, result } => {
                let (index, seq) = untoken(token);
                self.on_read(index, seq, buf, result);
            }
            Completion::FileWritten { token, buf, result } => {
                let (disk, io) = self.disk_io();
                disk.on_written(io, token, buf, result);
            }
            Completion::FileSynced { token, result } => {
                let (disk, io) = self.disk_io();
                disk.on_synced(io, token, result);
            }
            Completion::Accepted { .. } | Completion::Woken => {}
        }
    }

    fn on_connected(&mut self, index: usize, result: io::Result<()>) {
        let slot = &mut self.slots[index];
        slot.connect_busy = false;
        match result {
            Ok(()) if matches!(slot.phase, Phase::Connecting) => {
                slot.phase = Phase::Open;
                slot.conn.on_connected(self.now);
                self.stats.connected += 1;
                self.start_recv(index);
                self.note_app(index);
                let key = self.key_of(index);
                self.mark_dirty(key);
            }
            Ok(()) => {}
            Err(e) => self.close(index, CloseReason::ConnectFailed(e)),
        }
        self.maybe_finalize(index);
    }

    fn on_received(&mut self, index: usize, result: io::Result<Option<RecvBuf>>) {
        self.slots[index].recv_busy = false;
        match result {
            Ok(Some(buf)) => {
                self.stats.bytes_received += buf.len as u64;
                let outcome = self.feed_input(index, &buf);
                self.backend.recycle_recv(buf);
                match outcome {
                    Ok(()) => {
                        self.recv_unless_backlogged(index);
                        self.note_app(index);
                        let key = self.key_of(index);
                        self.mark_dirty(key);
                    }
                    Err(reason) => self.close(index, reason),
                }
            }
            Ok(None) => self.close(index, CloseReason::PeerClosed),
            Err(e) => self.close(index, CloseReason::Io(e)),
        }
        self.maybe_finalize(index);
    }

    /// Receives more only while the connection's unsent output is within
    /// [`Core::output_backlog_max`]. Its requests, cancels and metadata requests make
    /// control replies that, from a peer that does not read them, would pile up without
    /// bound; pausing the receive instead lets TCP push back on the peer. `pump` resumes it
    /// once the output drains (a peer that never reads is closed by its idle timeout, as
    /// nothing it sends is consumed any more).
    fn recv_unless_backlogged(&mut self, index: usize) {
        let backlogged = self.slots[index].out.unsent_bytes > self.output_backlog_max();
        self.slots[index].recv_paused = backlogged;
        if !backlogged {
            self.start_recv(index);
        }
    }

    /// Unsent output past which a connection's receive pauses: a full block allowance
    /// (`out_bytes_max`) plus a receive buffer's worth of control replies, so a peer that
    /// reads is never paused by its own requests' answers.
    fn output_backlog_max(&self) -> usize {
        self.limits.out_bytes_max + RECV_BUF_BYTES
    }

    /// Offers received bytes (after any carried-over ones) to the connection until it stops
    /// consuming; keeps the rest, within `input_bytes_max`.
    fn feed_input(&mut self, index: usize, buf: &RecvBuf) -> Result<(), CloseReason> {
        let data = self.backend.recv_data(buf);
        let slot = &mut self.slots[index];
        if !matches!(slot.phase, Phase::Open) {
            return Ok(());
        }
        let now = self.now;
        if slot.input.is_empty() {
            let consumed = consume(&mut slot.conn, data, now)?;
            slot.input.extend_from_slice(&data[consumed..]);
        } else {
            slot.input.extend_from_slice(data);
            let consumed = consume(&mut slot.conn, &slot.input, now)?;
            slot.input.drain(..consumed);
        }
        let max = self.limits.input_bytes_max;
        if slot.input.len() > max {
            return Err(CloseReason::InputTooLarge {
                buffered: slot.input.len(),
                max,
            });
        }
        if slot.input.is_empty() && slot.input.capacity() > 2 * BLOCK_BYTES_MAX {
            slot.input = Vec::new(); // do not pin a burst's memory on an idle peer
        }
        Ok(())
    }

    fn on_sent(&mut self, index: usize, mut batch: Box<SendBatch>, result: io::Result<usize>) {
        let slot = &mut self.slots[index];
        slot.send_busy = false;
        let outcome = match result {
            Ok(0) if batch.total_bytes() > 0 => {
                Err(CloseReason::Io(io::ErrorKind::WriteZero.into()))
            }
            Ok(sent) => {
                let payload = slot.out.sent(&mut batch, sent, &mut self.vecs);
                self.stats.bytes_sent += sent as u64;
                self.stats.payload_bytes_sent += payload as u64;
                self.stats.sends += 1;
                if matches!(slot.phase, Phase::Open) {
                    slot.conn.on_sent(sent, self.now);
                }
                Ok(())
            }
            Err(e) => Err(CloseReason::Io(e)),
        };
        for chunk in batch.chunks.drain(..) {
            self.vecs.recycle(chunk.payload);
        }
        if self.batches.len() < BATCHES_POOLED_MAX {
            self.batches.push(batch);
        }
        match outcome {
            Ok(()) => {
                self.note_app(index);
                let key = self.key_of(index);
                self.mark_dirty(key);
            }
            Err(reason) => self.close(index, reason),
        }
        self.maybe_finalize(index);
    }

    fn on_read(&mut self, index: usize, seq: u32, buf: PoolBuf, result: io::Result<usize>) {
        let slot = &mut self.slots[index];
        slot.reads_busy -= 1;
        // The block stays queued while its read is in flight (finalize waits for reads).
        let pending = slot
            .out
            .pending_mut(seq)
            .expect("read for a block that is not pending");
        let file = pending.reading.take().expect("block had a read in flight");
        self.files.release(file);
        if !matches!(slot.phase, Phase::Open) {
            drop(buf);
            self.maybe_finalize(index);
            return;
        }
        match result {
            Ok(0) => {
                let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "file shorter than block");
                self.close(index, CloseReason::FileRead(eof));
            }
            Ok(n) => {
                pending.filled += n;
                debug_assert!(pending.filled <= pending.len);
                if pending.filled < pending.len {
                    self.submit_read(index, seq, buf);
                } else {
                    slot.out.complete_pending(seq, buf);
                    self.stats.blocks_read += 1;
                    self.try_send(index);
                }
            }
            Err(e) => self.close(index, CloseReason::FileRead(e)),
        }
        self.maybe_finalize(index);
    }

    /// Reads the next span of pending block `seq` into `buf`.
    fn submit_read(&mut self, index: usize, seq: u32, buf: PoolBuf) {
        let slot = &mut self.slots[index];
        let pending = slot.out.pending_mut(seq).expect("pending block");
        let (span, skip) = pending.cursor().expect("pending block not complete");
        let Some(fd) = self.files.acquire(span.file) else {
            self.close(
                index,
                CloseReason::BadBlock("block names an unknown or removed file"),
            );
            return;
        };
        let read = FileRead {
            fd,
            offset: span.offset + skip as u64,
            buf_offset: pending.filled,
            len: span.len as usize - skip,
        };
        pending.reading = Some(span.file);
        pending.started = true;
        slot.reads_busy += 1;
        if let Err((e, _buf)) = self.backend.read_file(token(index, seq), read, buf) {
            self.slots[index].reads_busy -= 1;
            if let Some(pending) = self.slots[index].out.pending_mut(seq) {
                pending.reading = None;
            }
            self.files.release(span.file);
            self.close(
                index,
                CloseReason::FileRead(io::Error::other(e.to_string())),
            );
        }
    }

    /// Sends the ready front of the stream if no send is in flight.
    fn try_send(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if slot.send_busy || !matches!(slot.phase, Phase::Open) || !slot.out.front_ready() {
            return;
        }
        let mut batch = self.batches.pop().unwrap_or_else(SendBatch::new);
        let (now, latency) = (self.now, &mut self.stats.block_latency);
        slot.out.fill_batch(&mut batch, |requested_at| {
            latency.record(now.saturating_duration_since(requested_at));
        });
        let fd = slot
            .fd
            .as_ref()
            .expect("open slot has a socket")
            .as_raw_fd();
        slot.send_busy = true;
        if let Err((e, mut batch)) = self.backend.send(token(index, 0), fd, batch) {
            self.slots[index].send_busy = false;
            for chunk in batch.chunks.drain(..) {
                self.vecs.recycle(chunk.payload);
            }
            self.close(index, CloseReason::Io(io::Error::other(e.to_string())));
        }
    }

    /// Polls every connection marked dirty for output, then sends.
    pub(crate) fn pump_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for key in dirty.drain(..) {
            if let Some(slot) = self.slot_mut(key) {
                slot.dirty = false;
                self.pump(key.index as usize);
            }
        }
        if self.dirty.is_empty() {
            self.dirty = dirty; // keep the allocation
        }
    }

    /// Collects a connection's control bytes and blocks while it has room, then sends.
    fn pump(&mut self, index: usize) {
        let room_needed = BLOCK_HEADER_BYTES + BLOCK_BYTES_MAX;
        loop {
            let slot = &mut self.slots[index];
            if !matches!(slot.phase, Phase::Open) {
                break;
            }
            let conn = &mut slot.conn;
            slot.out
                .write_control(&mut self.vecs, |v| conn.write_control(v));
            self.stats.note_unsent(slot.out.unsent_bytes);
            if slot.waiting_buf || slot.out.unsent_bytes + room_needed > self.limits.out_bytes_max {
                break;
            }
            let Some(block) = slot.conn.poll_block() else {
                break;
            };
            if let Err(reason) = self.queue_block(index, block) {
                self.close(index, reason);
                return;
            }
        }
        self.try_send(index);
        if self.slots[index].recv_paused {
            self.recv_unless_backlogged(index);
        }
        self.refresh_timer(index);
    }

    fn queue_block(&mut self, index: usize, block: super::BlockSend) -> Result<(), CloseReason> {
        let len = block.validate()?;
        let slot = &mut self.slots[index];
        slot.out
            .write_control(&mut self.vecs, |v| v.extend_from_slice(&block.header));
        match block.source {
            BlockSource::Memory(bytes) => {
                let payload = Payload::Shared(bytes);
                slot.out.push_ready(payload, len, block.requested_at);
            }
            BlockSource::Files(spans) => {
                let seq = slot.out.push_pending(spans, len, block.requested_at);
                match self.block_pool.alloc() {
                    Some(buf) => self.submit_read(index, seq, buf),
                    None => {
                        slot.waiting_buf = true;
                        self.stats.block_buf_waits += 1;
                        let key = self.key_of(index);
                        self.buf_waiters.push_back(key);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives freed block buffers to connections that waited for one, oldest first.
    pub(crate) fn serve_buf_waiters(&mut self) {
        while self.block_pool.free_count() > 0 {
            let Some(key) = self.buf_waiters.pop_front() else {
                return;
            };
            let Some(slot) = self.slot_mut(key) else {
                continue;
            };
            slot.waiting_buf = false;
            if !matches!(slot.phase, Phase::Open) {
                continue;
            }
            if let Some(pending) = slot.out.first_unstarted() {
                let seq = pending.seq;
                let buf = self.block_pool.alloc().expect("free buffer counted");
                self.submit_read(key.index as usize, seq, buf);
            }
            self.mark_dirty(key);
        }
    }

    /// Re-arms the connection's timer from `poll_timeout`.
    fn refresh_timer(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        if matches!(slot.phase, Phase::Closing(_)) {
            return;
        }
        let Some(want) = slot.conn.poll_timeout() else {
            return;
        };
        if slot.armed.is_none_or(|armed| want < armed) {
            slot.armed = Some(want);
            let key = self.key_of(index);
            self.timers.arm(key, want);
        }
    }

    /// Calls `handle_timeout` on every connection whose deadline passed.
    pub(crate) fn fire_timers(&mut self) {
        let now = self.now;
        while let Some((at, key)) = self.timers.pop_due(now) {
            let Some(slot) = self.slot_mut(key) else {
                continue;
            };
            if slot.armed != Some(at) {
                continue; // stale entry
            }
            slot.armed = None;
            if matches!(slot.phase, Phase::Closing(_)) {
                continue;
            }
            if slot.conn.poll_timeout().is_some_and(|want| want <= now) {
                if let Err(reason) = slot.conn.handle_timeout(now) {
                    self.close(key.index as usize, reason);
                    continue;
                }
            }
            self.refresh_timer(key.index as usize);
            self.note_app(key.index as usize);
            self.mark_dirty(key);
        }
        let slots = &self.slots;
        self.timers.compact(slots.len(), |key, at| {
            slots
                .get(key.index as usize)
                .is_some_and(|s| s.generation == key.generation && s.armed == Some(at))
        });
    }

    /// The earliest timer deadline.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Blocks waiting for a disk read or a buffer on connection `key` (for tests and metrics).
    pub(crate) fn pending_blocks(&self, key: ConnKey) -> usize {
        self.slot(key).map_or(0, |s| s.out.pending_count())
    }

    /// Unsent output bytes of connection `key`.
    pub(crate) fn unsent_bytes(&self, key: ConnKey) -> usize {
        self.slot(key).map_or(0, |s| s.out.unsent_bytes)
    }
}

/// Calls `handle_input` until it consumes nothing more; returns the bytes consumed in total.
fn consume<C: Connection>(conn: &mut C, data: &[u8], now: Instant) -> Result<usize, CloseReason> {
    let mut consumed = 0;
    while consumed < data.len() {
        let n = conn.handle_input(&data[consumed..], now)?;
        if n == 0 {
            break;
        }
        debug_assert!(
            n <= data.len() - consumed,
            "handle_input consumed more than offered"
        );
        consumed += n.min(data.len() - consumed);
    }
    Ok(consumed)
}
