//! The [`Session`] type: construction, handshakes, the input loop, timers and outputs.
//! Message handling lives in `receive.rs` (dispatch, piece declarations, serving),
//! `download.rs` (our requests) and `extension.rs` (BEP 10, 9, 11); getters in `getters.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use super::download::Downloads;
use super::event::{Event, Input, Received};
use super::extension::ExtensionState;
use super::pieces::{PendingPieces, PieceSet};
use super::rate::RateMeter;
use super::torrent::TorrentShared;
use super::{
    PeerError, EVENTS_BACKLOG_MAX, HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, PEER_IDLE_TIMEOUT,
};
use crate::metainfo::{BlockRef, PeerId, PieceIndex};
use crate::time::Instant;
use crate::wire::{decode_message, Bitfield, Decoded, Handshake, Message, Reserved};

/// Capacity the control buffer keeps between writes. A bitfield for a huge torrent or a
/// burst of metadata replies may grow it; it is shrunk back so ten thousand idle
/// connections do not each hold their high-water mark.
const CONTROL_BYTES_RETAINED: usize = 4 * 1024;

/// Who opened the TCP connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The peer connected to us; the torrent is known after its handshake.
    Inbound,
    /// We connected to the peer, for a torrent chosen up front.
    Outbound,
}

/// Our side's identity, the same for every connection.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Our peer id.
    pub peer_id: PeerId,
    /// Our listen port, advertised in the extension handshake (`p`) when known.
    pub listen_port: Option<u16>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for the peer's handshake (outbound: ours is already queued).
    Handshaking,
    /// Inbound: the peer's handshake is parsed; waiting for the shell to attach a torrent.
    AwaitingAttach,
    /// Handshakes exchanged, torrent attached: messages flow.
    Active,
}

/// One peer connection, both directions, without I/O.
///
/// ## States
/// ```text
///  Handshaking ──peer handshake (inbound)──▶ AwaitingAttach ──attach()──▶ Active
///       └──────peer handshake, info-hash ok (outbound)───────────────────▶ Active
///  Active, torrent without metadata ──set_metadata()──▶ Active, torrent with metadata
/// ```
/// Every `Err(PeerError)` ends the connection: the shell closes it and drops the session;
/// there is no closed state. An outbound session queues our handshake when created; an
/// inbound one queues it in `attach`. Entering `Active` queues our pieces (bitfield, or
/// `have all` / `have none` to fast peers when they say it all) and, if the peer speaks
/// BEP 10, our extension handshake. We start choking and not interested.
///
/// A magnet session (torrent without metadata) can fetch the info dict (BEP 9) and exchange
/// PEX; what the peer declares about its pieces is kept raw until `set_metadata`, which
/// validates it (closing the session if it does not fit) and reports it as one
/// [`Event::PeerPieces`] — so no reconnection is needed.
///
/// ## Driving it
/// Inputs are `handle_*`, commands change our side, outputs are `poll_*`/`write_control`.
/// After any input or command, the shell:
/// 1. feeds received bytes to [`handle_input`](Self::handle_input). If it returns a
///    [`Received`] payload, the shell stores it at once (it borrows the input buffer). It
///    drains events (step 2) and calls `handle_input` again on the unconsumed bytes while
///    that consumes something: input stops after each payload and when
///    [`EVENTS_BACKLOG_MAX`] events wait. Bytes of an incomplete frame stay with the shell
///    and are fed again with more appended (`bytes_missing` says how many it needs);
/// 2. drains [`poll_event`](Self::poll_event): attach or close on `AttachRequested`, tell
///    the picker, choker and PEX/metadata logic about the rest;
/// 3. calls [`write_control`](Self::write_control), then [`poll_block`](Self::poll_block)
///    while its send buffer has room, writing `wire::piece_header` and the block read from
///    disk, and reports each block to [`on_block_sent`](Self::on_block_sent) — control
///    first, so a `choke` or `reject` never overtakes or trails the blocks it concerns (a
///    block already taken by `poll_block` is still sent after a later choke: with BEP 6
///    that piece is the request's one response, without it peers accept a late block);
/// 4. arms a timer at [`poll_timeout`](Self::poll_timeout) and calls
///    [`handle_timeout`](Self::handle_timeout) when it fires, then drains events again
///    (timed-out requests are reported there).
///
/// Commands for the downloading side (`set_interested`, `request`, `cancel`, `have`,
/// `request_metadata`, `send_pex`) only queue control messages; which blocks to request,
/// whom to unchoke and whom to ban is the policy layer's decision, fed by the events.
///
/// Nothing here allocates per block in either direction: blocks to serve are `BlockRef`s
/// popped from a bounded queue, received blocks borrow the input, and control messages go
/// into one reused buffer.
#[derive(Debug)]
pub struct Session {
    pub(super) state: State,
    pub(super) direction: Direction,
    pub(super) local: LocalConfig,
    pub(super) torrent: Option<Arc<TorrentShared>>,
    pub(super) remote: Option<Handshake>,
    /// The pieces we have (and serve).
    pub(super) have: PieceSet,
    pub(super) am_choking: bool,
    pub(super) am_interested: bool,
    pub(super) peer_choking: bool,
    pub(super) peer_interested: bool,
    /// What the peer declared, once the piece count is known.
    pub(super) peer_pieces: PieceSet,
    /// What the peer declared before the piece count was known (magnet sessions).
    pub(super) peer_pieces_pending: PendingPieces,
    pub(super) ext: ExtensionState,
    pub(super) dht_port: Option<u16>,
    /// The peer's validated requests, oldest first, at most `PEER_REQUESTS_QUEUED_MAX`,
    /// each with the instant its message was parsed (for the shell's latency metric).
    pub(super) requests: VecDeque<(BlockRef, Instant)>,
    pub(super) requests_invalid: u32,
    pub(super) requests_overflowed: u32,
    /// Valid requests received while we choke, since our last choke.
    pub(super) requests_while_choked: u32,
    /// Our requests to the peer and what came of them.
    pub(super) downloads: Downloads,
    /// Encoded control messages waiting for `write_control`.
    pub(super) control: Vec<u8>,
    pub(super) events: VecDeque<Event>,
    bytes_missing: usize,
    pub(super) connected_at: Instant,
    pub(super) last_received: Instant,
    handshake_deadline: Option<Instant>,
    keepalive_at: Option<Instant>,
    pub(super) upload: RateMeter,
    pub(super) uploaded_bytes: u64,
}

impl Session {
    fn new(direction: Direction, local: LocalConfig, now: Instant) -> Session {
        Session {
            state: State::Handshaking,
            direction,
            local,
            torrent: None,
            remote: None,
            have: PieceSet::Empty,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_pieces: PieceSet::Empty,
            peer_pieces_pending: PendingPieces::default(),
            ext: ExtensionState::default(),
            dht_port: None,
            requests: VecDeque::new(),
            requests_invalid: 0,
            requests_overflowed: 0,
            requests_while_choked: 0,
            downloads: Downloads::new(now),
            control: Vec::new(),
            events: VecDeque::new(),
            bytes_missing: 0,
            connected_at: now,
            last_received: now,
            handshake_deadline: Some(now + HANDSHAKE_TIMEOUT),
            keepalive_at: None,
            upload: RateMeter::new(now),
            uploaded_bytes: 0,
        }
    }

    /// A connection the peer opened; the torrent is attached after its handshake.
    pub fn inbound(local: LocalConfig, now: Instant) -> Session {
        Session::new(Direction::Inbound, local, now)
    }

    /// A connection we opened for `torrent`, of which we have the pieces in `have`; our
    /// handshake is queued at once.
    ///
    /// # Panics
    /// If `have` does not fit the torrent (see [`attach`](Self::attach)).
    pub fn outbound(
        torrent: Arc<TorrentShared>,
        have: PieceSet,
        local: LocalConfig,
        now: Instant,
    ) -> Session {
        let mut s = Session::new(Direction::Outbound, local, now);
        s.set_torrent(torrent, have);
        s.queue_handshake();
        s
    }

    fn set_torrent(&mut self, torrent: Arc<TorrentShared>, have: PieceSet) {
        match (torrent.layout(), &have) {
            (None, have) => assert!(have.is_empty(), "pieces of a torrent without metadata"),
            (Some(layout), PieceSet::Partial(bits)) => assert_eq!(
                bits.len(),
                layout.piece_count(),
                "bitfield sized for another torrent"
            ),
            (Some(_), _) => {}
        }
        self.torrent = Some(torrent);
        self.have = have;
    }

    fn queue_handshake(&mut self) {
        let torrent = self.torrent.as_ref().expect("handshake needs a torrent");
        let ours = Handshake {
            reserved: Reserved::OURS,
            info_hash: torrent.info_hash(),
            peer_id: self.local.peer_id,
        };
        self.control.extend_from_slice(&ours.encode());
    }

    // ----- inputs -----

    /// Feeds bytes received from the peer. Consumes whole frames only, and stops early after
    /// a frame carrying a block or metadata piece (returned in [`Input::received`],
    /// borrowing `bytes`) and when [`EVENTS_BACKLOG_MAX`] events wait to be polled. `Err`
    /// means: close the connection and log the reason.
    pub fn handle_input<'a>(
        &mut self,
        bytes: &'a [u8],
        now: Instant,
    ) -> Result<Input<'a>, PeerError> {
        let mut used = 0;
        let mut received = None;
        let control_before = self.control.len();
        self.bytes_missing = 0;
        while used < bytes.len() && self.events.len() < EVENTS_BACKLOG_MAX {
            let rest = &bytes[used..];
            match self.state {
                State::AwaitingAttach => break,
                State::Handshaking => match Handshake::decode(rest)? {
                    Decoded::Complete { value, used: n } => {
                        used += n;
                        self.on_handshake(value, now)?;
                    }
                    Decoded::Incomplete { missing } => {
                        self.bytes_missing = missing;
                        break;
                    }
                },
                State::Active => match decode_message(rest)? {
                    Decoded::Complete { value, used: n } => {
                        used += n;
                        received = self.on_message(value, now)?;
                        if received.is_some() {
                            break;
                        }
                    }
                    Decoded::Incomplete { missing } => {
                        self.bytes_missing = missing;
                        break;
                    }
                },
            }
        }
        if used > 0 {
            self.last_received = now;
        }
        if self.control.len() > control_before {
            self.note_output(now);
        }
        Ok(Input { used, received })
    }

    fn on_handshake(&mut self, theirs: Handshake, now: Instant) -> Result<(), PeerError> {
        if theirs.peer_id == self.local.peer_id {
            return Err(PeerError::ConnectedToSelf);
        }
        self.remote = Some(theirs);
        match self.direction {
            Direction::Inbound => {
                self.state = State::AwaitingAttach;
                self.events.push_back(Event::AttachRequested {
                    info_hash: theirs.info_hash,
                });
                Ok(())
            }
            Direction::Outbound => {
                let expected = self.torrent.as_ref().expect("outbound").info_hash();
                if theirs.info_hash != expected {
                    return Err(PeerError::InfoHashMismatch {
                        expected,
                        found: theirs.info_hash,
                    });
                }
                self.activate(now);
                Ok(())
            }
        }
    }

    /// Attaches the torrent an inbound peer asked for (after `Event::AttachRequested`), of
    /// which we have the pieces in `have`, and queues our handshake, pieces and extension
    /// handshake. `Err` if the torrent is not the one the peer named.
    ///
    /// # Panics
    /// If called in any state but "awaiting attach", or if `have` does not fit the torrent
    /// (a bitfield of another length, or pieces of a torrent without metadata): shell bugs.
    pub fn attach(
        &mut self,
        torrent: Arc<TorrentShared>,
        have: PieceSet,
        now: Instant,
    ) -> Result<(), PeerError> {
        assert_eq!(self.state, State::AwaitingAttach, "attach out of order");
        let found = self.remote.expect("handshake received").info_hash;
        if torrent.info_hash() != found {
            return Err(PeerError::InfoHashMismatch {
                expected: torrent.info_hash(),
                found,
            });
        }
        self.set_torrent(torrent, have);
        self.events
            .retain(|e| !matches!(e, Event::AttachRequested { .. }));
        self.queue_handshake();
        self.activate(now);
        Ok(())
    }

    /// Both handshakes are done: announce our pieces and extensions.
    fn activate(&mut self, now: Instant) {
        self.state = State::Active;
        self.handshake_deadline = None;
        let fast = self.peer_supports_fast();
        if fast && self.have.is_full() {
            Message::HaveAll.encode(&mut self.control);
        } else if self.have.is_empty() {
            // BEP 3 lets a peer with no pieces omit the bitfield; BEP 6 peers expect one of
            // bitfield, have all or have none first.
            if fast {
                Message::HaveNone.encode(&mut self.control);
            }
        } else if let PieceSet::Partial(bits) = &self.have {
            Message::Bitfield(bits.as_bytes()).encode(&mut self.control);
        } else {
            let count = self.layout().expect("pieces need metadata").piece_count();
            Message::Bitfield(Bitfield::full(count).as_bytes()).encode(&mut self.control);
        }
        if self.peer_supports_extensions() {
            self.queue_extension_handshake();
        }
        self.note_output(now);
    }

    /// Gives a magnet session the torrent with its metadata (same info-hash), once the
    /// info dict is fetched and verified. What the peer declared about its pieces before
    /// is checked now: `Err` if it does not fit the torrent (close the connection); else it
    /// is reported as one [`Event::PeerPieces`]. A BEP 10 peer gets an updated extension
    /// handshake (our `metadata_size`; `ut_pex` switched off if the torrent is private).
    ///
    /// # Panics
    /// If the session is not active on a torrent without metadata, or `torrent` lacks
    /// metadata or has another info-hash: shell bugs.
    pub fn set_metadata(
        &mut self,
        torrent: Arc<TorrentShared>,
        now: Instant,
    ) -> Result<(), PeerError> {
        assert_eq!(self.state, State::Active, "set_metadata before attach");
        let old = self.torrent.as_ref().expect("active");
        assert!(!old.has_metadata(), "metadata already known");
        assert_eq!(old.info_hash(), torrent.info_hash(), "another torrent");
        let count = torrent.layout().expect("metadata").piece_count();
        self.torrent = Some(torrent);
        self.downloads.forget_metadata_requests();
        let pending = std::mem::take(&mut self.peer_pieces_pending);
        let declared = pending.resolve(count)?;
        if let Some(added) = self.peer_pieces.declare(declared, count) {
            self.events.push_back(Event::PeerPieces { added });
        }
        if self.peer_supports_extensions() {
            self.queue_extension_handshake();
            self.note_output(now);
        }
        Ok(())
    }

    /// Checks timers: `Err` for a handshake or idle timeout (close the connection); reports
    /// requests that timed out; queues a keep-alive when we have been silent for
    /// [`KEEPALIVE_INTERVAL`].
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), PeerError> {
        if self.handshake_deadline.is_some_and(|d| now >= d) {
            return Err(PeerError::HandshakeTimeout {
                after: HANDSHAKE_TIMEOUT,
            });
        }
        let idle = now - self.last_received;
        if idle >= PEER_IDLE_TIMEOUT {
            return Err(PeerError::IdleTimeout { idle });
        }
        self.downloads.handle_timeout(now, &mut self.events);
        if self.keepalive_at.is_some_and(|k| now >= k) {
            Message::KeepAlive.encode(&mut self.control);
            self.note_output(now);
        }
        Ok(())
    }

    /// Reports that a block from [`poll_block`](Self::poll_block) was handed to the socket.
    pub fn on_block_sent(&mut self, len: u32, now: Instant) {
        self.upload.record(u64::from(len), now);
        self.uploaded_bytes += u64::from(len);
        self.note_output(now);
    }

    /// Something went out at `now`: the next keep-alive is due an interval later.
    pub(super) fn note_output(&mut self, now: Instant) {
        if self.state == State::Active {
            self.keepalive_at = Some(now + KEEPALIVE_INTERVAL);
        }
    }

    // ----- commands (upload side; download side in download.rs) -----

    /// Chokes or unchokes the peer (a no-op if already so, or before `Active`). Choking
    /// drops the peer's queued requests; a fast-extension peer gets a `reject` for each
    /// (BEP 6), others know a choke discards them (BEP 3). Blocks already returned by
    /// `poll_block` are the shell's and are still sent.
    pub fn set_choked(&mut self, choked: bool, now: Instant) {
        if self.state != State::Active || choked == self.am_choking {
            return;
        }
        self.am_choking = choked;
        if choked {
            Message::Choke.encode(&mut self.control);
            let fast = self.peer_supports_fast();
            for (block, _) in self.requests.drain(..) {
                if fast {
                    Message::Reject(block.into()).encode(&mut self.control);
                }
            }
        } else {
            Message::Unchoke.encode(&mut self.control);
            self.requests_while_choked = 0;
        }
        self.note_output(now);
    }

    /// We verified `piece`: serve it from now on and tell the peer with a `have` — even
    /// when the peer has the piece itself (libtorrent's `send_redundant_have` default
    /// too): that is how a peer learns we became a seed, so it can close a seed-to-seed
    /// connection and free the slot, and its view of us stays exact. It costs 9 bytes per
    /// piece per peer, under 0.01% of the payload for 16 KiB pieces and up. A piece we
    /// already had sends nothing. Before `Active` only the set changes: the greeting will
    /// include the piece.
    ///
    /// # Panics
    /// Without metadata (a piece cannot be verified before the torrent's hashes are known).
    pub fn have(&mut self, piece: PieceIndex, now: Instant) {
        let count = self.layout().expect("have needs metadata").piece_count();
        if !self.have.insert(piece, count) {
            return;
        }
        if self.state == State::Active {
            Message::Have { piece: piece.get() }.encode(&mut self.control);
            self.note_output(now);
        }
    }

    // ----- outputs -----

    /// Appends pending control messages (everything but block payloads) to `out`.
    pub fn write_control(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.control);
        self.control.clear();
        self.ext.metadata_replies = 0;
        if self.control.capacity() > CONTROL_BYTES_RETAINED {
            self.control.shrink_to(CONTROL_BYTES_RETAINED);
        }
    }

    /// The next block to send: still requested, not cancelled, peer unchoked. The shell
    /// writes `wire::piece_header(…)` and the block's bytes, then calls `on_block_sent`.
    pub fn poll_block(&mut self) -> Option<BlockRef> {
        self.poll_block_timed().map(|(block, _)| block)
    }

    /// As [`poll_block`](Self::poll_block), with the `now` of the `handle_input` call that
    /// parsed the block's request (the start of the shell's request-to-send latency).
    pub fn poll_block_timed(&mut self) -> Option<(BlockRef, Instant)> {
        if self.am_choking {
            debug_assert!(self.requests.is_empty());
            return None;
        }
        self.requests.pop_front()
    }

    /// Whether [`poll_block`](Self::poll_block) would return a block now.
    pub fn has_block_to_send(&self) -> bool {
        !self.am_choking && !self.requests.is_empty()
    }

    /// The next thing the shell must react to, if any, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_received + PEER_IDLE_TIMEOUT;
        [
            self.handshake_deadline,
            self.keepalive_at,
            Some(idle),
            self.downloads.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Bytes the incomplete frame left at the front of the last input still needs (0 when
    /// the input was consumed whole or input stopped early). A shell with small
    /// per-connection buffers grows one to this size only for the rare large frame (a
    /// bitfield of a huge torrent).
    pub fn bytes_missing(&self) -> usize {
        self.bytes_missing
    }
}

/// The payload-carrying result of one message, for `handle_input`.
pub(super) type MessageResult<'a> = Result<Option<Received<'a>>, PeerError>;
