//! Session tests: a scripted remote peer written with the wire codec ([`Harness`]), and a
//! [`Pair`] of two sessions wired together with fake disks, both in memory with virtual
//! time.

mod download;
mod download_props;
mod handshake;
mod magnet;
mod pex;
mod requests;
mod violations;

use std::sync::Arc;
use std::time::Duration;

use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::{
    build_torrent, BlockRef, FileEntry, Info, InfoHash, Layout, Metainfo, PeerId, TorrentBuilder,
};
use crate::time::Instant;
use crate::wire::{
    decode_message, piece_header, Bitfield, Decoded, ExtensionHandshake, Handshake, Message,
    MetadataMessage, RawBlock, Reserved,
};

/// The id our scripted remote asks the session to use for `ut_metadata` messages.
const REMOTE_UT_METADATA: u8 = 3;
/// The id our scripted remote asks the session to use for `ut_pex` messages.
const REMOTE_UT_PEX: u8 = 5;
const PIECE_BYTES: u32 = 32 * 1024;

fn local(tag: u8) -> LocalConfig {
    LocalConfig {
        peer_id: PeerId([tag; 20]),
        listen_port: Some(6881),
    }
}

/// The info dict of a torrent of `pieces` 32 KiB pieces (the last one 5000 bytes short)
/// whose piece hashes are those of [`content`], so downloads can be verified.
fn info(pieces: u32, private: bool) -> Info {
    let total = u64::from(pieces) * u64::from(PIECE_BYTES) - 5000;
    let hashes = (0..pieces)
        .map(|i| {
            let start = u64::from(i) * u64::from(PIECE_BYTES);
            let end = (start + u64::from(PIECE_BYTES)).min(total);
            let bytes: Vec<u8> = (start..end).map(content).collect();
            Sha1::digest(&bytes).into()
        })
        .collect();
    Info {
        name: "release.bin".into(),
        piece_length: PIECE_BYTES,
        pieces: hashes,
        files: vec![FileEntry {
            path: vec![],
            length: total,
        }],
        multi_file: false,
        private,
    }
}

fn metainfo(pieces: u32) -> Metainfo {
    build_torrent(&info(pieces, false), &TorrentBuilder::default())
        .unwrap()
        .1
}

/// A torrent as a test shell holds it: the shared part and the pieces we have.
#[derive(Clone, Debug)]
struct TestTorrent {
    shared: Arc<TorrentShared>,
    have: PieceSet,
}

impl TestTorrent {
    fn new(shared: TorrentShared, have: PieceSet) -> TestTorrent {
        TestTorrent {
            shared: Arc::new(shared),
            have,
        }
    }
    fn layout(&self) -> &Layout {
        self.shared.layout().expect("test torrents have metadata")
    }
    fn info_hash(&self) -> InfoHash {
        self.shared.info_hash()
    }
    fn info_bytes(&self) -> &[u8] {
        self.shared
            .info_bytes()
            .expect("test torrents have metadata")
    }
}

fn seed(pieces: u32) -> TestTorrent {
    TestTorrent::new(
        TorrentShared::from_metainfo(&metainfo(pieces)),
        PieceSet::All,
    )
}

/// A torrent of which we have only the pieces in `have`.
fn partial(pieces: u32, have: &[u32]) -> TestTorrent {
    let m = metainfo(pieces);
    let layout = m.info.layout();
    let mut bits = Bitfield::empty(layout.piece_count());
    for &p in have {
        bits.set(layout.piece(p).unwrap());
    }
    TestTorrent::new(TorrentShared::from_metainfo(&m), PieceSet::Partial(bits))
}

/// The byte at `abs` in the torrent's content: what the fake disk serves.
fn content(abs: u64) -> u8 {
    (abs % 251) as u8 ^ (abs >> 9) as u8
}

/// A message as the remote decoded it, owned for assertions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Handshake(Handshake),
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    HaveAll,
    HaveNone,
    Request(RawBlock),
    Cancel(RawBlock),
    Piece {
        piece: u32,
        offset: u32,
        data: Vec<u8>,
    },
    Reject(RawBlock),
    ExtHandshake(ExtensionHandshake),
    MetadataRequest(u32),
    MetadataData {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
    MetadataReject(u32),
    Pex(crate::wire::PexMessage),
    Other(Vec<u8>),
}

fn to_got(msg: Message<'_>, frame: &[u8]) -> Got {
    match msg {
        Message::KeepAlive => Got::KeepAlive,
        Message::Choke => Got::Choke,
        Message::Unchoke => Got::Unchoke,
        Message::Interested => Got::Interested,
        Message::NotInterested => Got::NotInterested,
        Message::Have { piece } => Got::Have(piece),
        Message::Bitfield(b) => Got::Bitfield(b.to_vec()),
        Message::HaveAll => Got::HaveAll,
        Message::HaveNone => Got::HaveNone,
        Message::Request(r) => Got::Request(r),
        Message::Cancel(r) => Got::Cancel(r),
        Message::Piece {
            piece,
            offset,
            data,
        } => Got::Piece {
            piece,
            offset,
            data: data.to_vec(),
        },
        Message::Reject(r) => Got::Reject(r),
        Message::Extended { id: 0, payload } => {
            Got::ExtHandshake(ExtensionHandshake::decode(payload).unwrap())
        }
        Message::Extended {
            id: REMOTE_UT_PEX,
            payload,
        } => Got::Pex(crate::wire::PexMessage::decode(payload).unwrap()),
        Message::Extended {
            id: REMOTE_UT_METADATA,
            payload,
        } => match MetadataMessage::decode(payload).unwrap().unwrap() {
            MetadataMessage::Request { piece } => Got::MetadataRequest(piece),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => Got::MetadataData {
                piece,
                total_size,
                data: data.to_vec(),
            },
            MetadataMessage::Reject { piece } => Got::MetadataReject(piece),
        },
        _ => Got::Other(frame.to_vec()),
    }
}

/// A payload the session handed out, copied as a shell would.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rx {
    Block {
        block: BlockRef,
        data: Vec<u8>,
        late: bool,
    },
    Metadata {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
}

impl From<Received<'_>> for Rx {
    fn from(r: Received<'_>) -> Rx {
        match r {
            Received::Block { block, data, late } => Rx::Block {
                block,
                data: data.to_vec(),
                late,
            },
            Received::Metadata {
                piece,
                total_size,
                data,
            } => Rx::Metadata {
                piece,
                total_size,
                data: data.to_vec(),
            },
        }
    }
}

/// The shell's read path for one session: feed `inbox` until nothing more is consumed,
/// copying payloads out, collecting events, and attaching a torrent when asked.
fn feed(
    session: &mut Session,
    inbox: &mut Vec<u8>,
    now: Instant,
    torrents: &[TestTorrent],
    events: &mut Vec<Event>,
    received: &mut Vec<Rx>,
) -> Result<(), PeerError> {
    loop {
        let input = session.handle_input(inbox, now)?;
        let used = input.used;
        if let Some(r) = input.received {
            received.push(r.into());
        }
        inbox.drain(..used);
        let mut attached = false;
        while let Some(ev) = session.poll_event() {
            if let Event::AttachRequested { info_hash } = ev {
                let t = torrents.iter().find(|t| t.shared.info_hash() == info_hash);
                let t = t.expect("known torrent");
                session.attach(Arc::clone(&t.shared), t.have.clone(), now)?;
                attached = true;
            }
            events.push(ev);
        }
        // Input pauses for payloads, attaches and event backlogs: feed again until a call
        // consumes nothing.
        if used == 0 && !attached {
            return Ok(());
        }
    }
}

/// One session under test and the remote peer's side of the connection, plus the shell's
/// duties: feeding input, attaching, writing control then blocks from a fake disk, timers.
struct Harness {
    session: Session,
    now: Instant,
    torrent: TestTorrent,
    /// Remote → session bytes not yet consumed.
    inbox: Vec<u8>,
    /// Session → remote bytes not yet decoded by the remote.
    outbox: Vec<u8>,
    remote_saw_handshake: bool,
    events: Vec<Event>,
    /// Blocks and metadata pieces the session delivered.
    rx: Vec<Rx>,
    /// When set, the shell does not pull blocks (as if the socket were full).
    hold_blocks: bool,
}

impl Harness {
    fn new(session: Session, torrent: TestTorrent) -> Harness {
        Harness {
            session,
            now: Instant::from_secs(1000),
            torrent,
            inbox: Vec::new(),
            outbox: Vec::new(),
            remote_saw_handshake: false,
            events: Vec::new(),
            rx: Vec::new(),
            hold_blocks: false,
        }
    }

    /// An inbound session; the remote has sent nothing yet.
    fn inbound_idle(torrent: TestTorrent) -> Harness {
        let now = Instant::from_secs(1000);
        Harness::new(Session::inbound(local(1), now), torrent)
    }

    /// An inbound session after the remote's handshake with `reserved` and the shell's
    /// attach; everything the session sent is still in the outbox.
    fn inbound(torrent: TestTorrent, reserved: Reserved) -> Harness {
        let mut h = Harness::inbound_idle(torrent);
        h.send_handshake(reserved, h.torrent.info_hash()).unwrap();
        assert!(h.session.is_active());
        h
    }

    /// An active session with a peer of `reserved`, greeting already read.
    fn active(torrent: TestTorrent, reserved: Reserved) -> Harness {
        let mut h = Harness::inbound(torrent, reserved);
        h.received();
        h.events.clear();
        h
    }

    fn send_handshake(&mut self, reserved: Reserved, ih: InfoHash) -> Result<(), PeerError> {
        let hs = Handshake {
            reserved,
            info_hash: ih,
            peer_id: PeerId(*b"-XX0001-remote-peer-"),
        };
        self.send_raw(&hs.encode())
    }

    fn send(&mut self, msg: Message<'_>) -> Result<(), PeerError> {
        self.send_all(&[msg])
    }

    /// Sends messages in one batch, as if they arrived in one socket read.
    fn send_all(&mut self, msgs: &[Message<'_>]) -> Result<(), PeerError> {
        let mut bytes = Vec::new();
        for m in msgs {
            m.encode(&mut bytes);
        }
        self.send_raw(&bytes)
    }

    fn send_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.inbox.extend_from_slice(bytes);
        self.pump()
    }

    /// The shell's read path, then its write path.
    fn pump(&mut self) -> Result<(), PeerError> {
        let torrents = [self.torrent.clone()];
        feed(
            &mut self.session,
            &mut self.inbox,
            self.now,
            &torrents,
            &mut self.events,
            &mut self.rx,
        )?;
        self.flush();
        Ok(())
    }

    /// The shell's write path: control first, then blocks with their data from "disk".
    fn flush(&mut self) {
        self.session.write_control(&mut self.outbox);
        while !self.hold_blocks {
            let Some(b) = self.session.poll_block() else {
                break;
            };
            self.outbox
                .extend_from_slice(&piece_header(b.piece.get(), b.offset, b.len));
            let start = self.torrent.layout().piece_start(b.piece) + u64::from(b.offset);
            self.outbox
                .extend((start..start + u64::from(b.len)).map(content));
            self.session.on_block_sent(b.len, self.now);
        }
    }

    /// Advances virtual time by `d`, firing the session's timers on the way and collecting
    /// the events they raise.
    fn advance(&mut self, d: Duration) -> Result<(), PeerError> {
        let target = self.now + d;
        for _ in 0..1000 {
            match self.session.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.session.handle_timeout(self.now)?;
                    while let Some(ev) = self.session.poll_event() {
                        self.events.push(ev);
                    }
                    self.flush();
                }
                _ => break,
            }
        }
        self.now = target;
        Ok(())
    }

    /// Events raised since the last call.
    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Everything the session sent since the last call, decoded by the remote.
    fn received(&mut self) -> Vec<Got> {
        let mut got = Vec::new();
        let mut at = 0;
        if !self.remote_saw_handshake && !self.outbox.is_empty() {
            match Handshake::decode(&self.outbox).unwrap() {
                Decoded::Complete { value, used } => {
                    got.push(Got::Handshake(value));
                    at = used;
                    self.remote_saw_handshake = true;
                }
                Decoded::Incomplete { .. } => panic!("partial handshake in outbox"),
            }
        }
        while at < self.outbox.len() {
            match decode_message(&self.outbox[at..]).unwrap() {
                Decoded::Complete { value, used } => {
                    got.push(to_got(value, &self.outbox[at..at + used]));
                    at += used;
                }
                Decoded::Incomplete { .. } => panic!("partial frame in outbox"),
            }
        }
        self.outbox.clear();
        got
    }

    /// The remote's extension handshake announcing `ut_metadata` (and `ut_pex`) under our
    /// test ids, with extra keys from `with`.
    fn send_extension_handshake_with(
        &mut self,
        with: impl FnOnce(&mut ExtensionHandshake),
    ) -> Result<(), PeerError> {
        let mut h = ExtensionHandshake {
            m: [
                ("ut_metadata".to_owned(), REMOTE_UT_METADATA),
                ("ut_pex".to_owned(), REMOTE_UT_PEX),
            ]
            .into(),
            v: Some("remote 1.0".into()),
            ..ExtensionHandshake::default()
        };
        with(&mut h);
        let mut payload = Vec::new();
        h.encode(&mut payload);
        self.send(Message::Extended {
            id: 0,
            payload: &payload,
        })
    }

    fn send_extension_handshake(&mut self) -> Result<(), PeerError> {
        self.send_extension_handshake_with(|_| {})
    }

    fn request(piece: u32, offset: u32, len: u32) -> Message<'static> {
        Message::Request(RawBlock { piece, offset, len })
    }
}

/// One side of a [`Pair`]: a session and its shell's state.
struct Node {
    session: Session,
    /// Torrents the shell attaches when an inbound peer asks.
    torrents: Vec<TestTorrent>,
    /// The torrent's bytes this node has (a seed's are [`content`]); blocks are served from
    /// here and received blocks written here.
    disk: Vec<u8>,
    /// Bytes sent to this node, not yet read from the socket.
    wire: Vec<u8>,
    /// Bytes read, not yet consumed by the session.
    inbox: Vec<u8>,
    events: Vec<Event>,
    rx: Vec<Rx>,
}

impl Node {
    fn new(session: Session, torrents: Vec<TestTorrent>, disk: Vec<u8>) -> Node {
        Node {
            session,
            torrents,
            disk,
            wire: Vec::new(),
            inbox: Vec::new(),
            events: Vec::new(),
            rx: Vec::new(),
        }
    }

    /// The shell's write path: control, then every block the session wants served.
    fn flush(&mut self, out: &mut Vec<u8>, now: Instant) {
        self.session.write_control(out);
        while let Some(b) = self.session.poll_block() {
            let layout = self.session.layout().expect("serving needs metadata");
            let start = (layout.piece_start(b.piece) + u64::from(b.offset)) as usize;
            out.extend_from_slice(&piece_header(b.piece.get(), b.offset, b.len));
            out.extend_from_slice(&self.disk[start..start + b.len as usize]);
            self.session.on_block_sent(b.len, now);
        }
    }

    fn feed(&mut self, now: Instant) -> Result<(), PeerError> {
        feed(
            &mut self.session,
            &mut self.inbox,
            now,
            &self.torrents,
            &mut self.events,
            &mut self.rx,
        )
    }

    /// Writes received blocks to disk; returns them.
    fn store_blocks(&mut self) -> Vec<Rx> {
        let rx = std::mem::take(&mut self.rx);
        for r in &rx {
            if let Rx::Block { block, data, .. } = r {
                let layout = self.session.layout().unwrap();
                let start = (layout.piece_start(block.piece) + u64::from(block.offset)) as usize;
                self.disk[start..start + data.len()].copy_from_slice(data);
            }
        }
        rx
    }
}

/// Two sessions connected back to back: `a` dialled `b`. Bytes move at most `chunk` at a
/// time, so frames arrive split as a socket would split them.
struct Pair {
    a: Node,
    b: Node,
    now: Instant,
    chunk: usize,
}

impl Pair {
    /// `a` dials `b` for `torrent`, holding the pieces `a_have`; `b` serves `torrent` as
    /// it is. Disks: a full copy of [`content`] for whoever has every piece, zeros otherwise.
    fn new(a_torrent: TestTorrent, b_torrents: Vec<TestTorrent>) -> Pair {
        let now = Instant::from_secs(50);
        let disk = |t: &TestTorrent| -> Vec<u8> {
            let Some(layout) = t.shared.layout() else {
                return Vec::new();
            };
            let total = layout.total_length();
            if t.have.is_full() {
                (0..total).map(content).collect()
            } else {
                vec![0; total as usize]
            }
        };
        let a_disk = disk(&a_torrent);
        let b_disk = disk(&b_torrents[0]);
        let a = Session::outbound(
            Arc::clone(&a_torrent.shared),
            a_torrent.have.clone(),
            local(0xa),
            now,
        );
        Pair {
            a: Node::new(a, vec![a_torrent], a_disk),
            b: Node::new(Session::inbound(local(0xb), now), b_torrents, b_disk),
            now,
            chunk: usize::MAX,
        }
    }

    fn connect(torrent: TestTorrent) -> Pair {
        Pair::new(torrent.clone(), vec![torrent])
    }

    /// One round: each side writes, then reads (up to `chunk` bytes of) what reached it.
    /// Returns false when nothing moved.
    fn step(&mut self) -> Result<bool, PeerError> {
        let (mut a_out, mut b_out) = (Vec::new(), Vec::new());
        self.a.flush(&mut a_out, self.now);
        self.b.flush(&mut b_out, self.now);
        self.b.wire.extend_from_slice(&a_out);
        self.a.wire.extend_from_slice(&b_out);
        let moved = !(self.a.wire.is_empty() && self.b.wire.is_empty());
        for node in [&mut self.b, &mut self.a] {
            let n = node.wire.len().min(self.chunk);
            node.inbox.extend(node.wire.drain(..n));
            node.feed(self.now)?;
        }
        Ok(moved)
    }

    /// Moves bytes both ways until neither side has anything more to say.
    fn drive(&mut self) -> Result<(), PeerError> {
        for _ in 0..10_000 {
            if !self.step()? {
                return Ok(());
            }
        }
        panic!("pair never went idle");
    }
}
