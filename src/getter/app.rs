//! The downloading peer's shard application: one torrent, all its connections on one shard.
//!
//! Wires the sans-IO policy together: the session's events feed the picker (availability,
//! dropped requests) and the write path (received blocks → `ctx.write_block` → hash worker
//! → durable → `have` to everyone); the tit-for-tat choker and the swarm policy run on the
//! shard's tick; bans come from the smart-ban bookkeeping when pieces pass or fail.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::conn::{GetConn, Shared};
use super::stats::GetStats;
use super::GetCommand;
use crate::metainfo::{BlockRef, PieceIndex};
use crate::peer::{DropReason, Event, PieceSet, Session};
use crate::runtime::{
    CloseReason, ConnKey, DiskError, FileSpan, FileSpans, IoTag, ShardApp, ShardCtx,
};
use crate::time::Instant;
use crate::torrent::rate_limit::TokenBucket;
use crate::torrent::{
    pipeline_depth, Arrival, Bans, BansLimits, Choker, ChokerConfig, ConnUsefulness, Decision,
    Disconnect, LeechChokerConfig, LeechPeer, PeerSource, Picker, Swarm, Verdict,
};
use crate::wire::{PexFlags, PexMessage, PexPeer, PEX_ADDED_MAX};

/// How often the shard runs chokers, dials peers and checks seeding limits.
pub const GET_TICK: Duration = Duration::from_millis(200);
/// Round-trip time assumed when sizing request pipelines (we do not measure RTT yet).
pub const RTT_ASSUMED: Duration = Duration::from_millis(100);
/// BEP 11: at most one PEX message per peer per minute.
pub const PEX_INTERVAL: Duration = Duration::from_secs(60);

/// How long to keep seeding once complete.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeedPolicy {
    /// Stop once uploaded / size reaches this.
    pub ratio: Option<f64>,
    /// Stop after seeding this long.
    pub time: Option<Duration>,
    /// Never stop.
    pub forever: bool,
}

impl SeedPolicy {
    fn done(&self, uploaded: u64, size: u64, seeding_for: Duration) -> bool {
        if self.forever {
            return false;
        }
        let ratio_met = self
            .ratio
            .is_some_and(|r| uploaded as f64 >= r * size as f64);
        let time_met = self.time.is_some_and(|t| seeding_for >= t);
        match (self.ratio, self.time) {
            (None, None) => true,
            _ => ratio_met || time_met,
        }
    }
}

#[derive(Debug)]
struct PeerMeta {
    addr: SocketAddr,
    /// The picker has been told this peer's first declaration.
    declared: bool,
    waiting_since: Instant,
    /// Outbound and not yet confirmed to the swarm as connected.
    connecting: bool,
    last_pex: Option<Instant>,
    /// Pieces the peer claims but passed over our requests for: not asked of it again.
    skipped: std::collections::HashSet<PieceIndex>,
}

/// Pieces a peer may pass over (claim but not send) before we close the connection: it
/// wastes a slot while honest peers wait.
pub const PEER_SKIPPED_PIECES_MAX: usize = 64;

/// A peer's pieces minus those it passed over.
struct Claimed<'a> {
    session: &'a Session,
    skipped: &'a std::collections::HashSet<PieceIndex>,
}

impl crate::torrent::PieceView for Claimed<'_> {
    fn has(&self, piece: PieceIndex) -> bool {
        self.session.peer_has(piece) && !self.skipped.contains(&piece)
    }

    fn is_seed(&self) -> bool {
        false
    }
}

/// The app of the one shard a `get` runs on.
pub struct GetApp {
    shared: Option<Rc<Shared>>,
    seed: Option<super::SharedSetup>,
    picker: Picker<ConnKey>,
    bans: Bans<ConnKey>,
    choker: Choker<ConnKey>,
    swarm: Swarm,
    peers: HashMap<ConnKey, PeerMeta>,
    writes_pending: HashMap<PieceIndex, u32>,
    complete_unwritten: HashSet<PieceIndex>,
    write_failed: HashSet<PieceIndex>,
    hasher: super::hasher::Hasher,
    stats: Arc<GetStats>,
    policy: SeedPolicy,
    completed_at: Option<Instant>,
    initial_peers: Vec<SocketAddr>,
    scratch_blocks: Vec<BlockRef>,
    scratch_keys: Vec<ConnKey>,
    scratch_decisions: Vec<(ConnKey, Decision)>,
    requests_in_flight: usize,
    /// Caps requested bytes per second: requests are what a downloader controls, and the
    /// blocks follow them within a round trip.
    limiter: Option<TokenBucket>,
    /// Caps uploaded bytes per second (`--max-upload-rate`).
    upload_limit: Option<u64>,
    pex_enabled: bool,
}

impl GetApp {
    /// Caps the upload rate (bytes per second over all connections).
    pub fn set_upload_limit(&mut self, bytes_per_s: Option<u64>) {
        self.upload_limit = bytes_per_s;
    }

    /// Turns sending PEX messages on or off (received ones are still used).
    pub fn set_pex(&mut self, enabled: bool) {
        self.pex_enabled = enabled;
    }

    /// Caps the download rate (requested bytes per second).
    pub fn set_rate_limit(&mut self, bytes_per_s: Option<u64>) {
        // At most a quarter second of burst.
        let block = u64::from(crate::metainfo::BLOCK_BYTES);
        self.limiter = bytes_per_s.map(|b| TokenBucket::new(b, b / 4 + block));
    }

    /// The app; `setup` carries what `start` registers with the shard.
    pub fn new(
        setup: super::SharedSetup,
        picker: Picker<ConnKey>,
        hasher: super::hasher::Hasher,
        swarm: Swarm,
        stats: Arc<GetStats>,
        policy: SeedPolicy,
        initial_peers: Vec<SocketAddr>,
    ) -> GetApp {
        let seed: u64 = rand::random();
        GetApp {
            shared: None,
            seed: Some(setup),
            picker,
            bans: Bans::new(BansLimits::default()),
            choker: Choker::leeching(LeechChokerConfig::default(), seed),
            swarm,
            peers: HashMap::new(),
            writes_pending: HashMap::new(),
            complete_unwritten: HashSet::new(),
            write_failed: HashSet::new(),
            hasher,
            stats,
            policy,
            completed_at: None,
            initial_peers,
            scratch_blocks: Vec::new(),
            scratch_keys: Vec::new(),
            scratch_decisions: Vec::new(),
            requests_in_flight: 0,
            limiter: None,
            upload_limit: None,
            pex_enabled: true,
        }
    }

    fn shared(&self) -> &Rc<Shared> {
        self.shared.as_ref().expect("started")
    }

    fn meta(&mut self, key: ConnKey, addr: SocketAddr, now: Instant) -> &mut PeerMeta {
        self.peers.entry(key).or_insert(PeerMeta {
            addr,
            declared: false,
            waiting_since: now,
            connecting: false,
            last_pex: None,
            skipped: std::collections::HashSet::new(),
        })
    }

    /// Tells the picker about one availability event; false if the peer must be closed.
    fn availability(
        &mut self,
        key: ConnKey,
        event: &Event,
        now: Instant,
        addr: SocketAddr,
    ) -> bool {
        let declared = self.meta(key, addr, now).declared;
        let ok = match event {
            Event::PeerHave { piece } => {
                let _ = self.picker.peer_have(key, *piece);
                true
            }
            Event::PeerPieces { added } if !declared => match added {
                PieceSet::All => self.picker.peer_have_all(key).is_ok(),
                PieceSet::Partial(bits) => self.picker.peer_bitfield(key, bits).is_ok(),
                PieceSet::Empty => {
                    self.picker.peer_have_none(key);
                    true
                }
            },
            Event::PeerPieces { added } => {
                // Later declarations arrive as deltas; count them piece by piece.
                if let PieceSet::Partial(bits) = added {
                    for p in bits.iter() {
                        if let Some(piece) = self.picker_layout_piece(p) {
                            let _ = self.picker.peer_have(key, piece);
                        }
                    }
                }
                true
            }
            _ => return true,
        };
        if let Some(m) = self.peers.get_mut(&key) {
            m.declared = true;
        }
        ok
    }

    fn picker_layout_piece(&self, p: u32) -> Option<PieceIndex> {
        self.shared().torrent.borrow().layout()?.piece(p)
    }

    /// Handles one connection's pending blocks and events, then tops up its requests.
    fn service(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let Some(conn) = ctx.get_mut(key) else { return };
        let addr = conn.addr;
        let events = std::mem::take(&mut conn.events);
        let blocks = std::mem::take(&mut conn.blocks);
        let lost = std::mem::take(&mut conn.lost);
        conn.metadata.clear();
        let fast = conn.session.peer_supports_fast();
        self.meta(key, addr, now);
        let mut close = None;
        for event in &events {
            match event {
                Event::PeerHave { .. } | Event::PeerPieces { .. }
                    if !self.availability(key, event, now, addr) =>
                {
                    close = Some("late piece declaration");
                }
                Event::RequestDropped { block, reason } => {
                    self.picker.block_dropped(key, *block);
                    if *reason != DropReason::TimedOut {
                        // A timed-out request keeps its slot (and buffer) until cancelled.
                        self.requests_in_flight = self.requests_in_flight.saturating_sub(1);
                    }
                    if *reason == DropReason::Skipped {
                        let skipped = &mut self.meta(key, addr, now).skipped;
                        skipped.insert(block.piece);
                        if skipped.len() > PEER_SKIPPED_PIECES_MAX {
                            close = Some("claims pieces it does not send");
                        }
                    }
                    if *reason == DropReason::TimedOut {
                        if let Some(c) = ctx.get_mut(key) {
                            // Free the session's slot: the block goes to another peer.
                            c.session.cancel(*block, now);
                        }
                    }
                }
                Event::PeerChoked if !fast => self.picker.peer_choked(key),
                Event::PeerUnchoked => {
                    if let Some(m) = self.peers.get_mut(&key) {
                        m.waiting_since = now;
                    }
                }
                Event::Pex(msg) => {
                    let addrs = msg.added.iter().map(|p| p.addr);
                    self.swarm.add_peers(addrs, PeerSource::Pex, now);
                }
                _ => {}
            }
        }
        // Answered and lost requests no longer need a write buffer in reserve (`publish`
        // recounts exactly every tick; this keeps the budget honest in between).
        let answered = blocks.len() + lost.len();
        self.requests_in_flight = self.requests_in_flight.saturating_sub(answered);
        for block in lost {
            self.picker.block_dropped(key, block);
        }
        for (block, buf) in blocks {
            self.on_block(key, addr, block, buf, ctx, now);
        }
        if let Some(reason) = close {
            ctx.close(key, reason);
            return;
        }
        self.update_interest(key, ctx, now);
        self.fill(key, ctx, now);
    }

    fn on_block(
        &mut self,
        key: ConnKey,
        addr: SocketAddr,
        block: BlockRef,
        buf: crate::runtime::PoolBuf,
        ctx: &mut ShardCtx<'_, GetConn>,
        now: Instant,
    ) {
        if let Some(m) = self.peers.get_mut(&key) {
            // It sent data of this piece after all: it was slow or reordering, not lying.
            m.skipped.remove(&block.piece);
        }
        let mut cancel = std::mem::take(&mut self.scratch_keys);
        cancel.clear();
        let arrival = self.picker.block_received(key, block, &mut cancel);
        for other in cancel.drain(..) {
            if let Some(c) = ctx.get_mut(other) {
                c.session.cancel(block, now);
            }
        }
        self.scratch_keys = cancel;
        let Arrival::New { piece_complete } = arrival else {
            return;
        };
        let data = &buf.as_slice()[..block.len as usize];
        self.bans.block_received(block, key, addr.ip(), data);
        self.stats
            .downloaded
            .fetch_add(u64::from(block.len), Ordering::Relaxed);
        let Some(spans) = self.spans(block) else {
            self.write_failed.insert(block.piece);
            return;
        };
        match ctx.write_block(spans, buf, IoTag(u64::from(block.piece.get()))) {
            Ok(()) => *self.writes_pending.entry(block.piece).or_default() += 1,
            Err(e) => {
                tracing::error!("cannot write piece {}: {e}", block.piece.get());
                self.write_failed.insert(block.piece);
            }
        }
        if piece_complete {
            self.complete_unwritten.insert(block.piece);
            self.maybe_hash(block.piece);
        }
    }

    fn spans(&self, block: BlockRef) -> Option<FileSpans> {
        let shared = self.shared();
        let torrent = shared.torrent.borrow();
        let layout = torrent.layout()?;
        let files = shared.files.borrow();
        let mut spans = FileSpans::new();
        for s in layout.spans(block.piece, block.offset, block.len) {
            let span = FileSpan {
                file: files.get(s.file).copied().flatten()?,
                offset: s.offset,
                len: s.len as u32,
            };
            spans.push(span).ok()?;
        }
        Some(spans)
    }

    /// Hashes a complete piece once all its writes are done (or fails it on a write error).
    fn maybe_hash(&mut self, piece: PieceIndex) {
        if !self.complete_unwritten.contains(&piece)
            || self.writes_pending.get(&piece).copied().unwrap_or(0) > 0
        {
            return;
        }
        self.complete_unwritten.remove(&piece);
        self.writes_pending.remove(&piece);
        if self.write_failed.remove(&piece) {
            let mut contributors = Vec::new();
            self.picker.piece_failed(piece, &mut contributors);
            let _ = self.bans.piece_failed(piece, self.piece_len(piece));
            return;
        }
        self.hasher.submit(piece);
    }

    fn piece_len(&self, piece: PieceIndex) -> u32 {
        self.shared()
            .torrent
            .borrow()
            .layout()
            .map_or(0, |l| l.piece_len(piece))
    }

    fn update_interest(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let complete = self.picker.is_complete();
        let Some(conn) = ctx.get_mut(key) else { return };
        if !conn.session.is_active() {
            return;
        }
        let want = !complete && self.picker.is_interesting(&conn.session);
        if want != conn.session.am_interested() {
            conn.session.set_interested(want, now);
            if want {
                if let Some(m) = self.peers.get_mut(&key) {
                    m.waiting_since = now;
                }
            }
        }
    }

    /// Requests as many blocks as the peer's pipeline and our free write buffers allow.
    fn fill(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let free = self.shared().pool.free_count();
        let Some(conn) = ctx.get_mut(key) else { return };
        let s = &conn.session;
        if !s.is_active() || !s.am_interested() || s.peer_choking() || self.picker.is_complete() {
            return;
        }
        let depth = pipeline_depth(s.download_rate_fast(now), RTT_ASSUMED, s.peer_reqq());
        let mut budget = free.saturating_sub(self.requests_in_flight);
        if let Some(l) = &mut self.limiter {
            let block = f64::from(crate::metainfo::BLOCK_BYTES);
            budget = budget.min((l.tokens(now) / block).max(0.0) as usize);
        }
        let want = depth
            .min(s.request_limit())
            .saturating_sub(s.requests_outstanding())
            .min(s.request_slots())
            .min(budget);
        if want == 0 {
            return;
        }
        let mut blocks = std::mem::take(&mut self.scratch_blocks);
        blocks.clear();
        match self.peers.get(&key).filter(|m| !m.skipped.is_empty()) {
            Some(m) => {
                let claimed = Claimed {
                    session: &conn.session,
                    skipped: &m.skipped,
                };
                self.picker.pick(key, &claimed, want, &mut blocks);
            }
            None => {
                self.picker.pick(key, &conn.session, want, &mut blocks);
            }
        }
        for &b in &blocks {
            if conn.session.request(b, now).is_err() {
                self.picker.block_dropped(key, b);
            } else {
                self.requests_in_flight += 1;
                if let Some(l) = &mut self.limiter {
                    l.spend(u64::from(b.len));
                }
            }
        }
        self.scratch_blocks = blocks;
    }

    fn on_hashed(
        &mut self,
        piece: PieceIndex,
        good: bool,
        ctx: &mut ShardCtx<'_, GetConn>,
        now: Instant,
    ) {
        let verdict = if good {
            tracing::debug!(piece = piece.get(), "piece verified");
            self.picker.piece_verified(piece);
            let count = self.picker.have().len();
            self.shared().have.borrow_mut().insert(piece, count);
            let keys: Vec<ConnKey> = ctx.keys().collect();
            for k in keys {
                if let Some(c) = ctx.get_mut(k) {
                    if c.session.is_active() {
                        c.session.have(piece, now);
                    }
                }
            }
            self.stats
                .piece_verified(self.picker.have(), self.picker.bytes_left());
            self.bans.piece_passed(piece)
        } else {
            tracing::warn!(
                piece = piece.get(),
                "piece failed its hash check; downloading it again"
            );
            self.stats.hash_failures.fetch_add(1, Ordering::Relaxed);
            let mut contributors = Vec::new();
            self.picker.piece_failed(piece, &mut contributors);
            self.bans.piece_failed(piece, self.piece_len(piece))
        };
        self.apply(verdict, ctx);
        if self.picker.is_complete() && self.completed_at.is_none() {
            self.on_complete(ctx, now);
        }
    }

    fn apply(&mut self, verdict: Verdict<ConnKey>, ctx: &mut ShardCtx<'_, GetConn>) {
        for f in &verdict.faulty {
            tracing::warn!(ip = %f.ip, piece = f.piece.get(), "peer sent bad data");
        }
        for ban in verdict.bans {
            tracing::warn!(ip = %ban.ip, "banning peer: {}", ban.reason);
            self.stats.bans.fetch_add(1, Ordering::Relaxed);
            let _ = self.swarm.ban(ban.ip);
            let keys: Vec<ConnKey> = ctx
                .keys()
                .filter(|k| ctx.get(*k).is_some_and(|c| c.addr.ip() == ban.ip))
                .collect();
            for k in keys {
                ctx.close(k, "banned: sent corrupt data");
            }
        }
    }

    fn on_complete(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        tracing::info!("download complete: every piece verified");
        self.completed_at = Some(now);
        self.stats.complete.store(true, Ordering::Relaxed);
        self.choker.switch_to_seeding(ChokerConfig::default());
        let keys: Vec<ConnKey> = ctx.keys().collect();
        for k in keys {
            if let Some(c) = ctx.get_mut(k) {
                c.session.set_interested(false, now);
                if c.session.peer_is_seed() {
                    ctx.close(k, "both sides complete");
                }
            }
        }
    }

    fn choke(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let mut peers = Vec::new();
        for key in ctx.keys() {
            let Some(c) = ctx.get(key) else { continue };
            let s: &Session = &c.session;
            if !s.is_active() {
                continue;
            }
            let meta = self.peers.get(&key);
            peers.push(LeechPeer {
                key,
                interested: s.peer_interested(),
                choked: s.am_choking(),
                am_interested: s.am_interested(),
                peer_choking_us: s.peer_choking(),
                download_rate: s.download_rate(now),
                upload_rate: s.upload_rate(now),
                last_block_received: s.last_block_received(),
                waiting_since: meta.map_or(now, |m| m.waiting_since),
                connected_at: s.connected_at(),
            });
        }
        let mut decisions = std::mem::take(&mut self.scratch_decisions);
        decisions.clear();
        self.choker.tick(now, &peers, &mut decisions);
        for &(k, d) in &decisions {
            if let Some(c) = ctx.get_mut(k) {
                c.session.set_choked(d == Decision::Choke, now);
            }
        }
        self.scratch_decisions = decisions;
    }

    fn dial(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        for addr in self.swarm.take_superseded() {
            if let Some(k) = self.key_of(addr) {
                ctx.close(k, "superseded by the peer's own connection to us");
            }
        }
        for addr in self.swarm.expired_connects(now) {
            if let Some(k) = self.key_of(addr) {
                ctx.close(k, "connect timed out");
            }
        }
        if self.picker.is_complete() {
            // Seeding: dial past conns_min while upload slots have no interested peer.
            let interested = ctx
                .keys()
                .filter_map(|k| ctx.get(k))
                .filter(|c| c.session.is_active() && c.session.peer_interested())
                .count();
            self.swarm
                .want_slots_filled(interested, ChokerConfig::default().upload_slots);
        }
        while let Some(addr) = self.swarm.poll_connect(now) {
            let conn = GetConn::outbound(self.shared().clone(), addr, now);
            match ctx.connect(addr, self.swarm.source_ip_for(addr), conn) {
                Ok(key) => {
                    self.swarm.on_connecting(addr, now);
                    self.meta(key, addr, now).connecting = true;
                }
                Err(_) => break,
            }
        }
        let confirmed: Vec<(ConnKey, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(k, m)| {
                m.connecting && ctx.get(**k).is_some_and(|c| c.session.peer_id().is_some())
            })
            .map(|(k, m)| (*k, m.addr))
            .collect();
        for (k, addr) in confirmed {
            self.swarm.on_connected(addr, now);
            if let Some(m) = self.peers.get_mut(&k) {
                m.connecting = false;
            }
        }
        let usefulness: Vec<ConnUsefulness> = ctx
            .keys()
            .filter_map(|k| ctx.get(k))
            .filter(|c| c.session.is_active())
            .map(|c| ConnUsefulness {
                addr: c.addr,
                useful_to_us: self.picker.is_interesting(&c.session),
                useful_to_them: c.session.peer_interested(),
            })
            .collect();
        if let Some(addr) = self.swarm.choose_drop(&usefulness, now) {
            if let Some(k) = self.key_of(addr) {
                ctx.close(k, "useless to both sides; making room");
            }
        }
    }

    fn key_of(&self, addr: SocketAddr) -> Option<ConnKey> {
        self.peers
            .iter()
            .find(|(_, m)| m.addr == addr)
            .map(|(k, _)| *k)
    }

    /// Sends each PEX-capable peer the addresses of our other peers (BEP 11, once a minute).
    fn pex(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        if !self.pex_enabled || self.shared().torrent.borrow().is_private() {
            return;
        }
        let listen: Vec<SocketAddr> = ctx
            .keys()
            .filter_map(|k| {
                let c = ctx.get(k)?;
                let m = self.peers.get(&k)?;
                // Outbound addresses are listen addresses; inbound ones need the port the
                // peer announced in its extension handshake.
                match c.session.direction() {
                    crate::peer::Direction::Outbound => Some(m.addr),
                    crate::peer::Direction::Inbound => c
                        .session
                        .peer_listen_port()
                        .map(|p| SocketAddr::new(m.addr.ip(), p)),
                }
            })
            .collect();
        let keys: Vec<ConnKey> = ctx.keys().collect();
        for k in keys {
            let due = self
                .peers
                .get(&k)
                .is_some_and(|m| m.last_pex.is_none_or(|t| now - t >= PEX_INTERVAL));
            let Some(c) = ctx.get_mut(k) else { continue };
            if !due || !c.session.is_active() || !c.session.peer_supports_pex() {
                continue;
            }
            let own = c.addr;
            let added = listen
                .iter()
                .filter(|a| a.ip() != own.ip() || **a != own)
                .take(PEX_ADDED_MAX)
                .map(|&addr| PexPeer {
                    addr,
                    flags: PexFlags(0),
                })
                .collect();
            let msg = PexMessage {
                added,
                dropped: Vec::new(),
            };
            if c.session.send_pex(&msg, now).is_ok() {
                if let Some(m) = self.peers.get_mut(&k) {
                    m.last_pex = Some(now);
                }
            }
        }
    }

    fn publish(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let mut down = 0;
        let mut up = 0;
        let mut uploaded = 0;
        let mut in_flight = 0;
        let mut active = 0;
        for k in ctx.keys() {
            if let Some(c) = ctx.get(k) {
                down += c.session.download_rate(now);
                up += c.session.upload_rate(now);
                uploaded += c.sent_bytes;
                in_flight += c.session.requests_outstanding();
                active += usize::from(c.session.is_active());
            }
        }
        self.requests_in_flight = in_flight;
        let s = &self.stats;
        s.download_rate.store(down, Ordering::Relaxed);
        s.upload_rate.store(up, Ordering::Relaxed);
        s.uploaded_live.store(uploaded, Ordering::Relaxed);
        s.peers.store(active, Ordering::Relaxed);
        s.candidates
            .store(self.swarm.candidate_count(), Ordering::Relaxed);
        s.wants_peers
            .store(self.swarm.wants_peers(), Ordering::Relaxed);
    }
}

impl ShardApp for GetApp {
    type Conn = GetConn;
    type Command = GetCommand;

    fn start(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        let setup = self.seed.take().expect("started once");
        let files = setup
            .files
            .into_iter()
            .map(|f| f.map(|f| ctx.add_file(f)))
            .collect();
        let shared = Rc::new(Shared {
            torrent: std::cell::RefCell::new(setup.torrent),
            have: std::cell::RefCell::new(setup.have),
            files: std::cell::RefCell::new(files),
            pool: ctx.write_pool(),
            local: setup.local,
            upload_bucket: self.upload_limit.map(|b| {
                // A quarter second of burst, as for downloads.
                let block = u64::from(crate::metainfo::BLOCK_BYTES);
                Rc::new(std::cell::RefCell::new(TokenBucket::new(b, b / 4 + block)))
            }),
        });
        self.shared = Some(shared);
        let peers = std::mem::take(&mut self.initial_peers);
        self.swarm.add_peers(peers, PeerSource::Hint, now);
        if self.picker.is_complete() {
            self.on_complete(ctx, now);
        }
        self.dial(ctx, now);
    }

    fn accept(&mut self, peer: SocketAddr, now: Instant) -> Option<GetConn> {
        if !self.swarm.accept_incoming(peer, now) {
            return None;
        }
        Some(GetConn::inbound(self.shared().clone(), peer, now))
    }

    fn conn_ready(&mut self, key: ConnKey, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        self.service(key, ctx, now);
    }

    fn tick(&mut self, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        self.publish(ctx, now);
        self.choke(ctx, now);
        self.dial(ctx, now);
        self.pex(ctx, now);
        let keys: Vec<ConnKey> = ctx.keys().collect();
        for k in keys {
            self.update_interest(k, ctx, now);
            self.fill(k, ctx, now);
        }
        if let Some(at) = self.completed_at {
            let total = self
                .shared()
                .torrent
                .borrow()
                .layout()
                .map_or(0, |l| l.total_length());
            let uploaded = self.stats.uploaded();
            if self.policy.done(uploaded, total, now - at) {
                self.stats.finished.store(true, Ordering::Relaxed);
            }
        }
    }

    fn tick_interval(&self) -> Duration {
        GET_TICK
    }

    fn command(&mut self, cmd: GetCommand, ctx: &mut ShardCtx<'_, GetConn>, now: Instant) {
        match cmd {
            GetCommand::Hashed { piece, good } => self.on_hashed(piece, good, ctx, now),
            GetCommand::AddPeers(addrs) => {
                self.swarm.add_peers(addrs, PeerSource::Tracker, now);
                self.dial(ctx, now);
            }
        }
    }

    fn write_done(
        &mut self,
        tag: IoTag,
        result: Result<(), DiskError>,
        _ctx: &mut ShardCtx<'_, GetConn>,
        _now: Instant,
    ) {
        let Some(piece) = self.picker_layout_piece(tag.0 as u32) else {
            return;
        };
        if let Err(e) = result {
            tracing::error!("write of piece {} failed: {e}", piece.get());
            self.write_failed.insert(piece);
        }
        if let Some(n) = self.writes_pending.get_mut(&piece) {
            *n = n.saturating_sub(1);
        }
        self.maybe_hash(piece);
    }

    fn closed(&mut self, key: ConnKey, mut conn: GetConn, reason: &CloseReason, now: Instant) {
        // Availability the app has not seen yet must be counted before it is subtracted.
        let pending = std::mem::take(&mut conn.events);
        for e in &pending {
            if matches!(e, Event::PeerHave { .. } | Event::PeerPieces { .. }) {
                self.availability(key, e, now, conn.addr);
            }
        }
        self.stats
            .uploaded_closed
            .fetch_add(conn.sent_bytes, Ordering::Relaxed);
        let meta = self.peers.remove(&key);
        if meta.as_ref().is_some_and(|m| m.declared) || !pending.is_empty() {
            self.picker.peer_left(key, &conn.session);
        } else {
            self.picker.peer_left(key, &crate::torrent::NoPieces);
        }
        let connecting = meta.as_ref().is_some_and(|m| m.connecting);
        if connecting || matches!(reason, CloseReason::ConnectFailed(_)) {
            self.swarm.on_connect_failed(conn.addr, now);
        } else {
            let why = if self.picker.is_complete() && conn.session.peer_is_seed() {
                Disconnect::NothingToTrade
            } else {
                Disconnect::Normal
            };
            self.swarm.on_disconnected(conn.addr, why, now);
        }
        match reason {
            CloseReason::Protocol(_) | CloseReason::InputTooLarge { .. } => {
                tracing::info!(peer = %conn.addr, "closed: {reason}")
            }
            _ => tracing::debug!(peer = %conn.addr, "closed: {reason}"),
        }
    }
}
