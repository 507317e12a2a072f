//! The [`Session`] type: construction, the driving API and getters. Message handling lives
//! in `receive.rs`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::rate::RateMeter;
use super::torrent::SeedTorrent;
use super::{
    PeerError, CLIENT_NAME, HANDSHAKE_TIMEOUT, KEEPALIVE_INTERVAL, PEER_IDLE_TIMEOUT,
    PEER_REQUESTS_QUEUED_MAX, UT_METADATA_ID,
};
use crate::metainfo::{BlockRef, InfoHash, PeerId, PieceIndex};
use crate::time::Instant;
use crate::wire::{
    decode_message, write_extended, Bitfield, Decoded, ExtensionHandshake, Handshake, Message,
    Reserved,
};

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

/// Something the shell must know about; see [`Session::poll_event`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Inbound only: the peer's handshake names this torrent. Call [`Session::attach`]
    /// with it, or close the connection if we do not serve it.
    AttachRequested {
        /// The torrent the peer asked for.
        info_hash: InfoHash,
    },
    /// The peer's interest changed; the choker can fill or free a slot at once.
    InterestChanged {
        /// The peer's interest now.
        interested: bool,
    },
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

/// What the peer told us about its pieces. `None` until it says otherwise (BEP 3 lets a
/// peer with no pieces skip the bitfield); `All` costs no memory for seeds and `have all`.
/// `Some` costs one bit per piece per peer: 3 KB for a 100 GB torrent of 4 MiB pieces.
#[derive(Clone, Debug)]
pub(super) enum PeerPieces {
    None,
    All,
    Some(Bitfield),
}

/// What the peer's extension handshakes told us, kept only for extensions we implement.
#[derive(Clone, Debug, Default)]
pub(super) struct PeerExtensions {
    /// The id the peer wants `ut_metadata` messages under.
    pub ut_metadata: Option<u8>,
    pub client: Option<String>,
    pub listen_port: Option<u16>,
    pub reqq: Option<u32>,
}

/// One peer connection, seeding side, without I/O.
///
/// ## States
/// ```text
///  Handshaking ──peer handshake (inbound)──▶ AwaitingAttach ──attach()──▶ Active
///       └──────peer handshake, info-hash ok (outbound)───────────────────▶ Active
/// ```
/// Every `Err(PeerError)` ends the connection: the shell closes it and drops the session;
/// there is no closed state. An outbound session queues our handshake when created; an
/// inbound one queues it in `attach`. Entering `Active` queues our bitfield (`have all` /
/// `have none` to fast peers when they say it all) and, if the peer speaks BEP 10, our
/// extension handshake. We start choking and not interested.
///
/// ## Driving it
/// Inputs are `handle_*`, commands change our side, outputs are `poll_*`/`write_control`.
/// After any input or command, the shell:
/// 1. keeps the bytes `handle_input` did not consume and feeds them again with more
///    appended (`bytes_missing` says how many the incomplete frame at the front needs);
/// 2. drains [`poll_event`](Self::poll_event): attach or close on `AttachRequested`, then
///    feed the unconsumed input again; tell the choker about `InterestChanged`;
/// 3. calls [`write_control`](Self::write_control), then [`poll_block`](Self::poll_block)
///    while its send buffer has room, writing `wire::piece_header` and the block read from
///    disk, and reports each block to [`on_block_sent`](Self::on_block_sent) — control
///    first, so a `choke` or `reject` never overtakes or trails the blocks it concerns (a
///    block already taken by `poll_block` is still sent after a later choke: with BEP 6
///    that piece is the request's one response, without it peers accept a late block);
/// 4. arms a timer at [`poll_timeout`](Self::poll_timeout) and calls
///    [`handle_timeout`](Self::handle_timeout) when it fires.
///
/// Nothing here allocates per served block: blocks are `BlockRef`s popped from a bounded
/// queue, and control messages go into one reused buffer.
#[derive(Debug)]
pub struct Session {
    pub(super) state: State,
    direction: Direction,
    pub(super) local: LocalConfig,
    pub(super) torrent: Option<Arc<SeedTorrent>>,
    pub(super) remote: Option<Handshake>,
    pub(super) am_choking: bool,
    pub(super) am_interested: bool,
    pub(super) peer_choking: bool,
    pub(super) peer_interested: bool,
    pub(super) peer_pieces: PeerPieces,
    pub(super) ext: PeerExtensions,
    pub(super) dht_port: Option<u16>,
    /// Validated requests, oldest first, at most `PEER_REQUESTS_QUEUED_MAX`.
    pub(super) requests: VecDeque<BlockRef>,
    pub(super) requests_invalid: u32,
    pub(super) requests_overflowed: u32,
    /// Valid requests received while we choke, since our last choke.
    pub(super) requests_while_choked: u32,
    /// `ut_metadata` replies in `control` not yet written out.
    pub(super) metadata_replies: usize,
    /// Encoded control messages waiting for `write_control`.
    pub(super) control: Vec<u8>,
    bytes_missing: usize,
    connected_at: Instant,
    last_received: Instant,
    handshake_deadline: Option<Instant>,
    keepalive_at: Option<Instant>,
    upload: RateMeter,
    uploaded_bytes: u64,
    event_attach: bool,
    pub(super) event_interest: bool,
}

impl Session {
    fn new(direction: Direction, local: LocalConfig, now: Instant) -> Session {
        Session {
            state: State::Handshaking,
            direction,
            local,
            torrent: None,
            remote: None,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            peer_pieces: PeerPieces::None,
            ext: PeerExtensions::default(),
            dht_port: None,
            requests: VecDeque::new(),
            requests_invalid: 0,
            requests_overflowed: 0,
            requests_while_choked: 0,
            metadata_replies: 0,
            control: Vec::new(),
            bytes_missing: 0,
            connected_at: now,
            last_received: now,
            handshake_deadline: Some(now + HANDSHAKE_TIMEOUT),
            keepalive_at: None,
            upload: RateMeter::new(now),
            uploaded_bytes: 0,
            event_attach: false,
            event_interest: false,
        }
    }

    /// A connection the peer opened; the torrent is attached after its handshake.
    pub fn inbound(local: LocalConfig, now: Instant) -> Session {
        Session::new(Direction::Inbound, local, now)
    }

    /// A connection we opened for `torrent`; our handshake is queued at once.
    pub fn outbound(torrent: Arc<SeedTorrent>, local: LocalConfig, now: Instant) -> Session {
        let mut s = Session::new(Direction::Outbound, local, now);
        s.torrent = Some(torrent);
        s.queue_handshake();
        s
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

    /// Feeds bytes received from the peer; returns how many were consumed (whole frames
    /// only). `Err` means: close the connection and log the reason.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) -> Result<usize, PeerError> {
        let mut used = 0;
        let control_before = self.control.len();
        self.bytes_missing = 0;
        loop {
            let rest = &bytes[used..];
            if rest.is_empty() {
                break;
            }
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
                        self.on_message(value)?;
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
        Ok(used)
    }

    fn on_handshake(&mut self, theirs: Handshake, now: Instant) -> Result<(), PeerError> {
        if theirs.peer_id == self.local.peer_id {
            return Err(PeerError::ConnectedToSelf);
        }
        self.remote = Some(theirs);
        match self.direction {
            Direction::Inbound => {
                self.state = State::AwaitingAttach;
                self.event_attach = true;
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

    /// Attaches the torrent an inbound peer asked for (after `Event::AttachRequested`) and
    /// queues our handshake, pieces and extension handshake. `Err` if the torrent is not
    /// the one the peer named.
    ///
    /// # Panics
    /// If called in any state but "awaiting attach" (a shell bug).
    pub fn attach(&mut self, torrent: Arc<SeedTorrent>, now: Instant) -> Result<(), PeerError> {
        assert_eq!(self.state, State::AwaitingAttach, "attach out of order");
        let found = self.remote.expect("handshake received").info_hash;
        if torrent.info_hash() != found {
            return Err(PeerError::InfoHashMismatch {
                expected: torrent.info_hash(),
                found,
            });
        }
        self.torrent = Some(torrent);
        self.event_attach = false;
        self.queue_handshake();
        self.activate(now);
        Ok(())
    }

    /// Both handshakes are done: announce our pieces and extensions.
    fn activate(&mut self, now: Instant) {
        self.state = State::Active;
        self.handshake_deadline = None;
        let torrent = Arc::clone(self.torrent.as_ref().expect("active needs a torrent"));
        let have = torrent.have();
        let fast = self.peer_supports_fast();
        if fast && have.is_full() && !have.is_empty() {
            Message::HaveAll.encode(&mut self.control);
        } else if have.count() == 0 {
            // BEP 3 lets a peer with no pieces omit the bitfield; BEP 6 peers expect one of
            // bitfield, have all or have none first.
            if fast {
                Message::HaveNone.encode(&mut self.control);
            }
        } else {
            Message::Bitfield(have.as_bytes()).encode(&mut self.control);
        }
        if self.peer_supports_extensions() {
            let ours = ExtensionHandshake {
                m: [("ut_metadata".to_owned(), UT_METADATA_ID)].into(),
                v: Some(CLIENT_NAME.to_owned()),
                p: self.local.listen_port,
                reqq: Some(PEER_REQUESTS_QUEUED_MAX as u32),
                metadata_size: Some(torrent.info_bytes().len() as u64),
                yourip: None,
            };
            write_extended(&mut self.control, 0, |out| ours.encode(out));
        }
        self.note_output(now);
    }

    /// Checks timers: `Err` for a handshake or idle timeout (close the connection);
    /// queues a keep-alive when we have been silent for [`KEEPALIVE_INTERVAL`].
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

    // ----- commands -----

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
            for block in self.requests.drain(..) {
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

    // ----- outputs -----

    /// Appends pending control messages (everything but block payloads) to `out`.
    pub fn write_control(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.control);
        self.control.clear();
        self.metadata_replies = 0;
        if self.control.capacity() > CONTROL_BYTES_RETAINED {
            self.control.shrink_to(CONTROL_BYTES_RETAINED);
        }
    }

    /// The next block to send: still requested, not cancelled, peer unchoked. The shell
    /// writes `wire::piece_header(…)` and the block's bytes, then calls `on_block_sent`.
    pub fn poll_block(&mut self) -> Option<BlockRef> {
        if self.am_choking {
            debug_assert!(self.requests.is_empty());
            return None;
        }
        self.requests.pop_front()
    }

    /// The next thing the shell must react to, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.event_attach {
            self.event_attach = false;
            let info_hash = self.remote.expect("handshake received").info_hash;
            return Some(Event::AttachRequested { info_hash });
        }
        if self.event_interest {
            self.event_interest = false;
            return Some(Event::InterestChanged {
                interested: self.peer_interested,
            });
        }
        None
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let idle = self.last_received + PEER_IDLE_TIMEOUT;
        [self.handshake_deadline, self.keepalive_at, Some(idle)]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- getters -----

    /// Who opened the connection.
    pub fn direction(&self) -> Direction {
        self.direction
    }
    /// True once handshakes are exchanged and a torrent is attached.
    pub fn is_active(&self) -> bool {
        self.state == State::Active
    }
    /// The attached torrent.
    pub fn torrent(&self) -> Option<&Arc<SeedTorrent>> {
        self.torrent.as_ref()
    }
    /// Bytes the incomplete frame left at the front of the last input still needs (0 when
    /// the input was consumed whole). A shell with small per-connection buffers grows one
    /// to this size only for the rare large frame (a bitfield of a huge torrent).
    pub fn bytes_missing(&self) -> usize {
        self.bytes_missing
    }
    /// The peer's id, once its handshake arrived.
    pub fn peer_id(&self) -> Option<PeerId> {
        self.remote.map(|h| h.peer_id)
    }
    /// The peer's reserved bits, once its handshake arrived.
    pub fn peer_reserved(&self) -> Option<Reserved> {
        self.remote.map(|h| h.reserved)
    }
    /// The peer speaks the fast extension (BEP 6; we always do, so it is negotiated).
    pub fn peer_supports_fast(&self) -> bool {
        self.remote.is_some_and(|h| h.reserved.fast())
    }
    /// The peer speaks the extension protocol (BEP 10).
    pub fn peer_supports_extensions(&self) -> bool {
        self.remote.is_some_and(|h| h.reserved.extension_protocol())
    }
    /// The peer's client name (`v` of its extension handshake).
    pub fn client_name(&self) -> Option<&str> {
        self.ext.client.as_deref()
    }
    /// The peer's listen port (`p` of its extension handshake).
    pub fn peer_listen_port(&self) -> Option<u16> {
        self.ext.listen_port
    }
    /// How many requests the peer queues (`reqq`), for the future request pipeline.
    pub fn peer_reqq(&self) -> Option<u32> {
        self.ext.reqq
    }
    /// The peer's DHT port (BEP 5 `port` message).
    pub fn dht_port(&self) -> Option<u16> {
        self.dht_port
    }
    /// We are choking the peer.
    pub fn am_choking(&self) -> bool {
        self.am_choking
    }
    /// We are interested in the peer (never, while only seeding).
    pub fn am_interested(&self) -> bool {
        self.am_interested
    }
    /// The peer is choking us.
    pub fn peer_choking(&self) -> bool {
        self.peer_choking
    }
    /// The peer wants pieces from us.
    pub fn peer_interested(&self) -> bool {
        self.peer_interested
    }
    /// The peer has `piece`, as far as it told us.
    pub fn peer_has(&self, piece: PieceIndex) -> bool {
        match &self.peer_pieces {
            PeerPieces::None => false,
            PeerPieces::All => true,
            PeerPieces::Some(bits) => bits.get(piece),
        }
    }
    /// The peer has every piece (a seed: two seeds have nothing to exchange).
    pub fn peer_is_seed(&self) -> bool {
        match &self.peer_pieces {
            PeerPieces::All => true,
            PeerPieces::Some(bits) => bits.is_full(),
            PeerPieces::None => false,
        }
    }
    /// Requests queued and not yet served.
    pub fn requests_queued(&self) -> usize {
        self.requests.len()
    }
    /// Our upload rate to this peer at `now`, in bytes per second.
    pub fn upload_rate(&self, now: Instant) -> u64 {
        self.upload.rate(now)
    }
    /// Block bytes sent to this peer.
    pub fn uploaded_bytes(&self) -> u64 {
        self.uploaded_bytes
    }
    /// When the session was created.
    pub fn connected_at(&self) -> Instant {
        self.connected_at
    }
    /// Time since the peer last sent a byte.
    pub fn idle(&self, now: Instant) -> Duration {
        now - self.last_received
    }
}
