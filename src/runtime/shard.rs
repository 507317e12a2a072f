//! The shard loop: one thread, one backend, one application; completions in, sends out.
//!
//! Owns the loop order (commands, tick, timers, output, wait, completions), accepting, the
//! application context [`ShardCtx`] and the shard's limits and counters. The data-plane work per
//! completion lives in `core.rs`.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::buffers::BLOCK_BYTES_MAX;
use super::core::{Core, Phase};
use super::io::{Completion, Token};
use super::listener::{self, Listener};
use super::mailbox::Inbox;
use super::protocol::{CloseReason, ConnKey, FileId, ShardApp};
use crate::time::{Clock, Instant};

/// Longest the loop sleeps without checking the stop flag, so shutdown takes at most this long
/// even if a wake-up write were lost.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Commands handled per loop iteration; the rest wait, so a flood cannot stall the data plane.
const COMMANDS_PER_ITERATION: usize = 64;

/// How long shutdown waits for connections' in-flight ops before giving up on them.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(1);

/// Per-shard bounds. Every one caps memory: together they bound a shard's footprint at about
/// `recv_bufs * 32 KiB + block_bufs * 16 KiB + conns_max * (out_bytes_max + input_bytes_max)`
/// in the worst case (output queues mostly point into the block pool, so far less in practice).
#[derive(Copy, Clone, Debug)]
pub struct ShardLimits {
    /// Connections open or opening at once; accepts past it are closed at once.
    pub conns_max: usize,
    /// Receive buffers (32 KiB each). Receives wait when all are in use.
    pub recv_bufs: usize,
    /// Block buffers (16 KiB each) for disk reads. Block polling waits when all are in use.
    pub block_bufs: usize,
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
    /// connect; one read per block buffer; listeners and the wake-up read.
    pub(crate) fn ops_max(&self, listeners: usize) -> usize {
        3 * self.conns_max + self.block_bufs + listeners + 8
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
    /// Largest unsent output any connection had.
    pub unsent_bytes_high: usize,
}

impl ShardStats {
    pub(crate) fn note_unsent(&mut self, unsent: usize) {
        self.unsent_bytes_high = self.unsent_bytes_high.max(unsent);
    }
}

/// What the application may do to a shard from its hooks: reach connections by key, connect
/// out, close, register files, read counters.
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

    fn deliver_closed(&mut self) {
        let now = self.core.now;
        for (key, conn, reason) in self.core.closed.drain(..) {
            self.app.closed(key, conn, &reason, now);
        }
    }

    /// Closes every connection and waits (bounded) for their ops to finish.
    fn shutdown(&mut self) {
        let indices: Vec<usize> = self.core.slots.iter().map(|(i, _)| i).collect();
        for index in indices {
            self.core.close(index, CloseReason::Shutdown);
        }
        let deadline = self.parts.clock.now() + SHUTDOWN_DRAIN;
        while !self.core.slots.is_empty() && self.parts.clock.now() < deadline {
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
    }
}
