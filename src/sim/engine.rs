//! The swarm simulator's world: peers, connections, the tracker and the event loop.
//!
//! Every peer runs the real policy of `crate::torrent`: a [`Picker`] per downloader, a
//! [`Choker`] (tit-for-tat, then the seeding rule) and a [`Swarm`] deciding whom to dial and
//! drop. The engine only moves bytes (see `transfer`) and messages between them in virtual
//! time. Simplifications, each chosen so 10,000 peers × 2,000 pieces fit in a minute:
//! - The picker sees each piece as `blocks_per_piece` blocks; a request carries a piece's
//!   worth of blocks as one flow; a choke or departure keeps the blocks fully transferred.
//! - `interested` and choke/unchoke messages take effect at once; a new request stream
//!   starts one round trip later; a `have` reaches all neighbours after two access latencies.
//! - A flow's rate is the smaller of the uploader's fair share (uplink / active uploads) and
//!   the downloader's (downlink / active downloads); spare capacity is not redistributed.

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use slab::Slab;

use super::queue::{Event, Queue};
use super::scenario::Scenario;
use super::setup::{addr_of, count_missing, new_peer, pair_mut, peer_of, secs_to_ns};
use crate::metainfo::{Layout, BLOCK_BYTES};
use crate::peer::RateMeter;
use crate::time::Instant;
use crate::torrent::{Choker, ChokerConfig, Disconnect, PeerSource, Picker, Swarm};
use crate::wire::Bitfield;

/// A peer's number (its index in the world).
pub type PeerId = u32;

/// The choker runs at most this often per peer when nudged by interest changes, as the
/// shells' 200 ms choke tick does.
const NUDGE_SECS: f64 = 0.2;

/// Connection index in the connection slab.
pub(super) type ConnId = u32;

/// Where a peer is in its life.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Waiting,
    Online,
    Gone,
}

/// One simulated peer.
pub(super) struct Peer {
    pub class: u16,
    /// Uplink and downlink, bytes per second.
    pub up: f64,
    pub down: f64,
    /// One-way access latency, seconds.
    pub lat: f64,
    pub free_rider: bool,
    pub status: Status,
    pub joined: f64,
    pub completed: Option<f64>,
    /// The pieces neighbours know this peer has (its `have`s so far).
    pub ann: Bitfield,
    /// `None` once complete (a seed tracks no availability).
    pub picker: Option<Box<Picker<PeerId>>>,
    pub choker: Choker<ConnId>,
    pub swarm: Swarm,
    pub conns: Vec<ConnId>,
    pub out_flows: Vec<u32>,
    pub in_flows: Vec<u32>,
    pub uploaded: f64,
    pub downloaded: f64,
    pub tick_at: u64,
    pub last_tick: f64,
    pub last_announce: f64,
    pub leaving: bool,
    /// Version of the pending `UploaderDone` event.
    pub done_version: u64,
    /// When the pending `UploaderDone` fires (`u64::MAX`: none pending).
    pub done_at: u64,
}

/// One end's view of a connection: what every pass over a peer's connections reads (a
/// `have`'s fan-out, piece completion, the choker's filter).
pub(super) struct Side {
    /// This end chokes the other.
    pub choking: bool,
    /// This end is interested in the other.
    pub interested: bool,
    /// Pieces the other end announced that this end lacks.
    pub lacking: u32,
    /// The flow from the other end to this one.
    pub flow_in: Option<u32>,
}

/// The rest of one end's view, read when a flow settles and by the choker's rule: a cache
/// line of its own, so a settle or a rate reading touches one line.
#[repr(align(64))]
pub(super) struct Meters {
    /// Bytes per second from the other end to this one: this end's download rate and the
    /// other end's upload rate (one flow feeds both, so one meter serves both).
    pub recv: RateMeter,
    pub last_block: Option<Instant>,
    pub waiting_since: Instant,
}

/// A connection between `ends[0]` and `ends[1]`; `sides[i]` and `meters[i]` are `ends[i]`'s
/// view. Aligned to a cache line, so the ends and both sides, which the passes over ~40
/// connections read, share one line: at full size the connections are far larger than the
/// cache and each pass costs a miss per line touched.
#[repr(C, align(64))]
pub(super) struct Conn {
    pub ends: [PeerId; 2],
    pub sides: [Side; 2],
    pub connected_at: Instant,
    pub meters: [Meters; 2],
}

const _: () = assert!(std::mem::size_of::<Conn>() == 3 * 64);
const _: () = assert!(std::mem::offset_of!(Conn, sides) + std::mem::size_of::<[Side; 2]>() <= 64);

impl Conn {
    /// Which end `p` is.
    pub fn end_of(&self, p: PeerId) -> usize {
        usize::from(self.ends[1] == p)
    }
}

/// Per-peer results, for the report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PeerRecord {
    /// Class index.
    pub class: u16,
    /// Join time, seconds.
    pub joined: f64,
    /// Completion time, seconds (None: seed from the start, or never completed).
    pub completed: Option<f64>,
    /// Bytes uploaded.
    pub uploaded: f64,
    /// Useful bytes downloaded.
    pub downloaded: f64,
    /// Started with every piece.
    pub seed: bool,
}

/// One time-series sample.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sample {
    /// Virtual time, seconds.
    pub t: f64,
    /// Peers online.
    pub online: u32,
    /// Online peers still downloading.
    pub leechers: u32,
    /// Peers that completed so far (departed ones included).
    pub completed: u32,
    /// Lowest number of online peers holding any one piece (announced).
    pub min_availability: u32,
    /// Mean number of online peers holding a piece.
    pub mean_availability: f64,
    /// Bytes uploaded per second since the previous sample, all peers.
    pub upload_rate: f64,
    /// Bytes uploaded so far, per class.
    pub uploaded_by_class: Vec<f64>,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Every peer.
    pub peers: Vec<PeerRecord>,
    /// Time series.
    pub samples: Vec<Sample>,
    /// Virtual time at the end, seconds.
    pub end_time: f64,
    /// Events processed (stale ones included).
    pub events: u64,
    /// Events processed, by kind (`tick`, `have`, ...), in a fixed order.
    pub events_by_kind: Vec<(&'static str, u64)>,
    /// Largest event-queue length.
    pub queue_peak: usize,
    /// Bytes downloaded twice (endgame duplicates) or lost to chokes and departures.
    pub wasted_bytes: f64,
    /// Stopped at the time limit with leechers unfinished.
    pub hit_time_limit: bool,
}

/// The simulated swarm.
pub struct World {
    pub(super) sc: Scenario,
    pub(super) layout: Layout,
    pub(super) pieces: u32,
    /// Real bytes one picker block stands for.
    pub(super) block_bytes: f64,
    pub(super) peers: Vec<Peer>,
    pub(super) conns: Slab<Conn>,
    pub(super) flows: Slab<super::transfer::Flow>,
    pub(super) q: Queue,
    pub(super) now_ns: u64,
    pub(super) rng: SmallRng,
    tracker: super::tracker::Tracker,
    pub(super) avail: Vec<u32>,
    pub(super) version: u64,
    pub(super) wasted: f64,
    pub(super) scratch_blocks: Vec<crate::metainfo::BlockRef>,
    pub(super) scratch_cancel: Vec<PeerId>,
    pub(super) scratch_peers: Vec<PeerId>,
    /// A peer's connections for a pass over them (a `have`, a piece completion, the choker
    /// view): connection, the peer's end, the other end.
    pub(super) scratch_fan: Vec<(ConnId, u8, PeerId)>,
    pub(super) scratch_due: Vec<u32>,
    pub(super) scratch_view: Vec<super::choke::View>,
    pub(super) scratch_decisions: Vec<(ConnId, crate::torrent::Decision)>,
    samples: Vec<Sample>,
    completed: u32,
    incomplete_left: u64,
    last_sample_uploaded: f64,
    events: u64,
    by_kind: [u64; Event::KINDS.len()],
}

impl World {
    /// Builds the swarm of `sc` (validated) with every join scheduled.
    pub fn new(sc: &Scenario) -> World {
        let pieces = sc.pieces() as u32;
        let bpp = sc.blocks_per_piece;
        let picker_piece = bpp * BLOCK_BYTES;
        let layout = Layout::new(picker_piece, &[u64::from(pieces) * u64::from(picker_piece)])
            .expect("scenario limits keep the layout valid");
        let mut rng = SmallRng::seed_from_u64(sc.seed);
        let mut peers = Vec::new();
        let mut q = Queue::default();
        for (ci, class) in sc.classes.iter().enumerate() {
            for k in 0..class.count {
                let id = peers.len() as PeerId;
                let join = if class.join_decay > 0.0 {
                    let u: f64 = rng.random::<f64>();
                    class.join_at - class.join_decay * (1.0 - u).ln()
                } else if class.join_spread > 0.0 && class.count > 1 {
                    class.join_at + class.join_spread * k as f64 / (class.count - 1) as f64
                } else {
                    class.join_at
                };
                peers.push(new_peer(sc, ci, id, &layout));
                q.push(secs_to_ns(join), Event::Join(id));
            }
        }
        q.push(0, Event::Sample);
        let n = peers.len();
        let incomplete = sc.classes.iter().filter(|c| !c.seed).map(|c| c.count).sum();
        World {
            sc: sc.clone(),
            layout,
            pieces,
            // Every piece is treated as equal (file / pieces), so totals are exact.
            block_bytes: sc.file_size as f64 / f64::from(pieces) / f64::from(bpp),
            peers,
            conns: Slab::new(),
            flows: Slab::new(),
            q,
            now_ns: 0,
            rng,
            tracker: super::tracker::Tracker::new(n),
            avail: vec![0; pieces as usize],
            version: 0,
            wasted: 0.0,
            scratch_blocks: Vec::new(),
            scratch_cancel: Vec::new(),
            scratch_peers: Vec::new(),
            scratch_fan: Vec::new(),
            scratch_due: Vec::new(),
            scratch_view: Vec::new(),
            scratch_decisions: Vec::new(),
            samples: Vec::new(),
            completed: 0,
            incomplete_left: incomplete,
            last_sample_uploaded: 0.0,
            events: 0,
            by_kind: [0; Event::KINDS.len()],
        }
    }

    /// Virtual now, seconds.
    pub(super) fn now(&self) -> f64 {
        self.now_ns as f64 / 1e9
    }

    /// Virtual now as the policy's instant.
    pub(super) fn instant(&self) -> Instant {
        Instant::from_nanos(self.now_ns)
    }

    /// Schedules `ev` `delay` seconds from now.
    pub(super) fn after(&mut self, delay: f64, ev: Event) {
        self.q.push(self.now_ns + secs_to_ns(delay), ev);
    }

    /// Runs until every downloader completed or left, or the time limit.
    pub fn run(mut self) -> Outcome {
        let limit = secs_to_ns(self.sc.time_limit);
        let mut hit_limit = false;
        while let Some((t, ev)) = self.q.pop() {
            if t > limit {
                hit_limit = true;
                self.now_ns = limit;
                break;
            }
            self.now_ns = t;
            self.events += 1;
            self.by_kind[ev.kind()] += 1;
            self.handle(ev);
            if self.incomplete_left == 0 {
                break;
            }
        }
        self.sample();
        self.finish(hit_limit)
    }

    fn finish(self, hit_limit: bool) -> Outcome {
        let peers = self
            .peers
            .iter()
            .map(|p| PeerRecord {
                class: p.class,
                joined: p.joined,
                completed: p.completed,
                uploaded: p.uploaded,
                downloaded: p.downloaded,
                seed: self.sc.classes[p.class as usize].seed,
            })
            .collect();
        Outcome {
            peers,
            samples: self.samples,
            end_time: self.now_ns as f64 / 1e9,
            events: self.events,
            events_by_kind: Event::KINDS.iter().copied().zip(self.by_kind).collect(),
            queue_peak: self.q.peak_len,
            wasted_bytes: self.wasted,
            hit_time_limit: hit_limit,
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Join(p) => self.join(p),
            Event::Leave(p) => self.leave(p),
            Event::Abort(p) => {
                if self.peers[p as usize].completed.is_none() {
                    self.leave(p);
                }
            }
            Event::Announce(p) => {
                if self.peers[p as usize].status == Status::Online {
                    self.announce(p);
                    let interval = self.sc.announce_interval;
                    self.after(interval, Event::Announce(p));
                }
            }
            Event::Tick(p) => {
                let peer = &self.peers[p as usize];
                if peer.status == Status::Online && peer.tick_at == self.now_ns {
                    self.tick(p);
                }
            }
            Event::ConnectArrive { from, to } => self.connect_arrive(from, to),
            Event::ConnectDone { from, to, ok } => self.connect_done(from, to, ok),
            Event::FlowStart { flow, version } => self.flow_start(flow, version),
            Event::UploaderDone { peer, version } => self.uploader_done(peer, version),
            Event::Have { peer, piece } => self.have(peer, piece),
            Event::Completed(p) => self.completed(p),
            Event::Sample => {
                self.sample();
                let dt = self.sc.sample_interval;
                self.after(dt, Event::Sample);
            }
        }
    }

    // ---- Membership and the tracker --------------------------------------------------------

    fn join(&mut self, p: PeerId) {
        let now = self.now();
        let class = &self.sc.classes[self.peers[p as usize].class as usize];
        let (abort, seed) = (class.abort_mean, class.seed);
        let peer = &mut self.peers[p as usize];
        peer.status = Status::Online;
        peer.joined = now;
        if seed {
            for i in 0..self.pieces {
                self.avail[i as usize] += 1;
            }
        }
        self.tracker.join(p, seed);
        self.announce(p);
        let interval = self.sc.announce_interval;
        self.after(interval, Event::Announce(p));
        if let Some(mean) = abort {
            let u: f64 = self.rng.random();
            self.after(-mean * (1.0 - u).ln(), Event::Abort(p));
        }
        self.nudge(p);
    }

    /// Hands `p` up to `numwant` random other peers of the swarm (a seed: leechers only), as
    /// the built-in tracker does.
    pub(super) fn announce(&mut self, p: PeerId) {
        let now = self.instant();
        let seed = self.peers[p as usize].picker.is_none();
        let chosen = self
            .tracker
            .announce(p, seed, self.sc.numwant, &mut self.rng);
        let peer = &mut self.peers[p as usize];
        peer.last_announce = self.now_ns as f64 / 1e9;
        peer.swarm
            .add_peers(chosen.into_iter().map(addr_of), PeerSource::Tracker, now);
    }

    fn leave(&mut self, p: PeerId) {
        if self.peers[p as usize].status != Status::Online {
            return;
        }
        while let Some(&c) = self.peers[p as usize].conns.last() {
            self.disconnect(c, Disconnect::Normal);
        }
        let peer = &mut self.peers[p as usize];
        peer.status = Status::Gone;
        if peer.completed.is_none() && peer.picker.is_some() {
            self.incomplete_left -= 1;
        }
        let ann = &self.peers[p as usize].ann;
        for i in ann.iter_ones() {
            self.avail[i as usize] -= 1;
        }
        self.tracker.leave(p);
    }

    // ---- Ticks: swarm maintenance and the choker -------------------------------------------

    /// Asks for a tick soon (interest changed, a slot freed, a connection came or went).
    pub(super) fn nudge(&mut self, p: PeerId) {
        let peer = &mut self.peers[p as usize];
        if peer.status != Status::Online {
            return;
        }
        let at = secs_to_ns(peer.last_tick + NUDGE_SECS).max(self.now_ns);
        if at < peer.tick_at {
            peer.tick_at = at;
            self.q.push(at, Event::Tick(p));
        }
    }

    fn tick(&mut self, p: PeerId) {
        let now = self.instant();
        self.peers[p as usize].last_tick = self.now();
        self.dial(p);
        let next = if self.peers[p as usize].free_rider {
            now + Duration::from_secs(10)
        } else {
            self.choke(p)
        };
        let peer = &mut self.peers[p as usize];
        peer.tick_at = next.as_nanos().max(self.now_ns + 1);
        self.q.push(peer.tick_at, Event::Tick(p));
    }

    /// Dials what the swarm policy asks for, drops a useless connection when full, and
    /// re-announces when candidates ran out.
    fn dial(&mut self, p: PeerId) {
        let now = self.instant();
        let lat = self.peers[p as usize].lat;
        let seeding = self.peers[p as usize].picker.is_none();
        if seeding {
            // A seed dials past `conns_min` while its upload slots are not all taken by
            // interested peers (`Swarm::want_slots_filled`).
            let slots = self.sc.classes[self.peers[p as usize].class as usize].upload_slots;
            let peer = &self.peers[p as usize];
            let interested = peer
                .conns
                .iter()
                .filter(|&&c| {
                    let conn = &self.conns[c as usize];
                    conn.sides[1 - conn.end_of(p)].interested
                })
                .count();
            self.peers[p as usize]
                .swarm
                .want_slots_filled(interested, slots);
        }
        // `poll_connect` says no at or above its target; asking costs a scan of the pool.
        while {
            let swarm = &self.peers[p as usize].swarm;
            swarm.connection_count() < swarm.dial_target()
        } {
            let Some(addr) = self.peers[p as usize].swarm.poll_connect(now) else {
                break;
            };
            self.peers[p as usize].swarm.on_connecting(addr, now);
            let to = peer_of(addr);
            let ow = lat + self.peers[to as usize].lat;
            self.after(ow, Event::ConnectArrive { from: p, to });
        }
        let peer = &self.peers[p as usize];
        if peer.swarm.connection_count() >= peer.swarm.config().conns_max {
            let list: Vec<_> = peer
                .conns
                .iter()
                .map(|&c| {
                    let conn = &self.conns[c as usize];
                    let e = conn.end_of(p);
                    crate::torrent::ConnUsefulness {
                        addr: addr_of(conn.ends[1 - e]),
                        useful_to_us: conn.sides[e].lacking > 0 && peer.picker.is_some(),
                        useful_to_them: conn.sides[1 - e].interested,
                    }
                })
                .collect();
            if let Some(addr) = peer.swarm.choose_drop(&list, now) {
                let other = peer_of(addr);
                if let Some(&c) = peer
                    .conns
                    .iter()
                    .find(|&&c| self.conns[c as usize].ends.contains(&other))
                {
                    self.disconnect(c, Disconnect::Useless);
                }
            }
        }
        let peer = &self.peers[p as usize];
        let starving = (peer.swarm.connection_count() < self.sc.conns_min
            && peer.swarm.candidate_count() == 0)
            || (seeding && peer.swarm.wants_peers());
        if starving && self.now() - peer.last_announce >= self.sc.announce_min_interval {
            self.announce(p);
        }
    }

    // ---- Connections -----------------------------------------------------------------------

    fn connect_arrive(&mut self, from: PeerId, to: PeerId) {
        let now = self.instant();
        let ow = self.peers[from as usize].lat + self.peers[to as usize].lat;
        let target = &mut self.peers[to as usize];
        let ok =
            target.status == Status::Online && target.swarm.accept_incoming(addr_of(from), now);
        self.after(ow, Event::ConnectDone { from, to, ok });
    }

    fn connect_done(&mut self, from: PeerId, to: PeerId, ok: bool) {
        let now = self.instant();
        let from_online = self.peers[from as usize].status == Status::Online;
        let to_online = self.peers[to as usize].status == Status::Online;
        if !from_online {
            if ok && to_online {
                self.peers[to as usize].swarm.on_disconnected(
                    addr_of(from),
                    Disconnect::Normal,
                    now,
                );
            }
            return;
        }
        if !ok || !to_online {
            self.peers[from as usize]
                .swarm
                .on_connect_failed(addr_of(to), now);
            self.nudge(from);
            return;
        }
        self.peers[from as usize]
            .swarm
            .on_connected(addr_of(to), now);
        let both_seeds =
            self.peers[from as usize].picker.is_none() && self.peers[to as usize].picker.is_none();
        if both_seeds {
            for (a, b) in [(from, to), (to, from)] {
                self.peers[a as usize].swarm.on_disconnected(
                    addr_of(b),
                    Disconnect::NothingToTrade,
                    now,
                );
            }
            self.nudge(from);
            return;
        }
        self.establish(from, to);
    }

    /// The handshake is done: bitfields are exchanged, interest computed.
    fn establish(&mut self, a: PeerId, b: PeerId) {
        let now = self.instant();
        let side = || Side {
            choking: true,
            interested: false,
            lacking: 0,
            flow_in: None,
        };
        let meters = || Meters {
            recv: RateMeter::new(now),
            last_block: None,
            waiting_since: now,
        };
        let c = self.conns.insert(Conn {
            ends: [a, b],
            sides: [side(), side()],
            connected_at: now,
            meters: [meters(), meters()],
        }) as ConnId;
        for e in 0..2 {
            let (me, other) = (
                self.conns[c as usize].ends[e],
                self.conns[c as usize].ends[1 - e],
            );
            self.peers[me as usize].conns.push(c);
            let (mine, theirs) = pair_mut(&mut self.peers, me, other);
            let Some(picker) = mine.picker.as_mut() else {
                continue;
            };
            if theirs.ann.count() == 0 {
                picker.peer_have_none(other);
            } else {
                picker
                    .peer_bitfield(other, &theirs.ann)
                    .expect("a new connection announces once");
            }
            let lacking = count_missing(&theirs.ann, picker.have());
            let s = &mut self.conns[c as usize].sides[e];
            s.lacking = lacking;
            s.interested = lacking > 0;
        }
        self.nudge(a);
        self.nudge(b);
    }

    /// Closes a connection: flows end (fully received blocks are kept), pickers forget the
    /// other end, both swarms are told.
    pub(super) fn disconnect(&mut self, c: ConnId, why: Disconnect) {
        let now = self.instant();
        // Closing: nothing new may be requested on it while its flows end (delivering their
        // last blocks can complete a piece, and endgame refills every connection).
        for side in &mut self.conns[c as usize].sides {
            side.choking = true;
            side.interested = false;
        }
        for e in 0..2 {
            if let Some(f) = self.conns[c as usize].sides[e].flow_in {
                self.end_flow(f);
            }
        }
        let conn = self.conns.remove(c as usize);
        for e in 0..2 {
            let (me, other) = (conn.ends[e], conn.ends[1 - e]);
            let (mine, theirs) = pair_mut(&mut self.peers, me, other);
            if let Some(picker) = mine.picker.as_mut() {
                picker.peer_left(other, &theirs.ann);
            }
            let at = mine.conns.iter().position(|&x| x == c).expect("listed");
            mine.conns.swap_remove(at);
            mine.swarm.on_disconnected(addr_of(other), why, now);
        }
        for e in 0..2 {
            self.nudge(conn.ends[e]);
            self.refill(conn.ends[e]);
        }
    }

    // ---- Completion and samples ------------------------------------------------------------

    fn completed(&mut self, p: PeerId) {
        let class = &self.sc.classes[self.peers[p as usize].class as usize];
        let seed_cfg = ChokerConfig {
            upload_slots: class.upload_slots,
            ..ChokerConfig::default()
        };
        let seed_time = class.seed_time;
        let peer = &mut self.peers[p as usize];
        if peer.status != Status::Online {
            return;
        }
        peer.choker.switch_to_seeding(seed_cfg);
        let conns = peer.conns.clone();
        for c in conns {
            let e = self.conns[c as usize].end_of(p);
            let other = self.conns[c as usize].ends[1 - e];
            self.conns[c as usize].sides[e].interested = false;
            if self.peers[other as usize].picker.is_none() {
                self.disconnect(c, Disconnect::NothingToTrade);
            } else {
                self.nudge(other);
            }
        }
        self.nudge(p);
        if let Some(t) = seed_time {
            self.after(t, Event::Leave(p));
        }
    }

    /// Bookkeeping when `p` verified its last piece.
    pub(super) fn mark_complete(&mut self, p: PeerId) {
        let now = self.now();
        let peer = &mut self.peers[p as usize];
        peer.completed = Some(now);
        peer.picker = None;
        self.tracker.completed(p);
        self.completed += 1;
        self.incomplete_left -= 1;
        self.q.push(self.now_ns, Event::Completed(p));
    }

    fn sample(&mut self) {
        let t = self.now();
        let (mut online, mut leechers) = (0, 0);
        let mut by_class = vec![0.0; self.sc.classes.len()];
        let mut total = 0.0;
        for p in &self.peers {
            if p.status == Status::Online {
                online += 1;
                leechers += u32::from(p.picker.is_some());
            }
            by_class[p.class as usize] += p.uploaded;
            total += p.uploaded;
        }
        let dt = self
            .samples
            .last()
            .map_or(0.0, |s: &Sample| t - s.t)
            .max(1e-9);
        let rate = if self.samples.is_empty() {
            0.0
        } else {
            (total - self.last_sample_uploaded) / dt
        };
        self.last_sample_uploaded = total;
        let min = self.avail.iter().copied().min().unwrap_or(0);
        let mean = self.avail.iter().map(|&a| f64::from(a)).sum::<f64>() / self.pieces as f64;
        self.samples.push(Sample {
            t,
            online,
            leechers,
            completed: self.completed,
            min_availability: min,
            mean_availability: mean,
            upload_rate: rate,
            uploaded_by_class: by_class,
        });
    }
}
