//! The downloading side of a [`Session`]: interest, our block requests and what becomes of
//! them (blocks, rejects, chokes, timeouts), and the peer's BEP 6 hints.
//!
//! Policy, where the BEPs leave a choice:
//! - Without BEP 6 a choke drops every request (BEP 3); with it the peer must reject each
//!   one (BEP 6), so requests stay outstanding until it does — or until they time out.
//! - A peer with requests outstanding that sends no block for [`REQUEST_TIMEOUT`] is
//!   stalled: every waiting request is reported timed out, but keeps its slot until the
//!   peer answers or the shell cancels it, so a stalled peer gets no new requests. Requests
//!   are not cancelled for the shell: a slow peer's late block is still data.
//! - Blocks answering requests we dropped (cancelled, lost to a choke, timed out) are
//!   delivered as `late`; blocks we never asked for are counted and the connection closes
//!   past [`PEER_BLOCKS_UNREQUESTED_MAX`]. A reject for a request we never sent closes at
//!   once (BEP 6 says SHOULD).
//! - `allowed fast` and `suggest` for pieces outside the torrent are ignored, as are they
//!   before the metadata is known.

use std::collections::VecDeque;

use super::event::{DropReason, Event, Received};
use super::rate::RateMeter;
use super::session::{MessageResult, Session, State};
use super::{
    PeerError, Refused, ALLOWED_FAST_MAX, METADATA_REQUEST_TIMEOUT, PEER_BLOCKS_UNREQUESTED_MAX,
    REQUESTS_ABANDONED_REMEMBERED_MAX, REQUESTS_OUTSTANDING_MAX, REQUEST_SKIPS_MAX,
    REQUEST_TIMEOUT,
};
use crate::metainfo::{BlockRef, PieceIndex};
use crate::time::Instant;
use crate::wire::{Message, RawBlock};

/// A request we sent and when.
#[derive(Copy, Clone, Debug)]
struct Sent {
    block: BlockRef,
    at: Instant,
    /// Later requests answered before this one.
    skipped: u16,
}

/// Our requests to one peer and what we learned receiving its blocks.
#[derive(Debug)]
pub(super) struct Downloads {
    /// Requests awaiting an answer, in the order sent.
    waiting: VecDeque<Sent>,
    /// Requests reported timed out, still unanswered: they keep their slot.
    stalled: VecDeque<BlockRef>,
    /// Requests we dropped whose late answers we still recognise (bounded, oldest out).
    abandoned: VecDeque<BlockRef>,
    /// Metadata pieces requested and when (BEP 9), in the order sent.
    metadata: VecDeque<(u32, Instant)>,
    pub(super) allowed_fast: Vec<PieceIndex>,
    pub(super) unrequested: u32,
    pub(super) timed_out: u32,
    pub(super) rate: RateMeter,
    /// The same bytes on [`FAST_RATE_TIME_CONSTANT`](super::rate::FAST_RATE_TIME_CONSTANT):
    /// what pipelines are sized by.
    pub(super) fast_rate: RateMeter,
    pub(super) bytes: u64,
    pub(super) last_block_at: Option<Instant>,
}

/// What a `reject` answered.
enum Answered {
    /// A waiting request: report it.
    Waiting(BlockRef),
    /// A request already reported (timed out) or dropped by us (cancelled).
    AlreadyDropped,
    /// Nothing we know of.
    Unknown,
}

impl Downloads {
    pub(super) fn new(now: Instant) -> Downloads {
        Downloads {
            waiting: VecDeque::new(),
            stalled: VecDeque::new(),
            abandoned: VecDeque::new(),
            metadata: VecDeque::new(),
            allowed_fast: Vec::new(),
            unrequested: 0,
            timed_out: 0,
            rate: RateMeter::new(now),
            fast_rate: RateMeter::with_time_constant(now, super::rate::FAST_RATE_TIME_CONSTANT),
            bytes: 0,
            last_block_at: None,
        }
    }

    pub(super) fn outstanding(&self) -> usize {
        self.waiting.len() + self.stalled.len()
    }

    pub(super) fn is_outstanding(&self, block: BlockRef) -> bool {
        self.waiting.iter().any(|s| s.block == block) || self.stalled.contains(&block)
    }

    /// The peer's `reqq` (at least 1; libtorrent's default when absent is our own ceiling)
    /// capped at [`REQUESTS_OUTSTANDING_MAX`].
    pub(super) fn limit(&self, reqq: Option<u32>) -> usize {
        reqq.map_or(REQUESTS_OUTSTANDING_MAX, |q| {
            (q as usize).clamp(1, REQUESTS_OUTSTANDING_MAX)
        })
    }

    fn abandon(&mut self, block: BlockRef) {
        if self.abandoned.len() == REQUESTS_ABANDONED_REMEMBERED_MAX {
            self.abandoned.pop_front();
        }
        self.abandoned.push_back(block);
    }

    /// Removes the request `raw` answers; `Some((block, late))` if there was one.
    fn take(&mut self, raw: RawBlock) -> Option<(BlockRef, bool)> {
        let is = |b: &BlockRef| RawBlock::from(*b) == raw;
        if let Some(i) = self.waiting.iter().position(|s| is(&s.block)) {
            for passed in self.waiting.range_mut(..i) {
                passed.skipped = passed.skipped.saturating_add(1);
            }
            return self.waiting.remove(i).map(|s| (s.block, false));
        }
        for list in [&mut self.stalled, &mut self.abandoned] {
            if let Some(i) = list.iter().position(is) {
                return list.remove(i).map(|b| (b, true));
            }
        }
        None
    }

    /// Drops the waiting requests passed over [`REQUEST_SKIPS_MAX`] times (oldest first:
    /// only they can have been passed over that often).
    fn drop_skipped(&mut self, events: &mut VecDeque<Event>) {
        while self
            .waiting
            .front()
            .is_some_and(|s| s.skipped >= REQUEST_SKIPS_MAX)
        {
            let s = self.waiting.pop_front().expect("front exists");
            self.abandon(s.block);
            events.push_back(Event::RequestDropped {
                block: s.block,
                reason: DropReason::Skipped,
            });
        }
    }

    fn reject(&mut self, raw: RawBlock) -> Answered {
        match self.take(raw) {
            Some((block, false)) => Answered::Waiting(block),
            Some((_, true)) => Answered::AlreadyDropped,
            None => Answered::Unknown,
        }
    }

    /// When the oldest waiting request or metadata request times out.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let blocks = self.waiting.front().map(|s| {
            let progress = self.last_block_at.map_or(s.at, |b| b.max(s.at));
            progress + REQUEST_TIMEOUT
        });
        let metadata = self
            .metadata
            .front()
            .map(|&(_, at)| at + METADATA_REQUEST_TIMEOUT);
        blocks.into_iter().chain(metadata).min()
    }

    pub(super) fn handle_timeout(&mut self, now: Instant, events: &mut VecDeque<Event>) {
        if let Some(first) = self.waiting.front() {
            let progress = self.last_block_at.map_or(first.at, |b| b.max(first.at));
            if now >= progress + REQUEST_TIMEOUT {
                for s in self.waiting.drain(..) {
                    self.stalled.push_back(s.block);
                    self.timed_out += 1;
                    events.push_back(Event::RequestDropped {
                        block: s.block,
                        reason: DropReason::TimedOut,
                    });
                }
            }
        }
        while let Some(&(piece, at)) = self.metadata.front() {
            if now < at + METADATA_REQUEST_TIMEOUT {
                break;
            }
            self.metadata.pop_front();
            events.push_back(Event::MetadataRequestDropped {
                piece,
                reason: DropReason::TimedOut,
            });
        }
    }

    pub(super) fn metadata_outstanding(&self) -> usize {
        self.metadata.len()
    }

    pub(super) fn metadata_requested(&self, piece: u32) -> bool {
        self.metadata.iter().any(|&(p, _)| p == piece)
    }

    pub(super) fn add_metadata_request(&mut self, piece: u32, now: Instant) {
        self.metadata.push_back((piece, now));
    }

    /// Removes a metadata request the peer answered; false if there was none.
    pub(super) fn take_metadata_request(&mut self, piece: u32) -> bool {
        match self.metadata.iter().position(|&(p, _)| p == piece) {
            Some(i) => self.metadata.remove(i).is_some(),
            None => false,
        }
    }

    /// The metadata is known: outstanding metadata requests no longer matter.
    pub(super) fn forget_metadata_requests(&mut self) {
        self.metadata.clear();
    }
}

impl Session {
    // ----- commands -----

    /// Tells the peer whether we want pieces it has (a no-op if unchanged or before
    /// `Active`). The picker decides; requests need interest and an unchoke to be served.
    pub fn set_interested(&mut self, interested: bool, now: Instant) {
        if self.state != State::Active || interested == self.am_interested {
            return;
        }
        self.am_interested = interested;
        let msg = if interested {
            Message::Interested
        } else {
            Message::NotInterested
        };
        msg.encode(&mut self.control);
        self.note_output(now);
    }

    /// Requests `block` from the peer. Refused (and nothing sent) before `Active` or the
    /// metadata, when the peer lacks the piece, chokes us (unless the piece is allowed
    /// fast), already has the block requested, or has no free slot (see
    /// [`request_slots`](Self::request_slots)).
    pub fn request(&mut self, block: BlockRef, now: Instant) -> Result<(), Refused> {
        if self.state != State::Active {
            return Err(Refused::NotActive);
        }
        let layout = self.layout().ok_or(Refused::NoMetadata)?;
        debug_assert!(layout.block(block.piece.get(), block.offset, block.len) == Some(block));
        if !self.peer_has(block.piece) {
            return Err(Refused::PeerLacksPiece {
                piece: block.piece.get(),
            });
        }
        if self.peer_choking && !self.downloads.allowed_fast.contains(&block.piece) {
            return Err(Refused::PeerChoking);
        }
        if self.downloads.is_outstanding(block) {
            return Err(Refused::AlreadyRequested);
        }
        let (outstanding, limit) = (self.downloads.outstanding(), self.request_limit());
        if outstanding >= limit {
            return Err(Refused::NoRequestSlot { outstanding, limit });
        }
        // A block requested again after we gave up on it: its answer is no longer late.
        self.downloads.abandoned.retain(|&b| b != block);
        Message::Request(block.into()).encode(&mut self.control);
        self.downloads.waiting.push_back(Sent {
            block,
            at: now,
            skipped: 0,
        });
        self.note_output(now);
        Ok(())
    }

    /// Cancels an outstanding request (waiting or timed out) and frees its slot; false if
    /// `block` was not outstanding. A block that crossed the `cancel` still arrives, as
    /// `late`; a BEP 6 peer may answer with a reject instead, which is absorbed.
    pub fn cancel(&mut self, block: BlockRef, now: Instant) -> bool {
        if !self.downloads.is_outstanding(block) {
            return false;
        }
        self.downloads.take(block.into());
        self.downloads.abandon(block);
        Message::Cancel(block.into()).encode(&mut self.control);
        self.note_output(now);
        true
    }

    // ----- messages -----

    pub(super) fn on_peer_choke(&mut self) {
        if self.peer_choking {
            return;
        }
        self.peer_choking = true;
        self.events.push_back(Event::PeerChoked);
        if self.peer_supports_fast() {
            return;
        }
        let d = &mut self.downloads;
        let waiting: Vec<Sent> = d.waiting.drain(..).collect();
        for s in waiting {
            d.abandon(s.block);
            self.events.push_back(Event::RequestDropped {
                block: s.block,
                reason: DropReason::Choked,
            });
        }
        while let Some(b) = d.stalled.pop_front() {
            d.abandon(b);
        }
    }

    pub(super) fn on_peer_unchoke(&mut self) {
        if self.peer_choking {
            self.peer_choking = false;
            self.events.push_back(Event::PeerUnchoked);
        }
    }

    pub(super) fn on_piece<'a>(
        &mut self,
        piece: u32,
        offset: u32,
        data: &'a [u8],
        now: Instant,
    ) -> MessageResult<'a> {
        let raw = RawBlock {
            piece,
            offset,
            len: data.len() as u32,
        };
        let Some((block, late)) = self.downloads.take(raw) else {
            let d = &mut self.downloads;
            d.unrequested += 1;
            if d.unrequested > PEER_BLOCKS_UNREQUESTED_MAX {
                return Err(PeerError::UnrequestedBlocks {
                    count: d.unrequested,
                    max: PEER_BLOCKS_UNREQUESTED_MAX,
                    last: raw,
                });
            }
            return Ok(None);
        };
        let d = &mut self.downloads;
        d.rate.record(u64::from(block.len), now);
        d.fast_rate.record(u64::from(block.len), now);
        d.bytes += u64::from(block.len);
        d.last_block_at = Some(now);
        d.drop_skipped(&mut self.events);
        Ok(Some(Received::Block { block, data, late }))
    }

    pub(super) fn on_reject(&mut self, raw: RawBlock) -> Result<(), PeerError> {
        match self.downloads.reject(raw) {
            Answered::Waiting(block) => self.events.push_back(Event::RequestDropped {
                block,
                reason: DropReason::Rejected,
            }),
            Answered::AlreadyDropped => {}
            Answered::Unknown => {
                return Err(PeerError::UnexpectedMessage {
                    what: "reject request",
                    why: "we never sent that request",
                })
            }
        }
        Ok(())
    }

    pub(super) fn on_allowed_fast(&mut self, piece: u32) {
        let Some(piece) = self.layout().and_then(|l| l.piece(piece)) else {
            return;
        };
        let fast = &mut self.downloads.allowed_fast;
        if fast.len() < ALLOWED_FAST_MAX && !fast.contains(&piece) {
            fast.push(piece);
            self.events.push_back(Event::AllowedFast { piece });
        }
    }

    pub(super) fn on_suggest(&mut self, piece: u32) {
        if let Some(piece) = self.layout().and_then(|l| l.piece(piece)) {
            self.events.push_back(Event::Suggested { piece });
        }
    }
}
