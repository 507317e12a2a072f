//! SHELL CODE: the canary probe behind `ringseed probe`: one short, fully verified download
//! from a seeder, timed stage by stage, as a user's client would see it.
//!
//! A probe connects, handshakes, waits for the seeder's piece list and unchoke, requests every
//! block of one piece and checks the piece's SHA-1. It reports how long each stage took and,
//! for the appliance's "request → first byte" SLO from the outside, the time from sending the
//! first request to receiving the first whole block (16 KiB: a conservative reading of
//! "first byte", as it includes the block's transfer). The protocol side is the load
//! generator's sans-IO [`Leecher`]; this module owns the blocking socket and the clock.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::leecher::{BenchTorrent, LeechError, Leecher};

/// Bytes read per `read` call (a 16 KiB block and its header fit several times).
const READ_BYTES: usize = 64 * 1024;

/// Where a probe failed (the label of its failure counter).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeStage {
    /// TCP connect (refused, unreachable, timed out).
    Connect,
    /// Waiting for the seeder's handshake.
    Handshake,
    /// Waiting for the seeder's piece list and unchoke.
    Unchoke,
    /// Waiting for the first block after the first request.
    FirstBlock,
    /// Receiving the rest of the piece.
    Piece,
}

impl ProbeStage {
    /// The stage's name as in reports and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            ProbeStage::Connect => "connect",
            ProbeStage::Handshake => "handshake",
            ProbeStage::Unchoke => "unchoke",
            ProbeStage::FirstBlock => "first_block",
            ProbeStage::Piece => "piece",
        }
    }
}

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The deadline passed during a stage.
    #[error("timed out waiting for {}", .0.name())]
    Timeout(ProbeStage),
    /// The socket failed or the seeder closed the connection.
    #[error("{stage}: {cause}", stage = .0.name(), cause = .1)]
    Io(ProbeStage, io::Error),
    /// The seeder's bytes broke the protocol (or it is not a full seeder).
    #[error("{stage}: {cause}", stage = .0.name(), cause = .1)]
    Protocol(ProbeStage, LeechError),
    /// The piece arrived but its SHA-1 does not match the torrent's.
    #[error("piece {0} failed its SHA-1 check")]
    Hash(u32),
}

impl ProbeError {
    /// A short label for the failure: `connect`, `timeout`, `closed`, `protocol` or `hash`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeError::Io(ProbeStage::Connect, _) => "connect",
            ProbeError::Timeout(_) => "timeout",
            ProbeError::Io(..) => "closed",
            ProbeError::Protocol(..) => "protocol",
            ProbeError::Hash(_) => "hash",
        }
    }
}

/// Stage times of a successful probe, each from the previous milestone.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProbeTimes {
    /// The piece fetched.
    pub piece: u32,
    /// Its length in bytes.
    pub bytes: u64,
    /// TCP connect.
    pub connect: Duration,
    /// Connect → the seeder's handshake.
    pub handshake: Duration,
    /// Handshake → unchoke (piece list, our `interested`, its unchoke).
    pub unchoke: Duration,
    /// First request sent → first whole block received.
    pub first_block: Duration,
    /// First request sent → the whole piece received and verified.
    pub piece_time: Duration,
}

/// One probe of `piece` from `target`, giving up after `timeout` in total.
pub fn probe_once(
    torrent: &Arc<BenchTorrent>,
    target: SocketAddr,
    piece: u32,
    pipeline: usize,
    timeout: Duration,
) -> Result<ProbeTimes, ProbeError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut stream = TcpStream::connect_timeout(&target, timeout).map_err(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            ProbeError::Timeout(ProbeStage::Connect)
        } else {
            ProbeError::Io(ProbeStage::Connect, e)
        }
    })?;
    let connected = Instant::now();
    // Requests go out at once; a probe measures the seeder, not Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let mut leecher = Leecher::new(torrent.clone(), piece, pipeline).fetching(1);
    let mut out = Vec::new();
    let mut input = Vec::with_capacity(READ_BYTES);
    let mut buf = vec![0u8; READ_BYTES];
    let (mut handshaken, mut unchoked, mut requested, mut first_block) = (None, None, None, None);
    loop {
        let stage = match (handshaken, unchoked, first_block) {
            (None, _, _) => ProbeStage::Handshake,
            (_, None, _) => ProbeStage::Unchoke,
            (_, _, None) => ProbeStage::FirstBlock,
            _ => ProbeStage::Piece,
        };
        leecher.take_output(&mut out);
        if !out.is_empty() {
            stream
                .write_all(&out)
                .map_err(|e| ProbeError::Io(stage, e))?;
            out.clear();
            if requested.is_none() && leecher.requested() {
                requested = Some(Instant::now());
            }
        }
        if leecher.done() {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(ProbeError::Timeout(stage));
        }
        stream
            .set_read_timeout(Some(deadline - now))
            .map_err(|e| ProbeError::Io(stage, e))?;
        let n = match stream.read(&mut buf) {
            Ok(0) => {
                let closed = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
                return Err(ProbeError::Io(stage, closed));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ProbeError::Timeout(stage));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ProbeError::Io(stage, e)),
        };
        input.extend_from_slice(&buf[..n]);
        let used = leecher
            .handle_input(&input)
            .map_err(|e| ProbeError::Protocol(stage, e))?;
        // Unconsumed input is at most one partial frame: the decoder refuses a length prefix
        // past its message limit, so this buffer stays bounded.
        input.drain(..used);
        let now = Instant::now();
        if handshaken.is_none() && leecher.handshaken() {
            handshaken = Some(now);
        }
        if unchoked.is_none() && leecher.unchoked() {
            unchoked = Some(now);
        }
        if first_block.is_none() && leecher.bytes > 0 {
            first_block = Some(now);
        }
    }
    if leecher.pieces_bad > 0 {
        return Err(ProbeError::Hash(piece));
    }
    let done = Instant::now();
    let handshaken = handshaken.unwrap_or(done);
    let unchoked = unchoked.unwrap_or(done);
    let requested = requested.unwrap_or(unchoked);
    let index = torrent
        .layout
        .piece(piece)
        .expect("probed pieces are in range");
    Ok(ProbeTimes {
        piece,
        bytes: u64::from(torrent.layout.piece_len(index)),
        connect: connected - start,
        handshake: handshaken - connected,
        unchoke: unchoked.saturating_duration_since(handshaken),
        first_block: first_block
            .unwrap_or(done)
            .saturating_duration_since(requested),
        piece_time: done.saturating_duration_since(requested),
    })
}
