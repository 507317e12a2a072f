//! One connection's ordered output stream: control bytes, block headers and block payloads,
//! some of which may still be waiting for their disk read.
//!
//! Owns the segments that are not in flight, their byte accounting (the backpressure signal) and
//! the recycling of control-byte vectors. It does not submit anything: the shard does.

use std::collections::VecDeque;

use super::buffers::PoolBuf;
use super::io::{Chunk, Payload, SendBatch, SEND_BYTES_MAX, SEND_IOVECS_MAX};
use super::protocol::{FileId, FileSpans};
use crate::time::Instant;

/// Initial capacity of a control-byte vector: a handshake plus a few small messages.
const CONTROL_VEC_BYTES: usize = 512;

/// Recycled control vectors kept per shard; more are freed. Bounds idle memory after bursts.
const CONTROL_VECS_POOLED_MAX: usize = 4096;

/// Control vectors bigger than this (after a large bitfield) are freed instead of pooled.
const CONTROL_VEC_POOLED_BYTES_MAX: usize = 64 * 1024;

/// A block whose payload is being read from disk.
pub(crate) struct PendingBlock {
    /// Matches the read's token.
    pub(crate) seq: u32,
    pub(crate) len: usize,
    pub(crate) spans: FileSpans,
    /// Bytes read so far (reads go span by span, in order).
    pub(crate) filled: usize,
    /// The file a read in flight is reading (none: the block waits for a free block buffer).
    pub(crate) reading: Option<FileId>,
    /// A read was ever started (the block has its buffer).
    pub(crate) started: bool,
    /// When the block was requested, carried to its ready chunk for the latency metric.
    pub(crate) requested_at: Option<Instant>,
}

impl PendingBlock {
    /// The span holding byte `filled` of the block and the offset into that span.
    pub(crate) fn cursor(&self) -> Option<(super::protocol::FileSpan, usize)> {
        let mut skip = self.filled;
        for span in self.spans.as_slice() {
            if skip < span.len as usize {
                return Some((*span, skip));
            }
            skip -= span.len as usize;
        }
        None
    }
}

/// A queued segment. A ready block payload not yet handed to a send carries the instant
/// its block was requested; the stamp is taken (once) when the payload enters a send batch.
pub(crate) enum OutChunk {
    Ready(Chunk, Option<Instant>),
    Pending(PendingBlock),
}

/// Recycled control-byte vectors of one shard.
#[derive(Default)]
pub(crate) struct VecPool {
    vecs: Vec<Vec<u8>>,
}

impl VecPool {
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.vecs
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(CONTROL_VEC_BYTES))
    }

    pub(crate) fn give(&mut self, mut vec: Vec<u8>) {
        if self.vecs.len() < CONTROL_VECS_POOLED_MAX
            && vec.capacity() <= CONTROL_VEC_POOLED_BYTES_MAX
        {
            vec.clear();
            self.vecs.push(vec);
        }
    }

    /// Returns a sent or discarded payload's memory (vectors here, block buffers to their pool).
    pub(crate) fn recycle(&mut self, payload: Payload) {
        if let Payload::Bytes(vec) = payload {
            self.give(vec);
        }
    }
}

/// The unsent part of one connection's output, in stream order.
#[derive(Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<OutChunk>,
    /// Unsent bytes: queued here plus the batch in flight. The backpressure measure.
    pub(crate) unsent_bytes: usize,
    next_seq: u32,
}

impl OutQueue {
    /// Lets `write` append control bytes at the end of the stream.
    pub(crate) fn write_control(&mut self, pool: &mut VecPool, write: impl FnOnce(&mut Vec<u8>)) {
        if let Some(OutChunk::Ready(
            Chunk {
                payload: Payload::Bytes(vec),
                end,
                ..
            },
            _,
        )) = self.chunks.back_mut()
        {
            let before = vec.len();
            write(vec);
            *end = vec.len();
            self.unsent_bytes += vec.len() - before;
            return;
        }
        let mut vec = pool.take();
        write(&mut vec);
        if vec.is_empty() {
            pool.give(vec);
            return;
        }
        self.unsent_bytes += vec.len();
        let end = vec.len();
        let chunk = Chunk {
            payload: Payload::Bytes(vec),
            start: 0,
            end,
        };
        self.chunks.push_back(OutChunk::Ready(chunk, None));
    }

    /// Appends a block whose payload is already in memory, requested at `requested_at`.
    pub(crate) fn push_ready(
        &mut self,
        payload: Payload,
        len: usize,
        requested_at: Option<Instant>,
    ) {
        self.unsent_bytes += len;
        let chunk = Chunk {
            payload,
            start: 0,
            end: len,
        };
        self.chunks.push_back(OutChunk::Ready(chunk, requested_at));
    }

    /// Appends a block to be read from `spans`, requested at `requested_at`; returns its
    /// sequence number.
    pub(crate) fn push_pending(
        &mut self,
        spans: FileSpans,
        len: usize,
        requested_at: Option<Instant>,
    ) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.unsent_bytes += len;
        self.chunks.push_back(OutChunk::Pending(PendingBlock {
            seq,
            len,
            spans,
            filled: 0,
            reading: None,
            started: false,
            requested_at,
        }));
        seq
    }

    /// The pending block `seq`.
    pub(crate) fn pending_mut(&mut self, seq: u32) -> Option<&mut PendingBlock> {
        self.chunks.iter_mut().find_map(|chunk| match chunk {
            OutChunk::Pending(p) if p.seq == seq => Some(p),
            _ => None,
        })
    }

    /// The first pending block that waits for a buffer.
    pub(crate) fn first_unstarted(&mut self) -> Option<&mut PendingBlock> {
        self.chunks.iter_mut().find_map(|chunk| match chunk {
            OutChunk::Pending(p) if !p.started => Some(p),
            _ => None,
        })
    }

    /// Turns pending block `seq` into ready payload `buf`.
    pub(crate) fn complete_pending(&mut self, seq: u32, buf: PoolBuf) {
        for chunk in self.chunks.iter_mut() {
            if let OutChunk::Pending(p) = chunk {
                if p.seq == seq {
                    let ready = Chunk {
                        payload: Payload::Block(buf),
                        start: 0,
                        end: p.len,
                    };
                    *chunk = OutChunk::Ready(ready, p.requested_at);
                    return;
                }
            }
        }
        debug_assert!(false, "no pending block {seq}");
    }

    /// Whether the front of the stream can be sent now.
    pub(crate) fn front_ready(&self) -> bool {
        matches!(self.chunks.front(), Some(OutChunk::Ready(..)))
    }

    /// Moves ready segments from the front into `batch`, up to the per-send bounds; calls
    /// `requested` with the request instant of each block payload handed to a send for the
    /// first time.
    pub(crate) fn fill_batch(&mut self, batch: &mut SendBatch, mut requested: impl FnMut(Instant)) {
        debug_assert!(batch.chunks.is_empty());
        let mut bytes = 0;
        while batch.chunks.len() < SEND_IOVECS_MAX && bytes < SEND_BYTES_MAX {
            match self.chunks.pop_front() {
                Some(OutChunk::Ready(chunk, stamp)) => {
                    if let Some(at) = stamp {
                        requested(at);
                    }
                    bytes += chunk.remaining();
                    batch.chunks.push(chunk);
                }
                Some(pending) => {
                    self.chunks.push_front(pending);
                    break;
                }
                None => break,
            }
        }
    }

    /// Accounts for a send of `sent` bytes from `batch`: finished segments are recycled and the
    /// rest goes back to the front of the queue, in order. Returns how many of the bytes
    /// sent were block payload (not control bytes or headers).
    pub(crate) fn sent(
        &mut self,
        batch: &mut SendBatch,
        mut sent: usize,
        pool: &mut VecPool,
    ) -> usize {
        debug_assert!(sent <= batch.total_bytes());
        self.unsent_bytes -= sent;
        let mut payload_bytes = 0;
        let mut keep_from = batch.chunks.len();
        for (i, chunk) in batch.chunks.iter_mut().enumerate() {
            let remaining = chunk.remaining();
            let took = remaining.min(sent);
            if !matches!(chunk.payload, Payload::Bytes(_)) {
                payload_bytes += took;
            }
            if sent >= remaining {
                sent -= remaining;
                continue;
            }
            chunk.start += sent;
            keep_from = i;
            break;
        }
        for chunk in batch.chunks.drain(keep_from..).rev() {
            self.chunks.push_front(OutChunk::Ready(chunk, None));
        }
        for chunk in batch.chunks.drain(..) {
            pool.recycle(chunk.payload);
        }
        payload_bytes
    }

    /// Drops everything queued (the connection is closing); block buffers return to the pool.
    pub(crate) fn clear(&mut self, pool: &mut VecPool) {
        for chunk in self.chunks.drain(..) {
            if let OutChunk::Ready(chunk, _) = chunk {
                pool.recycle(chunk.payload);
            }
        }
        self.unsent_bytes = 0;
    }

    /// Blocks waiting for a disk read or a buffer.
    pub(crate) fn pending_count(&self) -> usize {
        self.chunks
            .iter()
            .filter(|c| matches!(c, OutChunk::Pending(_)))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(q: &mut OutQueue, pool: &mut VecPool) -> Vec<u8> {
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |_| {});
        let mut all = Vec::new();
        for chunk in &batch.chunks {
            if let Payload::Bytes(v) = &chunk.payload {
                all.extend_from_slice(&v[chunk.start..chunk.end]);
            }
        }
        let total = batch.total_bytes();
        q.sent(&mut batch, total, pool);
        all
    }

    #[test]
    fn partial_send_keeps_unsent_bytes_in_order() {
        // A short send puts the rest back at the front, so the stream stays ordered.
        let mut pool = VecPool::default();
        let mut q = OutQueue::default();
        q.write_control(&mut pool, |v| v.extend_from_slice(b"hello "));
        q.push_ready(
            Payload::Shared(bytes::Bytes::from_static(b"block")),
            5,
            None,
        );
        q.write_control(&mut pool, |v| v.extend_from_slice(b" bye"));
        assert_eq!(q.unsent_bytes, 15);
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |_| {});
        assert_eq!(batch.chunks.len(), 3);
        assert_eq!(
            q.sent(&mut batch, 8, &mut pool),
            2,
            "2 of the 5 block bytes went"
        );
        assert_eq!(q.unsent_bytes, 7);
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |_| {});
        assert_eq!(batch.chunks[0].remaining(), 3);
        assert_eq!(batch.total_bytes(), 7);
        assert_eq!(q.sent(&mut batch, 7, &mut pool), 3);
        assert_eq!(q.unsent_bytes, 0);
        assert!(!q.front_ready());
    }

    #[test]
    fn pending_block_holds_back_later_bytes() {
        // Control bytes queued after a block that is still being read wait for it.
        let mut pool = VecPool::default();
        let mut q = OutQueue::default();
        q.write_control(&mut pool, |v| v.extend_from_slice(b"head"));
        let seq = q.push_pending(FileSpans::new(), 4, None);
        q.write_control(&mut pool, |v| v.extend_from_slice(b"tail"));
        assert_eq!(bytes_of(&mut q, &mut pool), b"head");
        assert!(!q.front_ready());
        assert_eq!(q.pending_count(), 1);
        let blocks = super::super::buffers::BufferPool::new(4096, 1);
        q.complete_pending(seq, blocks.alloc().unwrap());
        assert!(q.front_ready());
        assert_eq!(q.unsent_bytes, 8);
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn request_stamp_is_reported_once_when_the_block_first_enters_a_send() {
        // A block read from disk reports its request instant when its payload is first
        // batched, not while pending, and not again when a short send re-queues its tail.
        let mut pool = VecPool::default();
        let mut q = OutQueue::default();
        let asked = Instant::ZERO + Duration::from_millis(7);
        q.write_control(&mut pool, |v| v.extend_from_slice(b"hdr"));
        let seq = q.push_pending(FileSpans::new(), 4, Some(asked));
        let mut seen = Vec::new();
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |at| seen.push(at));
        assert!(
            seen.is_empty(),
            "the header went alone; the block is still being read"
        );
        let total = batch.total_bytes();
        assert_eq!(q.sent(&mut batch, total, &mut pool), 0);
        let blocks = super::super::buffers::BufferPool::new(4096, 1);
        q.complete_pending(seq, blocks.alloc().unwrap());
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |at| seen.push(at));
        assert_eq!(seen, vec![asked]);
        assert_eq!(q.sent(&mut batch, 1, &mut pool), 1);
        let mut batch = SendBatch::new();
        q.fill_batch(&mut batch, |at| seen.push(at));
        assert_eq!(seen.len(), 1, "the re-queued tail is not counted again");
        assert_eq!(q.sent(&mut batch, 3, &mut pool), 3);
    }
}
