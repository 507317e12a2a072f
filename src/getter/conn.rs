//! One downloading connection as the shard drives it: a `peer::Session`, the blocks it
//! received (copied once into write buffers) and the events it produced, waiting for the
//! app's `conn_ready` to take them.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use crate::metainfo::BlockRef;
use crate::peer::{Event, LocalConfig, PeerError, PieceSet, Received, Session, TorrentShared};
use crate::runtime::{
    BlockSend, BlockSource, BufferPool, CloseReason, Connection, FileId, FileSpan, FileSpans,
    PoolBuf,
};
use crate::time::Instant;
use crate::torrent::rate_limit::{earliest, SharedBucket, UploadThrottle};
use crate::wire::piece_header;

/// Most events a connection holds for the app; the session itself pauses input at its own
/// backlog bound, so this is never reached by a well-driven shell.
pub const CONN_EVENTS_MAX: usize = 256;

/// What every connection of the torrent on this shard shares (single-threaded).
pub struct Shared {
    /// The torrent (metadata once known).
    pub torrent: RefCell<Arc<TorrentShared>>,
    /// Verified, durable pieces: what new sessions advertise.
    pub have: RefCell<PieceSet>,
    /// This shard's file ids for the torrent's files (`None`: zero-length).
    pub files: RefCell<Vec<Option<FileId>>>,
    /// The shard's write buffers.
    pub pool: BufferPool,
    /// Our identity.
    pub local: LocalConfig,
    /// The shard's upload rate limit (`--max-upload-rate`), if any.
    pub upload_bucket: Option<SharedBucket>,
}

/// A downloading (and uploading) connection.
pub struct GetConn {
    /// The protocol state.
    pub session: Session,
    shared: Rc<Shared>,
    /// The peer's address.
    pub addr: SocketAddr,
    /// Events for the app.
    pub events: Vec<Event>,
    /// Received blocks with their data, in arrival order.
    pub blocks: Vec<(BlockRef, PoolBuf)>,
    /// Received blocks dropped for want of a write buffer (the app re-requests them).
    pub lost: Vec<BlockRef>,
    /// Received metadata pieces (magnet).
    pub metadata: Vec<(u32, u32, Vec<u8>)>,
    /// Payload bytes sent since the app last looked (upload accounting).
    pub sent_bytes: u64,
    throttle: UploadThrottle,
}

fn protocol(e: PeerError) -> CloseReason {
    CloseReason::Protocol(Box::new(e))
}

impl GetConn {
    /// A connection the peer opened.
    pub fn inbound(shared: Rc<Shared>, addr: SocketAddr, now: Instant) -> GetConn {
        let session = Session::inbound(shared.local, now);
        GetConn::with(session, shared, addr, now)
    }

    /// A connection we open.
    pub fn outbound(shared: Rc<Shared>, addr: SocketAddr, now: Instant) -> GetConn {
        let torrent = shared.torrent.borrow().clone();
        let have = shared.have.borrow().clone();
        let session = Session::outbound(torrent, have, shared.local, now);
        GetConn::with(session, shared, addr, now)
    }

    fn with(session: Session, shared: Rc<Shared>, addr: SocketAddr, now: Instant) -> GetConn {
        let throttle = UploadThrottle::new(shared.upload_bucket.clone(), now);
        GetConn {
            throttle,
            session,
            shared,
            addr,
            events: Vec::new(),
            blocks: Vec::new(),
            lost: Vec::new(),
            metadata: Vec::new(),
            sent_bytes: 0,
        }
    }

    fn take_received(&mut self, received: Received<'_>) {
        match received {
            Received::Block { block, data, .. } => match self.shared.pool.alloc() {
                Some(mut buf) => {
                    buf.as_mut_slice()[..data.len()].copy_from_slice(data);
                    self.blocks.push((block, buf));
                }
                None => self.lost.push(block),
            },
            Received::Metadata {
                piece,
                total_size,
                data,
            } => self.metadata.push((piece, total_size, data.to_vec())),
        }
    }

    fn drain_events(&mut self, now: Instant) -> Result<(), CloseReason> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::AttachRequested { info_hash } => {
                    let torrent = self.shared.torrent.borrow().clone();
                    if torrent.info_hash() != info_hash {
                        return Err(CloseReason::App("unknown info-hash"));
                    }
                    let have = self.shared.have.borrow().clone();
                    self.session.attach(torrent, have, now).map_err(protocol)?;
                }
                other if self.events.len() < CONN_EVENTS_MAX => self.events.push(other),
                _ => return Err(CloseReason::App("event backlog overflow")),
            }
        }
        Ok(())
    }
}

impl Connection for GetConn {
    fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<usize, CloseReason> {
        self.throttle.note_now(now);
        let mut used = 0;
        loop {
            let was_active = self.session.is_active();
            let input = self
                .session
                .handle_input(&bytes[used..], now)
                .map_err(protocol)?;
            used += input.used;
            if let Some(received) = input.received {
                self.take_received(received);
            }
            self.drain_events(now)?;
            let attached_now = !was_active && self.session.is_active();
            if used == bytes.len() || (input.used == 0 && !attached_now) {
                return Ok(used);
            }
        }
    }

    fn write_control(&mut self, out: &mut Vec<u8>) {
        self.session.write_control(out);
    }

    fn poll_block(&mut self) -> Option<BlockSend> {
        if !self.session.has_block_to_send() || !self.throttle.admit() {
            return None;
        }
        let (block, requested_at) = self.session.poll_block_timed()?;
        self.throttle.spend(u64::from(block.len));
        let layout = self.session.layout()?.clone();
        let files = self.shared.files.borrow();
        let mut spans = FileSpans::new();
        for s in layout.spans(block.piece, block.offset, block.len) {
            let file = files.get(s.file).copied().flatten()?;
            let span = FileSpan {
                file,
                offset: s.offset,
                len: s.len as u32,
            };
            spans.push(span).ok()?;
        }
        Some(BlockSend {
            header: piece_header(block.piece.get(), block.offset, block.len),
            source: BlockSource::Files(spans),
            requested_at: Some(requested_at),
        })
    }

    fn on_sent(&mut self, bytes: usize, now: Instant) {
        self.throttle.note_now(now);
        self.session.on_block_sent(bytes as u32, now);
        self.sent_bytes += bytes as u64;
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), CloseReason> {
        self.throttle.note_now(now);
        self.session.handle_timeout(now).map_err(protocol)?;
        self.drain_events(now)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        earliest(self.session.poll_timeout(), self.throttle.wake_at())
    }

    fn wants_app(&self) -> bool {
        !self.events.is_empty()
            || !self.blocks.is_empty()
            || !self.lost.is_empty()
            || !self.metadata.is_empty()
    }
}
