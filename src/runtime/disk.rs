//! Block writes and fdatasyncs on behalf of the application: the in-flight tables, the span
//! cursor of a block that crosses files, sync groups, and the events handed back to
//! [`ShardApp::write_done`](super::ShardApp::write_done) and
//! [`ShardApp::sync_done`](super::ShardApp::sync_done).
//!
//! Owns the write side of one shard's disk I/O. Never calls the application: finished work is
//! queued as [`DiskEvent`]s for the shard loop to deliver. Every accepted request produces
//! exactly one event, whatever fails along the way.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use slab::Slab;

use super::buffers::{BufferPool, PoolBuf};
use super::files::FileTable;
use super::io::{Backend, FileWrite, Token};
use super::protocol::{FileId, FileSpans, BLOCK_SPANS_MAX};
use super::shard::ShardStats;

/// The application's name for one write or sync request, handed back in its completion.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct IoTag(pub u64);

/// Why a write or sync was refused or failed. Refusals (returned by
/// [`ShardCtx::write_block`](super::ShardCtx::write_block) and
/// [`ShardCtx::sync_files`](super::ShardCtx::sync_files)) are caller bugs; failures (in
/// `write_done`/`sync_done`) come from the kernel and name the file and offset.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The spans cover no bytes, or one of them is empty.
    #[error("block has no bytes or an empty span")]
    EmptySpan,
    /// The spans cover more bytes than a write buffer holds.
    #[error("block of {len} bytes does not fit a {max}-byte write buffer")]
    BlockTooLarge {
        /// Bytes the spans cover.
        len: usize,
        /// Size of a write buffer.
        max: usize,
    },
    /// The buffer does not come from the shard's write pool, whose size bounds the writes in
    /// flight (take buffers from [`ShardCtx::write_pool`](super::ShardCtx::write_pool)).
    #[error("write buffer is not from this shard's write pool")]
    ForeignBuffer,
    /// A span or sync names a file that is not registered (or is being removed).
    #[error("file {file:?} is not registered with this shard")]
    UnknownFile {
        /// The id.
        file: FileId,
    },
    /// Writing to a file failed.
    #[error("writing {file:?} at byte {offset}: {source}")]
    Write {
        /// The file.
        file: FileId,
        /// Where in the file the failed write started.
        offset: u64,
        /// What the kernel said (`EBADF` for a file opened read-only, `ENOSPC`, `EIO`...).
        source: io::Error,
    },
    /// The kernel accepted nothing of a write (it returned 0 bytes).
    #[error("writing {file:?} at byte {offset}: no progress (0 bytes written)")]
    WriteZero {
        /// The file.
        file: FileId,
        /// Where the write started.
        offset: u64,
    },
    /// fdatasync of a file failed: data written before it may not be on stable storage.
    #[error("syncing {file:?}: {source}")]
    Sync {
        /// The file.
        file: FileId,
        /// What the kernel said.
        source: io::Error,
    },
}

/// A finished request, for the shard loop to hand to the application.
#[derive(Debug)]
pub(crate) enum DiskEvent {
    /// Every byte of the block reached the page cache, or the write failed.
    Written {
        tag: IoTag,
        result: Result<(), DiskError>,
    },
    /// Every file of the group was synced, or the first failure.
    Synced {
        tag: IoTag,
        result: Result<(), DiskError>,
    },
}

/// One block being written, span by span (one op in flight at a time, like block reads).
struct WriteOp {
    tag: IoTag,
    spans: FileSpans,
    /// Descriptor of each span's file, acquired at submission so removal waits for the block.
    fds: [RawFd; BLOCK_SPANS_MAX],
    /// Index of the span being written.
    span: usize,
    /// Bytes of that span already written.
    span_done: usize,
    /// Bytes of the buffer already written (all previous spans plus `span_done`).
    buf_done: usize,
}

/// One `sync_files` request: its files are synced concurrently, up to the shard's bound.
struct SyncGroup {
    tag: IoTag,
    files: Vec<(FileId, RawFd)>,
    /// Files before this index have been submitted.
    next: usize,
    in_flight: usize,
    error: Option<DiskError>,
}

/// What the disk side needs from the rest of the shard for one call.
pub(crate) struct DiskIo<'a> {
    pub(crate) backend: &'a mut dyn Backend,
    pub(crate) files: &'a mut FileTable,
    pub(crate) stats: &'a mut ShardStats,
}

/// The write side of one shard's disk I/O.
pub(crate) struct Disk {
    pool: BufferPool,
    writes: Slab<WriteOp>,
    groups: Slab<SyncGroup>,
    /// Groups with files not yet submitted, oldest first.
    sync_waiting: VecDeque<usize>,
    syncs_in_flight: usize,
    syncs_max: usize,
    /// Finished requests for the shard loop to deliver.
    pub(crate) events: Vec<DiskEvent>,
}

/// Token of sync op `pos` of group `group`.
fn sync_token(group: usize, pos: usize) -> Token {
    Token(group as u64 | ((pos as u64) << 32))
}

fn sync_untoken(token: Token) -> (usize, usize) {
    (
        (token.0 & u64::from(u32::MAX)) as usize,
        (token.0 >> 32) as usize,
    )
}

impl Disk {
    /// Writes come from `pool`; at most `syncs_max` fdatasyncs are in flight at once.
    pub(crate) fn new(pool: BufferPool, syncs_max: usize) -> Disk {
        assert!(syncs_max > 0, "syncs_max must allow one sync");
        Disk {
            writes: Slab::with_capacity(pool.capacity()),
            pool,
            groups: Slab::new(),
            sync_waiting: VecDeque::new(),
            syncs_in_flight: 0,
            syncs_max,
            events: Vec::new(),
        }
    }

    /// The pool write buffers come from.
    pub(crate) fn pool(&self) -> &BufferPool {
        &self.pool
    }

    /// Blocks being written.
    pub(crate) fn writes_in_flight(&self) -> usize {
        self.writes.len()
    }

    /// `sync_files` requests not yet finished.
    pub(crate) fn syncs_pending(&self) -> usize {
        self.groups.len()
    }

    /// Validates and starts a block write; exactly one [`DiskEvent::Written`] follows `Ok`.
    pub(crate) fn write_block(
        &mut self,
        io: DiskIo<'_>,
        spans: FileSpans,
        buf: PoolBuf,
        tag: IoTag,
    ) -> Result<(), DiskError> {
        if !self.pool.owns(&buf) {
            return Err(DiskError::ForeignBuffer);
        }
        let len = spans.total_len();
        if len == 0 || spans.as_slice().iter().any(|s| s.len == 0) {
            return Err(DiskError::EmptySpan);
        }
        if len > buf.capacity() {
            return Err(DiskError::BlockTooLarge {
                len,
                max: buf.capacity(),
            });
        }
        let mut fds = [-1; BLOCK_SPANS_MAX];
        for (i, span) in spans.as_slice().iter().enumerate() {
            match io.files.acquire(span.file) {
                Some(fd) => fds[i] = fd,
                None => {
                    for taken in &spans.as_slice()[..i] {
                        io.files.release(taken.file);
                    }
                    return Err(DiskError::UnknownFile { file: span.file });
                }
            }
        }
        let index = self.writes.insert(WriteOp {
            tag,
            spans,
            fds,
            span: 0,
            span_done: 0,
            buf_done: 0,
        });
        self.submit_write(io, index, buf);
        Ok(())
    }

    /// Submits the rest of the current span of write `index`.
    fn submit_write(&mut self, io: DiskIo<'_>, index: usize, buf: PoolBuf) {
        let op = &self.writes[index];
        let span = op.spans.as_slice()[op.span];
        let write = FileWrite {
            fd: op.fds[op.span],
            offset: span.offset + op.span_done as u64,
            buf_offset: op.buf_done,
            len: span.len as usize - op.span_done,
        };
        if let Err((e, _buf)) = io.backend.write_file(Token(index as u64), write, buf) {
            let source = io::Error::other(e.to_string());
            let error = DiskError::Write {
                file: span.file,
                offset: write.offset,
                source,
            };
            self.finish_write(io, index, Err(error));
        }
    }

    /// A write op of block `token` completed.
    pub(crate) fn on_written(
        &mut self,
        io: DiskIo<'_>,
        token: Token,
        buf: PoolBuf,
        result: io::Result<usize>,
    ) {
        let index = token.0 as usize;
        let op = self
            .writes
            .get_mut(index)
            .expect("write completion for a block not in flight");
        let span = op.spans.as_slice()[op.span];
        let offset = span.offset + op.span_done as u64;
        match result {
            Ok(0) => {
                let error = DiskError::WriteZero {
                    file: span.file,
                    offset,
                };
                self.finish_write(io, index, Err(error));
            }
            Ok(n) => {
                debug_assert!(op.span_done + n <= span.len as usize);
                op.span_done += n;
                op.buf_done += n;
                io.stats.bytes_written += n as u64;
                if op.span_done == span.len as usize {
                    op.span += 1;
                    op.span_done = 0;
                }
                if op.span == op.spans.as_slice().len() {
                    io.stats.blocks_written += 1;
                    self.finish_write(io, index, Ok(()));
                } else {
                    self.submit_write(io, index, buf);
                }
            }
            Err(source) => {
                let error = DiskError::Write {
                    file: span.file,
                    offset,
                    source,
                };
                self.finish_write(io, index, Err(error));
            }
        }
    }

    /// Releases the block's files and queues its event; the buffer went back to the pool when
    /// the caller dropped it.
    fn finish_write(&mut self, io: DiskIo<'_>, index: usize, result: Result<(), DiskError>) {
        let op = self.writes.remove(index);
        for span in op.spans.as_slice() {
            io.files.release(span.file);
        }
        if result.is_err() {
            io.stats.write_errors += 1;
        }
        self.events.push(DiskEvent::Written {
            tag: op.tag,
            result,
        });
    }

    /// Validates and starts syncing `files`; exactly one [`DiskEvent::Synced`] follows `Ok`.
    pub(crate) fn sync_files(
        &mut self,
        io: DiskIo<'_>,
        files: &[FileId],
        tag: IoTag,
    ) -> Result<(), DiskError> {
        let mut acquired = Vec::with_capacity(files.len());
        for &file in files {
            match io.files.acquire(file) {
                Some(fd) => acquired.push((file, fd)),
                None => {
                    for (taken, _) in acquired {
                        io.files.release(taken);
                    }
                    return Err(DiskError::UnknownFile { file });
                }
            }
        }
        if acquired.is_empty() {
            self.events.push(DiskEvent::Synced {
                tag,
                result: Ok(()),
            });
            return Ok(());
        }
        let group = self.groups.insert(SyncGroup {
            tag,
            files: acquired,
            next: 0,
            in_flight: 0,
            error: None,
        });
        self.sync_waiting.push_back(group);
        self.submit_syncs(io);
        Ok(())
    }

    /// Submits waiting syncs, oldest group first, while fewer than `syncs_max` are in flight.
    fn submit_syncs(&mut self, io: DiskIo<'_>) {
        while self.syncs_in_flight < self.syncs_max {
            let Some(&group) = self.sync_waiting.front() else {
                return;
            };
            let g = &mut self.groups[group];
            let pos = g.next;
            let fd = g.files[pos].1;
            g.next += 1;
            if g.next == g.files.len() {
                self.sync_waiting.pop_front();
            }
            g.in_flight += 1;
            self.syncs_in_flight += 1;
            if let Err(e) = io.backend.sync_file(sync_token(group, pos), fd) {
                let source = io::Error::other(e.to_string());
                self.sync_finished(io.files, io.stats, group, pos, Err(source));
            }
        }
    }

    /// A sync op completed.
    pub(crate) fn on_synced(&mut self, io: DiskIo<'_>, token: Token, result: io::Result<()>) {
        let (group, pos) = sync_untoken(token);
        self.sync_finished(io.files, io.stats, group, pos, result);
        self.submit_syncs(io);
    }

    /// Accounts one finished sync op; completes its group when it was the last.
    fn sync_finished(
        &mut self,
        files: &mut FileTable,
        stats: &mut ShardStats,
        group: usize,
        pos: usize,
        result: io::Result<()>,
    ) {
        self.syncs_in_flight -= 1;
        let g = self
            .groups
            .get_mut(group)
            .expect("sync completion for a group not in flight");
        g.in_flight -= 1;
        let file = g.files[pos].0;
        files.release(file);
        stats.syncs += 1;
        if let Err(source) = result {
            g.error.get_or_insert(DiskError::Sync { file, source });
        }
        if g.in_flight == 0 && g.next == g.files.len() {
            let g = self.groups.remove(group);
            self.events.push(DiskEvent::Synced {
                tag: g.tag,
                result: g.error.map_or(Ok(()), Err),
            });
        }
    }
}
