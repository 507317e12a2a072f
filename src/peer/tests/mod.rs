//! Session tests: a scripted remote peer written with the wire codec ([`Harness`]), and a
//! [`Pair`] of two sessions wired together, both in memory with virtual time.

mod handshake;
mod requests;
mod violations;

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::metainfo::{build_torrent, FileEntry, Info, InfoHash, PeerId, TorrentBuilder};
use crate::time::Instant;
use crate::wire::{
    decode_message, piece_header, Bitfield, Decoded, ExtensionHandshake, Handshake, Message,
    MetadataMessage, RawBlock, Reserved,
};

/// The id our scripted remote asks the session to use for `ut_metadata` messages.
const REMOTE_UT_METADATA: u8 = 3;
const PIECE_BYTES: u32 = 32 * 1024;

fn local(tag: u8) -> LocalConfig {
    LocalConfig {
        peer_id: PeerId([tag; 20]),
        listen_port: Some(6881),
    }
}

/// A torrent of `pieces` 32 KiB pieces (the last one 5000 bytes short) and its metainfo.
fn metainfo(pieces: u32) -> crate::metainfo::Metainfo {
    let info = Info {
        name: "release.bin".into(),
        piece_length: PIECE_BYTES,
        pieces: (0..pieces).map(|i| [(i % 251) as u8; 20]).collect(),
        files: vec![FileEntry {
            path: vec![],
            length: u64::from(pieces) * u64::from(PIECE_BYTES) - 5000,
        }],
        multi_file: false,
        private: false,
    };
    build_torrent(&info, &TorrentBuilder::default()).unwrap().1
}

fn seed(pieces: u32) -> Arc<SeedTorrent> {
    Arc::new(SeedTorrent::complete(&metainfo(pieces)))
}

/// A torrent of which we have only the pieces in `have`.
fn partial(pieces: u32, have: &[u32]) -> Arc<SeedTorrent> {
    let m = metainfo(pieces);
    let layout = m.info.layout();
    let mut bits = Bitfield::empty(layout.piece_count());
    for &p in have {
        bits.set(layout.piece(p).unwrap());
    }
    Arc::new(SeedTorrent::new(
        m.info_hash,
        layout,
        m.info_bytes.clone(),
        bits,
    ))
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
    Bitfield(Vec<u8>),
    HaveAll,
    HaveNone,
    Piece {
        piece: u32,
        offset: u32,
        data: Vec<u8>,
    },
    Reject(RawBlock),
    ExtHandshake(ExtensionHandshake),
    MetadataData {
        piece: u32,
        total_size: u32,
        data: Vec<u8>,
    },
    MetadataReject(u32),
    Other(Vec<u8>),
}

fn to_got(msg: Message<'_>, frame: &[u8]) -> Got {
    match msg {
        Message::KeepAlive => Got::KeepAlive,
        Message::Choke => Got::Choke,
        Message::Unchoke => Got::Unchoke,
        Message::Bitfield(b) => Got::Bitfield(b.to_vec()),
        Message::HaveAll => Got::HaveAll,
        Message::HaveNone => Got::HaveNone,
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
            id: REMOTE_UT_METADATA,
            payload,
        } => match MetadataMessage::decode(payload).unwrap().unwrap() {
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
            other => panic!("session sent {other:?}"),
        },
        _ => Got::Other(frame.to_vec()),
    }
}

/// One session under test and the remote peer's side of the connection, plus the shell's
/// duties: feeding input, attaching, writing control then blocks from a fake disk, timers.
struct Harness {
    session: Session,
    now: Instant,
    torrent: Arc<SeedTorrent>,
    /// Remote → session bytes not yet consumed.
    inbox: Vec<u8>,
    /// Session → remote bytes not yet decoded by the remote.
    outbox: Vec<u8>,
    remote_saw_handshake: bool,
    events: Vec<Event>,
    /// When set, the shell does not pull blocks (as if the socket were full).
    hold_blocks: bool,
}

impl Harness {
    fn new(session: Session, torrent: Arc<SeedTorrent>) -> Harness {
        Harness {
            session,
            now: Instant::from_secs(1000),
            torrent,
            inbox: Vec::new(),
            outbox: Vec::new(),
            remote_saw_handshake: false,
            events: Vec::new(),
            hold_blocks: false,
        }
    }

    /// An inbound session; the remote has sent nothing yet.
    fn inbound_idle(torrent: Arc<SeedTorrent>) -> Harness {
        let now = Instant::from_secs(1000);
        Harness::new(Session::inbound(local(1), now), torrent)
    }

    /// An inbound session after the remote's handshake with `reserved` and the shell's
    /// attach; everything the session sent is still in the outbox.
    fn inbound(torrent: Arc<SeedTorrent>, reserved: Reserved) -> Harness {
        let mut h = Harness::inbound_idle(torrent);
        h.send_handshake(reserved, h.torrent.info_hash()).unwrap();
        assert!(h.session.is_active());
        h
    }

    /// An active session with a fast + extension peer, greeting already read.
    fn active(torrent: Arc<SeedTorrent>, reserved: Reserved) -> Harness {
        let mut h = Harness::inbound(torrent, reserved);
        h.received();
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

    /// The shell's read path: consume input, handle events, re-feed after an attach.
    fn pump(&mut self) -> Result<(), PeerError> {
        loop {
            let used = self.session.handle_input(&self.inbox, self.now)?;
            self.inbox.drain(..used);
            let mut attached = false;
            while let Some(ev) = self.session.poll_event() {
                self.events.push(ev);
                if let Event::AttachRequested { info_hash } = ev {
                    assert_eq!(info_hash, self.torrent.info_hash());
                    self.session.attach(Arc::clone(&self.torrent), self.now)?;
                    attached = true;
                }
            }
            if !attached {
                break;
            }
        }
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

    /// Advances virtual time by `d`, firing the session's timers on the way.
    fn advance(&mut self, d: Duration) -> Result<(), PeerError> {
        let target = self.now + d;
        for _ in 0..1000 {
            match self.session.poll_timeout() {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.session.handle_timeout(self.now)?;
                    self.flush();
                }
                _ => break,
            }
        }
        self.now = target;
        Ok(())
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

    /// The remote's extension handshake announcing `ut_metadata` under our test id.
    fn send_extension_handshake(&mut self) -> Result<(), PeerError> {
        let h = ExtensionHandshake {
            m: [("ut_metadata".to_owned(), REMOTE_UT_METADATA)].into(),
            v: Some("remote 1.0".into()),
            ..ExtensionHandshake::default()
        };
        let mut payload = Vec::new();
        h.encode(&mut payload);
        self.send(Message::Extended {
            id: 0,
            payload: &payload,
        })
    }

    fn request(piece: u32, offset: u32, len: u32) -> Message<'static> {
        Message::Request(RawBlock { piece, offset, len })
    }
}

/// Two sessions connected back to back: `a` dialled `b`. Each side's shell attaches any
/// torrent from `torrents` that the peer asks for.
struct Pair {
    a: Session,
    b: Session,
    a_to_b: Vec<u8>,
    b_to_a: Vec<u8>,
    now: Instant,
    torrents: Vec<Arc<SeedTorrent>>,
}

impl Pair {
    fn connect(torrent: Arc<SeedTorrent>) -> Pair {
        let now = Instant::from_secs(50);
        Pair {
            a: Session::outbound(Arc::clone(&torrent), local(0xa), now),
            b: Session::inbound(local(0xb), now),
            a_to_b: Vec::new(),
            b_to_a: Vec::new(),
            now,
            torrents: vec![torrent],
        }
    }

    /// Moves bytes both ways until neither side has anything more to say.
    fn drive(&mut self) -> Result<(), PeerError> {
        for _ in 0..100 {
            self.a.write_control(&mut self.a_to_b);
            self.b.write_control(&mut self.b_to_a);
            if self.a_to_b.is_empty() && self.b_to_a.is_empty() {
                return Ok(());
            }
            Pair::deliver(&mut self.b, &mut self.a_to_b, &self.torrents, self.now)?;
            Pair::deliver(&mut self.a, &mut self.b_to_a, &self.torrents, self.now)?;
        }
        panic!("pair never went idle");
    }

    fn deliver(
        to: &mut Session,
        bytes: &mut Vec<u8>,
        torrents: &[Arc<SeedTorrent>],
        now: Instant,
    ) -> Result<(), PeerError> {
        loop {
            let used = to.handle_input(bytes, now)?;
            bytes.drain(..used);
            let mut attached = false;
            while let Some(ev) = to.poll_event() {
                if let Event::AttachRequested { info_hash } = ev {
                    let t = torrents.iter().find(|t| t.info_hash() == info_hash);
                    to.attach(Arc::clone(t.expect("known torrent")), now)?;
                    attached = true;
                }
            }
            if !attached {
                return Ok(());
            }
        }
    }
}
